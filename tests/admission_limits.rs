//! Admission limits of `Scheduler`: the order in which a push is checked (blocked, zero cost,
//! never admissible, tenant caps, global capacity), the reason each refusal names, that a
//! refused item is handed back and charges nothing, per-tenant overrides, zero caps, and
//! reservation permits that charge only when committed. All time comes from a `ManualClock`.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use fairshare::{
    BlockReason, Limit, Nanos, PushOptions, RejectReason, Rejected, Scheduler, SchedulerConfig,
    config::{Capacity, ShedPolicy, TenantLimits},
};

use common::scheduler::{Sched, admitted, cost, limits_with_quota, pop_all, refused, sched};

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

/// A cap of zero can never admit anything, so it is not "retryable".
#[test]
fn zero_caps_are_never_admissible() {
    let cases = [
        SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_items(0)),
        SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_in_flight(0)),
        SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(0)),
    ];
    for cfg in cases {
        let mut s: Scheduler<&str, u32> = Scheduler::new(cfg);
        let err = s.try_push("a", 1).unwrap_err();
        assert_eq!(
            err.reason(),
            RejectReason::TooLarge { cost: 1, max: 0 },
            "{cfg:?}"
        );
        assert!(!err.is_retryable());
        assert!(s.queue().is_empty());
    }
}
