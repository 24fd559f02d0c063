//! Tenant operations reach every class: per-tenant FIFO holds within each class; retain,
//! purge, block, drain and close act on all of a tenant's classes (purge and retain class by
//! class, refunding the class quota too); expired and evicted items leave their class's
//! counts; a class's served cost follows corrections reported after the queue went back to one
//! class.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;

use fairshare::{
    BlockReason, ClassSpec, FairQueue, ManualClock, Nanos, PushOptions, RejectReason, Scheduler,
    SchedulerConfig, Ticket,
    config::{Quota, TenantLimits},
};

use common::classes::{
    class_if, classes, cls, in_class, manual, numbered_classes, push_in, shared,
};
use common::{nz, opts_in};

// ===== per-tenant FIFO, purge / retain / block across classes =====

#[test]
fn per_tenant_fifo_within_each_class() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("a").with_weight(nz(2)),
        ClassSpec::new("b"),
        ClassSpec::new("c")
            .with_priority(1)
            .with_max_in_flight(Some(2)),
    ]))
    .unwrap();
    q.set_in_flight_limit(Some(5));
    let mut next = 0u32;
    let mut expect: Vec<Vec<VecDeque<u32>>> = vec![vec![VecDeque::new(); 3]; 2];
    for round in 0..30 {
        for (ti, t) in ["x", "y"].into_iter().enumerate() {
            let c = (round + ti) % 3;
            push_in(&mut q, t, c, next);
            expect[ti][c].push_back(next);
            next += 1;
        }
    }
    let mut flight: VecDeque<(Ticket, u32)> = VecDeque::new();
    let mut seen = 0;
    while seen < next {
        while let Some(d) = q.dispatch() {
            let ti = if q.key(d.ticket.tenant()) == Some(&"x") {
                0
            } else {
                1
            };
            let c = d.ticket.class().index();
            assert_eq!(
                expect[ti][c].pop_front(),
                Some(d.item),
                "FIFO of tenant {ti} in class {c}"
            );
            seen += 1;
            flight.push_back((d.ticket, d.item));
        }
        let (t, _) = flight.pop_front().expect("work left but nothing in flight");
        assert!(q.complete(t, 1));
    }
    assert!(expect.iter().flatten().all(VecDeque::is_empty));
    for (t, _) in flight {
        assert!(q.complete(t, 1));
    }
}

fn three_class_queue() -> FairQueue<&'static str, u32> {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("a"),
        ClassSpec::new("b"),
        ClassSpec::new("c"),
    ]))
    .unwrap();
    // "x" has items 0..12 spread over all three classes; "y" has 100..104 in class b.
    for i in 0..12 {
        push_in(&mut q, "x", (i % 3) as usize, i);
    }
    for i in 100..104 {
        push_in(&mut q, "y", 1, i);
    }
    q
}

#[test]
fn retain_and_purge_reach_every_class_of_the_tenant() {
    let mut q = three_class_queue();
    // One of x's items is in flight (class a): purge and retain leave it alone.
    q.set_in_flight_limit(None);
    // Three idle-equal classes: ties go to the lowest index, class a, whose head is x's 0.
    let d = q.dispatch().unwrap();
    assert_eq!((d.item, d.ticket.class()), (0, cls(0)));
    let mut removed = q.retain(&"x", |&i| i % 2 == 0);
    removed.sort_unstable();
    assert_eq!(removed, [1, 3, 5, 7, 9, 11]);
    assert_eq!(q.tenant_len(&"x"), 5); // 2, 4, 6, 8, 10
    let per_class: Vec<usize> = (0..3).map(|c| q.tenant_class_len(&"x", cls(c))).collect();
    // a: 0(in flight) 6; b: 4 10; c: 2 8
    assert_eq!(per_class, [1, 2, 2]);
    assert_eq!(q.class_len(cls(1)), 2 + q.tenant_class_len(&"y", cls(1)));
    let mut purged = q.purge(&"x");
    purged.sort_unstable();
    assert_eq!(purged, [2, 4, 6, 8, 10]);
    assert_eq!(q.tenant_len(&"x"), 0);
    for c in 0..3 {
        assert_eq!(q.tenant_class_len(&"x", cls(c)), 0);
    }
    assert_eq!(q.class_len(cls(0)) + q.class_len(cls(2)), 0);
    // y's items are untouched and still FIFO.
    assert_eq!(q.in_flight(&"x"), 1);
    assert_eq!(q.class_in_flight(cls(0)), 1);
    assert!(q.complete(d.ticket, 1));
    let rest: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    let ys: Vec<u32> = rest.iter().copied().filter(|&i| i >= 100).collect();
    assert_eq!(ys, [100, 101, 102, 103]);
    assert_eq!(rest.len(), 4, "only y's items were left: {rest:?}");
}

