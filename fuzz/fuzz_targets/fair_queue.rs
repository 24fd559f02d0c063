//! Fuzz target: decodes the input into operations on the fair queue layer and checks the
//! ledger and limits after each (see `fairshare_fuzz::fair_queue`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::fair_queue::run(data));
