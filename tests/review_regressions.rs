//! Regression tests for defects found and fixed earlier: each test's doc comment states the
//! behaviour it pins down, so a reintroduced defect fails under a name that says what broke.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use fairshare::{
    FairQueue, ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig,
    SharedScheduler,
    config::{Capacity, Quota, TenantLimits},
    pressure::{PressureConfig, PressureLevel},
};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Deadline entries of items that left early no longer pile up.
#[test]
fn deadline_heap_follows_the_backlog_not_the_throughput() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u32, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock);
    let far = Nanos::from_secs(3600);
    for i in 0..100_000 {
        s.try_push_with(i % 7, i, PushOptions::new().with_deadline(far))
            .unwrap();
        assert_eq!(s.pop(), Some(i));
    }
    assert!(s.queue().is_empty());
    // 100,000 stale entries would be over 3 MB; compaction keeps the heap near the backlog.
    assert!(
        s.queue().heap_bytes() < 64 * 1024,
        "{} bytes",
        s.queue().heap_bytes()
    );
}

/// Completing through `with_scheduler` frees a slot and wakes a waiting worker.
#[test]
fn completion_inside_with_scheduler_wakes_a_waiting_worker() {
    let h: SharedScheduler<&'static str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push("a", 1).unwrap();
    let d = h.with_scheduler(|s| s.dispatch()).unwrap();
    h.try_push("b", 2).unwrap();
    let worker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let job = h.dispatch_timeout(Duration::from_secs(20)).unwrap();
            let item = job.item;
            job.lease.complete(1);
            (item, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(h.with_scheduler(|s| s.complete(d.ticket, 1)));
    let (item, waited) = worker.join().unwrap();
    assert_eq!(item, 2);
    assert!(waited < Duration::from_secs(10), "worker slept {waited:?}");
}

/// The delay signal falls back when nothing waits any more.
#[test]
fn pressure_recovers_when_the_queue_empties() {
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new().with_pressure(Some(
        PressureConfig::new().with_target_delay(Nanos::from_millis(100)),
    ));
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(cfg, clock.clone());
    s.try_push("a", 1).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.pressure(), PressureLevel::Critical); // one item waited 10x the target
    s.pop();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(s.pressure(), PressureLevel::Normal);
}

/// Stalled workers show up as growing delay even with no dispatch at all.
#[test]
fn pressure_rises_while_workers_stall() {
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new().with_pressure(Some(
        PressureConfig::new().with_target_delay(Nanos::from_millis(100)),
    ));
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(cfg, clock.clone());
    s.try_push("a", 1).unwrap();
    assert_eq!(s.pressure(), PressureLevel::Normal);
    clock.advance(Duration::from_millis(90));
    assert_eq!(s.pressure(), PressureLevel::Shedding); // 900 per mille
}

/// "Wait forever" is a timeout too, not a panic.
#[test]
fn huge_timeouts_do_not_panic() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.push_timeout("a", 1, PushOptions::new(), Duration::MAX)
        .unwrap();
    h.try_push("a", 2).unwrap();
    assert_eq!(h.pop_timeout(Duration::MAX), Ok(1));
    let job = h.dispatch_timeout(Duration::MAX).unwrap();
    assert_eq!(job.item, 2);
    job.lease.complete(1);
    // A waiter with no deadline is still woken by a push.
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || h.pop_timeout(Duration::MAX))
    };
    std::thread::sleep(Duration::from_millis(50));
    h.try_push("b", 3).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(3));
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

/// Drain hands back every item, in-flight limits notwithstanding.
#[test]
fn drain_ignores_in_flight_limits() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_in_flight_limit(Some(1));
    q.try_push("a", 1).unwrap();
    q.try_push("a", 2).unwrap();
    q.try_push("b", 3).unwrap();
    let d = q.dispatch().unwrap();
    assert!(q.dispatch().is_none());
    let drain = q.drain();
    assert_eq!(drain.size_hint(), (2, Some(2)));
    let mut rest: Vec<u32> = drain.collect();
    rest.sort_unstable();
    assert_eq!(rest, [2, 3]);
    assert!(q.is_empty());
    assert!(q.complete(d.ticket, 1));
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

