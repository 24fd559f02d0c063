//! [`Scheduler`]: the fair queue behind one admission pipeline.

use super::commit::Cooling;
use super::detection::Detection;
use super::dispatch::TenantDetail;
use super::tenant_state::TenantAdmission;
use crate::queue::Attachment;
use crate::rate::gcra::Tat;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::hash::{BuildHasher, Hash};

use super::codel::CoDel;
use super::rules::Rules;
use crate::clock::{Clock, Nanos, StdClock};
use crate::config::{SchedulerConfig, ShedPolicy};
use crate::detect::NoisyEvent;
use crate::error::Rejected;
use crate::pressure::PressureGauge;
use crate::queue::{Classes, DefaultHashBuilder, FairQueue};
use crate::stats::AdmissionCounters;
use crate::stats::WaitHistogram;

/// A [`FairQueue`] behind one admission pipeline: blocked tenants, per-tenant rate limits and
/// queue caps, a global capacity with a shedding policy, item deadlines and a queue-delay
/// target. Every check happens before anything is committed, so no limit is charged for an
/// item another limit refuses, and every refusal names the binding limit.
///
/// The checks, in order:
///
/// 1. the tenant is blocked → [`RejectReason::Blocked`](crate::RejectReason::Blocked);
/// 2. the cost is zero → [`RejectReason::ZeroCost`](crate::RejectReason::ZeroCost);
/// 3. never admissible, reported before any "not now": a deadline already passed →
///    [`RejectReason::DeadlineExpired`](crate::RejectReason::DeadlineExpired); a cost above what some limit can ever allow (the
///    rate burst, the tenant's cost cap, the global cost capacity) or a cap of zero items →
///    [`RejectReason::TooLarge`](crate::RejectReason::TooLarge);
/// 4. the tenant's rate quota (cost-weighted GCRA) → [`RejectReason::RateLimited`](crate::RejectReason::RateLimited) with the
///    earliest time a retry can pass;
/// 5. the tenant's caps (queued cost, then queued items) → [`RejectReason::TenantFull`](crate::RejectReason::TenantFull);
/// 6. the global capacity → by [`ShedPolicy`]: refuse ([`RejectReason::CapacityFull`](crate::RejectReason::CapacityFull)) or
///    evict the oldest items of the tenant furthest over its fair share, handed back by
///    [`take_returned`](Scheduler::take_returned).
///
/// Dispatch honours the global in-flight limit and each tenant's
/// [`max_in_flight`](crate::config::TenantLimits::with_max_in_flight): a tenant at its cap is skipped until
/// one of its items completes.
///
/// Time is read from the clock once per call; a clock that steps back counts as no time
/// passed.
///
/// With noisy-tenant detection on ([`SchedulerConfig::with_detector`]), the scheduler feeds
/// an embedded [`Detector`](crate::detect::Detector) what it admits, dispatches and refuses,
/// applies the configured response to noisy tenants and restores them afterwards; see
/// [`poll_noisy`](Scheduler::poll_noisy).
///
/// # Fairness
///
/// Dispatch order is the [`FairQueue`]'s, with its bound (see its `# Fairness` section). Items
/// whose deadline passed, and items shed by the queue-delay target, are never dispatched.
///
/// # Memory
///
/// A tenant's state is kept while it has queued or in-flight items or custom settings, and
/// while its rate limit is still recovering (its state differs from a fresh tenant's); after
/// that it is forgotten. Recovered tenants are swept a few per push, soonest first (a
/// min-heap, O(log n) per tenant that starts recovering).
///
/// # Examples
///
/// ```
/// use fairshare::{ManualClock, Scheduler, SchedulerConfig};
/// use fairshare::config::{Quota, TenantLimits};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = SchedulerConfig::new().with_tenant_limits(
///     TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(2).unwrap())),
/// );
/// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(config, clock.clone());
///
/// s.try_push("acme", 1).unwrap();
/// s.try_push("acme", 2).unwrap();
/// let err = s.try_push("acme", 3).unwrap_err();
/// assert_eq!(err.reason().retry_at(), Some(fairshare::Nanos::from_millis(500)));
/// assert_eq!(err.into_inner(), 3); // nothing is lost
///
/// clock.advance(Duration::from_millis(500));
/// assert!(s.try_push("acme", 3).is_ok());
/// assert_eq!(s.pop(), Some(1));
/// ```
#[derive(Debug)]
pub struct Scheduler<K, T, C = StdClock, S = DefaultHashBuilder> {
    pub(super) queue: FairQueue<K, T, S, TenantAdmission>,
    pub(super) clock: C,
    pub(super) config: SchedulerConfig,
    /// The default limits, flattened for the admission check.
    pub(super) default_rules: Rules,
    /// Per-tenant limits (a slot's `limits` indexes this), flattened.
    pub(super) overrides: Vec<Rules>,
    pub(super) free_overrides: Vec<u32>,
    /// Tenants kept only while their rate limit recovers, soonest recovery first.
    pub(super) cooling: BinaryHeap<Reverse<Cooling>>,
    /// GCRA theoretical arrival times of the classes' per-tenant quotas, by tenant slot and
    /// class. An entry is dropped when its tenant stops cooling (every TAT of it is then in the
    /// past, which is a fresh tenant's state) and when its class is removed.
    pub(super) class_tats: BTreeMap<(u32, u16), Tat>,
    /// The new TAT of a class's per-tenant quota that a plan decided, until the plan is
    /// committed. One place is enough: a plan is committed at once or held by a [`Permit`](super::commit::Permit),
    /// which borrows the scheduler, so no two plans are ever outstanding.
    pub(super) staged_class_tat: Tat,
    /// Groups' limits and rate state, by group key (only groups given limits).
    pub(super) group_admission: std::collections::HashMap<K, super::groups::GroupAdmission>,
    /// The new TAT of the tenant's group's quota that a plan decided (as `staged_class_tat`).
    pub(super) staged_group_tat: Tat,
    pub(super) codel: Option<CoDel>,
    pub(super) outbox: Vec<Rejected<T>>,
    pub(super) last_now: Nanos,
    /// How long the last dispatched item waited (the pressure gauge's delay signal).
    pub(super) last_sojourn: Nanos,
    pub(super) gauge: Option<PressureGauge>,
    pub(super) waits: WaitHistogram,
    pub(super) counters: AdmissionCounters,
    /// Per-tenant detail by tenant slot, kept only with `SchedulerConfig::tenant_detail`
    /// (outside the tenant slot, which the hot path reads).
    pub(super) details: Vec<Option<Box<TenantDetail>>>,
    /// The classes the admission check's fast path serves (see [`plain_classes`]), kept in
    /// step with the queue's classes.
    pub(super) plain_classes: u64,
    /// The noisy-tenant detector, with detection on (boxed: off, it costs a pointer).
    pub(super) detect: Option<Box<Detection<K>>>,
    /// Detection's events, until [`poll_noisy`](Scheduler::poll_noisy) takes them.
    pub(super) noisy_events: VecDeque<NoisyEvent<K>>,
}

