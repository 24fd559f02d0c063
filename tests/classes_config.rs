//! Defining and changing classes: config errors name the class and the field, an unknown class
//! is refused with the item handed back, `set_classes` refuses to remove a class that holds
//! items and otherwise keeps every queued item in its class, reconfiguration keeps classes and
//! their work, a removed class takes its rate state with it, and removing the home class moves
//! default-class work into its slot without reassigning a flow that has work in flight.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use fairshare::{
    ClassId, ClassSpec, Classes, ConfigError, FairQueue, ManualClock, Nanos, PushOptions,
    RejectReason, Scheduler, SchedulerConfig, SharedScheduler, Ticket, queue::MAX_CLASSES,
};

use common::classes::{api, classes, cls, manual, per_second, push_in, rate_scheduler};
use common::opts_in;

// ===== configuration errors =====

#[track_caller]
fn class_error(specs: Vec<ClassSpec>) -> (String, &'static str, String) {
    match Classes::new(specs) {
        Err(e @ ConfigError::InvalidClass { .. }) => {
            let shown = e.to_string();
            let ConfigError::InvalidClass { class, field, .. } = e else {
                unreachable!()
            };
            (class, field, shown)
        }
        other => panic!("expected InvalidClass, got {other:?}"),
    }
}

#[test]
fn config_errors_name_the_class_and_field() {
    // Reservations adding up to more than 100%.
    let (class, field, shown) = class_error(vec![
        ClassSpec::new("a").with_reserved_percent(60),
        ClassSpec::new("b"),
        ClassSpec::new("c").with_reserved_percent(41),
    ]);
    assert_eq!(field, "reserved_percent");
    assert!(
        class == "a" || class == "c",
        "names a reserving class, got {class}"
    );
    assert!(
        shown.contains(&format!("classes.{class}.reserved_percent")),
        "{shown}"
    );
    // Exactly 100% is fine.
    assert!(
        Classes::new([
            ClassSpec::new("a").with_reserved_percent(60),
            ClassSpec::new("b").with_reserved_percent(40),
        ])
        .is_ok()
    );

    // Ceiling below the reservation.
    let (class, field, shown) = class_error(vec![
        ClassSpec::new("ok"),
        ClassSpec::new("low")
            .with_reserved_percent(30)
            .with_ceiling_percent(20),
    ]);
    assert_eq!((class.as_str(), field), ("low", "ceiling_percent"));
    assert!(shown.contains("classes.low.ceiling_percent"), "{shown}");
    // Ceiling equal to the reservation is fine.
    assert!(
        Classes::new([ClassSpec::new("x")
            .with_reserved_percent(30)
            .with_ceiling_percent(30)])
        .is_ok()
    );

    // Ceiling 0 and ceiling above 100; reservation above 100.
    let (class, field, _) = class_error(vec![ClassSpec::new("zero").with_ceiling_percent(0)]);
    assert_eq!((class.as_str(), field), ("zero", "ceiling_percent"));
    let (class, field, _) = class_error(vec![ClassSpec::new("big").with_ceiling_percent(101)]);
    assert_eq!((class.as_str(), field), ("big", "ceiling_percent"));
    let (class, field, _) = class_error(vec![ClassSpec::new("r").with_reserved_percent(101)]);
    assert_eq!((class.as_str(), field), ("r", "reserved_percent"));

    // Duplicate names.
    let (class, field, shown) = class_error(vec![
        ClassSpec::new("api"),
        ClassSpec::new("bulk"),
        ClassSpec::new("api"),
    ]);
    assert_eq!((class.as_str(), field), ("api", "name"));
    assert!(shown.contains("classes.api.name"), "{shown}");

    // A class max_in_flight of 0.
    let (class, field, _) = class_error(vec![ClassSpec::new("m").with_max_in_flight(Some(0))]);
    assert_eq!((class.as_str(), field), ("m", "max_in_flight"));

    // Too many classes; exactly MAX_CLASSES is fine.
    let many = |n: usize| {
        (0..n)
            .map(|i| ClassSpec::new(format!("k{i}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(Classes::new(many(MAX_CLASSES)).unwrap().len(), MAX_CLASSES);
    assert!(Classes::new(many(MAX_CLASSES + 1)).is_err());

    // An empty list: there is no class to name, the error names the list.
    match Classes::new(Vec::new()) {
        Err(
            e @ ConfigError::Invalid {
                field: "classes", ..
            },
        ) => {
            assert!(e.to_string().contains("classes"), "{e}");
        }
        other => panic!("expected Invalid {{ field: \"classes\" }}, got {other:?}"),
    }
}

// ===== unknown classes =====

#[test]
fn unknown_class_is_rejected_and_the_item_returned() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let e = q.try_push_with("a", 7, opts_in(cls(1), 1)).unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownClass { class: cls(1) });
    assert!(!e.is_retryable());
    assert_eq!(e.into_inner(), 7);
    assert_eq!(q.len(), 0);
    assert_eq!(q.tenant_len(&"a"), 0);
    assert_eq!(q.counters().rejected, 1);
    assert_eq!(q.counters().pushed, 0);

    q.set_classes(classes([
        ClassSpec::new("x"),
        ClassSpec::new("y"),
        ClassSpec::new("z"),
    ]))
    .unwrap();
    for bad in [3u16, 64, u16::MAX] {
        let e = q
            .try_push_with("a", 9, opts_in(ClassId::new(bad), 1))
            .unwrap_err();
        assert_eq!(
            e.reason(),
            RejectReason::UnknownClass {
                class: ClassId::new(bad)
            }
        );
        assert_eq!(e.into_inner(), 9);
    }
    let h = q.tenant("b");
    let e = q.try_push_to(h, 10, opts_in(cls(3), 1)).unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownClass { class: cls(3) });
    assert_eq!(e.into_inner(), 10);
    assert_eq!(q.len(), 0);
    // Known classes still work, through both paths.
    q.try_push_with("a", 1, opts_in(cls(2), 1)).unwrap();
    q.try_push_to(h, 2, opts_in(cls(1), 1)).unwrap();
    assert_eq!(
        (q.class_len(cls(2)), q.class_len(cls(1)), q.len()),
        (1, 1, 2)
    );

    // The scheduler and the shared handle.
    let (mut s, _) = manual(SchedulerConfig::new());
    let e = s
        .try_push_with(1, 5, PushOptions::new().with_class(cls(1)))
        .unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownClass { class: cls(1) });
    assert_eq!(e.into_inner(), 5);
    assert_eq!(s.queue().len(), 0);
    let h: SharedScheduler<u8, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.set_classes(classes([ClassSpec::new("p"), ClassSpec::new("q")])))
        .unwrap();
    let e = h
        .try_push_with(1, 6, PushOptions::new().with_class(cls(2)))
        .unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownClass { class: cls(2) });
    assert_eq!(e.into_inner(), 6);
    assert!(h.is_empty());
}

