#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Scenario tests of the admission pipeline in front of the fair queue (`Scheduler`): the order
//! of the checks, the reason each refusal carries, rate-limit refunds, tenant caps, global
//! capacity with both shedding policies, deadlines, the queue-delay target, permits, a clock
//! that steps back, and forgetting tenants whose rate limit recovered. All time comes from a
//! `ManualClock`.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::{
    BlockReason, ClassSpec, Classes, Limit, ManualClock, Nanos, PushOptions, RejectReason,
    Rejected, Scheduler, SchedulerConfig,
    config::{Capacity, QueueDelay, Quota, ShedPolicy, TenantLimits},
};

type Sched<K = &'static str> = Scheduler<K, u32, ManualClock>;

#[track_caller]
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test passed a zero where a non-zero value is required")
}

/// `rate` units per second with a burst of `burst`.
fn quota(rate: u32, burst: u32) -> Quota {
    Quota::per_second(nz(rate)).allow_burst(nz(burst))
}

fn limits_with_quota(rate: u32, burst: u32) -> TenantLimits {
    TenantLimits::new().with_quota(quota(rate, burst))
}

fn sched<K: std::hash::Hash + Eq + Clone>(
    config: SchedulerConfig,
) -> (Scheduler<K, u32, ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (Scheduler::with_clock(config, clock.clone()), clock)
}

fn cost(c: u32) -> PushOptions {
    PushOptions::new().with_cost(c)
}

/// Runs one push on `s`, asserting the item was admitted and nothing was evicted to make room
/// for it.
#[track_caller]
fn admitted<K, T>(
    s: &mut Scheduler<K, T, ManualClock>,
    push: impl FnOnce(&mut Scheduler<K, T, ManualClock>) -> Result<(), Rejected<T>>,
) where
    K: Hash + Eq + Clone,
{
    let evicted_before = s.counters().evicted;
    match push(s) {
        Ok(()) => assert_eq!(s.counters().evicted, evicted_before, "unexpected evictions"),
        Err(e) => panic!("expected admission, got refusal: {}", e.reason()),
    }
}

/// Unwraps a refusal: the reason and the item handed back.
#[track_caller]
fn refused<T>(r: Result<(), Rejected<T>>) -> (T, RejectReason) {
    match r {
        Ok(()) => panic!("expected a refusal, the item was admitted"),
        Err(e) => e.into_parts(),
    }
}

/// Runs one push on `s`, asserting the item was admitted, and returns the items evicted to
/// make room for it (handed back by `take_returned`), with their reasons.
#[track_caller]
fn evicted<K, T>(
    s: &mut Scheduler<K, T, ManualClock>,
    push: impl FnOnce(&mut Scheduler<K, T, ManualClock>) -> Result<(), Rejected<T>>,
) -> Vec<(T, RejectReason)>
where
    K: Hash + Eq + Clone,
{
    assert_eq!(
        s.pending_returns(),
        0,
        "items handed back before the push were not taken"
    );
    let evicted_before = s.counters().evicted;
    if let Err(e) = push(s) {
        panic!("expected admission, got refusal: {}", e.reason());
    }
    let out: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    assert!(
        out.iter().all(|(_, r)| *r == RejectReason::Evicted),
        "only evictions come back from a push: {:?}",
        out.iter().map(|(_, r)| r).collect::<Vec<_>>()
    );
    assert_eq!(
        s.counters().evicted - evicted_before,
        out.len() as u64,
        "every eviction comes back"
    );
    out
}

fn pop_all<K: std::hash::Hash + Eq + Clone>(s: &mut Scheduler<K, u32, ManualClock>) -> Vec<u32> {
    std::iter::from_fn(|| s.pop()).collect()
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}

// ===== check order: blocked, zero cost =====

#[test]
fn blocked_is_refused_first_even_when_rate_limited() {
    let cfg = SchedulerConfig::new()
        .with_tenant_limits(limits_with_quota(1, 1).with_max_items(1).with_max_cost(1));
    let (mut s, clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    // Rate-limited, item cap reached, cost cap reached: all at once.
    let (_, r) = refused(s.try_push("a", 2));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");

    s.block("a", BlockReason::Abuse);
    let (item, r) = refused(s.try_push("a", 3));
    assert_eq!(item, 3);
    assert_eq!(
        r,
        RejectReason::Blocked {
            reason: BlockReason::Abuse
        }
    );
    assert!(!r.is_retryable());
    assert_eq!(r.retry_at(), None);
    // Even an item above the burst and the cost cap: blocked is named first.
    let (_, r) = refused(s.try_push_with("a", 4, cost(5)));
    assert_eq!(
        r,
        RejectReason::Blocked {
            reason: BlockReason::Abuse
        }
    );
    assert_eq!(s.counters().blocked, 2);

    // The blocked refusals charged nothing: once unblocked and recovered, one push fits.
    assert_eq!(s.unblock(&"a"), Some(BlockReason::Abuse));
    assert_eq!(pop_all(&mut s), [1]);
    clock.set(Nanos::from_secs(1));
    admitted(&mut s, |s| s.try_push("a", 5));
    assert_eq!(s.queue().tenant_len(&"a"), 1);
}

#[test]
fn blocked_is_refused_before_zero_cost() {
    // The rustdoc lists "blocked" as check 1 and "zero cost" as check 2.
    let (mut s, _clock): (Sched, _) = sched(SchedulerConfig::new());
    s.block("a", BlockReason::Billing);
    let (item, r) = refused(s.try_push_with("a", 7, cost(0)));
    assert_eq!(item, 7);
    assert_eq!(
        r,
        RejectReason::Blocked {
            reason: BlockReason::Billing
        }
    );
}

#[test]
fn zero_cost_is_refused_and_charges_nothing() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 1));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let (item, r) = refused(s.try_push_with("a", 9, cost(0)));
    assert_eq!((item, r), (9, RejectReason::ZeroCost));
    assert!(!r.is_retryable());
    assert_eq!(
        s.queue().known_tenants(),
        0,
        "a refusal leaves no tenant state"
    );
    let err = s.try_reserve("a", cost(0)).unwrap_err();
    assert_eq!(err, RejectReason::ZeroCost);
    // The whole burst is still there.
    admitted(&mut s, |s| s.try_push("a", 1));
    assert_eq!(s.counters().other, 2);
    assert_eq!(s.counters().admitted, 1);
}