// ===== second review: classes =====

fn classes(n: usize) -> fairshare::Classes {
    fairshare::Classes::new((0..n).map(|i| fairshare::ClassSpec::new(format!("c{i}")))).unwrap()
}

fn cls(i: u16) -> fairshare::ClassId {
    fairshare::ClassId::new(i)
}

/// Push options for an item of `cost` in class `class`.
fn in_class(class: u16, cost: u32) -> PushOptions {
    PushOptions::new().with_class(cls(class)).with_cost(cost)
}

/// A class returning while every other class is idle starts at the queue's virtual clock, not
/// at the low virtual time it had when it left.
#[test]
fn a_class_returning_to_an_idle_queue_banks_nothing() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes(2)).unwrap();
    for i in 0..1000 {
        q.try_push_with("x", i, in_class(0, 1)).unwrap();
    }
    while q.pop().is_some() {}
    for i in 0..100 {
        q.try_push_with("y", 10_000 + i, in_class(1, 1)).unwrap();
    }
    for i in 0..100 {
        q.try_push_with("x", 20_000 + i, in_class(0, 1)).unwrap();
    }
    let first20: Vec<u32> = (0..20).map(|_| q.pop().unwrap()).collect();
    let from0 = first20.iter().filter(|&&i| i >= 20_000).count();
    assert!(
        (9..=11).contains(&from0),
        "equal weights, both backlogged: class 0 got {from0} of 20: {first20:?}"
    );
}

/// A class whose flows were all parked (its tenants at their in-flight limits) loses nothing to
/// a class that arrived meanwhile.
#[test]
fn a_parked_class_keeps_its_place_against_a_newcomer() {
    let mut s: Scheduler<&str, u32, _> =
        Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    s.set_classes(classes(2)).unwrap();
    s.set_limits("x", TenantLimits::new().with_max_in_flight(1));
    for i in 0..2000 {
        s.try_push_with("x", i, PushOptions::new().with_class(cls(0)))
            .unwrap();
    }
    let mut d = s.dispatch().unwrap();
    for _ in 0..999 {
        s.complete(d.ticket, 1);
        d = s.dispatch().unwrap();
    }
    assert!(
        s.dispatch().is_none(),
        "x is at its cap: its flow is parked"
    );
    for i in 0..1000 {
        s.try_push_with("y", 10_000 + i, PushOptions::new().with_class(cls(1)))
            .unwrap();
    }
    s.complete(d.ticket, 1);
    let mut from0 = 0;
    for _ in 0..200 {
        let d = s.dispatch().unwrap();
        if d.ticket.class() == cls(0) {
            from0 += 1;
        }
        s.complete(d.ticket, 1);
    }
    assert!((98..=102).contains(&from0), "class 0 got {from0} of 200");
}

/// The default class's served cost follows corrections reported after the queue went back to
/// one class.
#[test]
fn class_served_cost_follows_corrections_across_a_switch_to_one_class() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes(2)).unwrap();
    q.try_push_with("a", 1, PushOptions::new().with_cost(100))
        .unwrap();
    let d = q.dispatch().unwrap();
    q.set_classes(fairshare::Classes::single()).unwrap();
    assert!(q.complete(d.ticket, 1));
    assert_eq!(q.counters().served_cost, 1);
    let c = q.class_counters(fairshare::ClassId::DEFAULT).unwrap();
    assert_eq!(c.served_cost, 1);
    // and again after going back to two classes
    q.set_classes(classes(2)).unwrap();
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
    q.set_classes(classes(3)).unwrap();
    q.try_push_with("x", 10, in_class(1, 1)).unwrap();
    q.try_push_with("x", 20, in_class(2, 1)).unwrap();
    q.try_push_with("x", 0, in_class(0, 1)).unwrap();
    q.try_push_with("x", 11, in_class(1, 1)).unwrap();
    q.try_push_with("x", 21, in_class(2, 1)).unwrap();
    q.try_push_with("x", 1, in_class(0, 1)).unwrap();
    assert_eq!(q.retain(&"x", |&i| i % 10 == 0), [1, 11, 21]);
    assert_eq!(q.purge(&"x"), [0, 10, 20]);
}

