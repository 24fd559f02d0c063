#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Model-based property tests of the admission pipeline (`Scheduler`) on a manual clock:
//!
//! - the GCRA envelope: admitted cost in any window of push times stays within
//!   `burst + floor(window / replenish_interval)`;
//! - the GCRA agrees with governor's keyed limiter decision for decision, retry time included;
//! - tenant caps and the global capacity are never exceeded, and every refusal names a limit
//!   that really was binding;
//! - conservation: every item pushed comes back exactly once (dispatched, refused, evicted,
//!   expired or shed, purged, retained out) or is still queued;
//! - eviction always hits a tenant furthest over its fair share, oldest items first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::{
    BlockReason, Clock, Limit, ManualClock, Nanos, PushOptions, RejectReason, Rejected, Scheduler,
    SchedulerConfig, Ticket,
    config::{Capacity, QueueDelay, Quota, ShedPolicy, TenantLimits},
};
use governor::RateLimiter;
use governor::clock::FakeRelativeClock;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

type Sched = Scheduler<u8, u64, ManualClock>;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

#[track_caller]
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test passed a zero where a non-zero value is required")
}

const TENANTS: u8 = 5;

// ===== rate quotas: the GCRA envelope and governor =====

/// How a quota is built; the same spec builds our `Quota` and governor's.
#[derive(Debug, Clone, Copy)]
enum QuotaSpec {
    PerSecond(u32),
    PerMinute(u32),
    PerHour(u32),
    Period(u64),
}

impl QuotaSpec {
    fn ours(self, burst: u32) -> Quota {
        let q = match self {
            QuotaSpec::PerSecond(r) => Quota::per_second(nz(r)),
            QuotaSpec::PerMinute(r) => Quota::per_minute(nz(r)),
            QuotaSpec::PerHour(r) => Quota::per_hour(nz(r)),
            QuotaSpec::Period(ns) => Quota::with_period(Duration::from_nanos(ns))
                .expect("the strategy makes non-zero periods"),
        };
        q.allow_burst(nz(burst))
    }

    fn governor(self, burst: u32) -> governor::Quota {
        let q = match self {
            QuotaSpec::PerSecond(r) => governor::Quota::per_second(nz(r)),
            QuotaSpec::PerMinute(r) => governor::Quota::per_minute(nz(r)),
            QuotaSpec::PerHour(r) => governor::Quota::per_hour(nz(r)),
            QuotaSpec::Period(ns) => governor::Quota::with_period(Duration::from_nanos(ns))
                .expect("the strategy makes non-zero periods"),
        };
        q.allow_burst(nz(burst))
    }
}

fn quota_spec() -> impl Strategy<Value = QuotaSpec> {
    prop_oneof![
        4 => (1..=20u32).prop_map(QuotaSpec::PerSecond),
        3 => (21..=100_000u32).prop_map(QuotaSpec::PerSecond),
        // Sub-nanosecond intervals round to 1 ns in both crates.
        1 => (999_999_000..=u32::MAX).prop_map(QuotaSpec::PerSecond),
        1 => (1..=7_000u32).prop_map(QuotaSpec::PerMinute),
        1 => (1..=7_000u32).prop_map(QuotaSpec::PerHour),
        2 => (1..=5_000u64).prop_map(QuotaSpec::Period),
    ]
}

/// One push in a rate-limit run: first advance the clock by `quarters / 4` replenish
/// intervals plus `jitter` ns (or, with `to_retry`, exactly to the tenant's last retry time
/// when that is still ahead), then push `cost` for `tenant`.
#[derive(Debug, Clone)]
struct RateStep {
    tenant: u8,
    quarters: u64,
    jitter: i64,
    to_retry: bool,
    cost: u32,
}

fn rate_steps(burst: u32, max_len: usize) -> impl Strategy<Value = Vec<RateStep>> {
    let step = (
        0..3u8,
        prop_oneof![3 => Just(0u64), 4 => 1..=4u64, 2 => 5..=12u64],
        -1..=1i64,
        prop::bool::weighted(0.15),
        prop_oneof![8 => 1..=burst, 1 => (burst + 1)..=(burst + 3)],
    )
        .prop_map(|(tenant, quarters, jitter, to_retry, cost)| RateStep {
            tenant,
            quarters,
            jitter,
            to_retry,
            cost,
        });
    prop::collection::vec(step, 1..max_len)
}

fn rate_case(max_len: usize) -> impl Strategy<Value = (QuotaSpec, u32, Vec<RateStep>)> {
    (quota_spec(), 1..=12u32)
        .prop_flat_map(move |(spec, burst)| (Just(spec), Just(burst), rate_steps(burst, max_len)))
}

/// Where `step` moves a clock that reads `now`, given the tenant's last retry time.
fn advance_for(step: &RateStep, interval: u64, now: u64, retry: Option<u64>) -> u64 {
    if step.to_retry {
        if let Some(at) = retry.filter(|&at| at > now) {
            return at - now;
        }
    }
    let base = step.quarters.saturating_mul(interval) / 4;
    base.saturating_add_signed(step.jitter)
}