// ===== never admissible: TooLarge =====

#[test]
fn cost_above_burst_is_too_large_and_not_retryable() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(10, 3));
    let (mut s, clock): (Sched, _) = sched(cfg);
    let (item, r) = refused(s.try_push_with("a", 1, cost(4)));
    assert_eq!(item, 1);
    assert_eq!(r, RejectReason::TooLarge { cost: 4, max: 3 });
    assert!(!r.is_retryable());
    assert_eq!(r.retry_at(), None);
    // Never: not after any amount of time either.
    clock.set(Nanos::from_secs(3600));
    let (_, r) = refused(s.try_push_with("a", 2, cost(4)));
    assert_eq!(r, RejectReason::TooLarge { cost: 4, max: 3 });
    // It charged nothing: a full burst still fits at once.
    admitted(&mut s, |s| s.try_push_with("a", 3, cost(3)));
    assert_eq!(s.counters().too_large, 2);
}

#[test]
fn cost_above_tenant_cost_cap_is_too_large() {
    let cfg = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_cost(5));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let (_, r) = refused(s.try_push_with("a", 1, cost(6)));
    assert_eq!(r, RejectReason::TooLarge { cost: 6, max: 5 });
    assert!(!r.is_retryable());
    // The same cap, merely full, is "not now".
    admitted(&mut s, |s| s.try_push_with("a", 2, cost(4)));
    let (_, r) = refused(s.try_push_with("a", 3, cost(2)));
    assert_eq!(
        r,
        RejectReason::TenantFull {
            limit: Limit::Cost(5)
        }
    );
    assert!(r.is_retryable());
}

#[test]
fn cost_above_global_cost_cap_is_too_large() {
    let cfg = SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(10));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let (_, r) = refused(s.try_push_with("a", 1, cost(11)));
    assert_eq!(r, RejectReason::TooLarge { cost: 11, max: 10 });
    assert!(!r.is_retryable());
    admitted(&mut s, |s| s.try_push_with("a", 2, cost(10)));
    let (_, r) = refused(s.try_push_with("b", 3, cost(1)));
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Cost(10)
        }
    );
    assert!(r.is_retryable());
}

#[test]
fn never_admissible_is_not_reported_as_rate_limited() {
    // Cost 4 fits the burst (5) but never the tenant's cost cap (3). A RateLimited answer
    // promises "a retry at or after retry_at can succeed", which is false for this item.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 5).with_max_cost(3));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push_with("a", 1, cost(3)));
    assert_eq!(pop_all(&mut s), [1]);
    admitted(&mut s, |s| s.try_push_with("a", 2, cost(2)));
    assert_eq!(pop_all(&mut s), [2]);
    let (_, r) = refused(s.try_push_with("a", 3, cost(4)));
    assert_eq!(r, RejectReason::TooLarge { cost: 4, max: 3 });
}

#[test]
fn never_admissible_is_not_reported_as_tenant_full() {
    // Cost 11 can never fit the global cost cap (10); TenantFull would say "retry later".
    let cfg = SchedulerConfig::new()
        .with_tenant_limits(TenantLimits::new().with_max_items(1))
        .with_capacity(Capacity::new().with_max_cost(10));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    let (_, r) = refused(s.try_push_with("a", 2, cost(11)));
    assert_eq!(r, RejectReason::TooLarge { cost: 11, max: 10 });
}

#[test]
fn a_tenant_override_sees_a_capacity_set_after_it() {
    // The check keeps each tenant's limits pre-folded with the global capacity; a later
    // `reconfigure` must refold the overrides, not only the defaults.
    let (mut s, _clock): (Sched, _) = sched(SchedulerConfig::new());
    s.set_limits("a", TenantLimits::new().with_max_items(5));
    admitted(&mut s, |s| s.try_push_with("a", 1, cost(20)));
    s.reconfigure(SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(10)));
    let (_, r) = refused(s.try_push_with("a", 2, cost(11)));
    assert_eq!(r, RejectReason::TooLarge { cost: 11, max: 10 });
    let (_, r) = refused(s.try_push_with("b", 3, cost(11)));
    assert_eq!(r, RejectReason::TooLarge { cost: 11, max: 10 });
    // Loosened again: the same cost fits (20 queued + 11 <= 40).
    s.reconfigure(SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(40)));
    admitted(&mut s, |s| s.try_push_with("a", 4, cost(11)));
    assert_eq!(s.limits(&"a"), TenantLimits::new().with_max_items(5));
}