// ===== set_classes =====

#[test]
fn set_classes_refuses_to_remove_a_class_holding_items() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let three = classes([
        ClassSpec::new("a"),
        ClassSpec::new("b"),
        ClassSpec::new("c"),
    ]);
    let two = classes([ClassSpec::new("a"), ClassSpec::new("b")]);
    q.set_classes(three.clone()).unwrap();
    push_in(&mut q, "t", 2, 1);
    push_in(&mut q, "t", 0, 2);

    // Queued work in "c": refused, nothing changes.
    let e = q.set_classes(two.clone()).unwrap_err();
    assert!(
        matches!(&e, ConfigError::InvalidClass { class, .. } if class == "c"),
        "names the class: {e:?}"
    );
    assert_eq!(q.classes(), &three);
    assert_eq!((q.class_len(cls(2)), q.len()), (1, 2));

    // In-flight work in "c": still refused.
    q.set_in_flight_limit(None);
    let mut tickets = Vec::new();
    while let Some(d) = q.dispatch() {
        tickets.push(d.ticket);
    }
    assert_eq!(q.class_in_flight(cls(2)), 1);
    assert!(q.set_classes(two.clone()).is_err());
    assert_eq!(q.classes().len(), 3);
    let (c_ticket, others): (Vec<Ticket>, Vec<Ticket>) =
        tickets.into_iter().partition(|t| t.class() == cls(2));
    for t in others {
        assert!(q.complete(t, 1));
    }
    assert!(
        q.set_classes(two.clone()).is_err(),
        "class c still holds one in flight"
    );
    for t in c_ticket {
        assert!(q.complete(t, 1));
    }
    // Empty now: removal succeeds, and the removed class is unknown afterwards.
    q.set_classes(two.clone()).unwrap();
    assert_eq!(q.classes(), &two);
    let e = q.try_push_with("t", 3, opts_in(cls(2), 1)).unwrap_err();
    assert_eq!(e.reason(), RejectReason::UnknownClass { class: cls(2) });

    // The scheduler refuses the same way.
    let (mut s, _) = manual(SchedulerConfig::new());
    s.set_classes(three.clone()).unwrap();
    s.try_push_with(1, 1, PushOptions::new().with_class(cls(2)))
        .unwrap();
    assert!(s.set_classes(two.clone()).is_err());
    assert_eq!(s.classes(), &three);
    assert_eq!(s.queue().class_len(cls(2)), 1);
}

