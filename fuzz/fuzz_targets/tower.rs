//! Fuzz target: decodes the input into requests, cancellations, inner-service answers and
//! operator calls on a `fairshare-tower` layer, and checks outcomes and slots after each (see
//! `fairshare_fuzz::tower`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairshare_fuzz::tower::run(data));
