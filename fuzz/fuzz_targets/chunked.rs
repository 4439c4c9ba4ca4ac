#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::chunked_check::check(data));
