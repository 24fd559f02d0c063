//! Nothing is lost, nothing is dropped twice: items carry a drop counter, every item the queue
//! hands back is kept by the "host", and at the end each item must have been dropped exactly
//! once (by the queue's own drop only for what was still queued, and by a dropped `drain()`
//! iterator only for what it did not yield).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{Drops, Tracked, config, nz, opts};
use fairshare::{BlockReason, FairQueue, RejectReason};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    Push { tenant: u8, cost: u32 },
    PushByHandle { tenant: u8, cost: u32 },
    Release { tenant: u8 },
    Pop,
    Dispatch,
    Complete { actual: u32 },
    Block { tenant: u8 },
    Unblock { tenant: u8 },
    Purge { tenant: u8 },
    Retain { tenant: u8, modulus: usize },
    DrainSome { take: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = 0..5u8;
    let cost = prop_oneof![8 => 1..=6u32, 1 => Just(0)];
    prop_oneof![
        30 => (tenant.clone(), cost.clone()).prop_map(|(tenant, cost)| Op::Push { tenant, cost }),
        6 => (tenant.clone(), cost).prop_map(|(tenant, cost)| Op::PushByHandle { tenant, cost }),
        3 => tenant.clone().prop_map(|tenant| Op::Release { tenant }),
        12 => Just(Op::Pop),
        6 => Just(Op::Dispatch),
        4 => (0..=10u32).prop_map(|actual| Op::Complete { actual }),
        3 => tenant.clone().prop_map(|tenant| Op::Block { tenant }),
        3 => tenant.clone().prop_map(|tenant| Op::Unblock { tenant }),
        2 => tenant.clone().prop_map(|tenant| Op::Purge { tenant }),
        3 => (tenant, 1..=3usize).prop_map(|(tenant, modulus)| Op::Retain { tenant, modulus }),
        1 => (0..4usize).prop_map(|take| Op::DrainSome { take }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Every item comes back to the host exactly once, the queue drops nothing while it runs
    /// (except what a dropped `drain()` iterator did not yield), and dropping the queue drops
    /// exactly the `len()` items still queued.
    #[test]
    fn every_item_dropped_exactly_once(
        (quantum, weight) in (1..=3u32, 1..=3u32),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let drops = Drops::default();
        let mut q: FairQueue<u8, Tracked> = FairQueue::with_config(config(quantum, weight, 4));
        let mut host: Vec<Tracked> = Vec::new();
        let mut tickets = Vec::new();
        let mut handles = [None; 5];
        // Items a dropped `drain()` iterator removed without yielding them (and dropped).
        let mut dropped_by_drain = 0usize;
        for op in &ops {
            match *op {
                Op::Push { tenant, cost } => {
                    if let Err(rejected) = q.try_push_with(tenant, drops.item(), opts(cost)) {
                        host.push(rejected.into_inner());
                    }
                }
                Op::PushByHandle { tenant, cost } => {
                    let h = *handles[tenant as usize].get_or_insert_with(|| q.tenant(tenant));
                    if let Err(rejected) = q.try_push_to(h, drops.item(), opts(cost)) {
                        host.push(rejected.into_inner());
                    }
                }
                Op::Release { tenant } => {
                    // Keep the (maybe stale) handle: later pushes with it must hand items back.
                    if let Some(h) = handles[tenant as usize] {
                        q.release(h);
                    }
                }
                Op::Pop => host.extend(q.pop()),
                Op::Dispatch => {
                    if let Some(d) = q.dispatch() {
                        host.push(d.item);
                        tickets.push(d.ticket);
                    }
                }
                Op::Complete { actual } => {
                    if let Some(t) = tickets.pop() {
                        prop_assert!(q.complete(t, actual));
                    }
                }
                Op::Block { tenant } => q.block(tenant, BlockReason::Abuse),
                Op::Unblock { tenant } => {
                    q.unblock(&tenant);
                }
                Op::Purge { tenant } => host.extend(q.purge(&tenant)),
                Op::Retain { tenant, modulus } => {
                    host.extend(q.retain(&tenant, |item| item.id % modulus != 0));
                }
                Op::DrainSome { take } => {
                    let (before, held) = (q.len(), host.len());
                    host.extend(q.drain().take(take));
                    prop_assert_eq!(host.len() - held, take.min(before), "drain yields while items remain");
                    // Dropping the iterator removes and drops every item it did not yield.
                    prop_assert_eq!(q.len(), 0, "unread items stay queued after the drain was dropped");
                    dropped_by_drain += before - take.min(before);
                }
            }
            prop_assert_eq!(
                drops.total(),
                dropped_by_drain as u64,
                "the queue dropped an item during {:?} (only a dropped drain drops items)",
                op
            );
            prop_assert_eq!(
                host.len() + q.len() + dropped_by_drain,
                drops.created(),
                "items unaccounted for after {:?}",
                op
            );
        }
        let queued = q.len() as u64;
        drop(q);
        prop_assert_eq!(
            drops.total(),
            queued + dropped_by_drain as u64,
            "dropping the queue drops exactly its len() items"
        );
        drop(host);
        prop_assert_eq!(drops.not_dropped(1), vec![], "(id, drop count) of items not dropped exactly once");
    }
}

/// Dropping a queue with many tenants, a partially served backlog and removed slots in its
/// item slab drops each queued item once and nothing else.
#[test]
fn dropping_queue_drops_each_queued_item_once() {
    let drops = Drops::default();
    let mut q: FairQueue<u32, Tracked> = FairQueue::new();
    for i in 0..1000u32 {
        q.try_push_with(i % 37, drops.item(), opts(1 + i % 5))
            .expect("accepted");
    }
    let mut host: Vec<Tracked> = (0..300).filter_map(|_| q.pop()).collect();
    host.extend(q.purge(&3));
    host.extend(q.retain(&4, |t| t.id % 2 == 0));
    assert_eq!(drops.total(), 0);
    let queued = q.len() as u64;
    assert_eq!(queued as usize + host.len(), 1000);
    drop(q);
    assert_eq!(drops.total(), queued);
    drop(host);
    assert_eq!(drops.not_dropped(1), vec![]);
}

/// A refused push hands back the very item, undropped, for every refusal reason.
#[test]
fn refusals_hand_back_the_item_undropped() {
    let drops = Drops::default();
    let mut q: FairQueue<&str, Tracked> = FairQueue::new();
    let zero = q.try_push_with("a", drops.item(), opts(0)).unwrap_err();
    assert_eq!((zero.reason(), zero.item().id), (RejectReason::ZeroCost, 0));
    q.block("b", BlockReason::Billing);
    let blocked = q.try_push("b", drops.item()).unwrap_err();
    assert_eq!(blocked.item().id, 1);
    let h = q.tenant("c");
    q.release(h);
    let stale = q.try_push_to(h, drops.item(), opts(1)).unwrap_err();
    assert_eq!(
        (stale.reason(), stale.item().id),
        (RejectReason::StaleHandle, 2)
    );
    assert_eq!(drops.total(), 0);
    let back = [zero.into_inner(), blocked.into_inner(), stale.into_inner()];
    assert_eq!(drops.total(), 0);
    drop(back);
    drop(q);
    assert_eq!(drops.not_dropped(1), vec![]);
}

// ===== retain with a panicking predicate =====

/// Builds the same queue twice: several tenants with mixed costs and weights, partly served.
fn retain_fixture(drops: &Drops) -> (FairQueue<u8, Tracked>, Vec<Tracked>) {
    let mut q = FairQueue::with_config(config(2, 1, 4));
    q.set_weight(1, nz(3));
    for i in 0..40u32 {
        q.try_push_with((i % 4) as u8, drops.item(), opts(1 + i % 4))
            .expect("accepted");
    }
    let served: Vec<Tracked> = (0..7).filter_map(|_| q.pop()).collect();
    (q, served)
}

fn pop_ids(q: &mut FairQueue<u8, Tracked>) -> Vec<usize> {
    std::iter::from_fn(|| q.pop().map(|t| t.id)).collect()
}

/// A predicate that panics midway leaves len, queued cost, per-tenant state and the pop order
/// exactly as they were, and loses no item.
#[test]
fn retain_panicking_predicate_leaves_queue_unchanged() {
    let tenant = 2u8;
    let queued_for_tenant = {
        let d = Drops::default();
        retain_fixture(&d).0.tenant_len(&tenant)
    };
    assert!(queued_for_tenant >= 3, "the fixture queues several items");
    for panic_at in [0, 1, queued_for_tenant / 2, queued_for_tenant - 1] {
        let drops = Drops::default();
        let (mut q, served) = retain_fixture(&drops);
        let reference_drops = Drops::default();
        let (mut reference, reference_served) = retain_fixture(&reference_drops);
        let snapshot = |q: &FairQueue<u8, Tracked>| {
            let per_tenant: Vec<(usize, u64)> = (0..4u8)
                .map(|t| (q.tenant_len(&t), q.tenant_queued_cost(&t)))
                .collect();
            (
                q.len(),
                q.queued_cost(),
                q.active_tenants(),
                q.known_tenants(),
                q.counters(),
                per_tenant,
            )
        };
        let before = snapshot(&q);

        let mut calls = 0;
        let result = catch_unwind(AssertUnwindSafe(|| {
            q.retain(&tenant, |item| {
                if calls == panic_at {
                    panic!("host predicate fails on call {calls}");
                }
                calls += 1;
                item.id % 2 == 0 // would remove half the items if it finished
            })
        }));
        assert!(result.is_err(), "the predicate's panic propagates");
        assert_eq!(
            drops.total(),
            0,
            "panic at call {panic_at}: the queue dropped an item"
        );
        assert_eq!(
            snapshot(&q),
            before,
            "panic at call {panic_at}: the queue changed"
        );
        assert_eq!(
            pop_ids(&mut q),
            pop_ids(&mut reference),
            "panic at call {panic_at}: the pop order changed"
        );
        drop((q, served, reference, reference_served));
        assert_eq!(drops.not_dropped(1), vec![], "panic at call {panic_at}");
        assert_eq!(reference_drops.not_dropped(1), vec![]);
    }
}

/// After a panicking predicate, the queue still works: a later retain removes what it should.
#[test]
fn retain_after_panicking_predicate_still_works() {
    let drops = Drops::default();
    let (mut q, served) = retain_fixture(&drops);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        q.retain(&0, |_| panic!("host predicate fails"))
    }));
    assert!(panicked.is_err());
    let before = q.tenant_len(&0);
    let removed = q.retain(&0, |item| item.id % 8 != 0);
    assert!(removed.iter().all(|t| t.id % 8 == 0));
    assert_eq!(q.tenant_len(&0), before - removed.len());
    let mut ids: Vec<usize> = pop_ids(&mut q);
    ids.extend(removed.iter().map(|t| t.id));
    ids.extend(served.iter().map(|t| t.id));
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<_>>(), "every item accounted for");
}

