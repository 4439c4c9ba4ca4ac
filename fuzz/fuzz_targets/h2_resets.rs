#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::h2_resets_check::check(data));
