//! Per-(tenant, class) rate limits and class leases: a class quota refuses with a retry time
//! and charges nothing else, the tenant quota is checked first and a later refusal charges
//! neither quota, class rate state survives the tenant going idle, limits are cost-weighted
//! and never admit more than the GCRA envelope, an uncommitted permit charges no class quota;
//! leases release class slots exactly once (also when a worker panics), and the shared handle
//! pushes into classes and reports class rate limits.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use fairshare::{
    ClassSpec, ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig,
    SharedScheduler,
    config::{Quota, TenantLimits},
};

use common::classes::{
    API, api, class_if, classes, cls, manual, per_second, rate_scheduler, shared,
};
use common::nz;

#[test]
fn class_rate_limit_refuses_with_retry_at_and_does_not_charge_the_tenant_quota() {
    let (mut s, clock) = rate_scheduler(Some(per_second(10))); // 1 per 100 ms, burst 10
    s.try_push_with(1, 0, api()).unwrap();
    s.try_push_with(1, 1, api()).unwrap();
    let e = s.try_push_with(1, 2, api()).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_millis(500)
        }
    );
    assert_eq!(e.reason().retry_at(), Some(Nanos::from_millis(500)));
    assert!(e.is_retryable());
    assert_eq!(e.into_inner(), 2);
    // More refusals in the class: still nothing charged to the tenant's own quota.
    for i in 0..5 {
        assert!(matches!(
            s.try_push_with(1, 100 + i, api()).unwrap_err().reason(),
            RejectReason::ClassRateLimited { .. }
        ));
    }
    // The tenant's own quota spent 2 of 10: exactly 8 more pass in another class.
    for i in 0..8 {
        s.try_push_with(1, 10 + i, PushOptions::new())
            .unwrap_or_else(|e| {
                panic!(
                    "push {i}: {:?} (the class refusals were charged)",
                    e.reason()
                )
            });
    }
    assert!(matches!(
        s.try_push_with(1, 99, PushOptions::new())
            .unwrap_err()
            .reason(),
        RejectReason::RateLimited { .. }
    ));
    // Another tenant has its own allowance in the class.
    s.try_push_with(2, 20, api()).unwrap();
    s.try_push_with(2, 21, api()).unwrap();
    assert!(s.try_push_with(2, 22, api()).is_err());
    // The retry time is exact: 1 ms early is still refused, at retry_at it passes.
    clock.advance(Duration::from_millis(499));
    let e = s.try_push_with(1, 3, api()).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_millis(500)
        }
    );
    clock.advance(Duration::from_millis(1));
    s.try_push_with(1, 3, api()).unwrap();
    assert_eq!(s.queue().tenant_class_len(&1, API), 3);
}

#[test]
fn tenant_quota_is_checked_first_and_its_refusal_charges_no_class_quota() {
    // Own quota: 1 per 250 ms, burst 1. Class api: 1 per 500 ms, burst 2.
    let own = per_second(4).allow_burst(nz(1));
    let (mut s, clock) = rate_scheduler(Some(own));
    s.try_push_with(1, 0, api()).unwrap(); // own TAT 250 ms, class TAT 500 ms
    // The own quota refuses twice; the class would have allowed these.
    for i in 1..3 {
        let e = s.try_push_with(1, i, api()).unwrap_err();
        assert_eq!(
            e.reason(),
            RejectReason::RateLimited {
                retry_at: Nanos::from_millis(250)
            }
        );
    }
    // At 250 ms the own quota allows one more; the class allows it only if the two refusals
    // charged it nothing (class TAT 500 + 500 - 1000 <= 250; one charge would make it 500).
    clock.advance(Duration::from_millis(250));
    s.try_push_with(1, 3, api()).unwrap_or_else(|e| {
        panic!(
            "refused with {:?}: an own-quota refusal charged the class",
            e.reason()
        )
    });
    // Now both would refuse (own TAT 500, class TAT 1000): the tenant's own is reported.
    let e = s.try_push_with(1, 4, api()).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::RateLimited {
            retry_at: Nanos::from_millis(500)
        }
    );
}