#[test]
fn too_large_names_the_first_limit_in_order_not_the_tightest() {
    // Burst 10 comes before the cost cap 5 in the documented order; cost 12 exceeds both.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(10, 10).with_max_cost(5));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let (_, r) = refused(s.try_push_with("a", 1, cost(12)));
    assert_eq!(r, RejectReason::TooLarge { cost: 12, max: 10 });
    let (_, r) = refused(s.try_push_with("a", 2, cost(7)));
    assert_eq!(r, RejectReason::TooLarge { cost: 7, max: 5 });
}

// ===== rate limit =====

#[test]
fn rate_limited_carries_retry_at_and_a_push_exactly_then_succeeds() {
    // One unit every 100 ms, two at once.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(10, 2));
    let (mut s, clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    admitted(&mut s, |s| s.try_push("a", 2));
    let (item, r) = refused(s.try_push("a", 3));
    assert_eq!(item, 3);
    assert_eq!(r, RejectReason::RateLimited { retry_at: ms(100) });
    assert_eq!(r.retry_at(), Some(ms(100)));
    assert!(r.is_retryable());
    // Other tenants have their own budget.
    admitted(&mut s, |s| s.try_push("b", 10));

    clock.set(ms(100) - Nanos::new(1));
    let (_, r) = refused(s.try_push("a", 3));
    assert_eq!(r, RejectReason::RateLimited { retry_at: ms(100) });
    clock.set(ms(100));
    admitted(&mut s, |s| s.try_push("a", 3));

    // Cost-weighted: at 100 ms the state is 300 ms; cost 2 may pass at 300 + 100 - 100 ms.
    let (_, r) = refused(s.try_push_with("a", 4, cost(2)));
    assert_eq!(r, RejectReason::RateLimited { retry_at: ms(300) });
    clock.set(ms(300));
    admitted(&mut s, |s| s.try_push_with("a", 4, cost(2)));
    assert_eq!(s.counters().rate_limited, 3);
    assert_eq!(pop_all(&mut s).len(), 5);
}

#[test]
fn rate_limited_via_reserve_names_the_same_retry_at() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(4, 1));
    let (mut s, clock): (Sched, _) = sched(cfg);
    s.try_reserve("a", PushOptions::new()).unwrap().commit(1);
    let err = s.try_reserve("a", PushOptions::new()).unwrap_err();
    assert_eq!(err, RejectReason::RateLimited { retry_at: ms(250) });
    clock.set(ms(250));
    s.try_reserve("a", PushOptions::new()).unwrap().commit(2);
    assert_eq!(pop_all(&mut s), [1, 2]);
}

#[test]
fn refund_gives_rate_budget_back() {
    // One unit every 500 ms, two at once.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(2, 2));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    admitted(&mut s, |s| s.try_push("a", 2));
    assert_eq!(pop_all(&mut s), [1, 2]);
    let (_, r) = refused(s.try_push("a", 3));
    assert_eq!(r, RejectReason::RateLimited { retry_at: ms(500) });

    s.refund(&"a", 1);
    admitted(&mut s, |s| s.try_push("a", 3));
    let (_, r) = refused(s.try_push("a", 4));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");

    // A refund never gives more than a fresh tenant has: the burst.
    s.refund(&"a", 1_000);
    admitted(&mut s, |s| s.try_push("a", 4));
    admitted(&mut s, |s| s.try_push("a", 5));
    let (_, r) = refused(s.try_push("a", 6));
    assert_eq!(r, RejectReason::RateLimited { retry_at: ms(500) });

    // Refunding an unknown tenant is harmless and creates no state.
    let known = s.queue().known_tenants();
    s.refund(&"nobody", 5);
    assert_eq!(s.queue().known_tenants(), known);
}

#[test]
fn purge_refunds_the_rate_budget_of_purged_items() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 3));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 0));
    admitted(&mut s, |s| s.try_push_with("a", 1, cost(2)));
    let (_, r) = refused(s.try_push("a", 2));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");

    assert_eq!(s.purge(&"a"), [0, 1]);
    assert!(s.queue().is_empty());
    // All three units are back at the same instant.
    admitted(&mut s, |s| s.try_push_with("a", 2, cost(3)));
    assert_eq!(s.purge(&"nobody"), Vec::<u32>::new());
}

#[test]
fn retain_refunds_only_the_cost_it_removed() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 4));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 0));
    admitted(&mut s, |s| s.try_push_with("a", 1, cost(2)));
    admitted(&mut s, |s| s.try_push("a", 2));
    let (_, r) = refused(s.try_push("a", 3));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");

    assert_eq!(s.retain(&"a", |&i| i != 1), [1]);
    assert_eq!(s.queue().tenant_queued_cost(&"a"), 2);
    admitted(&mut s, |s| s.try_push_with("a", 3, cost(2)));
    let (_, r) = refused(s.try_push("a", 4));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");
    // Keeping everything refunds nothing.
    assert_eq!(s.retain(&"a", |_| true), Vec::<u32>::new());
    let (_, r) = refused(s.try_push("a", 4));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");
    assert_eq!(pop_all(&mut s), [0, 2, 3]);
}

// ===== tenant caps =====