/// Bit `c` is set when class `c` exists and has no per-tenant quota: all the admission check
/// needs to know of a class on its fast path, in one word instead of a lookup in the specs.
pub(super) fn plain_classes(classes: &Classes) -> u64 {
    classes
        .specs()
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.tenant_quota().is_none())
        .fold(0, |mask, (c, _)| {
            mask | 1u64.checked_shl(c as u32).unwrap_or(0)
        })
}

// ===== impl Scheduler: construction =====

impl<K, T> Scheduler<K, T> {
    /// A scheduler on the real clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<u64, String> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(s.queue().is_empty());
    /// ```
    pub fn new(config: SchedulerConfig) -> Self {
        Self::with_clock(config, StdClock::new())
    }
}

impl<K, T, C> Scheduler<K, T, C> {
    /// A scheduler reading time from `clock` (a [`ManualClock`](crate::ManualClock) in tests
    /// and simulations).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Scheduler, SchedulerConfig};
    /// let s: Scheduler<u64, u8, _> = Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    /// assert!(s.queue().is_empty());
    /// ```
    pub fn with_clock(config: SchedulerConfig, clock: C) -> Self {
        Self::with_clock_and_hasher(config, clock, DefaultHashBuilder::default())
    }
}

impl<K, T, C, S> Scheduler<K, T, C, S> {
    /// A scheduler with a custom clock and tenant-table hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Scheduler, SchedulerConfig};
    /// use std::collections::hash_map::RandomState;
    /// let s: Scheduler<u64, u8, _, RandomState> =
    ///     Scheduler::with_clock_and_hasher(SchedulerConfig::new(), ManualClock::new(), RandomState::new());
    /// assert!(s.queue().is_empty());
    /// ```
    pub fn with_clock_and_hasher(config: SchedulerConfig, clock: C, hasher: S) -> Self {
        let mut queue = FairQueue::with_attachment(config.queue(), hasher);
        // A new queue has the single default class (the check asserts the two agree).
        let plain_classes = plain_classes(&Classes::single());
        queue.set_over_share_tracking(config.shed_policy() == ShedPolicy::EvictOverShare);
        queue.set_in_flight_limit(config.max_in_flight());
        Scheduler {
            queue,
            clock,
            config,
            default_rules: Rules::new(config.tenant_limits(), config.capacity()),
            overrides: Vec::new(),
            free_overrides: Vec::new(),
            cooling: BinaryHeap::new(),
            class_tats: BTreeMap::new(),
            staged_class_tat: Tat::ZERO,
            group_admission: std::collections::HashMap::new(),
            staged_group_tat: Tat::ZERO,
            codel: config.queue_delay().map(CoDel::new),
            outbox: Vec::new(),
            last_now: Nanos::ZERO,
            last_sojourn: Nanos::ZERO,
            gauge: config.pressure().map(PressureGauge::new),
            waits: WaitHistogram::new(),
            counters: AdmissionCounters::default(),
            details: Vec::new(),
            plain_classes,
            detect: config.detector().map(|c| Box::new(Detection::new(c))),
            noisy_events: VecDeque::new(),
        }
    }