#[test]
fn a_refusal_later_in_the_pipeline_charges_neither_quota() {
    let tl = TenantLimits::new()
        .with_max_items(1)
        .with_quota(per_second(3).allow_burst(nz(2)));
    let (mut s, _clock) = manual(SchedulerConfig::new().with_tenant_limits(tl));
    s.set_classes(classes([
        ClassSpec::new("bulk"),
        ClassSpec::new("api").with_tenant_quota(Some(per_second(2))),
    ]))
    .unwrap();
    s.try_push_with(1, 0, api()).unwrap(); // own: 1 of 2 left, class: 1 of 2 left
    for i in 0..4 {
        let e = s.try_push_with(1, 10 + i, api()).unwrap_err();
        assert!(
            matches!(e.reason(), RejectReason::TenantFull { .. }),
            "{:?}",
            e.reason()
        );
    }
    assert_eq!(s.pop(), Some(0));
    // Neither quota was charged by the TenantFull refusals: one more passes...
    s.try_push_with(1, 1, api()).unwrap_or_else(|e| {
        panic!(
            "refused with {:?}: a TenantFull refusal was charged",
            e.reason()
        )
    });
    assert_eq!(s.pop(), Some(1));
    // ...and then both are exhausted (own burst 2, class burst 2).
    assert!(s.try_push_with(1, 2, api()).is_err());
}

#[test]
fn class_rate_state_survives_the_tenant_going_idle() {
    let (mut s, clock) = rate_scheduler(None);
    s.try_push_with(7, 0, api()).unwrap();
    s.try_push_with(7, 1, api()).unwrap();
    assert_eq!(s.pop(), Some(0));
    assert_eq!(s.pop(), Some(1));
    assert_eq!(s.queue().tenant_len(&7), 0);
    // Nothing queued or in flight for tenant 7, but its class allowance is spent.
    let e = s.try_push_with(7, 2, api()).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_millis(500)
        }
    );
    // Work in another class is not limited by it.
    s.try_push_with(7, 3, PushOptions::new()).unwrap();
    clock.advance(Duration::from_millis(500));
    s.try_push_with(7, 4, api()).unwrap();
}

#[test]
fn class_rate_limit_is_cost_weighted_and_never_admits_more_than_its_burst() {
    let (mut s, clock) = rate_scheduler(None);
    let e = s.try_push_with(1, 0, api().with_cost(3)).unwrap_err();
    assert_eq!(e.reason(), RejectReason::TooLarge { cost: 3, max: 2 });
    assert!(!e.is_retryable());
    s.try_push_with(1, 1, api().with_cost(2)).unwrap();
    let e = s.try_push_with(1, 2, api().with_cost(1)).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_millis(500)
        }
    );
    clock.advance(Duration::from_millis(500));
    s.try_push_with(1, 2, api().with_cost(1)).unwrap();
    // TAT 1500 ms now: cost 2 fits a burst of 2 once 1500 + 2·500 - 2·500 = 1500 ms.
    let e = s.try_push_with(1, 3, api().with_cost(2)).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_millis(1_500)
        }
    );
}

#[test]
fn a_reservation_permit_dropped_uncommitted_charges_no_class_quota() {
    let (mut s, _) = rate_scheduler(None);
    for _ in 0..3 {
        let p = s.try_reserve(1, api()).unwrap();
        drop(p);
    }
    s.try_reserve(1, api()).unwrap().commit(0);
    s.try_push_with(1, 1, api()).unwrap();
    assert!(matches!(
        s.try_push_with(1, 2, api()).unwrap_err().reason(),
        RejectReason::ClassRateLimited { .. }
    ));
    assert_eq!(s.queue().class_len(API), 2);
}