#[test]
fn tenant_item_cap_refuses_with_the_items_limit() {
    let cfg = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_items(2));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    admitted(&mut s, |s| s.try_push("a", 2));
    let (item, r) = refused(s.try_push("a", 3));
    assert_eq!(item, 3);
    assert_eq!(
        r,
        RejectReason::TenantFull {
            limit: Limit::Items(2)
        }
    );
    assert!(r.is_retryable());
    assert_eq!(r.retry_at(), None);
    // Only that tenant is full.
    admitted(&mut s, |s| s.try_push("b", 10));
    assert_eq!(s.pop(), Some(1));
    admitted(&mut s, |s| s.try_push("a", 3));
    assert_eq!(s.counters().tenant_full, 1);
    assert_eq!(s.queue().tenant_counters(&"a").map(|c| c.rejected), Some(1));
}

#[test]
fn tenant_cost_cap_refuses_with_the_cost_limit() {
    let cfg = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_cost(10));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push_with("a", 1, cost(6)));
    admitted(&mut s, |s| s.try_push_with("a", 2, cost(4)));
    let (_, r) = refused(s.try_push("a", 3));
    assert_eq!(
        r,
        RejectReason::TenantFull {
            limit: Limit::Cost(10)
        }
    );
    assert_eq!(s.pop(), Some(1));
    admitted(&mut s, |s| s.try_push_with("a", 3, cost(6)));
    assert_eq!(s.queue().tenant_queued_cost(&"a"), 10);
}

#[test]
fn a_refusal_by_a_cap_charges_no_rate_budget() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 2).with_max_items(1));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("a", 1));
    for i in 2..10 {
        let (_, r) = refused(s.try_push("a", i));
        assert_eq!(
            r,
            RejectReason::TenantFull {
                limit: Limit::Items(1)
            }
        );
    }
    assert_eq!(s.pop(), Some(1));
    // The second unit of the burst is still there.
    admitted(&mut s, |s| s.try_push("a", 10));
}

#[test]
fn tenant_override_replaces_the_defaults_and_clear_restores_them() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 1).with_max_items(1));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let vip = TenantLimits::new().with_max_items(3);
    s.set_limits("vip", vip);
    assert_eq!(s.limits(&"vip"), vip);
    assert_eq!(s.limits(&"other"), cfg.tenant_limits());
    // The override has no quota: no rate limit at all, only its own cap.
    for i in 0..3 {
        admitted(&mut s, |s| s.try_push("vip", i));
    }
    let (_, r) = refused(s.try_push("vip", 3));
    assert_eq!(
        r,
        RejectReason::TenantFull {
            limit: Limit::Items(3)
        }
    );
    // Others still get the defaults.
    admitted(&mut s, |s| s.try_push("other", 10));
    let (_, r) = refused(s.try_push("other", 11));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");

    s.clear_limits(&"vip");
    assert_eq!(s.limits(&"vip"), cfg.tenant_limits());
    assert_eq!(s.queue().tenant_len(&"vip"), 3, "queued items stay");
    let (_, r) = refused(s.try_push("vip", 4));
    assert!(
        matches!(
            r,
            RejectReason::TenantFull {
                limit: Limit::Items(1)
            }
        ),
        "{r:?}"
    );
}

// ===== global capacity =====

#[test]
fn capacity_reject_new_refuses_the_newcomer() {
    let cfg = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(3));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push("flood", 1));
    admitted(&mut s, |s| s.try_push("flood", 2));
    admitted(&mut s, |s| s.try_push("b", 3));
    let (item, r) = refused(s.try_push("c", 4));
    assert_eq!(item, 4);
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Items(3)
        }
    );
    assert!(r.is_retryable());
    assert_eq!(s.queue().len(), 3, "nothing evicted");
    assert_eq!(s.pop(), Some(1));
    admitted(&mut s, |s| s.try_push("c", 4));
    assert_eq!(s.counters().capacity_full, 1);
    assert_eq!(s.counters().evicted, 0);
}

#[test]
fn capacity_reject_new_by_cost_names_the_cost_limit_and_charges_nothing() {
    let cfg = SchedulerConfig::new()
        .with_tenant_limits(limits_with_quota(1, 5))
        .with_capacity(Capacity::new().with_max_cost(10));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    s.set_limits("a", TenantLimits::new());
    admitted(&mut s, |s| s.try_push_with("a", 0, cost(6)));
    admitted(&mut s, |s| s.try_push_with("b", 2, cost(3)));
    let (_, r) = refused(s.try_push_with("b", 3, cost(2)));
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Cost(10)
        }
    );
    assert_eq!(s.pop(), Some(0));
    // b's refused push was not charged: 2 units of its burst remain.
    admitted(&mut s, |s| s.try_push_with("b", 3, cost(2)));
    let (_, r) = refused(s.try_push("b", 4));
    assert!(matches!(r, RejectReason::RateLimited { .. }), "{r:?}");
}

#[test]
fn evict_over_share_evicts_the_oldest_items_of_the_most_over_tenant() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(6))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    for i in 0..5 {
        admitted(&mut s, |s| s.try_push("flood", i));
    }
    admitted(&mut s, |s| s.try_push("b", 100));
    let out = evicted(&mut s, |s| s.try_push("c", 200));
    assert_eq!(out, [(0, RejectReason::Evicted)]);
    assert!(RejectReason::Evicted.is_retryable());
    assert_eq!(s.queue().tenant_len(&"flood"), 4);
    assert_eq!(s.queue().tenant_len(&"c"), 1);
    assert_eq!(s.queue().len(), 6);
    let out = evicted(&mut s, |s| s.try_push("b", 101));
    assert_eq!(out, [(1, RejectReason::Evicted)]);
    assert_eq!(s.counters().evicted, 2);
    let mut rest = pop_all(&mut s);
    rest.sort_unstable();
    assert_eq!(rest, [2, 3, 4, 100, 101, 200]);
}

