//! Fair order across many worker nodes on a shared, durable PostgreSQL job queue.
//!
//! A fleet of workers that shares one FIFO job table serves whoever enqueued first: when one
//! customer submits 140,000 jobs, every other customer waits behind all of them, for hours.
//! `fairshare-postgres` keeps the durable table and the `FOR UPDATE SKIP LOCKED` claims, and
//! changes the order: every job gets a per-tenant *pass* (a virtual finish time, from the
//! core crate's pass arithmetic) when it is enqueued, and workers claim in ascending pass
//! order. The flooding tenant's jobs get passes spread far into the future; another tenant's
//! job lands right after the flood's next one.
//!
//! # Quick example
//!
//! ```
//! use fairshare_postgres::{NewJob, Queue, QueueConfig};
//! use fairshare_postgres::testing::TempPostgres;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TempPostgres::start()?; // or the host's own database
//! let mut client = fairshare_postgres::connect(&server.connection_string()).await?;
//! let queue = Queue::new(QueueConfig::new("quick")?);
//! queue.migrate(&mut client).await?;
//!
//! // One customer floods the queue with one batch (one tenant-row update, one insert)...
//! let flood: Vec<NewJob> = (0..10_000).map(|i| NewJob::new(format!("bulk-{i}"))).collect();
//! queue.enqueue_batch(&mut client, "acme", &flood).await?;
//! // ...then another customer enqueues one job.
//! queue.enqueue(&mut client, "globex", &NewJob::new("share-ticket")).await?;
//!
//! // Workers anywhere in the fleet claim in pass order: globex is served after one acme job.
//! let jobs = queue.claim(&client, "worker-1", 2).await?;
//! let tenants: Vec<&str> = jobs.iter().map(|j| j.tenant()).collect();
//! assert_eq!(tenants, ["acme", "globex"]);
//! for job in &jobs {
//!     queue.complete(&mut client, job.lease(), 1).await?;
//! }
//!
//! // Operators block the flooding tenant and purge its queued jobs.
//! queue.block(&client, "acme", "invalid bulk updates").await?;
//! assert_eq!(queue.purge(&client, "acme").await?.len(), 9_999);
//! # Ok(()) }
//! ```
//!
//! # The tables
//!
//! [`Queue::migrate`] creates, in a schema the host names ([`QueueConfig::new`]), inside the
//! host's own database:
//!
//! - `jobs`: `id`, `tenant`, `class`, `pass`, `cost`, `payload` (`bytea`, encoded by the
//!   host), `state` (`queued`, `running`, `done`, `dead`), `attempts`, `max_attempts`,
//!   `run_after`, `lease_until`, `lease_token`, `worker`, `last_error` and timestamps, with a
//!   partial index on `(pass, id) WHERE state = 'queued'` for the claim;
//! - `tenants`: `tenant` (primary key), `pass`, `carry`, `weight`, `blocked_reason`, the rate
//!   limit's theoretical arrival time `tat_ns` and an optional per-tenant quota;
//! - `meta` (the schema version).
//!
//! A lease token is the claiming transaction's 64-bit id (`txid_current()`), which never
//! repeats.
//!
//! A pass is a `u64` stored in a `bigint` with its top bit flipped, so the column's order is
//! the pass order. All times that leases, delays and rate limits compare come from the
//! database's clock, so nodes with skewed clocks agree.
//!
//! # Enqueue
//!
//! [`Queue::enqueue_batch`] locks the tenant's row, refuses the batch if the tenant is
//! blocked or over its fleet-wide rate quota (a GCRA whose state is on the row, in exact
//! integer arithmetic; the refusal carries the retry time), assigns the passes of the whole
//! batch at once and writes the row once, then bulk-inserts the jobs with `unnest`. It takes
//! a `&mut` [`tokio_postgres::Client`] or [`tokio_postgres::Transaction`]; inside the host's
//! transaction it runs in a savepoint and commits with the host's work.
//!
//! # Claim, leases, completion
//!
//! [`Queue::claim`] takes up to `n` jobs in pass order (`FOR UPDATE SKIP LOCKED`, so any
//! number of workers on any number of nodes claim at once) and leases each with a fresh
//! token. A worker loop that owns its connection uses a [`Session`], which prepares these
//! statements once (planning the claim on every call would cost more than running it). [`Queue::complete`] (with the actual cost, which corrects the tenant's future
//! passes), [`Queue::fail`] (retry with exponential backoff, dead letter after the last
//! attempt), [`Queue::dead_letter`], [`Queue::release`] and [`Queue::extend_lease`] present
//! the [`Lease`], and are refused with [`Error::LeaseExpired`] or [`Error::LeaseTakenOver`]
//! once the lease is gone. A worker that dies loses nothing: once its lease has expired,
//! the next claims ([`Queue::reap_expired`], at most once per reap interval) put the job back
//! in the queue with its pass, so it is claimed next; a job whose lease expires on its last
//! attempt is dead-lettered.
//!
//! # Operators and dashboards
//!
//! [`Queue::block`], [`Queue::unblock`], [`Queue::purge`], [`Queue::set_weight`],
//! [`Queue::set_quota`], [`Queue::requeue_dead`], [`Queue::prune_done`]; and
//! [`Queue::backlog`] (queued per tenant, oldest pass), [`Queue::oldest_pass`],
//! [`Queue::in_flight`], [`Queue::counts`], [`Queue::dead_jobs`].
//!
//! # Fairness
//!
//! See [`Queue`]'s `# Fairness` section; the bound on served cost between backlogged tenants
//! is the one the core states for its pass assigner (`fairshare::fleet`).
//!
//! # Bad input
//!
//! Zero weights are ruled out by `NonZeroU32`; a zero job cost is ruled out by
//! [`NewJob::with_cost`] taking a `NonZeroU32` (it is refused by the type, not clamped: a free
//! job would let a tenant queue any number at one pass); huge weights and costs saturate in
//! the pass arithmetic. An unreachable database is [`Error::Connect`]; a connection lost
//! mid-call is [`Error::ConnectionLost`]; a payload the host cannot decode is dead-lettered
//! with the error by [`Queue::claim_decoded`].
//!
//! # Testing
//!
//! [`testing::TempPostgres`] starts a throwaway server from `/usr/lib/postgresql/<version>/bin`
//! in a temporary directory (as the `postgres` user when run as root) and removes it when
//! dropped or when the process exits; [`testing::FifoQueue`] is the plain FIFO
//! `SKIP LOCKED` queue that the example, the fairness test and the benchmarks compare with.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (keep in sync with `Cargo.toml` and the README).

#![forbid(unsafe_code)]
// Doctests that need a database only compile (`no_run`) a helper `async fn` that is never
// called, and bind results only to show their types: those two lints are allowed there.
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod admin;
mod config;
mod error;
mod exec;
mod gcra;
mod job;
mod queue;
mod session;
mod sql;
pub mod testing;

pub use admin::{DeadJob, InFlight, Purged, StateCounts, TenantBacklog, TenantInfo};
pub use config::QueueConfig;
pub use error::Error;
pub use job::{Job, JobId, JobState, Lease, NewJob, UnknownState};
pub use queue::{Decoded, FailOutcome, Queue, Reaped, connect};
pub use session::Session;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