#[test]
fn leases_release_class_slots_exactly_once() {
    let h = shared(4);
    for i in 0..6 {
        h.try_push_with(1, 100 + i, PushOptions::new().with_class(cls(1)))
            .unwrap();
        h.try_push_with(2, i, PushOptions::new().with_class(cls(0)))
            .unwrap();
    }
    let jobs: Vec<_> = std::iter::from_fn(|| h.try_dispatch()).collect();
    assert_eq!(jobs.len(), 4);
    assert_eq!((class_if(&h, 0), class_if(&h, 1)), (2, 2));
    let mut jobs = jobs.into_iter();
    // complete: exactly one slot back
    let j = jobs.next().unwrap();
    let c = if j.item >= 100 { 1 } else { 0 };
    j.lease.complete(1);
    assert_eq!(class_if(&h, c), 1);
    // drop: exactly one slot back
    let j = jobs.next().unwrap();
    let c2 = if j.item >= 100 { 1 } else { 0 };
    let before = class_if(&h, c2);
    drop(j);
    assert_eq!(class_if(&h, c2), before - 1);
    // panic while holding a lease: released during unwinding, exactly once
    let total_before = h.with_scheduler(|s| s.queue().total_in_flight());
    let held: Vec<_> = jobs.collect();
    let (b_if, s_if) = (class_if(&h, 1), class_if(&h, 0));
    let h2 = h.clone();
    let r = catch_unwind(AssertUnwindSafe(move || {
        let job = h2.try_dispatch().expect("two slots are free");
        let c = if job.item >= 100 { 1 } else { 0 };
        assert_eq!(
            h2.with_scheduler(|s| s.queue().total_in_flight()),
            total_before + 1
        );
        panic!("worker crashed holding a class-{c} lease");
    }));
    assert!(r.is_err());
    assert_eq!(
        h.with_scheduler(|s| s.queue().total_in_flight()),
        total_before
    );
    assert_eq!((class_if(&h, 1), class_if(&h, 0)), (b_if, s_if));
    // release the rest; everything back to zero and nothing released twice
    for j in held {
        drop(j);
    }
    assert_eq!((class_if(&h, 0), class_if(&h, 1)), (0, 0));
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    // The freed slots are usable: the pool fills again, ceiling and reservation intact.
    let again: Vec<_> = std::iter::from_fn(|| h.try_dispatch()).collect();
    assert_eq!(again.len(), 4);
    assert!(class_if(&h, 1) <= 2, "bulk above its 50% ceiling");
    drop(again);
    assert_eq!((class_if(&h, 0), class_if(&h, 1)), (0, 0));
}

#[test]
fn a_panicking_worker_releases_its_class_slot_for_the_next_one() {
    let h = shared(2);
    for i in 0..4 {
        h.try_push_with(1, 100 + i, PushOptions::new().with_class(cls(1)))
            .unwrap();
    }
    // bulk's ceiling is 1 of 2 slots
    let first = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none(), "bulk at its ceiling");
    let h2 = h.clone();
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _job = first;
        let _ = &h2;
        panic!("worker crashed");
    }));
    assert!(r.is_err());
    assert_eq!(class_if(&h, 1), 0);
    let next = h.try_dispatch().expect("the slot came back");
    assert_eq!(next.item, 101);
    assert_eq!(class_if(&h, 1), 1);
    next.lease.complete(5);
    assert_eq!(class_if(&h, 1), 0);
    let counters = h.with_scheduler(|s| s.queue().class_counters(cls(1)).unwrap());
    assert_eq!((counters.pushed, counters.dispatched), (4, 2));
}

#[test]
fn shared_handle_pushes_into_classes_and_reports_class_rate_limits() {
    let clock = ManualClock::new();
    let s = Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    let h: SharedScheduler<u8, u32, ManualClock> = SharedScheduler::from_scheduler(s);
    h.with_scheduler(|s| {
        s.set_classes(classes([
            ClassSpec::new("bulk"),
            ClassSpec::new("api").with_tenant_quota(Some(Quota::per_second(NonZeroU32::MIN))),
        ]))
    })
    .unwrap();
    h.try_push_with(1, 0, api()).unwrap();
    let e = h.try_push_with(1, 1, api()).unwrap_err();
    assert_eq!(
        e.reason(),
        RejectReason::ClassRateLimited {
            class: API,
            retry_at: Nanos::from_secs(1)
        }
    );
    assert_eq!(e.into_inner(), 1);
    clock.advance(Duration::from_secs(1));
    h.try_push_with(1, 1, api()).unwrap();
    assert_eq!(h.with_scheduler(|s| s.queue().class_len(API)), 2);
}