/// A scheduler with only a rate quota (no caps, no capacity).
fn quota_only(quota: Quota, clock: ManualClock) -> Sched {
    let cfg = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_quota(quota));
    Scheduler::with_clock(cfg, clock)
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn admitted_cost_within_gcra_envelope((spec, burst, steps) in rate_case(160)) {
        let quota = spec.ours(burst);
        let interval = u64::try_from(quota.replenish_interval().as_nanos()).unwrap();
        prop_assert!(interval >= 1);
        let clock = ManualClock::new();
        let mut s = quota_only(quota, clock.clone());
        let mut now = 0u64;
        let mut retry: HashMap<u8, u64> = HashMap::new();
        let mut admitted: HashMap<u8, Vec<(u64, u64)>> = HashMap::new();
        for (id, step) in steps.iter().enumerate() {
            let by = advance_for(step, interval, now, retry.get(&step.tenant).copied());
            clock.advance(Duration::from_nanos(by));
            now += by;
            let opts = PushOptions::new().with_cost(step.cost);
            match s.try_push_with(step.tenant, id as u64, opts) {
                Ok(()) => {
                    prop_assert_eq!(s.pending_returns(), 0, "nothing evicted without a capacity");
                    prop_assert!(step.cost <= burst, "cost {} above burst {burst} admitted", step.cost);
                    admitted.entry(step.tenant).or_default().push((now, u64::from(step.cost)));
                    prop_assert_eq!(s.pop(), Some(id as u64));
                }
                Err(e) => match e.reason() {
                    RejectReason::TooLarge { cost, max } => {
                        prop_assert_eq!((cost, max), (u64::from(step.cost), u64::from(burst)));
                        prop_assert!(step.cost > burst);
                    }
                    RejectReason::RateLimited { retry_at } => {
                        prop_assert!(step.cost <= burst);
                        prop_assert!(retry_at.as_u64() > now, "retry_at {retry_at} not after now {now}");
                        retry.insert(step.tenant, retry_at.as_u64());
                    }
                    other => prop_assert!(false, "unexpected refusal {other:?}"),
                },
            }
        }
        for (tenant, pushes) in &admitted {
            for i in 0..pushes.len() {
                let mut sum = 0u64;
                for (j, &(t2, c)) in pushes.iter().enumerate().skip(i) {
                    sum += c;
                    let t1 = pushes[i].0;
                    let allowed = u64::from(burst) + (t2 - t1) / interval;
                    prop_assert!(
                        sum <= allowed,
                        "tenant {tenant}: cost {sum} admitted in pushes {i}..={j} over [{t1}, {t2}] ns, \
                         envelope {allowed} (burst {burst}, interval {interval} ns)"
                    );
                }
            }
        }
    }

    #[test]
    fn gcra_matches_governor((spec, burst, steps) in rate_case(160)) {
        let ours = spec.ours(burst);
        let theirs = spec.governor(burst);
        // governor keeps a sub-nanosecond interval as 0 and uses 1 ns for it; ours stores 1 ns.
        let one = Duration::from_nanos(1);
        prop_assert_eq!(ours.replenish_interval(), theirs.replenish_interval().max(one));
        let interval = u64::try_from(ours.replenish_interval().as_nanos()).unwrap().max(1);

        let gclock = FakeRelativeClock::default();
        let limiter = RateLimiter::hashmap_with_clock(theirs, gclock.clone());
        let clock = ManualClock::new();
        let mut s = quota_only(ours, clock.clone());

        let mut now = 0u64;
        let mut retry: HashMap<u8, u64> = HashMap::new();
        for (id, step) in steps.iter().enumerate() {
            let by = advance_for(step, interval, now, retry.get(&step.tenant).copied());
            clock.advance(Duration::from_nanos(by));
            gclock.advance(Duration::from_nanos(by));
            now += by;
            let g = limiter.check_key_n(&step.tenant, nz(step.cost));
            let r = s.try_push_with(step.tenant, id as u64, PushOptions::new().with_cost(step.cost));
            match (g, r) {
                (Ok(Ok(_)), Ok(())) => {
                    prop_assert_eq!(s.pending_returns(), 0, "nothing evicted without a capacity");
                    prop_assert_eq!(s.pop(), Some(id as u64));
                }
                (Ok(Err(not_until)), Err(e)) => {
                    let earliest = not_until.earliest_possible().as_u64();
                    prop_assert_eq!(
                        e.reason(),
                        RejectReason::RateLimited { retry_at: Nanos::new(earliest) },
                        "step {} at {} ns", id, now
                    );
                    retry.insert(step.tenant, earliest);
                }
                (Err(governor::InsufficientCapacity(_)), Err(e)) => {
                    prop_assert_eq!(
                        e.reason(),
                        RejectReason::TooLarge { cost: u64::from(step.cost), max: u64::from(burst) }
                    );
                }
                (g, r) => prop_assert!(
                    false,
                    "step {id} at {now} ns (tenant {}, cost {}): governor {g:?}, ours {:?}",
                    step.tenant,
                    step.cost,
                    r.map(|_| ()).map_err(|e| e.reason())
                ),
            }
        }
    }
}

// ===== caps and capacity =====

#[derive(Debug, Clone)]
enum CapOp {
    Push { tenant: u8, cost: u32 },
    Pop,
    Dispatch,
    Complete { which: usize },
    Advance { ms: u64 },
    SetWeight { tenant: u8, weight: u32 },
}

