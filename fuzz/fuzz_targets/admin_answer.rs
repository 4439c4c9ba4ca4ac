#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::admin_check::check(data));
