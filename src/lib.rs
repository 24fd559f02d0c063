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
//! served after at most one turn of each other tenant. Cost corrections reported at
//! completion are never forgiven, so the same holds for the *actual* costs served, up to
//! terms that do not grow with time: a tenant gains nothing by under-declaring. See
//! [`FairQueue`]'s `# Fairness` section for the exact statements; the property tests in
//! `tests/` check them.
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
//! use fairshare::{ClassSpec, Classes, FairQueue, PushOptions};
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
//! q.try_push_with("alice", "login", PushOptions::new().with_class(signin)).unwrap();
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
//! queue: blocked tenants, per-tenant rate quotas ([`Quota`](config::Quota), a cost-weighted
//! GCRA with burst), per-tenant queue caps, a global [`Capacity`](config::Capacity) with a
//! [`ShedPolicy`](config::ShedPolicy), per-item deadlines and a CoDel-style
//! [`QueueDelay`](config::QueueDelay) target. Every setting lives in [`config`]. Every refusal is a [`RejectReason`] that
//! names the binding limit and, where a retry can succeed, when.
//!
//! ```
//! use fairshare::{ManualClock, RejectReason, Scheduler, SchedulerConfig};
//! use fairshare::config::{Quota, TenantLimits};
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
//! runtime dependency), and each dispatched item carries a [`Lease`](shared::Lease) that frees
//! its in-flight slot when completed or dropped. [`PressureLevel`](pressure::PressureLevel)s
//! with hysteresis tell the host when to answer 429 or 503, and an
//! [`AdaptiveLimit`](adaptive::AdaptiveLimit) (AIMD or gradient) can size the in-flight limit
//! from observed latency.
//! Across many nodes, see [`fleet`]: passes for a shared durable queue, placement, split quotas.
//!
//! # One push, three layers
//!
//! Every layer ([`FairQueue`], [`Scheduler`], [`SharedScheduler`]) pushes the same way:
//! `try_push(key, item)` with the defaults, `try_push_with(key, item, options)` with a
//! [`PushOptions`] (cost, [`ClassId`], deadline), and `try_push_to(handle, item, options)` with a
//! [`TenantHandle`] from `tenant(key)`, which skips hashing the key. The same input is refused
//! for the same [`RejectReason`] in every layer, checked in one documented order (see
//! [`Scheduler`]).
//!
//! ```
//! use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};
//!
//! let s: SharedScheduler<&str, &str> = SharedScheduler::new(SchedulerConfig::new());
//! let acme = s.tenant("acme");
//! s.try_push("globex", "ticket").unwrap();
//! s.try_push_to(acme, "export", PushOptions::new().with_cost(20)).unwrap();
//! assert_eq!(s.len(), 2);
//! ```
//!
//! # Groups of tenants
//!
//! A customer that submits under many keys (one per user, project or API token) would get one
//! share per key. Put its keys in a group and capacity is shared among groups first, by group
//! weight, then among each group's tenants, by their weights: 1,000 keys of one group against
//! 9 single-key groups get a tenth of the service. A group can be limited as a whole (a rate
//! quota, caps on what its members queue, an in-flight limit), blocked and purged; a tenant in
//! no group is served as before.
//!
//! ```
//! use fairshare::{BlockReason, Scheduler, SchedulerConfig};
//! use fairshare::config::TenantLimits;
//!
//! let mut s: Scheduler<String, u32> = Scheduler::new(SchedulerConfig::new());
//! for key in 0..1000 {
//!     s.set_group(format!("acme-{key}"), "acme".to_string());
//!     s.try_push(format!("acme-{key}"), key).unwrap();
//! }
//! s.try_push("globex".to_string(), 7).unwrap();
//! s.pop(); // acme's turn: one of its thousand keys
//! assert_eq!(s.pop(), Some(7)); // then globex, which does not wait behind 999 more keys
//!
//! s.set_group_limits("acme".to_string(), TenantLimits::new().with_max_items(1_000));
//! assert!(s.try_push("acme-new".to_string(), 1).is_ok()); // not in the group: its own share
//! s.block_group("acme".to_string(), BlockReason::Abuse);
//! assert!(s.try_push("acme-1".to_string(), 1).is_err());
//! assert_eq!(s.purge_group(&"acme".to_string()).len(), 999);
//! ```
//!
//! # Nothing is lost
//!
//! Every item handed to the crate comes back to the host exactly once: from `pop`/`dispatch`,
//! inside a [`Rejected`] (see [`Rejected::into_inner`]) when a push is refused, through
//! [`Scheduler::take_returned`] when it leaves the queue undispatched (evicted, expired or
//! shed), or from `purge`, `retain`, `drain` and [`SharedScheduler::close`].
//!
//! # Time
//!
//! Time-based features take a [`Clock`]: [`StdClock`] reads the OS clock, and [`ManualClock`]
//! lets tests and simulations drive time by hand (or a host tick it once per batch). With the
//! `quanta` feature, `clock::TscClock` reads the same time from the CPU's time-stamp counter
//! and `clock::RecentClock` the time a host-started quanta upkeep thread publishes (one atomic
//! load; precise to the upkeep interval). A clock that steps backwards counts as no time passed.
//!
//! # Modules
//!
//! The root holds the names every user needs. The rest is grouped by concept:
//! [`config`] (every setting, and the serde file form), [`stats`] (snapshots and counters),
//! [`pressure`] (graded pressure levels), [`adaptive`] (adaptive concurrency limits),
//! [`shared`] (the thread-safe handle's jobs, leases and futures), [`queue`] (the fair queue's
//! iterator and hasher) and [`clock`]. [`detect`] finds noisy tenants in bounded memory
//! (a windowed heavy-hitter summary with hysteresis) and says what to do about them.
//!
//! # Feature flags
//!
//! - `serde`: `Serialize`/`Deserialize` for configuration and value types.
//! - `metrics`: counters, gauges and a wait histogram through the `metrics` facade, and a
//!   bounded heavy-tenant tracker; names in the `metrics` module.
//! - `quanta`: the cheap real-time clocks `clock::TscClock` and `clock::RecentClock`.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (keep in sync with `Cargo.toml` and the README).

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod adaptive;
mod admission;
pub mod clock;
pub mod config;
pub mod detect;
mod error;
pub mod fleet;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod pressure;
mod push;
pub mod queue;
mod rate;
pub mod shared;
pub mod stats;
mod sync;

pub use admission::{Permit, Scheduler};
pub use clock::{Clock, ManualClock, Nanos, StdClock};
pub use config::SchedulerConfig;
pub use error::{BlockReason, ConfigError, Limit, RejectReason, Rejected};
pub use push::{ClassId, PushOptions};
pub use queue::{ClassSpec, Classes, Dispatch, FairQueue, TenantHandle, Ticket};
pub use shared::SharedScheduler;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