fn cap_op() -> impl Strategy<Value = CapOp> {
    prop_oneof![
        10 => (0..TENANTS, 1..=10u32).prop_map(|(tenant, cost)| CapOp::Push { tenant, cost }),
        3 => Just(CapOp::Pop),
        1 => Just(CapOp::Dispatch),
        1 => any::<usize>().prop_map(|which| CapOp::Complete { which }),
        1 => (0..300u64).prop_map(|ms| CapOp::Advance { ms }),
        1 => (0..TENANTS, 1..=4u32).prop_map(|(tenant, weight)| CapOp::SetWeight { tenant, weight }),
    ]
}

#[derive(Debug, Clone)]
struct CapSetup {
    quota: Option<(u32, u32)>,
    tenant_items: Option<u32>,
    tenant_cost: Option<u64>,
    override0: Option<(Option<u32>, Option<u64>)>,
    cap_items: Option<u64>,
    cap_cost: Option<u64>,
    evict: bool,
}

fn cap_setup() -> impl Strategy<Value = CapSetup> {
    (
        prop::option::weighted(0.3, (1..=50u32, 1..=10u32)),
        prop::option::of(1..=6u32),
        prop::option::of(1..=20u64),
        prop::option::weighted(
            0.3,
            (prop::option::of(1..=8u32), prop::option::of(1..=30u64)),
        ),
        prop::option::of(1..=12u64),
        prop::option::of(1..=40u64),
        any::<bool>(),
    )
        .prop_map(
            |(quota, tenant_items, tenant_cost, override0, cap_items, cap_cost, evict)| CapSetup {
                quota,
                tenant_items,
                tenant_cost,
                override0,
                cap_items,
                cap_cost,
                evict,
            },
        )
}

fn tenant_limits(quota: Option<(u32, u32)>, items: Option<u32>, cost: Option<u64>) -> TenantLimits {
    let mut l = TenantLimits::new();
    if let Some((rate, burst)) = quota {
        l = l.with_quota(Quota::per_second(nz(rate)).allow_burst(nz(burst)));
    }
    if let Some(m) = items {
        l = l.with_max_items(m);
    }
    if let Some(m) = cost {
        l = l.with_max_cost(m);
    }
    l
}

fn capacity(items: Option<u64>, cost: Option<u64>) -> Capacity {
    let mut c = Capacity::new();
    if let Some(m) = items {
        c = c.with_max_items(m);
    }
    if let Some(m) = cost {
        c = c.with_max_cost(m);
    }
    c
}

fn policy(evict: bool) -> ShedPolicy {
    if evict {
        ShedPolicy::EvictOverShare
    } else {
        ShedPolicy::RejectNew
    }
}

