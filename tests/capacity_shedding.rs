//! Global capacity and shedding in `Scheduler`: with `RejectNew` a full scheduler refuses the
//! newcomer naming the binding limit; with `EvictOverShare` it evicts the oldest items of the
//! tenant furthest over its weighted share (as many as the cost needs) or refuses when
//! eviction cannot make room; the queue-delay target sheds only long waits once the delay has
//! stayed above target, per class. Evicted and shed items come back through `take_returned`.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use fairshare::{
    ClassSpec, Classes, Limit, PushOptions, RejectReason, Rejected, SchedulerConfig,
    config::{Capacity, QueueDelay, ShedPolicy, TenantLimits},
};

use common::nz;
use common::scheduler::{
    Sched, admitted, cost, evicted, limits_with_quota, ms, pop_all, refused, sched,
};

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
