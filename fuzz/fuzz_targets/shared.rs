//! Fuzz target: decodes the input into operations on the shared layer and checks the
//! ledger and limits after each (see `fairshare_fuzz::shared`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::shared::run(data));