#[test]
fn block_refuses_every_class_and_keeps_serving_what_is_queued() {
    let mut q = three_class_queue();
    q.block("x", BlockReason::Abuse);
    for c in 0..3 {
        let e = q.try_push_with("x", 50, opts_in(cls(c), 1)).unwrap_err();
        assert_eq!(
            e.reason(),
            RejectReason::Blocked {
                reason: BlockReason::Abuse
            }
        );
        assert_eq!(e.into_inner(), 50);
    }
    assert_eq!(q.tenant_len(&"x"), 12);
    let all: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(all.len(), 16);
    for c in 0..3u32 {
        let xs: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&i| i < 100 && i % 3 == c)
            .collect();
        let want: Vec<u32> = (0..12).filter(|i| i % 3 == c).collect();
        assert_eq!(xs, want, "class {c} in FIFO order");
    }
    assert_eq!(q.unblock(&"x"), Some(BlockReason::Abuse));
    q.try_push_with("x", 51, opts_in(cls(2), 1)).unwrap();
}

#[test]
fn scheduler_purge_and_retain_across_classes() {
    let (mut s, _) = manual(SchedulerConfig::new());
    s.set_classes(classes([ClassSpec::new("a"), ClassSpec::new("b")]))
        .unwrap();
    for i in 0..10u32 {
        s.try_push_with(1, i, PushOptions::new().with_class(cls((i % 2) as usize)))
            .unwrap();
    }
    let mut out = s.retain(&1, |&i| i >= 4);
    out.sort_unstable();
    assert_eq!(out, [0, 1, 2, 3]);
    let mut out = s.purge(&1);
    out.sort_unstable();
    assert_eq!(out, [4, 5, 6, 7, 8, 9]);
    assert_eq!(
        (s.queue().class_len(cls(0)), s.queue().class_len(cls(1))),
        (0, 0)
    );
}

#[test]
fn drain_and_close_hand_back_items_of_every_class() {
    let mut q = three_class_queue();
    q.set_in_flight_limit(Some(1));
    let d = q.dispatch().unwrap();
    let mut all: Vec<u32> = q.drain().collect();
    all.push(d.item);
    all.sort_unstable();
    let mut want: Vec<u32> = (0..12).chain(100..104).collect();
    want.sort_unstable();
    assert_eq!(all, want);
    assert_eq!((0..3).map(|c| q.class_len(cls(c))).sum::<usize>(), 0);
    assert!(q.complete(d.ticket, 1));

    // close: items parked behind a tenant cap and behind a class ceiling come back too.
    let h = shared(4);
    h.with_scheduler(|s| s.set_limits(1, TenantLimits::new().with_max_in_flight(1)));
    for i in 0..3 {
        h.try_push_with(1, i, PushOptions::new().with_class(cls(0)))
            .unwrap();
        h.try_push_with(2, 100 + i, PushOptions::new().with_class(cls(1)))
            .unwrap();
    }
    let jobs: Vec<_> = std::iter::from_fn(|| h.try_dispatch()).collect();
    // tenant 1 at its cap (1 signin item), bulk at its ceiling (2 of 4)
    assert_eq!(jobs.len(), 3);
    let mut left = h.close();
    left.extend(jobs.iter().map(|j| j.item));
    left.sort_unstable();
    assert_eq!(left, [0, 1, 2, 100, 101, 102]);
    drop(jobs);
    assert_eq!((class_if(&h, 0), class_if(&h, 1)), (0, 0));
}

#[test]
fn expired_items_leave_their_class() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u8, u32, ManualClock> =
        Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    s.set_classes(classes([ClassSpec::new("a"), ClassSpec::new("b")]))
        .unwrap();
    let b = PushOptions::new().with_class(cls(1));
    s.try_push_with(1, 1, b.with_deadline(Nanos::from_secs(1)))
        .unwrap();
    s.try_push_with(1, 2, b).unwrap();
    s.try_push_with(2, 3, PushOptions::new().with_deadline(Nanos::from_secs(1)))
        .unwrap();
    clock.set(Nanos::from_secs(2));
    let mut got = Vec::new();
    while let Some(d) = s.dispatch() {
        got.push(d.item);
        assert!(s.complete(d.ticket, 1));
    }
    assert_eq!(got, [2]);
    let mut expired: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(|r| r.into_inner())
        .collect();
    expired.sort_unstable();
    assert_eq!(expired, [1, 3]);
    assert_eq!(
        (s.queue().class_len(cls(0)), s.queue().class_len(cls(1))),
        (0, 0)
    );
    assert_eq!(s.queue().len(), 0);
}