/// Every tenant's and the global length and cost are within their caps.
fn check_caps(s: &Sched, cap: Capacity) -> Result<(), TestCaseError> {
    let q = s.queue();
    for t in 0..TENANTS {
        let l = s.limits(&t);
        if let Some(m) = l.max_items() {
            prop_assert!(
                q.tenant_len(&t) <= m as usize,
                "tenant {t}: {} items > cap {m}",
                q.tenant_len(&t)
            );
        }
        if let Some(m) = l.max_cost() {
            prop_assert!(
                q.tenant_queued_cost(&t) <= m,
                "tenant {t}: cost {} > cap {m}",
                q.tenant_queued_cost(&t)
            );
        }
    }
    if let Some(m) = cap.max_items() {
        prop_assert!(q.len() as u64 <= m, "{} items > capacity {m}", q.len());
    }
    if let Some(m) = cap.max_cost() {
        prop_assert!(
            q.queued_cost() <= m,
            "cost {} > capacity {m}",
            q.queued_cost()
        );
    }
    let per_tenant: usize = (0..TENANTS).map(|t| q.tenant_len(&t)).sum();
    prop_assert_eq!(per_tenant, q.len());
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn caps_and_capacity_never_exceeded(
        setup in cap_setup(),
        ops in prop::collection::vec(cap_op(), 1..150),
    ) {
        let defaults = tenant_limits(setup.quota, setup.tenant_items, setup.tenant_cost);
        let cap = capacity(setup.cap_items, setup.cap_cost);
        let cfg = SchedulerConfig::new()
            .with_tenant_limits(defaults)
            .with_capacity(cap)
            .with_shed_policy(policy(setup.evict));
        let clock = ManualClock::new();
        let mut s: Sched = Scheduler::with_clock(cfg, clock.clone());
        if let Some((items, cost)) = setup.override0 {
            s.set_limits(0, tenant_limits(None, items, cost));
        }
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                CapOp::Push { tenant, cost } => {
                    let l = s.limits(&tenant);
                    let q = s.queue();
                    let (t_len, t_cost) = (q.tenant_len(&tenant) as u64, q.tenant_queued_cost(&tenant));
                    let (len, total) = (q.len() as u64, q.queued_cost());
                    let c = u64::from(cost);
                    let now = clock.now();
                    let id = next_id;
                    next_id += 1;
                    match s.try_push_with(tenant, id, PushOptions::new().with_cost(cost)) {
                        Ok(()) => {
                            // No deadlines here: whatever comes back was evicted by this push.
                            let back = s.take_returned();
                            if !setup.evict {
                                prop_assert!(back.is_empty(), "RejectNew evicted");
                            }
                            for e in &back {
                                prop_assert_eq!(e.reason(), RejectReason::Evicted);
                            }
                        }
                        Err(e) => {
                            prop_assert_eq!(*e.item(), id);
                            match e.reason() {
                                RejectReason::TenantFull { limit: Limit::Items(m) } => {
                                    prop_assert_eq!(l.max_items().map(u64::from), Some(m));
                                    prop_assert!(t_len >= m, "TenantFull(items {m}) with {t_len} queued");
                                }
                                RejectReason::TenantFull { limit: Limit::Cost(m) } => {
                                    prop_assert_eq!(l.max_cost(), Some(m));
                                    prop_assert!(t_cost + c > m, "TenantFull(cost {m}) with {t_cost} + {c}");
                                }
                                RejectReason::CapacityFull { limit: Limit::Items(m) } => {
                                    prop_assert_eq!(cap.max_items(), Some(m));
                                    prop_assert!(len + 1 > m, "CapacityFull(items {m}) with {len} queued");
                                }
                                RejectReason::CapacityFull { limit: Limit::Cost(m) } => {
                                    prop_assert_eq!(cap.max_cost(), Some(m));
                                    prop_assert!(total + c > m, "CapacityFull(cost {m}) with {total} + {c}");
                                }
                                RejectReason::TooLarge { cost: tc, max } => {
                                    prop_assert_eq!(tc, c);
                                    prop_assert!(c > max);
                                    let burst = l.quota().map(|q| u64::from(q.burst().get()));
                                    prop_assert!(
                                        burst == Some(max) || l.max_cost() == Some(max) || cap.max_cost() == Some(max),
                                        "TooLarge names max {max}, which is no limit in force"
                                    );
                                }
                                RejectReason::RateLimited { retry_at } => {
                                    prop_assert!(l.quota().is_some());
                                    prop_assert!(retry_at > now);
                                }
                                other => prop_assert!(false, "unexpected refusal {other:?}"),
                            }
                        }
                    }
                }
                CapOp::Pop => {
                    let _ = s.pop();
                }
                CapOp::Dispatch => {
                    if let Some(d) = s.dispatch() {
                        tickets.push(d.ticket);
                    }
                }
                CapOp::Complete { which } => {
                    if !tickets.is_empty() {
                        let t = tickets.swap_remove(which % tickets.len());
                        let cost = t.cost();
                        prop_assert!(s.complete(t, cost));
                    }
                }
                CapOp::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                CapOp::SetWeight { tenant, weight } => s.set_weight(tenant, nz(weight)),
            }
            check_caps(&s, cap)?;
        }
    }
}

// ===== conservation =====

#[derive(Debug, Clone)]
enum Op {
    Push {
        tenant: u8,
        cost: u32,
        deadline_ms: Option<u64>,
    },
    Reserve {
        tenant: u8,
        cost: u32,
        deadline_ms: Option<u64>,
        commit: bool,
    },
    Pop,
    Dispatch,
    Complete {
        which: usize,
        actual: u32,
    },
    Advance {
        ms: u64,
    },
    ClockBack {
        ms: u64,
    },
    Purge {
        tenant: u8,
    },
    Retain {
        tenant: u8,
        modulus: u64,
    },
    Block {
        tenant: u8,
    },
    Unblock {
        tenant: u8,
    },
    TakeReturned,
    Refund {
        tenant: u8,
        cost: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = 0..TENANTS;
    let cost = prop_oneof![12 => 1..=6u32, 1 => Just(0u32)];
    let deadline = prop::option::weighted(0.4, 0..60u64);
    prop_oneof![
        12 => (tenant.clone(), cost.clone(), deadline.clone())
            .prop_map(|(tenant, cost, deadline_ms)| Op::Push { tenant, cost, deadline_ms }),
        3 => (tenant.clone(), cost, deadline, any::<bool>()).prop_map(
            |(tenant, cost, deadline_ms, commit)| Op::Reserve { tenant, cost, deadline_ms, commit }
        ),
        4 => Just(Op::Pop),
        3 => Just(Op::Dispatch),
        2 => (any::<usize>(), 0..=8u32).prop_map(|(which, actual)| Op::Complete { which, actual }),
        4 => (0..40u64).prop_map(|ms| Op::Advance { ms }),
        1 => (0..30u64).prop_map(|ms| Op::ClockBack { ms }),
        1 => tenant.clone().prop_map(|tenant| Op::Purge { tenant }),
        1 => (tenant.clone(), 2..=4u64).prop_map(|(tenant, modulus)| Op::Retain { tenant, modulus }),
        1 => tenant.clone().prop_map(|tenant| Op::Block { tenant }),
        1 => tenant.clone().prop_map(|tenant| Op::Unblock { tenant }),
        2 => Just(Op::TakeReturned),
        1 => (tenant, 1..=4u32).prop_map(|(tenant, cost)| Op::Refund { tenant, cost }),
    ]
}

#[derive(Debug, Clone)]
struct ConsSetup {
    target_ms: u64,
    interval_ms: u64,
    evict: bool,
    cap_items: Option<u64>,
    cap_cost: Option<u64>,
    quota: Option<(u32, u32)>,
    tenant_items: Option<u32>,
}

fn cons_setup() -> impl Strategy<Value = ConsSetup> {
    (
        1..=20u64,
        5..=80u64,
        prop::bool::weighted(0.75),
        prop::option::weighted(0.8, 3..=12u64),
        prop::option::weighted(0.4, 6..=40u64),
        prop::option::weighted(0.4, (5..=200u32, 1..=8u32)),
        prop::option::weighted(0.3, 1..=6u32),
    )
        .prop_map(
            |(target_ms, interval_ms, evict, cap_items, cap_cost, quota, tenant_items)| ConsSetup {
                target_ms,
                interval_ms,
                evict,
                cap_items,
                cap_cost,
                quota,
                tenant_items,
            },
        )
}

/// How an item came back (or that it was refused at the door).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Dispatched,
    Refused,
    Evicted,
    Expired,
    Shed,
    Purged,
    RetainedOut,
}