/// A deadline given to the fair queue takes effect in `take_expired` (the queue reads no
/// clock): each item due at or before `now` comes back once, undropped, as `DeadlineExpired`;
/// an item that left before its deadline never comes back, and the rest stay queued.
#[test]
fn fair_queue_take_expired_hands_back_each_due_item_once() {
    use fairshare::{Nanos, PushOptions};
    let drops = Drops::default();
    let mut q: FairQueue<&str, Tracked> = FairQueue::new();
    let due = |s| PushOptions::new().with_deadline(Nanos::from_secs(s));
    q.try_push_with("a", drops.item(), due(1)).unwrap(); // 0
    q.try_push_with("a", drops.item(), due(5)).unwrap(); // 1
    q.try_push_with("b", drops.item(), due(2)).unwrap(); // 2
    q.try_push("b", drops.item()).unwrap(); // 3: no deadline
    let mut host = q.retain(&"a", |t| t.id != 0);
    assert_eq!(host.iter().map(|t| t.id).collect::<Vec<_>>(), [0]);

    assert!(
        q.take_expired(Nanos::from_secs(1)).is_empty(),
        "item 0 left before its deadline"
    );
    let back = q.take_expired(Nanos::from_secs(2));
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].reason(),
        RejectReason::DeadlineExpired {
            deadline: Nanos::from_secs(2)
        }
    );
    assert_eq!(back[0].item().id, 2);
    assert!(
        q.take_expired(Nanos::from_secs(2)).is_empty(),
        "handed back only once"
    );
    host.extend(back.into_iter().map(|r| r.into_inner()));
    assert_eq!((q.len(), q.tenant_len(&"a"), q.tenant_len(&"b")), (2, 1, 1));
    assert_eq!(drops.total(), 0);

    let mut rest: Vec<usize> = std::iter::from_fn(|| q.pop()).map(|t| t.id).collect();
    rest.sort_unstable();
    assert_eq!(
        rest,
        [1, 3],
        "the items not taken as expired are served as usual"
    );
    assert!(q.take_expired(Nanos::from_secs(10)).is_empty());
    assert_eq!(
        drops.total(),
        2,
        "the popped items were dropped by the collect above"
    );
    drop(host);
    drop(q);
    assert_eq!(drops.not_dropped(1), vec![]);
}