    /// The queue, for queries (lengths, costs, counters, tenants).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.try_push("a", 1).unwrap();
    /// assert_eq!(s.queue().len(), 1);
    /// ```
    pub fn queue(&self) -> &FairQueue<K, T, S, impl Attachment> {
        &self.queue
    }

    /// The configuration in force.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(s.config().queue_delay().is_none());
    /// ```
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The clock this scheduler reads (to turn a `retry_at` into a wait, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Clock, ManualClock, Nanos, Scheduler, SchedulerConfig};
    /// let clock = ManualClock::new();
    /// clock.set(Nanos::from_secs(3));
    /// let s: Scheduler<u8, u8, _> = Scheduler::with_clock(SchedulerConfig::new(), clock);
    /// assert_eq!(s.clock().now(), Nanos::from_secs(3));
    /// ```
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Admission outcomes so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.counters().admitted, 0);
    /// ```
    pub fn counters(&self) -> AdmissionCounters {
        self.counters
    }

    /// Whether the queue-delay controller is currently shedding.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(!s.is_shedding());
    /// ```
    pub fn is_shedding(&self) -> bool {
        self.codel.as_ref().is_some_and(CoDel::is_shedding)
    }

    /// Items handed back (evicted to make room, expired at their deadline, shed by the
    /// queue-delay target) that wait for [`take_returned`](Self::take_returned).
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.pending_returns(), 0);
    /// ```
    pub fn pending_returns(&self) -> usize {
        self.outbox.len()
    }
}

// ===== impl Scheduler: admission and dispatch =====

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The clock's time, never earlier than any time this scheduler saw before, without
    /// remembering it (for queries on `&self`).
    pub(super) fn peek_now(&self) -> Nanos {
        self.clock.now().max(self.last_now)
    }

    /// The clock's time, never earlier than any time this scheduler saw before.
    #[inline]
    pub(super) fn now(&mut self) -> Nanos {
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;
        now
    }

    /// The scheduler clock's current time (never earlier than a time it reported before).
    pub(crate) fn clock_now(&mut self) -> Nanos {
        self.now()
    }
}