#[test]
fn evicted_items_leave_their_class() {
    use fairshare::config::{Capacity, ShedPolicy};
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(4))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let (mut s, _) = manual(cfg);
    s.set_classes(classes([ClassSpec::new("a"), ClassSpec::new("b")]))
        .unwrap();
    for i in 0..4 {
        s.try_push_with(1, i, PushOptions::new().with_class(cls((i % 2) as usize)))
            .unwrap();
    }
    s.try_push_with(2, 9, PushOptions::new().with_class(cls(0)))
        .unwrap();
    let evicted: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(|r| {
            assert_eq!(r.reason(), RejectReason::Evicted);
            r.into_inner()
        })
        .collect();
    assert_eq!(evicted.len(), 1);
    let gone = evicted[0];
    assert!(gone < 4, "evicted from the flooding tenant: {gone}");
    let q = s.queue();
    assert_eq!(q.len(), 4);
    let (a, b) = (q.class_len(cls(0)), q.class_len(cls(1)));
    let gone_class = (gone % 2) as usize;
    let expect = if gone_class == 0 { (2, 2) } else { (3, 1) };
    assert_eq!((a, b), expect, "class lengths after evicting {gone}");
    assert_eq!(q.tenant_class_len(&1, cls(gone_class)), 1);
}

/// The default class's served cost follows corrections reported after the queue went back to
/// one class.
#[test]
fn class_served_cost_follows_corrections_across_a_switch_to_one_class() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(numbered_classes(2)).unwrap();
    q.try_push_with("a", 1, PushOptions::new().with_cost(100))
        .unwrap();
    let d = q.dispatch().unwrap();
    q.set_classes(fairshare::Classes::single()).unwrap();
    assert!(q.complete(d.ticket, 1));
    assert_eq!(q.counters().served_cost, 1);
    let c = q.class_counters(fairshare::ClassId::DEFAULT).unwrap();
    assert_eq!(c.served_cost, 1);
    // and again after going back to two classes
    q.set_classes(numbered_classes(2)).unwrap();
    let c = q.class_counters(fairshare::ClassId::DEFAULT).unwrap();
    assert_eq!((c.pushed, c.dispatched, c.served_cost), (1, 1, 1));
}

/// Purge and retain refund the class's per-tenant quota as well as the tenant's own.
#[test]
fn purge_and_retain_refund_the_class_quota() {
    let q = Quota::per_second(nz(2));
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_quota(q)),
        ManualClock::new(),
    );
    s.set_classes(
        fairshare::Classes::new([
            fairshare::ClassSpec::new("a"),
            fairshare::ClassSpec::new("b").with_tenant_quota(Some(q)),
        ])
        .unwrap(),
    )
    .unwrap();
    let b = PushOptions::new().with_class(cls(1));
    s.try_push_with("t", 1, b).unwrap();
    s.try_push_with("t", 2, b).unwrap();
    assert!(matches!(
        s.try_push_with("t", 9, b).unwrap_err().reason(),
        RejectReason::RateLimited { .. } | RejectReason::ClassRateLimited { .. }
    ));
    assert_eq!(s.purge(&"t"), [1, 2]);
    s.try_push_with("t", 3, b).unwrap();
    s.try_push_with("t", 4, b).unwrap();
    assert_eq!(s.retain(&"t", |&i| i == 3), [4]);
    s.try_push_with("t", 5, b).unwrap();
}

/// Purge hands a tenant's items back class by class in class order, whatever order the tenant
/// first used its classes in.
#[test]
fn purge_and_retain_go_class_by_class() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(numbered_classes(3)).unwrap();
    q.try_push_with("x", 10, in_class(1, 1)).unwrap();
    q.try_push_with("x", 20, in_class(2, 1)).unwrap();
    q.try_push_with("x", 0, in_class(0, 1)).unwrap();
    q.try_push_with("x", 11, in_class(1, 1)).unwrap();
    q.try_push_with("x", 21, in_class(2, 1)).unwrap();
    q.try_push_with("x", 1, in_class(0, 1)).unwrap();
    assert_eq!(q.retain(&"x", |&i| i % 10 == 0), [1, 11, 21]);
    assert_eq!(q.purge(&"x"), [0, 10, 20]);
}