#[test]
fn evict_over_share_evicts_as_many_items_as_the_cost_needs() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_cost(10))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    for i in 0..8 {
        admitted(&mut s, |s| s.try_push("flood", i));
    }
    admitted(&mut s, |s| s.try_push_with("b", 100, cost(2)));
    let out = evicted(&mut s, |s| s.try_push_with("c", 200, cost(3)));
    assert_eq!(
        out,
        [
            (0, RejectReason::Evicted),
            (1, RejectReason::Evicted),
            (2, RejectReason::Evicted)
        ]
    );
    assert_eq!(s.queue().queued_cost(), 10);
    assert_eq!(s.queue().tenant_queued_cost(&"flood"), 5);
}

#[test]
fn evict_over_share_ranks_tenants_by_cost_per_weight() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(7))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    s.set_weight("gold", nz(4));
    for i in 0..4 {
        admitted(&mut s, |s| s.try_push_with("gold", i, cost(2))); // 8 / 4 = 2
    }
    for i in 10..13 {
        admitted(&mut s, |s| s.try_push("free", i)); // 3 / 1 = 3
    }
    let out = evicted(&mut s, |s| s.try_push("new", 20));
    assert_eq!(out, [(10, RejectReason::Evicted)], "free is furthest over");
    // free: 2/1 = 2 ties gold's 8/4 = 2; now either may be picked, but never the pusher.
    let out = evicted(&mut s, |s| s.try_push("new2", 21));
    assert_eq!(out.len(), 1);
    assert!([0, 11].contains(&out[0].0), "{out:?}");
}

#[test]
fn evict_over_share_refuses_the_newcomer_when_its_tenant_would_be_furthest_over() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(4))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    for i in 0..3 {
        admitted(&mut s, |s| s.try_push("flood", i));
    }
    admitted(&mut s, |s| s.try_push("b", 10));
    // The flood would evict from nobody but itself.
    let (item, r) = refused(s.try_push("flood", 3));
    assert_eq!(item, 3);
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Items(4)
        }
    );
    // b at 2 stays under flood's 3: flood pays.
    assert_eq!(
        evicted(&mut s, |s| s.try_push("b", 11)),
        [(0, RejectReason::Evicted)]
    );
    // Now flood 2, b 2: whoever pushes would be at 3 > 2, the furthest over.
    let (_, r) = refused(s.try_push("b", 12));
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Items(4)
        }
    );
    let (_, r) = refused(s.try_push("flood", 4));
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Items(4)
        }
    );
    assert_eq!(s.queue().len(), 4);
    assert_eq!(s.counters().evicted, 1);
    assert_eq!(s.counters().capacity_full, 3);
}

#[test]
fn evict_over_share_refuses_when_the_most_over_tenant_alone_cannot_make_room() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_cost(10))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    s.set_weight("big", nz(10));
    for i in 0..3 {
        admitted(&mut s, |s| s.try_push_with("a", i, cost(2))); // 6 / 1
    }
    admitted(&mut s, |s| s.try_push_with("b", 10, cost(4))); // 4 / 1
    // big would be at 9 / 10, under a's 6, but a holds only 6 of the 9 needed.
    let (_, r) = refused(s.try_push_with("big", 20, cost(9)));
    assert_eq!(
        r,
        RejectReason::CapacityFull {
            limit: Limit::Cost(10)
        }
    );
    assert_eq!(s.queue().len(), 4, "nothing evicted");
    // 6 needed: a alone can make it.
    let out = evicted(&mut s, |s| s.try_push_with("big", 21, cost(6)));
    assert_eq!(out.len(), 3);
    assert_eq!(s.queue().tenant_len(&"a"), 0);
}

// ===== deadlines =====

#[test]
fn an_expired_item_is_never_dispatched_and_comes_back_once() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    admitted(&mut s, |s| {
        s.try_push_with(
            "a",
            1,
            PushOptions::new().with_deadline(Nanos::from_secs(1)),
        )
    });
    admitted(&mut s, |s| s.try_push("a", 2));
    admitted(&mut s, |s| {
        s.try_push_with(
            "b",
            3,
            PushOptions::new().with_deadline(Nanos::from_secs(5)),
        )
    });
    admitted(&mut s, |s| {
        s.try_push_with(
            "b",
            4,
            PushOptions::new().with_deadline(Nanos::from_secs(1)),
        )
    });
    // At the deadline exactly the item is expired.
    clock.set(Nanos::from_secs(1));
    let mut served = Vec::new();
    while let Some(d) = s.dispatch() {
        assert!(s.complete(d.ticket, 1));
        served.push(d.item);
    }
    served.sort_unstable();
    assert_eq!(served, [2, 3]);
    assert_eq!(s.pop(), None);

    let expired: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    let deadline = RejectReason::DeadlineExpired {
        deadline: Nanos::from_secs(1),
    };
    assert_eq!(expired.len(), 2);
    assert!(
        expired.contains(&(1, deadline)) && expired.contains(&(4, deadline)),
        "{expired:?}"
    );
    assert!(!deadline.is_retryable());
    assert!(s.take_returned().is_empty(), "returned only once");
    assert_eq!(s.counters().expired, 2);
    // Item 3 was dispatched before its deadline; it never comes back as expired.
    clock.set(Nanos::from_secs(10));
    assert!(s.take_returned().is_empty());
    assert!(s.queue().is_empty());
}

