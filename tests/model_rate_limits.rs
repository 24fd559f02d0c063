//! Model-based property tests of per-tenant rate limits (`Scheduler` on a manual clock): the
//! admitted cost in any window of push times stays within
//! `burst + floor(window / replenish_interval)`, and the GCRA agrees with governor's keyed
//! limiter decision for decision, retry time included.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use fairshare::{
    ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig,
    config::{Quota, TenantLimits},
};
use governor::{RateLimiter, clock::FakeRelativeClock};
use proptest::prelude::*;

use common::admission_model::Sched;
use common::{nz, proptest_config};

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
