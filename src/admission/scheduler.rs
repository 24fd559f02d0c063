//! [`Scheduler`]: the fair queue behind one admission pipeline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use super::codel::CoDel;
use super::config::{PushOptions, Rules, SchedulerConfig, ShedPolicy, TenantLimits, never_limits};
use super::gcra::{self, Gcra};
use super::quota::Quota;
use crate::clock::{Clock, Nanos, StdClock};
use crate::error::{BlockReason, Limit, RejectReason, Rejected};
use crate::pressure::{PressureGauge, PressureLevel};
use crate::queue::{
    COOLING, ClassCosts, ClassId, Classes, DefaultHashBuilder, Dispatch, FairQueue, NIL,
    TenantHandle, Ticket,
};
use crate::stats::{ClassStats, RefusalCounters, Stats, TenantStats, WaitHistogram, WaitSummary};

/// A [`FairQueue`] behind one admission pipeline: blocked tenants, per-tenant rate limits and
/// queue caps, a global capacity with a shedding policy, item deadlines and a queue-delay
/// target. Every check happens before anything is committed, so no limit is charged for an
/// item another limit refuses, and every refusal names the binding limit.
///
/// The checks, in order:
///
/// 1. the tenant is blocked → [`RejectReason::Blocked`];
/// 2. the cost is zero → [`RejectReason::ZeroCost`];
/// 3. never admissible, reported before any "not now": a deadline already passed →
///    [`RejectReason::DeadlineExpired`]; a cost above what some limit can ever allow (the
///    rate burst, the tenant's cost cap, the global cost capacity) or a cap of zero items →
///    [`RejectReason::TooLarge`];
/// 4. the tenant's rate quota (cost-weighted GCRA) → [`RejectReason::RateLimited`] with the
///    earliest time a retry can pass;
/// 5. the tenant's caps (queued cost, then queued items) → [`RejectReason::TenantFull`];
/// 6. the global capacity → by [`ShedPolicy`]: refuse ([`RejectReason::CapacityFull`]) or
///    evict the oldest items of the tenant furthest over its fair share, handed back in
///    [`Admitted::evicted`].
///
/// Dispatch honours the global in-flight limit and each tenant's
/// [`max_in_flight`](TenantLimits::with_max_in_flight): a tenant at its cap is skipped until
/// one of its items completes.
///
/// Time is read from the clock once per call; a clock that steps back counts as no time
/// passed.
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
/// use fairshare::{ManualClock, Quota, Scheduler, SchedulerConfig, TenantLimits};
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = SchedulerConfig::new().with_tenant_limits(
///     TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(2).unwrap())),
/// );
/// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(config, clock.clone());
///
/// let _ = s.try_push("acme", 1).unwrap();
/// let _ = s.try_push("acme", 2).unwrap();
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
    queue: FairQueue<K, T, S>,
    clock: C,
    config: SchedulerConfig,
    /// The default limits, flattened for the admission check.
    default_rules: Rules,
    /// Per-tenant limits (a slot's `limits` indexes this), flattened.
    overrides: Vec<Rules>,
    free_overrides: Vec<u32>,
    /// Tenants kept only while their rate limit recovers, soonest recovery first.
    cooling: BinaryHeap<Reverse<Cooling>>,
    codel: Option<CoDel>,
    outbox: Vec<Rejected<T>>,
    last_now: Nanos,
    /// How long the last dispatched item waited (the pressure gauge's delay signal).
    last_sojourn: Nanos,
    gauge: Option<PressureGauge>,
    waits: WaitHistogram,
    counters: AdmissionCounters,
    /// Per-tenant detail by tenant slot, kept only with `SchedulerConfig::tenant_detail`
    /// (outside the tenant slot, which the hot path reads).
    details: Vec<Option<Box<TenantDetail>>>,
    /// Bumped by every change that can make queued items dispatchable or free room without
    /// a push or pop (limits, blocks, reconfiguration): the shared handle wakes waiters on it.
    version: u64,
    /// The classes the admission check's fast path serves (see [`plain_classes`]), kept in
    /// step with the queue's classes.
    plain_classes: u64,
}

/// Bit `c` is set when class `c` exists and has no per-tenant quota: all the admission check
/// needs to know of a class on its fast path, in one word instead of a lookup in the specs.
fn plain_classes(classes: &Classes) -> u64 {
    classes
        .specs()
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.tenant_quota().is_none())
        .fold(0, |mask, (c, _)| {
            mask | 1u64.checked_shl(c as u32).unwrap_or(0)
        })
}

/// One tenant's refusals and waits, valid while its slot has `generation` (a slot reused by
/// another tenant starts from zero).
#[derive(Debug, Clone)]
struct TenantDetail {
    generation: u32,
    refused: RefusalCounters,
    waits: WaitHistogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cooling {
    until: Nanos,
    index: u32,
    generation: u32,
}

/// How many admissions were decided, by outcome.
///
/// # Examples
///
/// ```
/// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
/// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
/// let _ = s.try_push("a", 1).unwrap();
/// s.block("b", BlockReason::Abuse);
/// s.try_push("b", 2).unwrap_err();
/// let c = s.counters();
/// assert_eq!((c.admitted, c.blocked), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct AdmissionCounters {
    /// Items admitted into the queue.
    pub admitted: u64,
    /// Refused: tenant blocked.
    pub blocked: u64,
    /// Refused: the tenant's rate limit, or its rate limit in a class.
    pub rate_limited: u64,
    /// Refused: never admissible (cost above a burst or cap).
    pub too_large: u64,
    /// Refused: a tenant cap.
    pub tenant_full: u64,
    /// Refused: global capacity.
    pub capacity_full: u64,
    /// Refused: anything else (zero cost, an unknown class, a deadline already passed, a full
    /// tenant table).
    pub other: u64,
    /// Queued, then evicted to make room.
    pub evicted: u64,
    /// Queued, then expired at their deadline.
    pub expired: u64,
    /// Queued, then shed by the queue-delay target.
    pub shed: u64,
}

/// An admitted push. Holds the items evicted to make room for it, if the shedding policy
/// evicted any; they are handed back here, never dropped.
///
/// # Examples
///
/// ```
/// let mut s: fairshare::Scheduler<&str, u32> =
///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
/// let admitted = s.try_push("a", 1).unwrap();
/// assert!(admitted.evicted().is_empty());
/// ```
#[derive(Debug)]
#[must_use = "items evicted to make room are handed back here"]
pub struct Admitted<T> {
    evicted: Vec<Rejected<T>>,
}

impl<T> Admitted<T> {
    /// The evicted items, each with [`RejectReason::Evicted`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.try_push("a", 1).unwrap().evicted().len(), 0);
    /// ```
    pub fn evicted(&self) -> &[Rejected<T>] {
        &self.evicted
    }