#[test]
fn take_returned_collects_expired_items_without_any_pop() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    for i in 0..3 {
        admitted(&mut s, |s| {
            s.try_push_with(
                "a",
                i,
                PushOptions::new().with_deadline(ms(10 * u64::from(i + 1))),
            )
        });
    }
    clock.set(ms(20));
    let ids: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_inner)
        .collect();
    assert_eq!(ids, [0, 1]);
    assert_eq!(s.queue().len(), 1);
    assert_eq!(s.pending_returns(), 0);
    assert_eq!(s.pop(), Some(2));
}

#[test]
fn expired_items_found_by_pop_wait_in_pending_returns() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    admitted(&mut s, |s| {
        s.try_push_with("a", 1, PushOptions::new().with_deadline(ms(5)))
    });
    admitted(&mut s, |s| s.try_push("a", 2));
    clock.set(ms(5));
    assert_eq!(s.pop(), Some(2));
    assert_eq!(s.pending_returns(), 1);
    assert_eq!(s.queue().len(), 0);
    let back = s.take_returned();
    assert_eq!(back.len(), 1);
    assert_eq!(s.pending_returns(), 0);
    assert_eq!(back.into_iter().next().map(Rejected::into_inner), Some(1));
}

// ===== queue-delay target =====

#[test]
fn queue_delay_sheds_only_long_waits_after_delay_stayed_above_target_for_an_interval() {
    let target = ms(10);
    let interval = ms(100);
    let cfg = SchedulerConfig::new().with_queue_delay(Some(QueueDelay::new(target, interval)));
    let (mut s, clock): (Sched, _) = sched(cfg);
    for i in 0..20 {
        admitted(&mut s, |s| s.try_push("bulk", i));
    }
    // Above target, but not yet for a whole interval: nothing is shed.
    clock.set(ms(20));
    assert_eq!(s.pop(), Some(0));
    clock.set(ms(119));
    assert_eq!(s.pop(), Some(1));
    assert_eq!(s.pending_returns(), 0);
    assert!(!s.is_shedding());

    // Above target for the whole interval (first seen at 20 ms): the next item is shed.
    clock.set(ms(120));
    assert_eq!(s.pop(), Some(3));
    assert!(s.is_shedding());
    let shed: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    assert_eq!(shed, [(2, RejectReason::QueueDelay { sojourn: ms(120) })]);
    assert!(shed[0].1.is_retryable());
    assert_eq!(s.counters().shed, 1);

    // The rest of the flood goes; a light tenant's short waits are never shed, and the first
    // short wait ends the episode.
    let rest = s.purge(&"bulk");
    assert_eq!(rest.len(), 16);
    clock.set(ms(300));
    admitted(&mut s, |s| s.try_push("light", 100));
    admitted(&mut s, |s| s.try_push("light", 101));
    clock.set(ms(301));
    assert_eq!(s.pop(), Some(100));
    assert!(!s.is_shedding());
    assert_eq!(s.pop(), Some(101));
    assert_eq!(s.pending_returns(), 0);
    assert_eq!(s.counters().shed, 1);
}

#[test]
fn queue_delay_shed_items_have_waited_at_least_the_target() {
    let target = ms(5);
    let interval = ms(50);
    let cfg = SchedulerConfig::new().with_queue_delay(Some(QueueDelay::new(target, interval)));
    let (mut s, clock): (Sched, _) = sched(cfg);
    let mut pushed_at = std::collections::HashMap::new();
    let mut next = 0u32;
    // A flood that arrives faster than it is served, plus a light tenant now and then: over
    // a few seconds some flood items are shed, never a light one. (The controller is global:
    // a short wait of any dispatched item ends an episode, so the light tenant comes less
    // often than once per interval.)
    for step in 0..2_000u64 {
        clock.set(ms(step));
        for _ in 0..2 {
            admitted(&mut s, |s| s.try_push("flood", next));
            pushed_at.insert(next, ms(step));
            next += 1;
        }
        if step % 200 == 0 {
            admitted(&mut s, |s| s.try_push("light", 1_000_000 + next));
            next += 1;
        }
        let _ = s.pop();
        for r in s.take_returned() {
            let (item, reason) = r.into_parts();
            let RejectReason::QueueDelay { sojourn } = reason else {
                panic!("unexpected reason {reason:?}");
            };
            assert!(item < 1_000_000, "a light item ({item}) was shed");
            assert!(sojourn >= target, "shed after {sojourn}");
            assert_eq!(sojourn, ms(step).saturating_since(pushed_at[&item]));
        }
    }
    assert!(s.counters().shed > 0, "a standing flood is shed");
}

// ===== permits =====

