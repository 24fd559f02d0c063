//! Fuzz target: decodes the input into operations on the config layer and checks the
//! ledger and limits after each (see `fairshare_fuzz::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::config::run(data));
