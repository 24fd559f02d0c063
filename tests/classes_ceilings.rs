//! Class ceilings, per-class in-flight caps and strict priority: a class's `max_in_flight` and
//! ceiling `C_c = max(1, floor(N·ceiling%/100))` bind with or without a global limit (and with
//! a single class), `pop` occupies no slot and ignores ceilings, higher priorities go first but
//! reservations are never starved, a tenant at its cap blocks nobody in any class, and
//! spreading a tenant's work over several classes gains it no extra share.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;

use fairshare::{
    ClassSpec, FairQueue, PushOptions, SchedulerConfig, Ticket,
    config::{QueueConfig, TenantLimits},
};

use common::classes::{classes, cls, manual, push_in};
use common::{in_flight_limit, nz};

// ===== limits without a global limit; pop =====

#[test]
fn class_max_in_flight_binds_without_a_global_limit_and_ceilings_do_not() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("capped").with_max_in_flight(Some(2)),
        ClassSpec::new("ceil")
            .with_ceiling_percent(25)
            .with_reserved_percent(10),
    ]))
    .unwrap();
    for i in 0..5 {
        push_in(&mut q, "a", 0, i);
        push_in(&mut q, "b", 1, 10 + i);
    }
    let mut got = Vec::new();
    while let Some(d) = q.dispatch() {
        got.push(d);
    }
    // max_in_flight 2 binds; the 25% ceiling does not without a global limit.
    assert_eq!(q.class_in_flight(cls(0)), 2);
    assert_eq!(q.class_in_flight(cls(1)), 5);
    assert_eq!(q.class_len(cls(0)), 3);
    // A completion frees one slot of "capped" and the next dispatch uses it.
    let i = got.iter().position(|d| d.ticket.class() == cls(0)).unwrap();
    let d = got.swap_remove(i);
    assert!(q.complete(d.ticket, 1));
    let d = q.dispatch().expect("capped has a free slot again");
    assert_eq!(d.item, 2);
    assert!(q.dispatch().is_none());
    got.push(d);
    for d in got {
        assert!(q.complete(d.ticket, 1));
    }
    assert_eq!(q.total_in_flight(), 0);
}

#[test]
fn a_single_class_still_binds_its_max_in_flight_and_ceiling() {
    // One configured class is still a class: its limits bind like anyone's.
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes(
        [ClassSpec::new("only").with_max_in_flight(Some(1))],
    ))
    .unwrap();
    push_in(&mut q, "a", 0, 1);
    push_in(&mut q, "a", 0, 2);
    let d = q.dispatch().unwrap();
    assert!(q.dispatch().is_none(), "class max_in_flight 1 exceeded");
    assert!(q.complete(d.ticket, 1));

    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([ClassSpec::new("only").with_ceiling_percent(50)]))
        .unwrap();
    q.set_in_flight_limit(Some(4));
    for i in 0..4 {
        push_in(&mut q, "a", 0, i);
    }
    let d1 = q.dispatch().unwrap();
    let d2 = q.dispatch().unwrap();
    assert!(q.dispatch().is_none(), "class ceiling 50% of 4 exceeded");
    assert_eq!(q.class_in_flight(cls(0)), 2);
    assert!(q.complete(d1.ticket, 1));
    assert!(q.complete(d2.ticket, 1));
}

#[test]
fn pop_occupies_no_slot_and_ignores_class_ceilings() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("half").with_ceiling_percent(50),
        ClassSpec::new("one").with_max_in_flight(Some(1)),
    ]))
    .unwrap();
    q.set_in_flight_limit(Some(4));
    for i in 0..4 {
        push_in(&mut q, "a", 0, i);
    }
    let d1 = q.dispatch().unwrap();
    let d2 = q.dispatch().unwrap();
    assert_eq!(q.class_in_flight(cls(0)), 2);
    assert!(q.dispatch().is_none(), "class at its 50% ceiling (2 of 4)");
    // pop is untracked: it does not take a slot, so the ceiling does not stop it.
    assert_eq!(q.pop(), Some(2));
    assert_eq!((q.class_in_flight(cls(0)), q.total_in_flight()), (2, 2));
    push_in(&mut q, "b", 1, 10);
    push_in(&mut q, "b", 1, 11);
    let d3 = q.dispatch().unwrap();
    assert_eq!(d3.item, 10);
    assert!(q.dispatch().is_none(), "class one at its max_in_flight");
    // Both classes are at their caps for dispatch; pop takes from either.
    let mut popped = vec![q.pop().unwrap(), q.pop().unwrap()];
    popped.sort_unstable();
    assert_eq!(popped, [3, 11], "pop ignores class max_in_flight too");
    for d in [d1, d2, d3] {
        assert!(q.complete(d.ticket, 1));
    }
    assert_eq!(
        (q.class_in_flight(cls(0)), q.class_in_flight(cls(1))),
        (0, 0)
    );
}

