//! Noisy-tenant detection: which tenants use more than a share of the work right now, in
//! memory bounded by a fixed number of tracked tenants, with hysteresis so the answer does
//! not flap, and an optional response (a lower weight, tighter limits) the host applies.
//!
//! A [`Detector`] is a standalone value: the host (or the scheduler) records what it admits,
//! serves and refuses, and polls it now and then; it does no IO and reads no clock (every
//! call takes `now`).
//!
//! ```
//! use fairshare::Nanos;
//! use fairshare::detect::{Basis, Detector, DetectorConfig, NoisyEvent};
//!
//! let mut d: Detector<u32> = Detector::new(DetectorConfig::new()).unwrap();
//! let mut now = Nanos::ZERO;
//! for i in 0..20_000u32 {
//!     now = Nanos::from_micros(u64::from(i));
//!     let tenant = if i % 10 < 3 { 7 } else { 1_000 + i % 500 }; // 7 sends 30%
//!     d.record_admitted(&tenant, 1, now);
//! }
//! let top = d.shares_above(Basis::Admitted, 0.2, now);
//! assert_eq!(top[0].key, 7);
//! assert!((top[0].share - 0.3).abs() < 0.02);
//! let events = d.poll(now);
//! assert!(matches!(&events[..], [NoisyEvent::Became { key: 7, .. }]));
//! ```
//!
//! # Algorithm
//!
//! Each of the three streams (admitted cost, served cost, refused cost or count) is a ring
//! of `N` sub-windows of length `L`, each summarised by **weighted Space-Saving** over at most
//! `k` tenants (Metwally, Agrawal and El Abbadi's algorithm, with weights): a recorded tenant
//! that is tracked adds its cost to its counter; an untracked one takes over the slot with
//! the smallest counter `m`, starting at `m + cost` with error `m`. A min-heap finds that
//! slot, a hash table of `k` keys finds a tenant. A query merges the `N` summaries.
//!
//! # Window
//!
//! Sub-window `i` holds what was recorded with `now / L == i`. At a query at `now` the
//! window is sub-window `now / L` and the `N - 1` before it: every record at a time in
//! `[(now / L - N + 1) · L, now]`, a span of more than `(N - 1) · L` and at most `N · L`
//! ([`DetectorConfig::window`]). A `now` earlier than the latest one seen counts as the
//! latest (time going backwards is no time passed).
//!
//! # Error bound
//!
//! With exact recording ([`DetectorConfig::with_sampling`]`(None)`), a tenant's estimated
//! cost in the window is the sum of its counters where it is tracked plus the smallest
//! counter of each full sub-window where it is not. It is **never below** its true cost and
//! overstates it by at most the sum of those smallest counters, which is at most the
//! window's total divided by `k`. So a [`ShareEstimate`]'s true share lies in
//! `share - error ..= share`, with `error <= 1/k` ([`DetectorConfig::error_bound`]): every
//! tenant whose true share is at least `t > 1/k` is listed by
//! [`shares_above`](Detector::shares_above)`(.., t, ..)`, and none whose true share is below
//! `t - 1/k`.
//!
//! # Sampling
//!
//! Recording every unit costs a hash and a heap step (tens of nanoseconds); by default the
//! detector samples instead, so the cost per recorded item is a compare and a subtraction. In
//! each stream, every unit of cost is kept with probability `1/S`, independently (geometric
//! skips between kept units), and counted as `S`; the whole strides of an item after its
//! first kept unit are counted exactly. The estimate stays unbiased, and a
//! tenant's variance is at most `S` times its true cost: by Bernstein's inequality
//! `P(|estimate - cost| >= d) <= 2 exp(-d² / (2 S (cost + d / 3)))`. `S` follows the traffic:
//! at each sub-window boundary it is set to the previous sub-window's total divided by the
//! target `m` ([`DetectorConfig::with_sampling`], 1024 by default), at least 1, and it
//! doubles within a sub-window that has taken `2m` samples. So a sub-window takes about `m`
//! samples at steady traffic (at most `2m` plus `m` per doubling), whatever the rate; a
//! quiet system is recorded exactly. Under steady traffic a tenant at share `f` has its share
//! estimated with a standard deviation of at most about `sqrt(2 f / (N m))` (0.7% at
//! `f = 0.2` with the defaults), on top of the `1/k` bound.
//!
//! # Detection latency
//!
//! With exact recording, steady traffic of `W` cost per window length `N · L`, and a tenant
//! whose share of the traffic from some moment on is at least `f` (above the enter share
//! `e`): once `ceil(e / f · W)` cost has been recorded since that moment, its true share of
//! the window is at least `e` (all of that cost lies within the last `(N - 1) · L` if
//! `e / f <= (N - 1) / N`; otherwise the bound is `W`, a window turned over). Its estimate is
//! never below the truth, so the next poll makes it a candidate, and it becomes noisy
//! `enter_after` later. [`DetectorConfig::latency_bound`] computes this bound; with
//! sampling, use `e` plus a few standard deviations of the sampling error.
//!
//! # Hysteresis
//!
//! A tenant becomes noisy ([`NoisyEvent::Became`]) when its estimated share is at least
//! `enter_share` at every poll for `enter_after`, and is cleared ([`NoisyEvent::Cleared`])
//! when it is below `exit_share` at every poll for `exit_after`. Between the two shares
//! nothing changes, so a tenant oscillating around the enter share is reported once.
//!
//! # Response
//!
//! With a [`Response`] set ([`Detector::set_response`]), a `Became` event carries the
//! [`Action`] to apply (lower the weight, clamp the limits) and the detector remembers the
//! tenant's [`Prior`] settings; its `Cleared` event carries the action that restores them.
//! [`Action::apply`] makes the matching [`Scheduler`](crate::Scheduler) call.
//!
//! # Memory
//!
//! Fixed at construction and independent of the number of tenants: three streams of `N`
//! summaries of `k` slots, a merge area of `N · k` rows and at most `k` watched tenants
//! ([`Detector::heap_bytes`]). Nothing is allocated per record.
//!
//! # Integration
//!
//! A scheduler that embeds a detector makes four calls, each with the `now` it already has:
//!
//! 1. [`record_admitted`](Detector::record_admitted)`(&key, cost, now)` where an admission
//!    commits (the item is queued);
//! 2. [`record_served`](Detector::record_served)`(&key, cost, now)` where an item is
//!    dispatched (or at completion, with the actual cost);
//! 3. [`record_refused`](Detector::record_refused)`(&key, cost, now)` where an item is
//!    refused or handed back (the cost, or 1 to count refusals);
//! 4. [`poll_with`](Detector::poll_with)`(now, |key| Prior::new(weight(key)) ..)` at a
//!    steady cadence (a fraction of `L`), then [`Action::apply`] for each event's action, and
//!    [`stats`](Detector::stats)`(now)` beside its own stats.

mod config;
mod detector;
mod events;
mod response;
mod summary;
mod window;

pub use config::{Basis, DetectorConfig};
pub use detector::Detector;
pub use events::{Action, DetectorStats, NoisyEvent, NoisyTenant, ShareEstimate};
pub use response::{Prior, Response};
