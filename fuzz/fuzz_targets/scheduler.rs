//! Fuzz target: decodes the input into operations on the scheduler layer and checks the
//! ledger and limits after each (see `fairshare_fuzz::scheduler`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::scheduler::run(data));