/// The scheduler's own paths (eviction, expiry, queue-delay shedding, refusals, purge,
/// retain, close) hand every item back exactly once: counted by drops.
#[test]
fn scheduler_paths_drop_each_item_exactly_once() {
    use fairshare::{
        ManualClock, Nanos, PushOptions, Scheduler, SchedulerConfig, SharedScheduler,
        config::{Capacity, QueueDelay, ShedPolicy},
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let drops = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(40))
        .with_shed_policy(ShedPolicy::EvictOverShare)
        .with_queue_delay(Some(QueueDelay::new(
            Nanos::from_millis(5),
            Nanos::from_millis(20),
        )));
    let mut s: Scheduler<u32, Counted, _> = Scheduler::with_clock(cfg, clock.clone());
    let mut created = 0usize;
    let mut handed_back = 0usize;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..5_000u32 {
        let r = next();
        let tenant = (r % 5) as u32;
        match r % 11 {
            0..=6 => {
                created += 1;
                let mut opts = PushOptions::new();
                if r % 3 == 0 {
                    opts = opts.with_deadline(Nanos::from_millis(u64::from(step) + 15));
                }
                match s.try_push_with(tenant, Counted(drops.clone()), opts) {
                    // Items evicted to make room wait in the outbox for `take_returned`.
                    Ok(()) => {}
                    Err(_) => handed_back += 1,
                }
            }
            7 => handed_back += usize::from(s.pop().is_some()),
            8 => handed_back += s.take_returned().len(),
            9 => handed_back += s.retain(&tenant, |_| next_bool(step)).len(),
            _ => {
                handed_back += if step % 97 == 0 {
                    s.purge(&tenant).len()
                } else {
                    0
                }
            }
        }
        clock.advance(std::time::Duration::from_millis(1));
    }
    // Everything returned so far has been dropped by us, exactly once each.
    assert_eq!(drops.load(Ordering::SeqCst), handed_back);
    // Every path was exercised.
    let c = s.counters();
    assert!(
        c.evicted > 0 && c.expired > 0 && c.capacity_full > 0,
        "{c:?}"
    );
    assert!(c.shed > 0, "{c:?}");
    // The rest comes back through the shared handle's close, or waits to be taken.
    let queued = s.queue().len();
    let pending = s.pending_returns();
    let h = SharedScheduler::from_scheduler(s);
    let closed = h.close();
    assert_eq!(closed.len(), queued);
    let late = h.with_scheduler(|s| s.take_returned());
    assert_eq!(late.len(), pending);
    drop((closed, late));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        created,
        "every item dropped exactly once"
    );
    drop(h);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        created,
        "nothing left inside to drop"
    );
}

fn next_bool(step: u32) -> bool {
    step % 2 == 0
}