#[test]
fn set_classes_keeps_queued_items_in_their_classes() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([ClassSpec::new("a"), ClassSpec::new("b")]))
        .unwrap();
    for i in 0..4 {
        push_in(&mut q, "t", (i % 2) as usize, i);
    }
    // Reconfigure the same classes with other settings, and add one.
    q.set_classes(classes([
        ClassSpec::new("a").with_reserved_percent(50),
        ClassSpec::new("b").with_priority(2),
        ClassSpec::new("c"),
    ]))
    .unwrap();
    assert_eq!(q.len(), 4);
    assert_eq!(
        (
            q.class_len(cls(0)),
            q.class_len(cls(1)),
            q.class_len(cls(2))
        ),
        (2, 2, 0)
    );
    assert_eq!(q.tenant_class_len(&"t", cls(1)), 2);
    // "b" has priority now: its items are dispatched first, each class in FIFO order.
    let mut order = Vec::new();
    while let Some(d) = q.dispatch() {
        order.push(d.item);
        assert!(q.complete(d.ticket, 1));
    }
    assert_eq!(order, [1, 3, 0, 2]);
}

#[test]
fn reconfigure_keeps_classes_and_their_work() {
    let (mut s, _) = manual(SchedulerConfig::new().with_max_in_flight(Some(4)));
    s.set_classes(classes([
        ClassSpec::new("signin").with_reserved_percent(50),
        ClassSpec::new("bulk").with_ceiling_percent(50),
    ]))
    .unwrap();
    for i in 0..4 {
        s.try_push_with(1, i, PushOptions::new().with_class(cls(1)))
            .unwrap();
    }
    let d = s.dispatch().unwrap();
    s.reconfigure(SchedulerConfig::new().with_max_in_flight(Some(8)));
    assert_eq!(s.classes().len(), 2);
    assert_eq!(s.classes().id("bulk"), Some(cls(1)));
    assert_eq!(s.queue().class_len(cls(1)), 3);
    assert_eq!(s.queue().class_in_flight(cls(1)), 1);
    // bulk's ceiling is now 50% of 8 = 4: three more dispatches, not four.
    let more: Vec<_> = std::iter::from_fn(|| s.dispatch()).collect();
    assert_eq!(more.len(), 3);
    assert_eq!(s.queue().class_in_flight(cls(1)), 4);
    assert!(s.complete(d.ticket, 1));
    for d in more {
        assert!(s.complete(d.ticket, 1));
    }
}

/// Removing a class forgets every tenant's state in it: a class added again at the same index
/// starts fresh instead of inheriting the removed class's per-tenant rate state.
#[test]
fn a_removed_class_takes_its_rate_state_with_it() {
    let (mut s, _clock) = rate_scheduler(None);
    // Tenant 1 spends the api class's burst of 2; an item in the bulk class keeps it known
    // through the removal (and, before the fix, kept its api side entry with it).
    s.try_push_with(1, 0, api()).unwrap();
    s.try_push_with(1, 1, api()).unwrap();
    s.try_push(1, 2).unwrap();
    assert!(matches!(
        s.try_push_with(1, 3, api()).unwrap_err().reason(),
        RejectReason::ClassRateLimited { .. }
    ));
    // Drain both classes, then remove the api class.
    let mut served = Vec::new();
    while let Some(item) = s.pop() {
        served.push(item);
    }
    served.sort_unstable();
    assert_eq!(served, [0, 1, 2]);
    s.try_push(1, 4).unwrap(); // keeps tenant 1 known through the change
    s.set_classes(classes([ClassSpec::new("bulk")])).unwrap();
    s.set_classes(classes([
        ClassSpec::new("bulk"),
        ClassSpec::new("api").with_tenant_quota(Some(per_second(2))),
    ]))
    .unwrap();
    // Time has not moved: only a fresh rate state admits two more at once.
    s.try_push_with(1, 5, api()).unwrap();
    s.try_push_with(1, 6, api()).unwrap();
    assert!(matches!(
        s.try_push_with(1, 7, api()).unwrap_err().reason(),
        RejectReason::ClassRateLimited { .. }
    ));
}

