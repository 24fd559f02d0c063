//! Fuzz target: decodes the input into checks of `fairshare-postgres`'s server-free logic
//! (rate limit, pass encoding and assignment, configuration) against simple references (see
//! `fairshare_fuzz::postgres`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::postgres::run(data));
