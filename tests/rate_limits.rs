//! Per-tenant rate limits (GCRA) in `Scheduler`: a rate-limited refusal carries the exact
//! time a retry succeeds, budget comes back when items are refunded, purged or retained out,
//! a clock that steps back counts as no time passed, and a tenant whose limit has recovered is
//! forgotten (whatever order tenants recover in) while one still recovering is remembered.
//! All time comes from a `ManualClock`.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use fairshare::{
    ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig,
    config::{QueueDelay, Quota, TenantLimits},
};

use common::nz;
use common::scheduler::{Sched, admitted, cost, limits_with_quota, ms, pop_all, refused, sched};

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

/// A tenant with a long recovery no longer holds up forgetting everyone else.
#[test]
fn recovered_tenants_are_forgotten_whatever_their_order() {
    let clock = ManualClock::new();
    let defaults = TenantLimits::new().with_quota(Quota::per_second(nz(10)));
    let mut s: Scheduler<u32, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(defaults),
        clock.clone(),
    );
    // Tenant 0 drains an hour-long burst: it recovers in an hour.
    s.set_limits(0, TenantLimits::new().with_quota(Quota::per_hour(nz(3600))));
    for i in 0..3600 {
        s.try_push(0, i).unwrap();
    }
    while s.pop().is_some() {}
    s.clear_limits(&0);
    s.set_limits(0, TenantLimits::new().with_quota(Quota::per_hour(nz(3600))));
    // A thousand tenants push once and are served; each recovers within 100 ms.
    for k in 1..=1000 {
        s.try_push(k, k).unwrap();
    }
    while s.pop().is_some() {}
    clock.advance(Duration::from_secs(60));
    // Later pushes sweep a few recovered tenants each.
    for i in 0..300 {
        s.try_push(5000, i).unwrap();
        s.pop();
        clock.advance(Duration::from_millis(200));
    }
    let known = s.queue().known_tenants();
    assert!(known <= 3, "{known} tenants still known");
}