/// A backlogged class that cannot be served (held at its in-flight cap by work that does not
/// complete) pins the least virtual time; the other class's keeps growing with every
/// dispatch. The shift still brings it down (the pinned class keeps a bounded lag), so the
/// pick never loses the order of virtual times (a debug assertion in the pick) and the held
/// class, once free, is served next.
#[test]
fn a_class_held_at_its_cap_does_not_stop_virtual_time_renormalization() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(
        fairshare::Classes::new([
            fairshare::ClassSpec::new("held").with_max_in_flight(Some(1)),
            fairshare::ClassSpec::new("busy"),
            fairshare::ClassSpec::new("third"),
        ])
        .unwrap(),
    )
    .unwrap();
    let big = u32::MAX;
    q.try_push_with("h", 0, in_class(0, 1)).unwrap();
    q.try_push_with("h", 1, in_class(0, 1)).unwrap();
    let held = q.dispatch().unwrap();
    assert_eq!(held.ticket.class(), cls(0));
    // 2,000 dispatches of cost 2^32 - 1 each in "busy" and "third" (about 2^48 of virtual
    // time each): far past 2^56 without a bounded shift, while "held" stays backlogged.
    let mut served = [0u32; 3];
    for i in 0..2_000u32 {
        q.try_push_with("b", i, in_class(1, big)).unwrap();
        q.try_push_with("t", i, in_class(2, big)).unwrap();
        for _ in 0..2 {
            let d = q.dispatch().unwrap();
            served[d.ticket.class().index()] += 1;
            q.complete(d.ticket, big);
        }
    }
    assert_eq!(served, [0, 2_000, 2_000]);
    // Freed, the held class (far behind) is served at once.
    q.complete(held.ticket, 1);
    q.try_push_with("b", 0, in_class(1, 1)).unwrap();
    q.try_push_with("t", 0, in_class(2, 1)).unwrap();
    let d = q.dispatch().unwrap();
    assert_eq!((d.ticket.class(), d.item), (cls(0), 1));
    q.complete(d.ticket, 1);
}

/// Virtual times are shifted down when they grow large; huge costs keep classes fair through
/// many shifts, and nothing overflows.
#[test]
fn class_shares_survive_virtual_time_renormalization() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(
        fairshare::Classes::new([
            fairshare::ClassSpec::new("a"),
            fairshare::ClassSpec::new("b").with_weight(nz(3)),
        ])
        .unwrap(),
    )
    .unwrap();
    let big = u32::MAX;
    let mut served = [0u32; 2];
    for i in 0..24_000u32 {
        q.try_push_with("x", i, in_class(0, big)).unwrap();
        q.try_push_with("y", i, in_class(1, big)).unwrap();
        q.try_push_with("y", i, in_class(1, big)).unwrap();
        q.try_push_with("y", i, in_class(1, big)).unwrap();
        for _ in 0..4 {
            let d = q.dispatch().unwrap();
            served[d.ticket.class().index()] += 1;
            q.complete(d.ticket, big);
        }
    }
    // 24,000 dispatches of cost 2^32 - 1 in class a (each adds about 2^48 of virtual time)
    // push its virtual time past the 2^55 shift point many times; the split stays 1:3
    // throughout.
    assert_eq!(served[0] + served[1], 96_000);
    assert!(served[0].abs_diff(24_000) <= 2, "{served:?}");
}