#[test]
fn strict_priority_first_but_reservations_are_never_starved() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_classes(classes([
        ClassSpec::new("low").with_reserved_percent(30),
        ClassSpec::new("high").with_priority(2),
        ClassSpec::new("lowest"),
    ]))
    .unwrap();
    q.set_in_flight_limit(Some(10));
    for i in 0..300 {
        push_in(&mut q, "l", 0, i);
        push_in(&mut q, "h", 1, 1000 + i);
        push_in(&mut q, "z", 2, 2000 + i);
    }
    let mut flight: VecDeque<Ticket> = VecDeque::new();
    let mut served = [0u32; 3];
    for step in 0..250 {
        while let Some(d) = q.dispatch() {
            served[d.ticket.class().index()] += 1;
            flight.push_back(d.ticket);
        }
        assert_eq!(
            q.class_in_flight(cls(0)),
            3,
            "step {step}: low holds its 3 reserved"
        );
        assert_eq!(
            q.class_in_flight(cls(1)),
            7,
            "step {step}: high holds the rest"
        );
        assert_eq!(
            q.class_in_flight(cls(2)),
            0,
            "step {step}: no reservation, lower priority"
        );
        assert!(q.complete(flight.pop_front().unwrap(), 1));
    }
    assert_eq!(served[2], 0);
    while let Some(d) = q.dispatch() {
        flight.push_back(d.ticket);
    }
    assert_eq!(
        (q.class_in_flight(cls(0)), q.class_in_flight(cls(1))),
        (3, 7)
    );
    // Once high runs dry, the others take each of its slots as it frees, up to a 5:5 split
    // (equal weights; low's 3 reserved slots count towards its half).
    let _ = q.purge(&"h");
    let mut rest: VecDeque<Ticket> = VecDeque::new();
    for t in flight {
        if t.class() == cls(1) {
            assert!(q.complete(t, 1));
            let d = q
                .dispatch()
                .expect("a slot freed by high is borrowed at once");
            assert_ne!(d.ticket.class(), cls(1));
            rest.push_back(d.ticket);
        } else {
            rest.push_back(t);
        }
    }
    assert_eq!(q.class_in_flight(cls(1)), 0);
    assert_eq!(
        q.total_in_flight(),
        10,
        "every slot high freed was borrowed at once"
    );
    // From then on low and lowest share by weight (equal): low's 3 reserved slots count
    // towards its half, and the reserved service it got while high outranked it is not held
    // against it. (Shares are of dispatched cost, so the in-flight split evens out over a
    // round rather than at once.)
    for i in 0..1000 {
        push_in(&mut q, "l", 0, 5000 + i);
        push_in(&mut q, "z", 2, 7000 + i);
    }
    let mut window = [0u32; 3];
    for _ in 0..600 {
        assert!(q.complete(rest.pop_front().unwrap(), 1));
        while let Some(d) = q.dispatch() {
            window[d.ticket.class().index()] += 1;
            rest.push_back(d.ticket);
        }
    }
    assert_eq!(window[0] + window[2], 600);
    assert!(
        window[0].abs_diff(window[2]) <= 6,
        "within 1% of an even split over 600 dispatches: {window:?}"
    );
    assert_eq!(
        (q.class_in_flight(cls(0)), q.class_in_flight(cls(2))),
        (5, 5)
    );
    for t in rest {
        assert!(q.complete(t, 1));
    }
}

#[test]
fn a_tenant_at_its_cap_blocks_nobody_in_any_class() {
    let cfg = SchedulerConfig::new()
        .with_tenant_limits(TenantLimits::new().with_max_in_flight(1))
        .with_max_in_flight(Some(10));
    let (mut s, _) = manual(cfg);
    s.set_classes(classes([
        ClassSpec::new("a")
            .with_reserved_percent(50)
            .with_priority(2),
        ClassSpec::new("b"),
    ]))
    .unwrap();
    for i in 0..5 {
        s.try_push_with(1, i, PushOptions::new().with_class(cls(0)))
            .unwrap();
    }
    s.try_push_with(1, 9, PushOptions::new().with_class(cls(1)))
        .unwrap();
    s.try_push_with(2, 20, PushOptions::new().with_class(cls(1)))
        .unwrap();
    let d1 = s.dispatch().unwrap();
    assert_eq!(d1.item, 0);
    // Tenant 1 is at its cap: class a (reserved, high priority) has nothing dispatchable,
    // class b's head of line is tenant 1's item too; tenant 2 must still be served.
    let d2 = s.dispatch().expect("tenant 2 is eligible");
    assert_eq!(d2.item, 20);
    assert!(s.dispatch().is_none());
    assert!(s.complete(d1.ticket, 1));
    let d3 = s.dispatch().unwrap();
    assert_eq!(
        d3.item, 1,
        "tenant 1's reserved class first once it has room"
    );
    assert!(s.complete(d2.ticket, 1));
    assert!(s.complete(d3.ticket, 1));
}

