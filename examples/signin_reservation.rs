//! Replays the second incident in simulated time: sign-in isolated onto a small dedicated pool
//! starves at the peak; a reserved class that borrows idle capacity does not.
//!
//! A fleet of 40 worker slots serves 50 customer organisations. At 0:20 a sign-in wave starts
//! (everyone signing in at once) while the fleet as a whole still has room; from 1:00 page and
//! API traffic peaks above capacity. The same requests are replayed through four setups: one
//! shared `fairshare::Scheduler` for everything (no isolation); the operators' fix, a separate
//! scheduler and pool of 4 slots for sign-in only (and the same with 6 slots); and one
//! scheduler over the whole fleet with `fairshare::Classes`: a sign-in class with 15% of the
//! slots reserved, lending them out while idle and borrowing idle slots itself. Each run prints
//! how many sign-ins and page/API requests were served within the 2 s client timeout, their
//! waits, and how many were shed with which `Retry-After`. The simulation lives in
//! `examples/support/incident2.rs`, which `tests/examples.rs` shares to assert the numbers
//! printed here. Everything runs on simulated time with a fixed seed, so the output is identical
//! on every run.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

#[path = "support/incident2.rs"]
mod incident2;
#[path = "support/replay_util.rs"]
mod replay_util;

fn main() {
    let replay = incident2::replay(incident2::Scenario::incident());
    print!("{}", replay.report());
}
