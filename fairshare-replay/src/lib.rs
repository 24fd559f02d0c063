//! What-if replay for `fairshare`: a trace of your own traffic, replayed in simulated time
//! through your FIFO and through a [`fairshare::Scheduler`] built from your config, with the
//! waits side by side.
//!
//! The binary (`fairshare-replay`) reads a [`Trace`] (CSV or JSON lines), a [`Setup`] (the
//! core crate's JSON config file form, and a worker count), runs [`Replay::run`], prints
//! [`Replay::report`] and writes [`chart_svg`]. This library is what it runs, so the tests can
//! check the very replay the tool prints.
//!
//! # Example
//!
//! ```
//! use fairshare_replay::{Replay, SampleSpec, Setup};
//!
//! let spec = SampleSpec { flood_jobs: 2_000, horizon_ms: 120_000, ..SampleSpec::small() };
//! let setup = Setup::from_json(fairshare_replay::SAMPLE_CONFIG, None).unwrap();
//! let replay = Replay::run(spec.generate(), &setup).unwrap();
//! let others = replay.others_row();
//! assert!(others.fair.p99 <= others.fifo.p99);
//! ```
//!
//! # The simulation
//!
//! A pool of identical workers takes the next job whenever one is free; each job holds its
//! worker for the trace's `service_ms`. Both runs see the same jobs at the same times. FIFO
//! serves every job in arrival order. The fairshare run pushes each job with its tenant, cost
//! and class, dispatches when a worker is free, completes it (with its cost) when its service
//! time is over, and counts what the scheduler refuses at the door or hands back later by
//! reason. Nothing is retried: a refused job is what the host would have had to answer with a
//! 429 or requeue. At the end every row is served, refused or handed back exactly once, and
//! the scheduler's own counters agree (a mismatch panics).
//!
//! # Groups
//!
//! The trace has a group per tenant: the scheduler shares capacity among groups first, then
//! among each group's tenants (so an organisation gains nothing by submitting under more
//! keys), and the report has a per-group table. [`assign_group`] is where the membership
//! reaches the scheduler.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod chart;
mod report;
mod sample;
mod setup;
mod sim;
mod trace;

pub use chart::{ChartError, chart_svg};
pub use report::{Replay, WaitRow, WaitStats, human_ms, reason_name};
pub use sample::SampleSpec;
pub use setup::{Setup, SetupError, assign_group};
pub use sim::{Fate, Outcome, ReplayError, class_ids, replay_fairshare, replay_fifo};
pub use trace::{Format, Row, Trace, TraceError};

/// The shipped sample config (`samples/config.json`), the one the demo uses.
pub const SAMPLE_CONFIG: &str = include_str!("../samples/config.json");