    /// Takes the evicted items.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let evicted: Vec<u32> = s.try_push("a", 1).unwrap()
    ///     .into_evicted().into_iter().map(|r| r.into_inner()).collect();
    /// assert!(evicted.is_empty());
    /// ```
    pub fn into_evicted(self) -> Vec<Rejected<T>> {
        self.evicted
    }
}

/// A checked admission, not yet committed: nothing is charged until
/// [`commit`](Permit::commit), and dropping the permit leaves no trace.
///
/// # Examples
///
/// ```
/// let mut s: fairshare::Scheduler<&str, String> =
///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
/// let permit = s.try_reserve("acme", fairshare::PushOptions::new().cost(3)).unwrap();
/// // ... build the (expensive) item only now that it will be admitted ...
/// let _ = permit.commit("report".to_string());
/// assert_eq!(s.queue().tenant_queued_cost(&"acme"), 3);
/// ```
#[derive(Debug)]
#[must_use = "dropping a permit releases the reservation"]
pub struct Permit<'a, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    scheduler: &'a mut Scheduler<K, T, C, S>,
    plan: Option<Plan>,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    idx: u32,
    class: u16,
    cost: u32,
    now: Nanos,
    deadline: Option<Nanos>,
    new_tat: Option<Nanos>,
    /// The new TAT of the class's per-tenant quota.
    new_class_tat: Option<Nanos>,
    evict_from: Option<u32>,
    /// The tenant's in-flight cap under the limits in force.
    max_in_flight: u32,
}

/// What the checks decided for an admissible item.
#[derive(Debug, Clone, Copy)]
struct Checked {
    class: u16,
    new_tat: Option<Nanos>,
    new_class_tat: Option<Nanos>,
    evict_from: Option<u32>,
    max_in_flight: u32,
}

impl<K, T, C, S> Permit<'_, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Queues `item` under this reservation. Cannot fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let p = s.try_reserve("a", fairshare::PushOptions::new()).unwrap();
    /// let _ = p.commit(7);
    /// assert_eq!(s.pop(), Some(7));
    /// ```
    pub fn commit(mut self, item: T) -> Admitted<T> {
        let plan = self
            .plan
            .take()
            .expect("fairshare: permit holds its plan until used");
        self.scheduler.commit(plan, item)
    }

    /// The reserved cost.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let p = s.try_reserve("a", fairshare::PushOptions::new().cost(4)).unwrap();
    /// assert_eq!(p.cost(), 4);
    /// ```
    pub fn cost(&self) -> u32 {
        self.plan.map_or(0, |p| p.cost)
    }
}