#[test]
fn a_dropped_permit_charges_nothing() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 1));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let permit = s.try_reserve("a", cost(1)).unwrap();
    assert_eq!(permit.cost(), 1);
    drop(permit);
    assert_eq!(
        s.queue().known_tenants(),
        0,
        "a reservation leaves no trace"
    );
    assert!(s.queue().is_empty());
    assert_eq!(s.counters().admitted, 0);
    // The whole burst (one unit) is still there, and then it is used up.
    admitted(&mut s, |s| s.try_push("a", 1));
    let (_, r) = refused(s.try_push("a", 2));
    assert_eq!(
        r,
        RejectReason::RateLimited {
            retry_at: Nanos::from_secs(1)
        }
    );
}

#[test]
fn a_permit_that_would_evict_evicts_nothing_when_dropped() {
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(3))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _clock): (Sched, _) = sched(cfg);
    for i in 0..3 {
        admitted(&mut s, |s| s.try_push("flood", i));
    }
    let permit = s.try_reserve("b", PushOptions::new()).unwrap();
    drop(permit);
    assert_eq!(s.queue().tenant_len(&"flood"), 3);
    assert_eq!(s.counters().evicted, 0);
    assert_eq!(
        s.pending_returns(),
        0,
        "a dropped permit hands nothing back"
    );
    s.try_reserve("b", PushOptions::new()).unwrap().commit(10);
    let out: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    assert_eq!(out, [(0, RejectReason::Evicted)]);
    assert_eq!(s.counters().evicted, 1);
    assert_eq!(s.queue().tenant_len(&"flood"), 2);
    assert_eq!(s.queue().tenant_len(&"b"), 1);
}

#[test]
fn a_committed_permit_charges_like_a_push() {
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 2));
    let (mut s, _clock): (Sched, _) = sched(cfg);
    let p = s.try_reserve("a", cost(2)).unwrap();
    assert_eq!(p.cost(), 2);
    p.commit(1);
    assert_eq!(s.counters().evicted, 0);
    assert_eq!(s.pending_returns(), 0, "nothing was evicted for it");
    assert_eq!(s.queue().tenant_queued_cost(&"a"), 2);
    let err = s.try_reserve("a", cost(1)).unwrap_err();
    assert_eq!(
        err,
        RejectReason::RateLimited {
            retry_at: Nanos::from_secs(1)
        }
    );
    assert_eq!(s.counters().admitted, 1);
}

// ===== time =====

#[test]
fn clock_going_backwards_counts_as_no_time_passed() {
    // One unit every 100 ms, one at once.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(10, 1));
    let (mut s, clock): (Sched, _) = sched(cfg);
    clock.set(Nanos::from_secs(10));
    admitted(&mut s, |s| s.try_push("a", 1));
    let retry = Nanos::from_secs(10) + ms(100);

    // Back to 5 s, then forward by 100 ms: still before the retry time as far as the
    // scheduler is concerned.
    clock.set(Nanos::from_secs(5));
    let (_, r) = refused(s.try_push("a", 2));
    assert_eq!(r, RejectReason::RateLimited { retry_at: retry });
    clock.advance(Duration::from_millis(100));
    let (_, r) = refused(s.try_push("a", 2));
    assert_eq!(r, RejectReason::RateLimited { retry_at: retry });

    // An item pushed "at 5.1 s" is really pushed at 10 s: its 7 s deadline has passed, so
    // it can never be met and is refused at the door (never admitted, never charged).
    let (item, r) = refused(s.try_push_with(
        "b",
        3,
        PushOptions::new().with_deadline(Nanos::from_secs(7)),
    ));
    assert_eq!(
        (item, r),
        (
            3,
            RejectReason::DeadlineExpired {
                deadline: Nanos::from_secs(7)
            }
        )
    );
    assert_eq!(s.pop(), Some(1));
    assert_eq!(s.pop(), None);
    assert!(s.take_returned().is_empty());

    clock.set(retry);
    admitted(&mut s, |s| s.try_push("a", 2));
}

#[test]
fn clock_going_backwards_never_makes_negative_waits() {
    let cfg = SchedulerConfig::new().with_queue_delay(Some(QueueDelay::new(ms(1), ms(1))));
    let (mut s, clock): (Sched, _) = sched(cfg);
    clock.set(Nanos::from_secs(10));
    for i in 0..4 {
        admitted(&mut s, |s| s.try_push("a", i));
    }
    clock.set(Nanos::ZERO);
    // No time passed since the pushes: no wait, nothing shed.
    assert_eq!(pop_all(&mut s), [0, 1, 2, 3]);
    assert_eq!(s.pending_returns(), 0);
}

// ===== memory =====

#[test]
fn a_tenant_whose_rate_limit_recovered_is_forgotten_after_later_pushes() {
    // One unit every 100 ms, ten at once.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(10, 10));
    let (mut s, clock): (Sched<u32>, _) = sched(cfg);
    for t in 0..50 {
        admitted(&mut s, |s| s.try_push(t, t));
    }
    assert_eq!(pop_all(&mut s).len(), 50);
    assert!(s.queue().is_empty());
    // Still recovering: remembered.
    assert_eq!(s.queue().known_tenants(), 50);

    clock.set(ms(100));
    let mut pushes = 0;
    while s.queue().known_tenants() > 1 && pushes < 100 {
        clock.advance(Duration::from_millis(100));
        admitted(&mut s, |s| s.try_push(1_000, 0));
        assert_eq!(s.pop(), Some(0));
        pushes += 1;
    }
    assert!(
        s.queue().known_tenants() <= 1,
        "{} tenants still known after {pushes} pushes",
        s.queue().known_tenants()
    );
    assert!(
        pushes <= 14,
        "the sweep is a few tenants per push, took {pushes}"
    );
    // The pusher itself goes too once recovered.
    clock.advance(Duration::from_secs(1));
    admitted(&mut s, |s| s.try_push(2_000, 0));
    assert_eq!(s.pop(), Some(0));
    clock.advance(Duration::from_secs(1));
    admitted(&mut s, |s| s.try_push(3_000, 0));
    assert_eq!(s.pop(), Some(0));
    assert!(
        s.queue().known_tenants() <= 1,
        "{}",
        s.queue().known_tenants()
    );
}