#[derive(Debug, Clone, Copy)]
struct Info {
    tenant: u8,
    deadline: Option<Nanos>,
}

/// The host's ledger: every item it ever handed over and what became of it.
#[derive(Debug, Default)]
struct Ledger {
    items: HashMap<u64, Info>,
    /// Admitted and not yet handed back (queued, or waiting in the scheduler's outbox).
    live: HashSet<u64>,
    outcomes: HashMap<u64, Outcome>,
    /// The time the scheduler has seen: the largest clock reading it took.
    now: Nanos,
    target: Nanos,
}

impl Ledger {
    fn record(&mut self, id: u64, outcome: Outcome) -> Result<(), TestCaseError> {
        prop_assert!(self.items.contains_key(&id), "item {id} was never pushed");
        if let Some(before) = self.outcomes.insert(id, outcome) {
            prop_assert!(
                false,
                "item {id} came back twice: {before:?}, then {outcome:?}"
            );
        }
        if outcome != Outcome::Refused {
            prop_assert!(
                self.live.remove(&id),
                "item {id} came back ({outcome:?}) but was not queued"
            );
        }
        Ok(())
    }

    /// Records an item handed out by `pop`/`dispatch`: never one whose deadline has passed.
    fn dispatched(&mut self, id: u64) -> Result<(), TestCaseError> {
        let info = self.items[&id];
        if let Some(d) = info.deadline {
            prop_assert!(
                d > self.now,
                "item {id} dispatched at {} past its deadline {d}",
                self.now
            );
        }
        self.record(id, Outcome::Dispatched)
    }

    /// Records expired and shed items handed back by `take_returned` (the test takes evicted
    /// items right after the push that evicted them, in [`admitted`](Self::admitted)).
    fn expired(&mut self, back: Vec<Rejected<u64>>) -> Result<(), TestCaseError> {
        for r in back {
            let (id, reason) = r.into_parts();
            match reason {
                RejectReason::DeadlineExpired { deadline } => {
                    prop_assert_eq!(Some(deadline), self.items[&id].deadline);
                    prop_assert!(deadline <= self.now);
                    self.record(id, Outcome::Expired)?;
                }
                RejectReason::QueueDelay { sojourn } => {
                    prop_assert!(sojourn >= self.target, "item {id} shed after {sojourn}");
                    self.record(id, Outcome::Shed)?;
                }
                other => prop_assert!(false, "take_returned returned {other:?}"),
            }
        }
        Ok(())
    }

    /// Records item `id` as admitted for `pusher`, and what `take_returned` handed back right
    /// after its push: the items evicted to make room for it, along with any expired or shed
    /// items that were waiting there. Returns how many were evicted.
    fn admitted(
        &mut self,
        pusher: u8,
        back: Vec<Rejected<u64>>,
        id: u64,
    ) -> Result<u64, TestCaseError> {
        self.live.insert(id);
        let (evicted, rest): (Vec<_>, Vec<_>) = back
            .into_iter()
            .partition(|r| r.reason() == RejectReason::Evicted);
        for r in &evicted {
            let e = *r.item();
            prop_assert_ne!(
                self.items[&e].tenant,
                pusher,
                "evicted from the pusher itself"
            );
            self.record(e, Outcome::Evicted)?;
        }
        self.expired(rest)?;
        Ok(evicted.len() as u64)
    }

    /// Reads the clock the way the scheduler does before a call that reads time.
    fn tick(&mut self, clock: &ManualClock) {
        self.now = self.now.max(clock.now());
    }
}