// ===== the home class: which flow lives in the tenant's slot =====

/// Tenants whose first push went to class 2 (so class 2's flow is the one in their slot and
/// their default-class work lives beside it) keep every default-class item, its order, its
/// deadline and its place on the ring when class 2 is removed and the queue goes back to one
/// class; tenants whose slot held the default class are untouched.
#[test]
fn removing_the_home_class_moves_default_class_work_into_the_slot() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u8, u32, ManualClock> =
        Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    s.set_classes(classes([
        ClassSpec::new("a"),
        ClassSpec::new("b"),
        ClassSpec::new("c"),
    ]))
    .unwrap();
    let in_c = PushOptions::new().with_class(cls(2));
    // Tenants 1 and 2 claim class 2 for their slots; tenant 3 the default class.
    s.try_push_with(1, 100, in_c).unwrap();
    s.try_push_with(2, 200, in_c).unwrap();
    s.try_push(3, 300).unwrap();
    // Default-class work for all three (side flows for 1 and 2), one item with a deadline.
    for i in 1..=3u32 {
        s.try_push(1, 100 + i).unwrap();
        s.try_push(2, 200 + i).unwrap();
        s.try_push(3, 300 + i).unwrap();
    }
    let soon = PushOptions::new().with_deadline(Nanos::from_secs(1));
    s.try_push_with(2, 299, soon).unwrap();
    // Serve class 2 empty (the default class gives up one turn to it), then remove it.
    let mut before = Vec::new();
    while s.queue().class_len(cls(2)) > 0 {
        let d = s.dispatch().unwrap();
        before.push(d.item);
        assert!(s.complete(d.ticket, 1));
    }
    assert!(before.contains(&100) && before.contains(&200));
    s.set_classes(classes([ClassSpec::new("a")])).unwrap();
    assert_eq!(
        s.queue().class_len(ClassId::DEFAULT),
        11 - (before.len() - 2)
    );
    // The deadline still names the right flow: the item expires from tenant 2.
    clock.set(Nanos::from_secs(2));
    let expired: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(|r| r.into_inner())
        .collect();
    assert_eq!(expired, [299]);
    // Everything else comes back, in each tenant's FIFO order, round robin between them.
    let mut after = Vec::new();
    while let Some(d) = s.dispatch() {
        after.push(d.item);
        assert!(s.complete(d.ticket, 1));
    }
    let mut all: Vec<u32> = before.iter().chain(&after).copied().collect();
    all.push(299);
    all.sort_unstable();
    let mut want: Vec<u32> = (0..=3).flat_map(|i| [100 + i, 200 + i, 300 + i]).collect();
    want.push(299);
    want.sort_unstable();
    assert_eq!(all, want, "nothing lost, nothing twice");
    for t in [100, 200, 300] {
        let order: Vec<u32> = after
            .iter()
            .copied()
            .filter(|i| i / 100 * 100 == t)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "FIFO per tenant: {order:?}"
        );
    }
    let firsts: std::collections::BTreeSet<u32> = after[..3].iter().map(|i| i / 100).collect();
    assert_eq!(firsts.len(), 3, "round robin after the change: {after:?}");
    assert_eq!(s.queue().len(), 0);
}

/// A slot whose embedded flow is still unclaimed is not claimed by another class while the
/// tenant has default-class work in flight: completing that work charges its actual cost to
/// the default-class flow, which must still be there (found by the class model test).
#[test]
fn the_slot_flow_is_not_reassigned_under_work_in_flight() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("a"),
        ClassSpec::new("b"),
        ClassSpec::new("c"),
        ClassSpec::new("d"),
    ]))
    .unwrap();
    push_in(&mut q, "t", 0, 1);
    let d = q.dispatch().unwrap();
    push_in(&mut q, "t", 1, 2);
    assert!(q.complete(d.ticket, 5));
    assert_eq!(q.tenant_counters(&"t").unwrap().served_cost, 5);
    let d = q.dispatch().unwrap();
    assert_eq!((d.item, d.ticket.class()), (2, cls(1)));
    assert!(q.complete(d.ticket, 1));
}