#[test]
fn a_tenant_still_recovering_is_remembered() {
    // One unit a second, two at once.
    let cfg = SchedulerConfig::new().with_tenant_limits(limits_with_quota(1, 2));
    let (mut s, clock): (Sched<u32>, _) = sched(cfg);
    admitted(&mut s, |s| s.try_push(7, 1));
    admitted(&mut s, |s| s.try_push(7, 2));
    assert_eq!(pop_all(&mut s), [1, 2]);
    // Tenant 7 recovers fully at 2 s. Many other pushes run the sweep meanwhile, also past
    // 1 s, when its first unit is back but its state still differs from a fresh tenant's.
    for t in 0..300 {
        clock.advance(Duration::from_millis(4));
        admitted(&mut s, |s| s.try_push(100 + t, 0));
        assert_eq!(s.pop(), Some(0));
        if t == 100 {
            // At 404 ms: nothing is back yet.
            let (_, r) = refused(s.try_push(7, 3));
            assert_eq!(
                r,
                RejectReason::RateLimited {
                    retry_at: Nanos::from_secs(1)
                }
            );
        }
    }
    // At 1.2 s: one unit is back, not two.
    admitted(&mut s, |s| s.try_push(7, 3));
    let (_, r) = refused(s.try_push(7, 4));
    assert_eq!(
        r,
        RejectReason::RateLimited {
            retry_at: Nanos::from_secs(2)
        }
    );
}

#[test]
fn queue_delay_sheds_a_flood_while_a_light_tenant_is_served_promptly() {
    // Target 5 ms over a 50 ms interval. One dispatch every 10 ms; a light tenant pushes one
    // item right before each of its turns, so its items never wait and never count.
    let cfg = SchedulerConfig::new().with_queue_delay(Some(QueueDelay::new(ms(5), ms(50))));
    let (mut s, clock): (Sched, _) = sched(cfg);
    for i in 0..200 {
        admitted(&mut s, |s| s.try_push("flood", i));
    }
    let (mut light_served, mut flood_served) = (0, 0);
    for step in 0..100u32 {
        clock.advance(Duration::from_millis(10));
        admitted(&mut s, |s| s.try_push("light", 1_000 + step));
        // Two dispatch opportunities per step: the light item and one flood item.
        for _ in 0..2 {
            match s.pop() {
                Some(i) if i >= 1_000 => light_served += 1,
                Some(_) => flood_served += 1,
                None => {}
            }
        }
    }
    let shed = s.take_returned();
    assert_eq!(light_served, 100, "no light item is ever shed");
    assert!(
        !shed.is_empty(),
        "the flood's standing queue was never shed"
    );
    for r in &shed {
        assert!(*r.item() < 1_000, "a light item was shed");
        match r.reason() {
            RejectReason::QueueDelay { sojourn } => assert!(sojourn >= ms(5)),
            other => panic!("unexpected reason {other:?}"),
        }
    }
    // Nothing lost: every flood item is served, shed or still queued.
    assert_eq!(
        flood_served + shed.len() + s.queue().tenant_len(&"flood"),
        200
    );
}

#[test]
fn queue_delay_counts_a_standing_queue_per_class() {
    // As above, but the flooding org's own prompt sign-ins (another class) are the light
    // traffic: they are served at once and, having no backlog in their class, neither reset
    // the controller while the org's page flood stands nor are ever shed.
    let cfg = SchedulerConfig::new().with_queue_delay(Some(QueueDelay::new(ms(5), ms(50))));
    let (mut s, clock): (Sched, _) = sched(cfg);
    s.set_classes(
        Classes::new([
            ClassSpec::new("pages"),
            ClassSpec::new("signin").with_priority(1),
        ])
        .unwrap(),
    )
    .unwrap();
    let signin = s.classes().id("signin").unwrap();
    for i in 0..200 {
        admitted(&mut s, |s| s.try_push("org", i));
    }
    let (mut signins, mut pages) = (0, 0);
    for step in 0..100u32 {
        clock.advance(Duration::from_millis(10));
        admitted(&mut s, |s| {
            s.try_push_with("org", 1_000 + step, PushOptions::new().with_class(signin))
        });
        for _ in 0..2 {
            match s.pop() {
                Some(i) if i >= 1_000 => signins += 1,
                Some(_) => pages += 1,
                None => {}
            }
        }
    }
    let shed = s.take_returned();
    assert_eq!(signins, 100, "no sign-in is ever shed");
    assert!(
        !shed.is_empty(),
        "the page flood's standing queue was never shed"
    );
    assert!(shed.iter().all(|r| *r.item() < 1_000), "a sign-in was shed");
    assert_eq!(pages + shed.len() + s.queue().tenant_len(&"org"), 200);
}
