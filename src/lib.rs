//! Fair multi-tenant work scheduling, with no IO in the core.
//!
//! `fairshare` sits between the producers and the workers of a host service (a job queue, an
//! API server, a worker pool) and decides which tenant's work runs next, so that one tenant's
//! load never hurts the others. Its core spawns no thread, does no IO and reads no clock: time,
//! where it matters, is a value the host passes in (through a [`Clock`]), so every decision is
//! deterministic and testable. Only [`StdClock`] and the shared handle's blocking timeouts read
//! real time.
//!
//! It exists because of a real incident: one customer of a help desk submitted 140,000 jobs in
//! a short time, every other customer shared the same FIFO queue, and everyone else's work
//! waited for hours. With a [`FairQueue`], that customer's backlog delays each other customer by
//! at most one turn of the flooding tenant. (A second incident, below, is why there are
//! classes.)
//!
//! # Quick example
//!
//! ```
//! use fairshare::{BlockReason, FairQueue};
//!
//! let mut queue: FairQueue<&str, String> = FairQueue::new();
//!
//! // One customer floods the shared queue...
//! for i in 0..140_000 {
//!     queue.try_push("acme", format!("bulk-update-{i}")).unwrap();
//! }
//! // ...while another submits a single job.
//! queue.try_push("globex", "share-ticket".to_string()).unwrap();
//!
//! // The newcomer is served after one turn of the flood, not after 140,000 jobs.
//! assert_eq!(queue.pop().unwrap(), "bulk-update-0");
//! assert_eq!(queue.pop().unwrap(), "share-ticket");
//!
//! // Operators block the tenant and get its invalid jobs back, nothing dropped silently.
//! queue.block("acme", BlockReason::Abuse);
//! let removed = queue.purge(&"acme");
//! assert_eq!(removed.len(), 139_999);
//! assert!(queue.try_push("acme", "more".to_string()).is_err());
//! ```
//!
//! # Tenants, items, costs and weights
//!
//! A *tenant* is any key `K: Hash + Eq + Clone` the host chooses (an account id, an
//! `(org, project)` pair). An *item* is any `T`; the queue never inspects it except through
//! predicates the host passes to [`FairQueue::retain`]. Each item has a *cost* (default 1), the
//! host's estimate of the capacity it uses; [`FairQueue::dispatch`] and
//! [`FairQueue::complete`] let the host report the actual cost afterwards, and the tenant's
//! future share is corrected. A tenant's *weight* ([`FairQueue::set_weight`]) is its relative
//! share: a weight-2 tenant is served twice the cost of a weight-1 tenant while both are
//! backlogged.
//!
//! # Fairness
//!
//! The queue serves backlogged tenants by deficit round robin, and states its bound: over any
//! stretch in which two tenants stay backlogged, their served cost divided by weight differs by
//! less than `3·quantum + max_cost/w_i + max_cost/w_j`, and a tenant that becomes backlogged is
//! served after at most one turn of each other tenant. See [`FairQueue`]'s `# Fairness`
//! section for the exact statement; the property tests in `tests/` check both.
//!
//! # Classes: a guaranteed share that can borrow
//!
//! A second incident: sign-in requests were isolated on a small dedicated pool, which starved
//! at the peak while the rest of the fleet had room. [`Classes`] put kinds of work above the
//! tenants: each [`ClassSpec`] has a weight, a share of the global in-flight limit reserved for
//! it whenever it has work, a ceiling, a strict priority and an in-flight cap. An idle class's
//! reservation is lent to the others on the very next dispatch and comes back as in-flight work
//! completes; inside a class, tenants share by weight as above. See [`ClassSpec`] for the exact
//! rule and the bound on give-back.
//!
//! ```
//! use fairshare::{ClassSpec, Classes, FairQueue};
//!
//! let mut q: FairQueue<&str, &str> = FairQueue::new();
//! q.set_classes(Classes::new([
//!     ClassSpec::new("api"),
//!     ClassSpec::new("signin").with_reserved_percent(25), // 1 of 4 slots
//! ]).unwrap()).unwrap();
//! q.set_in_flight_limit(Some(4));
//! let signin = q.classes().id("signin").unwrap();
//!
//! for _ in 0..10 {
//!     q.try_push("acme", "page").unwrap();
//! }
//! let mut busy: Vec<_> = (0..4).map(|_| q.dispatch().unwrap()).collect(); // api borrows all 4
//! q.try_push_in("alice", signin, "login", 1).unwrap();
//! assert!(q.dispatch().is_none()); // every slot is busy...
//! q.complete(busy.pop().unwrap().ticket, 1);
//! assert_eq!(q.dispatch().unwrap().item, "login"); // ...and the first freed is sign-in's
//! # for d in busy { q.complete(d.ticket, 1); }
//! ```
//!
//! # Admission control: refuse at the door
//!
//! The incident's post-mortem found the job type "did not have sufficient rate limit and
//! validation protections". A [`Scheduler`] puts one pipeline of checks in front of the fair
//! queue: blocked tenants, per-tenant rate quotas ([`Quota`], a cost-weighted GCRA with
//! burst), per-tenant queue caps, a global [`Capacity`] with a [`ShedPolicy`], per-item
//! deadlines and a CoDel-style [`QueueDelay`] target. Every refusal is a [`RejectReason`] that
//! names the binding limit and, where a retry can succeed, when.
//!
//! ```
//! use fairshare::{ManualClock, Quota, RejectReason, Scheduler, SchedulerConfig, TenantLimits};
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let limits = TenantLimits::new()
//!     .with_quota(Quota::per_second(NonZeroU32::new(100).unwrap()))
//!     .with_max_items(1_000);
//! let mut s: Scheduler<&str, u32, _> =
//!     Scheduler::with_clock(SchedulerConfig::new().with_tenant_limits(limits), clock.clone());
//!
//! let refused = (0..140_000).filter(|&job| s.try_push("acme", job).is_err()).count();
//! assert_eq!(refused, 140_000 - 100); // the burst passes; the flood is refused at the door
//! let err = s.try_push("acme", 0).unwrap_err();
//! assert!(matches!(err.reason(), RejectReason::RateLimited { .. }));
//! clock.advance(Duration::from_millis(10)); // one unit replenished
//! assert!(s.try_push("acme", 0).is_ok());
//! ```
//!
//! # Sharing between threads and tasks
//!
//! [`SharedScheduler`] is a cloneable `Send + Sync` handle: producers push, workers wait with
//! [`SharedScheduler::dispatch_timeout`] or await [`SharedScheduler::dispatch_async`] (no
//! runtime dependency), and each dispatched item carries a [`Lease`] that frees its in-flight
//! slot when completed or dropped. [`PressureLevel`]s with hysteresis tell the host when to
//! answer 429 or 503, and an [`AdaptiveLimit`] (AIMD or gradient) can size the in-flight limit
//! from observed latency.
//! Across many nodes, see [`fleet`]: passes for a shared durable queue, placement, split quotas.
//!
//! # Nothing is lost
//!
//! Every item handed to the crate comes back to the host exactly once: from `pop`/`dispatch`,
//! inside a [`Rejected`] (see [`Rejected::into_inner`]), evicted inside [`Admitted`], expired
//! or shed through [`Scheduler::take_expired`], or from `purge`, `retain`, `drain` and
//! [`SharedScheduler::close`].
//!
//! # Time
//!
//! Time-based features take a [`Clock`]: [`StdClock`] is the only code that reads real time,
//! and [`ManualClock`] lets tests and simulations drive time by hand. A clock that steps
//! backwards counts as no time passed.
//!
//! # Feature flags
//!
//! - `serde`: `Serialize`/`Deserialize` for configuration and value types.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (keep in sync with `Cargo.toml` and the README).

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod adaptive;
mod admission;
mod clock;
#[cfg(feature = "serde")]
mod config;
mod error;
pub mod fleet;
mod pressure;
mod queue;
mod shared;
mod stats;
mod sync;

pub use adaptive::{AdaptiveLimit, Aimd, Gradient, Outcome};
pub use admission::{
    AdmissionCounters, Admitted, Capacity, Permit, PushOptions, QueueDelay, Quota, Scheduler,
    SchedulerConfig, ShedPolicy, TenantLimits,
};
pub use clock::{Clock, ManualClock, Nanos, StdClock};
#[cfg(feature = "serde")]
pub use config::{
    CapacityConfig, ClassConfig, Config, LimitsConfig, QueueDelayConfig, RateConfig, TenantConfig,
    TenantSettings, ValidConfig,
};
pub use error::{BlockReason, ConfigError, Limit, RejectReason, Rejected};
pub use pressure::{Band, PressureConfig, PressureGauge, PressureLevel};
pub use queue::{
    ClassCounters, ClassId, ClassSpec, Classes, DefaultHashBuilder, Dispatch, Drain, FairQueue,
    MAX_CLASSES, QueueConfig, QueueCounters, TenantCounters, TenantHandle, Ticket,
};
pub use shared::{Dispatching, Job, Lease, Popping, SharedScheduler, WaitError, Waiting};
pub use stats::{ClassStats, RefusalCounters, Stats, TenantStats, WaitHistogram, WaitSummary};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