impl<K, T, C, S> Drop for Permit<'_, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if let Some(plan) = self.plan.take() {
            // Nothing was charged; forget a tenant that only the reservation created.
            self.scheduler.queue.tenants_mut().release_if_idle(plan.idx);
        }
    }
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
        let mut queue = FairQueue::with_config_and_hasher(config.queue(), hasher);
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
            codel: config.queue_delay().map(CoDel::new),
            outbox: Vec::new(),
            last_now: Nanos::ZERO,
            last_sojourn: Nanos::ZERO,
            gauge: config.pressure().map(PressureGauge::new),
            waits: WaitHistogram::new(),
            counters: AdmissionCounters::default(),
            details: Vec::new(),
            version: 0,
            plain_classes,
        }
    }

    /// The queue, for queries (lengths, costs, counters, tenants).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// assert_eq!(s.queue().len(), 1);
    /// ```
    pub fn queue(&self) -> &FairQueue<K, T, S> {
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

    /// Items handed back by deadline expiry and queue-delay shedding that wait for
    /// [`take_expired`](Self::take_expired).
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
    /// Changes so far that can let work through without a push or pop (see the field).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The clock's time, never earlier than any time this scheduler saw before.
    #[inline]
    fn now(&mut self) -> Nanos {
        let now = self.clock.now().max(self.last_now);
        self.last_now = now;
        now
    }

    /// The rules of a slot's `limits` index (`NIL`: the defaults).
    #[inline(always)]
    fn rules_of(&self, limits_idx: u32) -> &Rules {
        if limits_idx == NIL {
            &self.default_rules
        } else {
            &self.overrides[limits_idx as usize]
        }
    }

    /// Forgets up to a few tenants whose rate limit has fully recovered.
    ///
    /// Only the peek is inline: on most calls nobody is due, and the sweep's loop kept out of
    /// line leaves the admission check fewer live values (a shorter prologue).
    #[inline(always)]
    fn sweep_cooling(&mut self, now: Nanos) {
        if matches!(self.cooling.peek(), Some(Reverse(c)) if c.until <= now) {
            self.sweep_due(now);
        }
    }

    /// [`sweep_cooling`](Self::sweep_cooling) once the soonest entry is due.
    #[cold]
    #[inline(never)]
    fn sweep_due(&mut self, now: Nanos) {
        for _ in 0..4 {
            match self.cooling.peek() {
                Some(Reverse(c)) if c.until <= now => {}
                _ => return,
            }
            let Some(Reverse(c)) = self.cooling.pop() else {
                return;
            };
            let tenants = self.queue.tenants_mut();
            let handle = TenantHandle::from_parts(c.index, c.generation);
            let Some(idx) = tenants.resolve(handle) else {
                continue;
            };
            let until = tenants.latest_tat(idx);
            let t = tenants.get_mut(idx);
            if until > now {
                self.cooling.push(Reverse(Cooling { until, ..c }));
            } else {
                t.flags &= !COOLING;
                tenants.release_if_idle(idx);
            }
        }
    }

    /// The detail of live tenant slot `idx`; fresh if the slot changed hands since it was
    /// last written. Only called with per-tenant detail on.
    #[inline(never)]
    fn detail_mut(&mut self, idx: u32) -> &mut TenantDetail {
        let generation = self.queue.tenants_ref().handle(idx).generation;
        let i = idx as usize;
        if self.details.len() <= i {
            self.details.resize_with(i + 1, || None);
        }
        let d = self.details[i].get_or_insert_with(|| {
            Box::new(TenantDetail {
                generation,
                refused: RefusalCounters::default(),
                waits: WaitHistogram::new(),
            })
        });
        if d.generation != generation {
            d.generation = generation;
            d.refused = RefusalCounters::default();
            d.waits.clear();
        }
        d
    }

    /// Moves every item whose deadline passed to the outbox, counting it (per tenant too,
    /// with tenant detail on, for tenants still known).
    fn expire(&mut self, now: Nanos) {
        let before = self.outbox.len();
        if self.config.tenant_detail() {
            let mut owners = Vec::new();
            self.queue
                .expire_due(now, &mut self.outbox, Some(&mut owners));
            for idx in owners {
                if self.queue.tenants_ref().is_live(idx) {
                    self.detail_mut(idx).refused.expired += 1;
                }
            }
        } else {
            self.queue.expire_due(now, &mut self.outbox, None);
        }
        self.counters.expired += (self.outbox.len() - before) as u64;
        #[cfg(feature = "metrics")]
        crate::metrics::refused(
            &self.queue,
            RejectReason::DeadlineExpired { deadline: now },
            None,
            (self.outbox.len() - before) as u64,
        );
    }

    /// Frees the detail of slots whose tenant has been forgotten.
    fn prune_details(&mut self) {
        let tenants = self.queue.tenants_ref();
        for (i, d) in self.details.iter_mut().enumerate() {
            if let Some(detail) = d {
                let handle = TenantHandle::from_parts(i as u32, detail.generation);
                if tenants.resolve(handle).is_none() {
                    *d = None;
                }
            }
        }
        while matches!(self.details.last(), Some(None)) {
            self.details.pop();
        }
    }

    fn count_refusal(&mut self, reason: RejectReason) {
        // Keep in step with `RefusalCounters::record` (the per-tenant counters).
        let c = &mut self.counters;
        match reason {
            RejectReason::Blocked { .. } => c.blocked += 1,
            RejectReason::RateLimited { .. } | RejectReason::ClassRateLimited { .. } => {
                c.rate_limited += 1
            }
            RejectReason::TooLarge { .. } => c.too_large += 1,
            RejectReason::TenantFull { .. } => c.tenant_full += 1,
            RejectReason::CapacityFull { .. } => c.capacity_full += 1,
            _ => c.other += 1,
        }
    }

    /// Runs every check for an item of `opts` from `key`; changes nothing but the tenant
    /// table (a fresh tenant's slot, released again on refusal). Out of line: a
    /// reservation's caller holds the plan in its permit anyway.
    #[inline(never)]
    fn plan(&mut self, key: K, opts: PushOptions) -> Result<Plan, RejectReason> {
        let now = self.now();
        self.plan_at(key, opts, now)
    }

    /// [`plan`](Self::plan) at a time the caller read (once for a whole batch).
    #[inline(always)]
    fn plan_at(&mut self, key: K, opts: PushOptions, now: Nanos) -> Result<Plan, RejectReason> {
        self.sweep_cooling(now);
        let cost = opts.get_cost();
        let Some(idx) = self.queue.tenants_mut().find_or_insert(key) else {
            let reason = RejectReason::QueueFull {
                capacity: u64::from(u32::MAX - 1),
            };
            self.count_refusal(reason);
            #[cfg(feature = "metrics")]
            crate::metrics::refused(&self.queue, reason, Some(opts.get_class()), 1);
            return Err(reason);
        };
        let checked = self.check(idx, cost, opts.get_class(), opts.get_deadline(), now);
        #[cfg(feature = "metrics")]
        if let Err(reason) = checked {
            crate::metrics::refused(&self.queue, reason, Some(opts.get_class()), 1);
        }
        match checked {
            Ok(c) => Ok(Plan {
                idx,
                class: c.class,
                new_class_tat: c.new_class_tat,
                cost,
                now,
                deadline: opts.get_deadline(),
                new_tat: c.new_tat,
                evict_from: c.evict_from,
                max_in_flight: c.max_in_flight,
            }),
            Err(reason) => Err(self.refused(idx, reason)),
        }
    }

    /// Counts a refusal of tenant `idx` and forgets the tenant if the check created it.
    #[cold]
    fn refused(&mut self, idx: u32, reason: RejectReason) -> RejectReason {
        self.count_refusal(reason);
        if self.config.tenant_detail() {
            self.detail_mut(idx).refused.record(reason);
        }
        self.queue.count_rejected();
        let tenants = self.queue.tenants_mut();
        tenants.get_mut(idx).counters.rejected += 1;
        tenants.release_if_idle(idx);
        reason
    }

    /// The checks, in the documented order. The rare refusals (blocked, zero cost, unknown
    /// class, deadline already passed, never admissible) and a class's per-tenant quota sit
    /// behind one branch, in [`check_rare`](Self::check_rare): an ordinary item pays for a
    /// few compares, then its rate, caps and room.
    #[inline(always)]
    fn check(
        &self,
        idx: u32,
        cost: u32,
        class: ClassId,
        deadline: Option<Nanos>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        debug_assert_eq!(self.plain_classes, plain_classes(self.queue.classes()));
        let t = self.queue.tenants_ref().get(idx);
        let rules = self.rules_of(t.limits);
        // A zero cost wraps to `u64::MAX`: one compare catches it with a cost above a bound.
        let rare = t.blocked.is_some()
            | (u64::from(cost).wrapping_sub(1) >= rules.never_above)
            | deadline.is_some_and(|d| d <= now);
        let plain_class = self
            .plain_classes
            .checked_shr(class.index() as u32)
            .is_some_and(|bits| bits & 1 != 0);
        if rare | !plain_class {
            return self.check_rare(idx, cost, class, deadline, now);
        }
        self.check_limits(idx, rules, cost, class, None, now)
    }

    /// [`check`](Self::check) when something rare is at stake: every check in order, from the
    /// first.
    #[cold]
    #[inline(never)]
    fn check_rare(
        &self,
        idx: u32,
        cost: u32,
        class: ClassId,
        deadline: Option<Nanos>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        let t = self.queue.tenants_ref().get(idx);
        if let Some(reason) = t.blocked {
            return Err(RejectReason::Blocked { reason });
        }
        if cost == 0 {
            return Err(RejectReason::ZeroCost);
        }
        let Some(spec) = self.queue.classes().get(class) else {
            return Err(RejectReason::UnknownClass { class });
        };
        if let Some(deadline) = deadline.filter(|&d| d <= now) {
            // A deadline already passed can never be met: refuse it at the door.
            return Err(RejectReason::DeadlineExpired { deadline });
        }
        let rules = self.rules_of(t.limits);
        let cost64 = u64::from(cost);
        let class_quota = spec.tenant_quota();
        // "Never" before "not now": a cost no limit can ever allow is reported as such.
        if cost64 > rules.never_above || class_quota.is_some_and(|q| cost > q.burst().get()) {
            return Err(self.too_large(rules, class_quota, cost64));
        }
        let class_rate = class_quota.map(|q| Gcra::new(&q));
        self.check_limits(idx, rules, cost, class, class_rate, now)
    }

    /// The "not now" checks of an item no limit refuses for ever (so its cost is within every
    /// burst): the tenant's rate, the class's per-tenant rate, the tenant's caps, the room.
    #[inline(always)]
    fn check_limits(
        &self,
        idx: u32,
        rules: &Rules,
        cost: u32,
        class: ClassId,
        class_rate: Option<Gcra>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        let t = self.queue.tenants_ref().get(idx);
        let new_tat = match rules.rate {
            Some(rate) => Some(
                rate.check(t.tat, now, cost)
                    .map_err(|retry_at| RejectReason::RateLimited { retry_at })?,
            ),
            None => None,
        };
        let class_idx = class.index() as u16;
        let new_class_tat = match class_rate {
            Some(rate) => {
                let tat = self.queue.tenants_ref().class_tat(idx, class_idx);
                Some(
                    rate.check(tat, now, cost)
                        .map_err(|retry_at| RejectReason::ClassRateLimited { class, retry_at })?,
                )
            }
            None => None,
        };
        let cost64 = u64::from(cost);
        if t.queued_cost.saturating_add(cost64) > rules.max_cost {
            return Err(RejectReason::TenantFull {
                limit: Limit::Cost(rules.max_cost),
            });
        }
        if t.len >= rules.max_items {
            return Err(RejectReason::TenantFull {
                limit: Limit::Items(u64::from(rules.max_items)),
            });
        }
        let room = (self.queue.len() as u64) < rules.capacity_items
            && self.queue.queued_cost().saturating_add(cost64) <= rules.capacity_cost;
        let evict_from = if room {
            None
        } else {
            self.check_capacity(idx, cost64)?
        };
        Ok(Checked {
            class: class_idx,
            new_tat,
            new_class_tat,
            evict_from,
            max_in_flight: rules.max_in_flight,
        })
    }

    /// The refusal of an item whose `cost` some limit can never allow, naming the first such
    /// limit in the documented order.
    #[cold]
    fn too_large(&self, rules: &Rules, class_quota: Option<Quota>, cost: u64) -> RejectReason {
        let never = never_limits(&rules.limits, &self.config.capacity(), class_quota);
        let max = never
            .into_iter()
            .flatten()
            .find(|&max| cost > max)
            .unwrap_or(rules.never_above);
        RejectReason::TooLarge { cost, max }
    }

    /// The global capacity check: `Ok(None)` if there is room, `Ok(Some(v))` to evict from
    /// tenant `v`, or the refusal. Out of line: [`check_limits`](Self::check_limits) calls it
    /// only when its quick test (the same bounds, from [`Rules`]) finds no room.
    #[cold]
    #[inline(never)]
    fn check_capacity(&self, idx: u32, cost: u64) -> Result<Option<u32>, RejectReason> {
        let (need_items, need_cost) = self.shortfall(cost);
        if need_items == 0 && need_cost == 0 {
            return Ok(None);
        }
        self.make_room(idx, cost, need_items, need_cost)
    }

    /// [`check_capacity`](Self::check_capacity) when the capacity is full: the refusal, or
    /// the tenant to evict from.
    #[cold]
    fn make_room(
        &self,
        idx: u32,
        cost: u64,
        need_items: u64,
        need_cost: u64,
    ) -> Result<Option<u32>, RejectReason> {
        let cap = self.config.capacity();
        let limit = if need_items > 0 {
            Limit::Items(cap.max_items().unwrap_or(0))
        } else {
            Limit::Cost(cap.max_cost().unwrap_or(0))
        };
        let refuse = Err(RejectReason::CapacityFull { limit });
        if self.config.shed_policy() != ShedPolicy::EvictOverShare {
            return refuse;
        }
        let Some(v) = self.queue.most_over_share() else {
            return refuse;
        };
        if v == idx {
            return refuse;
        }
        let tenants = self.queue.tenants_ref();
        let (tv, tp) = (tenants.get(v), tenants.get(idx));
        let dw = self.queue.config().default_weight();
        let wv = u128::from(tv.weight.unwrap_or(dw).get());
        let wp = u128::from(tp.weight.unwrap_or(dw).get());
        // Evict only from a tenant strictly further over its share than the newcomer's
        // tenant would be, and only if that tenant alone can make the room.
        let victim_ratio = u128::from(tv.queued_cost) * wp;
        let newcomer_ratio = u128::from(tp.queued_cost + cost) * wv;
        if victim_ratio <= newcomer_ratio
            || u64::from(tv.len) < need_items
            || tv.queued_cost < need_cost
        {
            return refuse;
        }
        Ok(Some(v))
    }

    /// How many items and how much cost must leave before an item of `cost` fits.
    #[inline(always)]
    fn shortfall(&self, cost: u64) -> (u64, u64) {
        let cap = self.config.capacity();
        let items = cap
            .max_items()
            .map_or(0, |max| (self.queue.len() as u64 + 1).saturating_sub(max));
        let cost = cap.max_cost().map_or(0, |max| {
            (self.queue.queued_cost() + cost).saturating_sub(max)
        });
        (items, cost)
    }

    fn commit(&mut self, plan: Plan, item: T) -> Admitted<T> {
        self.commit_in(plan, item)
    }

    /// The body of [`commit`](Self::commit), inlined into the push path so that the plan
    /// never goes through memory.
    #[inline(always)]
    fn commit_in(&mut self, plan: Plan, item: T) -> Admitted<T> {
        let mut evicted = Vec::new();
        if let Some(v) = plan.evict_from {
            loop {
                let (items, cost) = self.shortfall(u64::from(plan.cost));
                if items == 0 && cost == 0 {
                    break;
                }
                let (victim, _) = self.queue.evict_head(v);
                evicted.push(Rejected::new(victim, RejectReason::Evicted));
                self.counters.evicted += 1;
                #[cfg(feature = "metrics")]
                crate::metrics::refused(&self.queue, RejectReason::Evicted, None, 1);
                if self.config.tenant_detail() {
                    self.detail_mut(v).refused.evicted += 1;
                }
            }
            self.queue.tenants_mut().release_if_idle(v);
        }
        // One borrow of the slot for the common case (the tenant's own rate state): a
        // changed in-flight cap, a class rate state and the start of cooling are rare and
        // out of line.
        let t = self.queue.tenants_mut().get_mut(plan.idx);
        let cap_changed = t.max_in_flight != plan.max_in_flight;
        let mut cool_until = None;
        if let Some(tat) = plan.new_tat {
            t.tat = tat;
            if tat > plan.now && t.flags & COOLING == 0 {
                cool_until = Some(tat);
            }
        }
        if cap_changed {
            self.queue
                .set_slot_in_flight_limit(plan.idx, plan.max_in_flight);
        }
        if let Some(tat) = plan.new_class_tat {
            self.commit_class_tat(plan.idx, plan.class, plan.new_tat, tat, plan.now);
        } else if let Some(until) = cool_until {
            self.start_cooling(plan.idx, until);
        }
        self.queue.link(
            plan.idx,
            plan.class,
            item,
            plan.cost,
            plan.now,
            plan.deadline,
        );
        self.counters.admitted += 1;
        #[cfg(feature = "metrics")]
        crate::metrics::admitted(&self.queue, plan.class);
        self.observe_pressure(plan.now);
        Admitted { evicted }
    }

    /// Stores the new TAT of a class's per-tenant quota and starts cooling if some rate
    /// state of the tenant now differs from a fresh one's.
    #[cold]
    #[inline(never)]
    fn commit_class_tat(
        &mut self,
        idx: u32,
        class: u16,
        new_tat: Option<Nanos>,
        tat: Nanos,
        now: Nanos,
    ) {
        self.queue.tenants_mut().set_class_tat(idx, class, tat);
        // Remembered until every rate state of the tenant equals a fresh one's.
        let until = new_tat.map_or(tat, |t| t.max(tat));
        let flags = self.queue.tenants_ref().get(idx).flags;
        if until > now && flags & COOLING == 0 {
            self.start_cooling(idx, until);
        }
    }

    /// Marks tenant `idx` as cooling until `until`: it is remembered (not forgotten when
    /// idle) until its rate state equals a fresh one's. Once per cooling period.
    #[cold]
    #[inline(never)]
    fn start_cooling(&mut self, idx: u32, until: Nanos) {
        let tenants = self.queue.tenants_mut();
        let handle = tenants.handle(idx);
        tenants.get_mut(idx).flags |= COOLING;
        self.cooling.push(Reverse(Cooling {
            until,
            index: handle.index,
            generation: handle.generation,
        }));
    }

    /// Admits `item` for `key` with cost 1.
    ///
    /// # Errors
    ///
    /// See [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// assert_eq!(s.pop(), Some(1));
    /// ```
    #[inline]
    pub fn try_push(&mut self, key: K, item: T) -> Result<Admitted<T>, Rejected<T>> {
        self.try_push_with(key, item, PushOptions::new())
    }

    /// Admits `item` for `key` with a cost and an optional deadline, or refuses it.
    ///
    /// # Errors
    ///
    /// The item comes back inside [`Rejected`] with the binding limit; see the list of checks
    /// on [`Scheduler`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Capacity, PushOptions, RejectReason, Scheduler, SchedulerConfig, Limit};
    /// let cfg = SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(10));
    /// let mut s: Scheduler<&str, &str> = Scheduler::new(cfg);
    /// let _ = s.try_push_with("a", "big", PushOptions::new().cost(8)).unwrap();
    /// let err = s.try_push_with("b", "more", PushOptions::new().cost(3)).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::CapacityFull { limit: Limit::Cost(10) });
    /// ```
    #[inline]
    pub fn try_push_with(
        &mut self,
        key: K,
        item: T,
        opts: PushOptions,
    ) -> Result<Admitted<T>, Rejected<T>> {
        let now = self.now();
        self.try_push_with_at(key, item, opts, now)
    }

    /// Checks an item of `opts` for `key` and reserves its admission; nothing is charged until
    /// [`Permit::commit`].
    ///
    /// # Errors
    ///
    /// The binding limit, as for [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("x", BlockReason::Billing);
    /// let err = s.try_reserve("x", PushOptions::new()).unwrap_err();
    /// assert_eq!(err, RejectReason::Blocked { reason: BlockReason::Billing });
    /// ```
    pub fn try_reserve(
        &mut self,
        key: K,
        opts: PushOptions,
    ) -> Result<Permit<'_, K, T, C, S>, RejectReason> {
        let plan = self.plan(key, opts)?;
        Ok(Permit {
            scheduler: self,
            plan: Some(plan),
        })
    }

    /// The next item in fair order, or `None`. Items whose deadline has passed are never
    /// returned (they wait in [`take_expired`](Self::take_expired)), nor are items the
    /// queue-delay target sheds.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// assert_eq!(s.pop(), Some(1));
    /// assert_eq!(s.pop(), None);
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.next(false).map(|(item, _)| item)
    }

    /// Like [`pop`](Self::pop), and tracks the item as in flight until its ticket is passed
    /// to [`complete`](Self::complete).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// let d = s.dispatch().unwrap();
    /// assert!(s.complete(d.ticket, 1));
    /// ```
    #[inline]
    pub fn dispatch(&mut self) -> Option<Dispatch<T>> {
        let (item, ticket) = self.next(true)?;
        Some(Dispatch {
            item,
            ticket: ticket?,
        })
    }

    #[inline]
    fn next(&mut self, track: bool) -> Option<(T, Option<Ticket>)> {
        let now = self.now();
        self.next_at(track, now)
    }

    /// Pushes at a time read once (by [`try_push_with`](Self::try_push_with), or once for a
    /// whole batch by the shared handle's batch calls); `now` must come from
    /// [`clock_now`](Self::clock_now). One function with the checks and the commit inlined
    /// (measured: the plan passed between them through memory, and a second call, cost
    /// about 50 instructions a push).
    #[inline(never)]
    pub(crate) fn try_push_with_at(
        &mut self,
        key: K,
        item: T,
        opts: PushOptions,
        now: Nanos,
    ) -> Result<Admitted<T>, Rejected<T>> {
        match self.plan_at(key, opts, now) {
            Ok(plan) => Ok(self.commit_in(plan, item)),
            Err(reason) => Err(Rejected::new(item, reason)),
        }
    }

    /// Pops (or with `track`, dispatches) at a time the caller read once for a whole batch.
    #[inline]
    pub(crate) fn next_at(&mut self, track: bool, now: Nanos) -> Option<(T, Option<Ticket>)> {
        if self.queue.next_deadline().is_some_and(|d| d <= now) {
            self.expire(now);
        }
        loop {
            let p = self.queue.pop_inner(track)?;
            // Only a tenant with a standing queue (items left after this one in the same
            // class) feeds the queue-delay controller or is shed: a light tenant's lone item,
            // or a sign-in from an org with a page backlog, neither hides a flood's standing
            // queue nor is ever dropped for it.
            if let Some(codel) = &mut self.codel {
                let standing = self.queue.class_backlog(p.tenant, p.class) > 0;
                let sojourn = now.saturating_since(p.enqueued);
                if standing && codel.should_shed(now, sojourn, false) {
                    if self.config.tenant_detail() {
                        self.detail_mut(p.tenant).refused.shed += 1;
                    }
                    self.queue.count_removed(1);
                    self.queue.tenants_mut().release_if_idle(p.tenant);
                    self.outbox
                        .push(Rejected::new(p.item, RejectReason::QueueDelay { sojourn }));
                    self.counters.shed += 1;
                    #[cfg(feature = "metrics")]
                    crate::metrics::refused(
                        &self.queue,
                        RejectReason::QueueDelay { sojourn },
                        Some(ClassId::new(p.class)),
                        1,
                    );
                    continue;
                }
            }
            let sojourn = now.saturating_since(p.enqueued);
            if self.config.tenant_detail() {
                // Before `finish_pop`, which may forget the tenant.
                self.detail_mut(p.tenant).waits.record(sojourn);
            }
            let ticket = self.queue.finish_pop(p.tenant, p.class, p.cost, track);
            self.last_sojourn = sojourn;
            self.waits.record(sojourn);
            #[cfg(feature = "metrics")]
            crate::metrics::dispatched(&self.queue, p.class, sojourn);
            self.observe_pressure(now);
            return Some((p.item, ticket));
        }
    }

    /// Feeds the pressure gauge the current load, if one is configured.
    #[inline]
    fn observe_pressure(&mut self, now: Nanos) {
        if let Some(gauge) = &mut self.gauge {
            // The delay signal: nothing waits in an empty queue; otherwise the longer of the
            // last dispatched item's wait and the age of the item at the front of the ring, so
            // stalled workers show up as growing delay.
            let delay = if self.queue.is_empty() {
                Nanos::ZERO
            } else {
                let front_age = self
                    .queue
                    .front_enqueued()
                    .map_or(Nanos::ZERO, |t| now.saturating_since(t));
                self.last_sojourn.max(front_age)
            };
            let load = gauge.config().load_permille(
                self.queue.len() as u64,
                self.queue.queued_cost(),
                delay,
            );
            gauge.update(load);
        }
    }

    /// The current pressure level (always `Normal` without a
    /// [`PressureConfig`](crate::PressureConfig)). The gauge is fed on every admission and
    /// dispatch, and on this call, with the queued items, the queued cost and the queueing
    /// delay (zero when nothing is queued; otherwise the longer of the last dispatched item's
    /// wait and the age of the oldest item of the tenant served next); hysteresis keeps it
    /// from flapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PressureConfig, PressureLevel, Scheduler, SchedulerConfig};
    /// let cfg = SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(10)));
    /// let mut s: Scheduler<u32, u32> = Scheduler::new(cfg);
    /// for i in 0..9 { let _ = s.try_push(i, i).unwrap(); }
    /// assert_eq!(s.pressure(), PressureLevel::Shedding); // 900 per mille
    /// ```
    pub fn pressure(&mut self) -> PressureLevel {
        let now = self.now();
        self.observe_pressure(now);
        self.gauge
            .as_ref()
            .map_or(PressureLevel::Normal, PressureGauge::level)
    }

    /// Replaces the classes (see [`FairQueue::set_classes`]): work queued in a class stays
    /// there under the new settings. Each class's `tenant_quota` applies to pushes from now on;
    /// a removed class's per-tenant rate state goes with it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`](crate::ConfigError::InvalidClass) if a class that would
    /// be removed still holds queued or in-flight work; nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, PushOptions, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new().with_max_in_flight(Some(10)));
    /// s.set_classes(Classes::new([
    ///     ClassSpec::new("signin").with_reserved_percent(20),
    ///     ClassSpec::new("api"),
    /// ]).unwrap()).unwrap();
    /// let signin = s.classes().id("signin").unwrap();
    /// let _ = s.try_push_with("alice", 1, PushOptions::new().class(signin)).unwrap();
    /// let job = s.dispatch().unwrap();
    /// assert_eq!(job.ticket.class(), signin);
    /// s.complete(job.ticket, 1);
    /// ```
    pub fn set_classes(&mut self, classes: Classes) -> Result<(), crate::ConfigError> {
        self.queue.set_classes(classes)?;
        self.plain_classes = plain_classes(self.queue.classes());
        // New reservations or ceilings can make queued work dispatchable: wake waiters.
        self.version += 1;
        Ok(())
    }

    /// The classes work can be pushed to.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.classes().len(), 1);
    /// ```
    pub fn classes(&self) -> &Classes {
        self.queue.classes()
    }

    /// Changes the global in-flight limit at runtime (an adaptive concurrency limit drives
    /// this). Nothing in flight is revoked.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<u32, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_in_flight_limit(Some(4));
    /// assert_eq!(s.queue().in_flight_limit(), Some(4));
    /// ```
    pub fn set_in_flight_limit(&mut self, limit: Option<u64>) {
        self.version += 1;
        self.config = self.config.with_max_in_flight(limit);
        self.queue.set_in_flight_limit(limit);
    }

    /// A snapshot of totals, admission outcomes by reason, waiting times, every class and
    /// every known tenant (in slot order: deterministic, not hash order). With per-tenant
    /// detail on ([`SchedulerConfig::with_tenant_detail`]), each tenant's line also has its
    /// refusals by reason and its waiting-time percentiles. O(known tenants + classes).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new().with_tenant_detail(true));
    /// let _ = s.try_push("a", 1).unwrap();
    /// s.block("b", BlockReason::Abuse);
    /// let _ = s.try_push("b", 2).unwrap_err();
    /// s.pop();
    /// let stats = s.stats();
    /// assert_eq!((stats.queue.dispatched, stats.admission.blocked), (1, 1));
    /// assert_eq!(stats.classes[0].counters.dispatched, 1);
    /// assert_eq!(stats.tenants.len(), 1); // "a" was forgotten once idle; "b" stays blocked
    /// assert_eq!(stats.tenants[0].refused.unwrap().blocked, 1);
    /// ```
    pub fn stats(&mut self) -> Stats<K> {
        let at = self.now();
        let pressure = self.pressure();
        let detail = self.config.tenant_detail();
        if detail {
            self.prune_details();
        }
        let details = &self.details;
        let tenants = self
            .queue
            .tenants_ref()
            .iter()
            .map(|(idx, key, t)| {
                let d = details
                    .get(idx as usize)
                    .and_then(|d| d.as_deref())
                    .filter(|d| d.generation == t.generation);
                TenantStats {
                    key: key.clone(),
                    queued: u64::from(t.len),
                    queued_cost: t.queued_cost,
                    in_flight: t.in_flight,
                    counters: t.counters,
                    refused: detail.then(|| d.map_or_else(RefusalCounters::default, |d| d.refused)),
                    wait: detail.then(|| {
                        d.map_or_else(WaitSummary::default, |d| WaitSummary::from(&d.waits))
                    }),
                }
            })
            .collect();
        let classes = self
            .queue
            .classes()
            .iter()
            .map(|(id, spec)| ClassStats {
                name: spec.name().to_string(),
                queued: self.queue.class_len(id) as u64,
                queued_cost: self.queue.class_queued_cost(id),
                in_flight: self.queue.class_in_flight(id),
                counters: self.queue.class_counters(id).unwrap_or_default(),
            })
            .collect();
        Stats {
            at,
            queued: self.queue.len() as u64,
            queued_cost: self.queue.queued_cost(),
            in_flight: self.queue.total_in_flight(),
            pressure,
            queue: self.queue.counters(),
            admission: self.counters,
            wait: WaitSummary::from(&self.waits),
            classes,
            tenants,
        }
    }

    /// Waiting times (admission to dispatch) of every dispatched item so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<u8, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.wait_histogram().count(), 0);
    /// ```
    pub fn wait_histogram(&self) -> &WaitHistogram {
        &self.waits
    }

    /// Applies a new configuration at runtime. Every queued and in-flight item stays where it
    /// is; new limits apply from the next push, a new quantum or default weight from each
    /// tenant's next turn, a new in-flight limit from the next dispatch. Per-tenant overrides
    /// (weights, limits, blocks) are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Capacity, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new());
    /// for i in 0..3 { let _ = s.try_push("a", i).unwrap(); }
    /// s.reconfigure(SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2)));
    /// assert_eq!(s.queue().len(), 3); // nothing queued is dropped
    /// assert!(s.try_push("b", 9).is_err()); // but the new cap holds for newcomers
    /// ```
    pub fn reconfigure(&mut self, config: SchedulerConfig) {
        self.version += 1;
        let old = self.config;
        self.config = config;
        self.default_rules = Rules::new(config.tenant_limits(), config.capacity());
        if old.capacity() != config.capacity() {
            for rules in &mut self.overrides {
                *rules = Rules::new(rules.limits, config.capacity());
            }
        }
        self.queue.set_queue_config(config.queue());
        self.queue
            .set_over_share_tracking(config.shed_policy() == ShedPolicy::EvictOverShare);
        self.queue.set_in_flight_limit(config.max_in_flight());
        if old.queue_delay() != config.queue_delay() {
            self.codel = config.queue_delay().map(CoDel::new);
        }
        if old.pressure() != config.pressure() {
            self.gauge = config.pressure().map(PressureGauge::new);
        }
        if old.tenant_detail() != config.tenant_detail() {
            // Off frees the side table; on starts every tenant from zero.
            self.details = Vec::new();
        }
        if old.tenant_limits().max_in_flight() != config.tenant_limits().max_in_flight() {
            let default = config.tenant_limits().max_in_flight().unwrap_or(u32::MAX);
            let with_defaults: Vec<u32> = self
                .queue
                .tenants_ref()
                .iter()
                .filter(|(_, _, t)| t.limits == NIL)
                .map(|(i, _, _)| i)
                .collect();
            for idx in with_defaults {
                self.queue.set_slot_in_flight_limit(idx, default);
            }
        }
    }

    /// The scheduler clock's current time (never earlier than a time it reported before).
    pub(crate) fn clock_now(&mut self) -> Nanos {
        self.now()
    }

    /// Removes every queued item regardless of in-flight limits, tenant by tenant (each in
    /// FIFO order, class by class), for shutdown.
    pub(crate) fn drain_all(&mut self) -> Vec<T> {
        let backlogged = self.queue.tenants_ref().backlogged();
        let mut out = Vec::with_capacity(self.queue.len());
        for idx in backlogged {
            out.extend(self.queue.purge_slot(idx).0);
            self.queue.tenants_mut().release_if_idle(idx);
        }
        out
    }

    /// Reports a dispatched item's completion and actual cost (see
    /// [`FairQueue::complete`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// let d = s.dispatch().unwrap();
    /// assert!(s.complete(d.ticket, 3));
    /// ```
    pub fn complete(&mut self, ticket: Ticket, actual_cost: u32) -> bool {
        #[cfg(feature = "metrics")]
        let class = ticket.class();
        let done = self.queue.complete(ticket, actual_cost);
        #[cfg(feature = "metrics")]
        crate::metrics::completed(&self.queue, class, done);
        // A freed in-flight slot can let queued work through.
        self.version += u64::from(done);
        done
    }

    /// Hands back every item whose deadline has passed (as
    /// [`RejectReason::DeadlineExpired`]) and every item the queue-delay target shed (as
    /// [`RejectReason::QueueDelay`]). The host decides when to look; nothing is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// let clock = ManualClock::new();
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    /// let _ = s.try_push_with("a", 1, PushOptions::new().deadline(Nanos::from_secs(1))).unwrap();
    /// clock.set(Nanos::from_secs(2));
    /// let expired = s.take_expired();
    /// assert_eq!(expired[0].reason(), RejectReason::DeadlineExpired { deadline: Nanos::from_secs(1) });
    /// assert_eq!(s.pop(), None);
    /// ```
    pub fn take_expired(&mut self) -> Vec<Rejected<T>> {
        let now = self.now();
        self.expire(now);
        std::mem::take(&mut self.outbox)
    }

    /// Gives `cost` back to `key`'s rate limit, for admitted work the host cancelled after
    /// dispatch. (Items removed by [`purge`](Self::purge) and [`retain`](Self::retain) are
    /// refunded automatically.)
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Quota, Scheduler, SchedulerConfig, TenantLimits, ManualClock};
    /// use std::num::NonZeroU32;
    /// let limits = TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// let mut s: Scheduler<&str, u32, _> =
    ///     Scheduler::with_clock(SchedulerConfig::new().with_tenant_limits(limits), ManualClock::new());
    /// let _ = s.try_push("a", 1).unwrap();
    /// assert!(s.try_push("a", 2).is_err());
    /// s.pop();
    /// s.refund(&"a", 1); // the job was cancelled before it ran
    /// assert!(s.try_push("a", 2).is_ok());
    /// ```
    pub fn refund(&mut self, key: &K, cost: u32) {
        self.version += 1;
        let now = self.now();
        if let Some(idx) = self.queue.tenants_ref().find(key) {
            self.refund_slot(idx, u64::from(cost), now);
        }
    }

    fn refund_slot(&mut self, idx: u32, cost: u64, now: Nanos) {
        let quota = self
            .rules_of(self.queue.tenants_ref().get(idx).limits)
            .limits
            .quota();
        if let Some(quota) = quota {
            let t = self.queue.tenants_mut().get_mut(idx);
            t.tat = gcra::refund(&quota, t.tat, now, cost);
        }
    }

    /// Refunds `cost` to tenant `idx`'s per-tenant quota in `class`, if the class has one.
    fn refund_class_slot(&mut self, idx: u32, class: u16, cost: u64, now: Nanos) {
        let quota = self
            .queue
            .classes()
            .get(ClassId::new(class))
            .and_then(|spec| spec.tenant_quota());
        if let Some(quota) = quota {
            let tenants = self.queue.tenants_mut();
            let tat = tenants.class_tat(idx, class);
            if tat > Nanos::ZERO {
                tenants.set_class_tat(idx, class, gcra::refund(&quota, tat, now, cost));
            }
        }
    }

    /// Refunds removed cost to the tenant's own quota and to each class's per-tenant quota.
    fn refund_costs(&mut self, idx: u32, costs: &ClassCosts, now: Nanos) {
        self.refund_slot(idx, costs.total, now);
        for &(class, cost) in &costs.by_class {
            self.refund_class_slot(idx, class, cost, now);
        }
    }

    /// As [`refund`](Self::refund), for work pushed to `class`: refunds `cost` to the
    /// tenant's own quota and to the class's per-tenant quota.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, ManualClock, PushOptions, Quota, Scheduler, SchedulerConfig};
    /// use std::num::NonZeroU32;
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    /// let one = Quota::per_second(NonZeroU32::new(1).unwrap());
    /// s.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("export").with_tenant_quota(Some(one))]).unwrap()).unwrap();
    /// let export = s.classes().id("export").unwrap();
    /// let _ = s.try_push_with("a", 1, PushOptions::new().class(export)).unwrap();
    /// assert!(s.try_push_with("a", 2, PushOptions::new().class(export)).is_err());
    /// s.pop();
    /// s.refund_class(&"a", export, 1); // cancelled before it ran
    /// assert!(s.try_push_with("a", 2, PushOptions::new().class(export)).is_ok());
    /// ```
    pub fn refund_class(&mut self, key: &K, class: ClassId, cost: u32) {
        self.version += 1;
        let now = self.now();
        if let Some(idx) = self.queue.tenants_ref().find(key) {
            self.refund_slot(idx, u64::from(cost), now);
            if let Ok(c) = u16::try_from(class.index()) {
                self.refund_class_slot(idx, c, u64::from(cost), now);
            }
        }
    }

    /// Removes every queued item of `key`, hands them back in FIFO order (class by class with
    /// several classes), and refunds their cost to the tenant's rate limit and to each class's
    /// per-tenant quota.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// for i in 0..3 { let _ = s.try_push("flood", i).unwrap(); }
    /// s.block("flood", BlockReason::Abuse);
    /// assert_eq!(s.purge(&"flood"), [0, 1, 2]);
    /// ```
    pub fn purge(&mut self, key: &K) -> Vec<T> {
        let now = self.now();
        let Some(idx) = self.queue.tenants_ref().find(key) else {
            return Vec::new();
        };
        let (out, costs) = self.queue.purge_slot(idx);
        self.refund_costs(idx, &costs, now);
        self.queue.tenants_mut().release_if_idle(idx);
        out
    }

    /// Keeps the items of `key` for which `keep` returns `true`; hands back the others in
    /// FIFO order (class by class with several classes) and refunds their cost to the tenant's
    /// rate limit and to each class's per-tenant quota.
    ///
    /// # Panics
    ///
    /// If `keep` panics, the panic propagates and nothing is changed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// for i in 0..4 { let _ = s.try_push("a", i).unwrap(); }
    /// assert_eq!(s.retain(&"a", |i| i % 2 == 0), [1, 3]);
    /// ```
    pub fn retain(&mut self, key: &K, keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let now = self.now();
        let Some(idx) = self.queue.tenants_ref().find(key) else {
            return Vec::new();
        };
        let (out, costs) = self.queue.retain_slot(idx, keep);
        self.refund_costs(idx, &costs, now);
        self.queue.tenants_mut().release_if_idle(idx);
        out
    }

    /// Pins `key` so the scheduler keeps its state and counters while it is idle (see
    /// [`FairQueue::tenant`]); undo with [`release`](Self::release).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let h = s.tenant("acme");
    /// let _ = s.try_push("acme", 1).unwrap();
    /// s.pop();
    /// assert_eq!(s.queue().tenant_counters(&"acme").unwrap().dispatched, 1);
    /// assert!(s.release(h));
    /// ```
    #[track_caller]
    pub fn tenant(&mut self, key: K) -> TenantHandle {
        self.queue.tenant(key)
    }

    /// Unpins a tenant pinned by [`tenant`](Self::tenant); see [`FairQueue::release`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let h = s.tenant("acme");
    /// assert!(s.release(h));
    /// assert_eq!(s.queue().known_tenants(), 0);
    /// ```
    pub fn release(&mut self, handle: TenantHandle) -> bool {
        self.queue.release(handle)
    }

    /// Blocks `key`: later pushes are refused with the reason (see [`FairQueue::block`]).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("a", BlockReason::Abuse);
    /// assert!(s.try_push("a", 1).is_err());
    /// ```
    #[track_caller]
    pub fn block(&mut self, key: K, reason: BlockReason) {
        self.queue.block(key, reason);
    }

    /// Lifts a block; returns the reason it had.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("a", BlockReason::Abuse);
    /// assert_eq!(s.unblock(&"a"), Some(BlockReason::Abuse));
    /// ```
    pub fn unblock(&mut self, key: &K) -> Option<BlockReason> {
        self.version += 1;
        self.queue.unblock(key)
    }

    /// Overrides a tenant's weight (see [`FairQueue::set_weight`]).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_weight("gold", NonZeroU32::new(3).unwrap());
    /// assert_eq!(s.queue().weight(&"gold").get(), 3);
    /// ```
    #[track_caller]
    pub fn set_weight(&mut self, key: K, weight: NonZeroU32) {
        self.queue.set_weight(key, weight);
    }

    /// Removes a tenant's weight override.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_weight("gold", NonZeroU32::new(3).unwrap());
    /// s.clear_weight(&"gold");
    /// assert_eq!(s.queue().weight(&"gold").get(), 1);
    /// ```
    pub fn clear_weight(&mut self, key: &K) {
        self.queue.clear_weight(key);
    }

    /// Gives `key` its own limits, replacing the defaults as a whole; takes effect on its next
    /// push. Queued items stay.
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{RejectReason, Scheduler, SchedulerConfig, TenantLimits, Limit};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_limits("trial", TenantLimits::new().with_max_items(1));
    /// let _ = s.try_push("trial", 1).unwrap();
    /// let err = s.try_push("trial", 2).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::TenantFull { limit: Limit::Items(1) });
    /// ```
    #[track_caller]
    pub fn set_limits(&mut self, key: K, limits: TenantLimits) {
        self.version += 1;
        let idx = self
            .queue
            .tenants_mut()
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^31 tenants)");
        self.queue
            .set_slot_in_flight_limit(idx, limits.max_in_flight().unwrap_or(u32::MAX));
        let rules = Rules::new(limits, self.config.capacity());
        let t = self.queue.tenants_mut().get_mut(idx);
        if t.limits != NIL {
            self.overrides[t.limits as usize] = rules;
            return;
        }
        let slot = match self.free_overrides.pop() {
            Some(slot) => {
                self.overrides[slot as usize] = rules;
                slot
            }
            None => {
                self.overrides.push(rules);
                (self.overrides.len() - 1) as u32
            }
        };
        self.queue.tenants_mut().get_mut(idx).limits = slot;
    }

    /// Removes `key`'s own limits; it gets the defaults again.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig, TenantLimits};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_limits("a", TenantLimits::new().with_max_items(1));
    /// s.clear_limits(&"a");
    /// assert_eq!(s.limits(&"a"), TenantLimits::UNLIMITED);
    /// ```
    pub fn clear_limits(&mut self, key: &K) {
        self.version += 1;
        let Some(idx) = self.queue.tenants_ref().find(key) else {
            return;
        };
        let default_in_flight = self
            .config
            .tenant_limits()
            .max_in_flight()
            .unwrap_or(u32::MAX);
        self.queue.set_slot_in_flight_limit(idx, default_in_flight);
        let tenants = self.queue.tenants_mut();
        let t = tenants.get_mut(idx);
        if t.limits != NIL {
            self.free_overrides.push(t.limits);
            t.limits = NIL;
            tenants.release_if_idle(idx);
        }
    }

    /// The limits in force for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig, TenantLimits};
    /// let s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// assert_eq!(s.limits(&"anyone"), TenantLimits::UNLIMITED);
    /// ```
    pub fn limits(&self, key: &K) -> TenantLimits {
        let idx = self
            .queue
            .tenants_ref()
            .find(key)
            .map_or(NIL, |i| self.queue.tenants_ref().get(i).limits);
        self.rules_of(idx).limits
    }
}