proptest! {
    #![proptest_config(proptest_config(384))]

    #[test]
    fn conservation_across_admission(
        setup in cons_setup(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let target = Nanos::from_millis(setup.target_ms);
        let cfg = SchedulerConfig::new()
            .with_tenant_limits(tenant_limits(setup.quota, setup.tenant_items, None))
            .with_capacity(capacity(setup.cap_items, setup.cap_cost))
            .with_shed_policy(policy(setup.evict))
            .with_queue_delay(Some(QueueDelay::new(target, Nanos::from_millis(setup.interval_ms))));
        let clock = ManualClock::new();
        let mut s: Sched = Scheduler::with_clock(cfg, clock.clone());
        let mut ledger = Ledger { target, ..Ledger::default() };
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut blocked: HashSet<u8> = HashSet::new();
        let mut next_id = 0u64;
        let (mut admitted, mut evicted_n) = (0u64, 0u64);

        for op in ops {
            match op {
                Op::Push { tenant, cost, deadline_ms } | Op::Reserve { tenant, cost, deadline_ms, commit: true } => {
                    ledger.tick(&clock);
                    let id = next_id;
                    next_id += 1;
                    let deadline = deadline_ms.map(|ms| ledger.now + Nanos::from_millis(ms));
                    ledger.items.insert(id, Info { tenant, deadline });
                    let mut opts = PushOptions::new().with_cost(cost);
                    if let Some(d) = deadline {
                        opts = opts.with_deadline(d);
                    }
                    let evicted_before = s.counters().evicted;
                    let result = if matches!(op, Op::Push { .. }) {
                        s.try_push_with(tenant, id, opts)
                    } else {
                        let reserved = s
                            .try_reserve(tenant, opts)
                            .map(|permit| (permit.cost(), permit.commit(id)));
                        match reserved {
                            Ok((reserved_cost, ())) => {
                                prop_assert_eq!(reserved_cost, cost);
                                Ok(())
                            }
                            Err(reason) => {
                                // The item was never handed over; it is still the host's.
                                prop_assert!(!matches!(reason, RejectReason::Evicted));
                                ledger.record(id, Outcome::Refused)?;
                                continue_after_op(&s, &ledger)?;
                                continue;
                            }
                        }
                    };
                    match result {
                        Ok(()) => {
                            // Items evicted for this push wait in the outbox: take them now,
                            // so each is checked against its pusher.
                            let evicted_now = s.counters().evicted - evicted_before;
                            let back = if evicted_now > 0 { s.take_returned() } else { Vec::new() };
                            let ev = ledger.admitted(tenant, back, id)?;
                            prop_assert_eq!(ev, evicted_now, "every eviction comes back");
                            evicted_n += ev;
                            admitted += 1;
                        }
                        Err(e) => {
                            prop_assert_eq!(*e.item(), id);
                            let returned_kind = matches!(
                                e.reason(),
                                RejectReason::Evicted | RejectReason::QueueDelay { .. }
                            );
                            prop_assert!(!returned_kind, "refused at push with {:?}", e.reason());
                            // Only a deadline that has already passed is refused at the door.
                            if let RejectReason::DeadlineExpired { deadline: d } = e.reason() {
                                prop_assert_eq!(Some(d), deadline);
                                prop_assert!(d <= ledger.now, "deadline {} refused at {}", d, ledger.now);
                            }
                            // Blocked is checked first, then zero cost.
                            if blocked.contains(&tenant) {
                                prop_assert!(
                                    matches!(e.reason(), RejectReason::Blocked { .. }),
                                    "blocked tenant {} refused with {:?}", tenant, e.reason()
                                );
                            } else if cost == 0 {
                                prop_assert_eq!(e.reason(), RejectReason::ZeroCost);
                            }
                            ledger.record(id, Outcome::Refused)?;
                        }
                    }
                }
                Op::Reserve { tenant, cost, deadline_ms, commit: false } => {
                    ledger.tick(&clock);
                    let before = (s.queue().len(), s.queue().queued_cost(), s.counters().admitted);
                    let mut opts = PushOptions::new().with_cost(cost);
                    if let Some(ms) = deadline_ms {
                        opts = opts.with_deadline(ledger.now + Nanos::from_millis(ms));
                    }
                    if let Ok(permit) = s.try_reserve(tenant, opts) {
                        drop(permit);
                    }
                    let after = (s.queue().len(), s.queue().queued_cost(), s.counters().admitted);
                    prop_assert_eq!(before, after, "a dropped permit changed the queue");
                }
                Op::Pop => {
                    ledger.tick(&clock);
                    if let Some(id) = s.pop() {
                        ledger.dispatched(id)?;
                    }
                }
                Op::Dispatch => {
                    ledger.tick(&clock);
                    if let Some(d) = s.dispatch() {
                        ledger.dispatched(d.item)?;
                        tickets.push(d.ticket);
                    }
                }
                Op::Complete { which, actual } => {
                    if !tickets.is_empty() {
                        let t = tickets.swap_remove(which % tickets.len());
                        prop_assert!(s.complete(t, actual));
                    }
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                Op::ClockBack { ms } => {
                    let now = clock.now();
                    clock.set(now.saturating_since(Nanos::from_millis(ms)));
                }
                Op::Purge { tenant } => {
                    ledger.tick(&clock);
                    for id in s.purge(&tenant) {
                        prop_assert_eq!(ledger.items[&id].tenant, tenant);
                        ledger.record(id, Outcome::Purged)?;
                    }
                }
                Op::Retain { tenant, modulus } => {
                    ledger.tick(&clock);
                    for id in s.retain(&tenant, |&id| id % modulus != 0) {
                        prop_assert_eq!(ledger.items[&id].tenant, tenant);
                        prop_assert_eq!(id % modulus, 0, "retain removed a kept item");
                        ledger.record(id, Outcome::RetainedOut)?;
                    }
                }
                Op::Block { tenant } => {
                    s.block(tenant, BlockReason::Code(u32::from(tenant)));
                    blocked.insert(tenant);
                }
                Op::Unblock { tenant } => {
                    let was = s.unblock(&tenant);
                    prop_assert_eq!(was.is_some(), blocked.remove(&tenant));
                }
                Op::TakeReturned => {
                    ledger.tick(&clock);
                    let back = s.take_returned();
                    ledger.expired(back)?;
                }
                Op::Refund { tenant, cost } => {
                    ledger.tick(&clock);
                    s.refund(&tenant, cost);
                }
            }
            continue_after_op(&s, &ledger)?;
        }

        // Hand back everything still held: expired and shed items, then each tenant's queue.
        ledger.tick(&clock);
        let back = s.take_returned();
        ledger.expired(back)?;
        for tenant in 0..TENANTS {
            for id in s.purge(&tenant) {
                prop_assert_eq!(ledger.items[&id].tenant, tenant);
                ledger.record(id, Outcome::Purged)?;
            }
        }
        let back = s.take_returned();
        ledger.expired(back)?;
        prop_assert!(s.queue().is_empty());
        prop_assert_eq!(s.pending_returns(), 0);
        prop_assert!(ledger.live.is_empty(), "still owed: {:?}", ledger.live);
        for t in tickets {
            prop_assert!(s.complete(t, 1));
        }

        // Item for item: each pushed id has exactly one outcome.
        prop_assert_eq!(ledger.outcomes.len(), ledger.items.len());
        for id in ledger.items.keys() {
            prop_assert!(ledger.outcomes.contains_key(id), "item {id} was lost");
        }
        let count = |o: Outcome| ledger.outcomes.values().filter(|&&x| x == o).count() as u64;
        let c = s.counters();
        prop_assert_eq!(c.admitted, admitted);
        prop_assert_eq!(c.evicted, evicted_n);
        prop_assert_eq!(c.evicted, count(Outcome::Evicted));
        prop_assert_eq!(c.expired, count(Outcome::Expired));
        prop_assert_eq!(c.shed, count(Outcome::Shed));
    }
}

/// After every op: what the scheduler holds (queued plus waiting to be taken) is exactly what
/// the host is still owed.
fn continue_after_op(s: &Sched, ledger: &Ledger) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        s.queue().len() + s.pending_returns(),
        ledger.live.len(),
        "queued {} + pending {} != owed {}",
        s.queue().len(),
        s.pending_returns(),
        ledger.live.len()
    );
    Ok(())
}

