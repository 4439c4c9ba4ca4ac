#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::h2_settings_check::check(data));