// ===== anti-spreading =====

/// Share of dispatches per tenant over 30,000 dispatches after a warm-up, with `n` slots,
/// FIFO completions (every item in flight equally long) and saturating demand: `members[c]`
/// lists the tenants backlogged in class `c`; `weights[t]` is tenant `t`'s weight.
fn tenant_shares(
    config: QueueConfig,
    class_specs: Vec<ClassSpec>,
    members: &[&[usize]],
    weights: &[u32],
    n: u64,
) -> Vec<f64> {
    let (warmup, measure) = (2_000u64, 30_000u64);
    let mut q: FairQueue<usize, (usize, usize)> = FairQueue::with_config(config);
    q.set_classes(classes(class_specs)).unwrap();
    q.set_in_flight_limit(Some(in_flight_limit(n)));
    for (t, &w) in weights.iter().enumerate() {
        q.set_weight(t, nz(w));
    }
    for (c, m) in members.iter().enumerate() {
        for &t in *m {
            for _ in 0..3 {
                push_in(&mut q, t, c, (t, c));
            }
        }
    }
    let mut count = vec![0u64; weights.len()];
    let mut flight = VecDeque::new();
    let mut done = 0u64;
    while done < warmup + measure {
        while let Some(d) = q.dispatch() {
            let (t, c) = d.item;
            push_in(&mut q, t, c, (t, c));
            if done >= warmup && done < warmup + measure {
                count[t] += 1;
            }
            done += 1;
            flight.push_back(d.ticket);
        }
        assert!(q.complete(flight.pop_front().unwrap(), 1));
    }
    count.iter().map(|&x| x as f64 / measure as f64).collect()
}

fn equal_classes(k: usize) -> Vec<ClassSpec> {
    (0..k).map(|i| ClassSpec::new(format!("c{i}"))).collect()
}

#[track_caller]
fn near(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 0.01,
        "{what}: got {got:.4}, want {want:.4}"
    );
}

/// X = tenant 0 against rivals Y = 1, Z = 2 (weight 1 unless said otherwise).
fn anti_spreading(config: QueueConfig) {
    // Concentrated: one class, everyone in it: X gets 1/3.
    let conc = tenant_shares(config, equal_classes(1), &[&[0, 1, 2]], &[1, 1, 1], 30);
    near(conc[0], 1.0 / 3.0, "concentrated");
    // Spread: X splits its load over two classes that Y and Z both contend: the same total.
    let spread = tenant_shares(
        config,
        equal_classes(2),
        &[&[0, 1, 2], &[0, 1, 2]],
        &[1, 1, 1],
        30,
    );
    near(
        spread[0],
        conc[0],
        "X spread over two classes contended by the same tenants",
    );
    // Spread where each class has a different rival: X competes with weight 1/2 in each, so
    // it still gets 1/3 in total (with its full weight in each it would get 1/2).
    let split = tenant_shares(
        config,
        equal_classes(2),
        &[&[0, 1], &[0, 2]],
        &[1, 1, 1],
        30,
    );
    near(
        split[0],
        1.0 / 3.0,
        "X spread over two classes with one rival each",
    );
    near(split[1], 1.0 / 3.0, "X's rival in class 0");
    near(split[2], 1.0 / 3.0, "X's rival in class 1");
    // Weight 2 spread over three classes with one weight-1 rival each: weight 2/3 in each
    // class, so 2/5 of each class and 2/5 in total, as in a flat queue with the three rivals
    // (2 / (2 + 1 + 1 + 1)).
    let three = tenant_shares(
        config,
        equal_classes(3),
        &[&[0, 1], &[0, 2], &[0, 3]],
        &[2, 1, 1, 1],
        30,
    );
    near(three[0], 0.4, "weight-2 X spread over three classes");
    let flat = tenant_shares(
        config,
        equal_classes(1),
        &[&[0, 1, 2, 3]],
        &[2, 1, 1, 1],
        30,
    );
    near(
        three[0],
        flat[0],
        "spread vs concentrated with the same rivals",
    );
}

#[test]
fn spreading_over_classes_gains_nothing_with_a_divisible_quantum() {
    anti_spreading(QueueConfig::new().with_quantum(nz(12)));
}

#[test]
fn spreading_over_classes_gains_nothing_with_the_default_quantum() {
    anti_spreading(QueueConfig::new());
}