// ===== eviction targets =====

#[derive(Debug, Clone)]
enum EvOp {
    Push { tenant: u8, cost: u32 },
    Pop,
    SetWeight { tenant: u8, weight: u32 },
    ClearWeight { tenant: u8 },
}

fn ev_op() -> impl Strategy<Value = EvOp> {
    prop_oneof![
        12 => (0..TENANTS, prop_oneof![3 => Just(1u32), 2 => 2..=6u32])
            .prop_map(|(tenant, cost)| EvOp::Push { tenant, cost }),
        3 => Just(EvOp::Pop),
        1 => (0..TENANTS, 1..=5u32).prop_map(|(tenant, weight)| EvOp::SetWeight { tenant, weight }),
        1 => (0..TENANTS).prop_map(|tenant| EvOp::ClearWeight { tenant }),
    ]
}

/// `a_q / a_w` compared with `b_q / b_w`, exactly.
fn cmp_ratio(a: (u64, u64), b: (u64, u64)) -> std::cmp::Ordering {
    (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn eviction_hits_most_over_share(
        cap_items in prop::option::of(2..=10u64),
        cap_cost in prop::option::of(4..=30u64),
        weights0 in prop::collection::vec(1..=4u32, TENANTS as usize),
        ops in prop::collection::vec(ev_op(), 1..150),
    ) {
        let cap_items = if cap_items.is_none() && cap_cost.is_none() { Some(6) } else { cap_items };
        let cap = capacity(cap_items, cap_cost);
        let cfg = SchedulerConfig::new()
            .with_capacity(cap)
            .with_shed_policy(ShedPolicy::EvictOverShare);
        let mut s: Sched = Scheduler::with_clock(cfg, ManualClock::new());
        let mut weights: HashMap<u8, u64> = HashMap::new();
        for (t, &w) in weights0.iter().enumerate() {
            if w != 1 {
                s.set_weight(t as u8, nz(w));
                weights.insert(t as u8, u64::from(w));
            }
        }
        let mut fifo: Vec<VecDeque<(u64, u64)>> = vec![VecDeque::new(); TENANTS as usize];
        let mut owner: HashMap<u64, u8> = HashMap::new();
        let mut next_id = 0u64;

        for op in ops {
            match op {
                EvOp::Push { tenant: p, cost } => {
                    let c = u64::from(cost);
                    let w = |t: u8| weights.get(&t).copied().unwrap_or(1);
                    let q = |t: u8| fifo[t as usize].iter().map(|&(_, c)| c).sum::<u64>();
                    let n = |t: u8| fifo[t as usize].len() as u64;
                    let total_len: u64 = (0..TENANTS).map(n).sum();
                    let total_cost: u64 = (0..TENANTS).map(q).sum();
                    prop_assert_eq!(total_len, s.queue().len() as u64);
                    prop_assert_eq!(total_cost, s.queue().queued_cost());
                    let need_items = cap.max_items().map_or(0, |m| (total_len + 1).saturating_sub(m));
                    let need_cost = cap.max_cost().map_or(0, |m| (total_cost + c).saturating_sub(m));
                    let short = need_items > 0 || need_cost > 0;
                    // The largest queued_cost / weight among the other backlogged tenants.
                    let others: Vec<u8> = (0..TENANTS).filter(|&t| t != p && n(t) > 0).collect();
                    let max = others.iter().map(|&t| (q(t), w(t))).max_by(|&a, &b| cmp_ratio(a, b));
                    let newcomer = (q(p) + c, w(p));
                    let can_make_room = |t: u8| n(t) >= need_items && q(t) >= need_cost;

                    let id = next_id;
                    next_id += 1;
                    match s.try_push_with(p, id, PushOptions::new().with_cost(cost)) {
                        Ok(()) => {
                            // No deadlines and no queue-delay target here: whatever comes
                            // back was evicted by this push.
                            let ev: Vec<u64> = s
                                .take_returned()
                                .into_iter()
                                .map(|r| {
                                    assert_eq!(r.reason(), RejectReason::Evicted);
                                    r.into_inner()
                                })
                                .collect();
                            if !short {
                                prop_assert!(ev.is_empty(), "evicted {ev:?} with room to spare");
                            } else {
                                prop_assert!(!ev.is_empty(), "admitted over capacity without evicting");
                                let v = owner[&ev[0]];
                                prop_assert!(ev.iter().all(|e| owner[e] == v), "evicted from several tenants: {ev:?}");
                                prop_assert_ne!(v, p, "evicted from the pusher");
                                let max = max.expect("a victim exists, so some other tenant is backlogged");
                                prop_assert_eq!(
                                    cmp_ratio((q(v), w(v)), max),
                                    std::cmp::Ordering::Equal,
                                    "victim {} at {}/{} but the most over share is {}/{}",
                                    v, q(v), w(v), max.0, max.1
                                );
                                prop_assert_eq!(
                                    cmp_ratio((q(v), w(v)), newcomer),
                                    std::cmp::Ordering::Greater,
                                    "victim {} at {}/{} not further over than the newcomer's {}/{}",
                                    v, q(v), w(v), newcomer.0, newcomer.1
                                );
                                // The oldest items, and no more than needed.
                                let head: Vec<u64> = fifo[v as usize].iter().take(ev.len()).map(|&(id, _)| id).collect();
                                prop_assert_eq!(&ev, &head, "not the oldest items of tenant {}", v);
                                let freed = |k: usize| -> (u64, u64) {
                                    (k as u64, fifo[v as usize].iter().take(k).map(|&(_, c)| c).sum())
                                };
                                let (fi, fc) = freed(ev.len());
                                prop_assert!(fi >= need_items && fc >= need_cost);
                                let (pi, pc) = freed(ev.len() - 1);
                                prop_assert!(pi < need_items || pc < need_cost, "evicted more than needed");
                                for _ in 0..ev.len() {
                                    let (e, _) = fifo[v as usize].pop_front().expect("checked above");
                                    owner.remove(&e);
                                }
                            }
                            fifo[p as usize].push_back((id, c));
                            owner.insert(id, p);
                        }
                        Err(e) => {
                            let reason = e.reason();
                            if let Some(m) = cap.max_cost().filter(|&m| c > m) {
                                prop_assert_eq!(reason, RejectReason::TooLarge { cost: c, max: m });
                                continue;
                            }
                            prop_assert!(matches!(reason, RejectReason::CapacityFull { .. }), "{reason:?}");
                            prop_assert!(short, "refused with room to spare: {reason:?}");
                            if let Some(max) = max {
                                let tied: Vec<u8> = others
                                    .iter()
                                    .copied()
                                    .filter(|&t| cmp_ratio((q(t), w(t)), max).is_eq())
                                    .collect();
                                prop_assert!(
                                    !(cmp_ratio(max, newcomer).is_gt() && tied.iter().all(|&t| can_make_room(t))),
                                    "refused although tenant(s) {tied:?} at {}/{} are further over than the \
                                     newcomer's {}/{} and can make the room ({need_items} items, cost {need_cost})",
                                    max.0, max.1, newcomer.0, newcomer.1
                                );
                            }
                        }
                    }
                }
                EvOp::Pop => match s.pop() {
                    Some(id) => {
                        let t = owner.remove(&id).expect("popped an item the model does not hold");
                        let head = fifo[t as usize].pop_front().map(|(id, _)| id);
                        prop_assert_eq!(head, Some(id), "per-tenant FIFO broken");
                    }
                    None => prop_assert!(owner.is_empty()),
                },
                EvOp::SetWeight { tenant, weight } => {
                    s.set_weight(tenant, nz(weight));
                    weights.insert(tenant, u64::from(weight));
                }
                EvOp::ClearWeight { tenant } => {
                    s.clear_weight(&tenant);
                    weights.remove(&tenant);
                }
            }
        }
    }
}
