//! Replays the first incident in simulated time: one tenant floods a shared queue with 140,000 jobs.
//!
//! A worker pool with room for 25 jobs per second serves 300 normal tenants (together about 15
//! jobs per second, Poisson arrivals). At 0:10 one tenant submits 140,000 jobs within 10
//! minutes. The same arrivals are replayed through the incident's shared FIFO, through
//! `fairshare::FairQueue`, through a `fairshare::Scheduler` with a per-tenant rate limit, and
//! through the fair queue with operators blocking the tenant and purging its jobs. The
//! simulation lives in `examples/support/incident1.rs`, which `tests/examples.rs` shares to
//! assert the numbers printed here. Everything runs on simulated time with a fixed seed, so the
//! output is identical on every run.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

#[path = "support/incident1.rs"]
mod incident1;
#[path = "support/replay_util.rs"]
mod replay_util;

fn main() {
    let replay = incident1::replay(incident1::Scenario::incident());
    print!("{}", replay.report());
}
