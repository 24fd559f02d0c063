//! Batch calls against the single calls as the reference model: the same random operations,
//! applied one by one to one queue (or scheduler) and in batches to another, give the same
//! results, the same refusals with the same reasons, the same order of dispatch and the same
//! counters, and every item comes back exactly once.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::config::{Capacity, Quota, ShedPolicy, TenantLimits};
use fairshare::{
    BlockReason, ClassSpec, Classes, FairQueue, ManualClock, Nanos, PushOptions, RejectReason,
    Rejected, Scheduler, SchedulerConfig, SharedScheduler, Ticket,
};
use proptest::prelude::*;

use common::{nz, proptest_config};

/// One item of a batch: its tenant, its cost (0 is refused), its class (2 is unknown: the
/// queues have two), and an optional deadline in ms (the scheduler expires and refuses on it).
type Item = (u8, u32, u16, Option<u8>);

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<Item>),
    Pop(usize),
    Dispatch(usize),
    /// Completes in-flight ticket number `which % in_flight` with `actual` cost.
    Complete {
        which: usize,
        actual: u32,
    },
    Block(u8),
    Unblock(u8),
    /// Moves the scheduler's clock on (the queue ignores it).
    Advance(u16),
}

fn item() -> impl Strategy<Value = Item> {
    (
        0u8..6,
        prop_oneof![8 => 1u32..5, 1 => Just(0)],
        prop_oneof![8 => 0u16..2, 1 => Just(2)],
        proptest::option::weighted(0.2, 0u8..30),
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(item(), 0..80).prop_map(Op::Push),
        3 => (0usize..40).prop_map(Op::Pop),
        3 => (0usize..40).prop_map(Op::Dispatch),
        3 => (any::<usize>(), 0u32..6).prop_map(|(which, actual)| Op::Complete { which, actual }),
        1 => (0u8..6).prop_map(Op::Block),
        1 => (0u8..6).prop_map(Op::Unblock),
        2 => (0u16..20).prop_map(Op::Advance),
    ]
}

fn options(&(_, cost, class, deadline): &Item) -> PushOptions {
    let o = PushOptions::new()
        .with_cost(cost)
        .with_class(fairshare::ClassId::new(class));
    match deadline {
        Some(ms) => o.with_deadline(Nanos::from_millis(u64::from(ms))),
        None => o,
    }
}

fn two_classes() -> Classes {
    Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap()
}

/// A refusal as comparable data: the reason and the item.
fn refusal(r: Result<(), Rejected<u32>>) -> Result<(), (RejectReason, u32)> {
    r.map_err(|e| (e.reason(), e.into_inner()))
}

/// Where each pushed item went; every id must land in exactly one place.
#[derive(Debug, Default)]
struct Ledger {
    pushed: BTreeSet<u32>,
    back: Vec<u32>,
}

impl Ledger {
    fn back(&mut self, items: impl IntoIterator<Item = u32>) {
        self.back.extend(items);
    }

    fn check(mut self) {
        let n = self.back.len();
        self.back.sort_unstable();
        self.back.dedup();
        assert_eq!(n, self.back.len(), "an item came back twice");
        let back: BTreeSet<u32> = self.back.into_iter().collect();
        assert_eq!(back, self.pushed, "items lost or made up");
    }
}

// ===== FairQueue =====

fn run_queue(ops: &[Op]) {
    let mut single: FairQueue<u8, u32> = FairQueue::new();
    let mut batch: FairQueue<u8, u32> = FairQueue::new();
    single.set_classes(two_classes()).unwrap();
    batch.set_classes(two_classes()).unwrap();
    single.set_in_flight_limit(Some(12));
    batch.set_in_flight_limit(Some(12));
    let (mut t_single, mut t_batch): (Vec<Ticket>, Vec<Ticket>) = (Vec::new(), Vec::new());
    let mut ledger = Ledger::default();
    let mut next_id = 0u32;
    for op in ops {
        match op {
            Op::Push(items) => {
                let ids: Vec<u32> = (next_id..).take(items.len()).collect();
                next_id += items.len() as u32;
                ledger.pushed.extend(&ids);
                let want: Vec<_> = items
                    .iter()
                    .zip(&ids)
                    .map(|(it, &id)| refusal(single.try_push_with(it.0, id, options(it))))
                    .collect();
                let got: Vec<_> = batch
                    .try_push_batch(
                        items
                            .iter()
                            .zip(&ids)
                            .map(|(it, &id)| (it.0, id, options(it))),
                    )
                    .into_iter()
                    .map(refusal)
                    .collect();
                assert_eq!(got, want);
                ledger.back(got.into_iter().filter_map(|r| r.err().map(|(_, id)| id)));
            }
            Op::Pop(max) => {
                let want: Vec<u32> = (0..*max).map_while(|_| single.pop()).collect();
                let got = batch.pop_batch(*max);
                assert_eq!(got, want);
                ledger.back(got);
            }
            Op::Dispatch(max) => {
                let want: Vec<_> = (0..*max).map_while(|_| single.dispatch()).collect();
                let got = batch.dispatch_batch(*max);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.into_iter().zip(want) {
                    assert_eq!(g.item, w.item);
                    assert_eq!(g.ticket, w.ticket);
                    ledger.back([g.item]);
                    t_single.push(w.ticket);
                    t_batch.push(g.ticket);
                }
            }
            Op::Complete { which, actual } => {
                if !t_single.is_empty() {
                    let i = which % t_single.len();
                    let a = single.complete(t_single.swap_remove(i), *actual);
                    let b = batch.complete(t_batch.swap_remove(i), *actual);
                    assert_eq!(a, b);
                }
            }
            Op::Block(t) => {
                single.block(*t, BlockReason::Abuse);
                batch.block(*t, BlockReason::Abuse);
            }
            Op::Unblock(t) => {
                assert_eq!(single.unblock(t), batch.unblock(t));
            }
            Op::Advance(_) => {}
        }
        assert_eq!(single.counters(), batch.counters());
        assert_eq!(single.len(), batch.len());
        assert_eq!(single.known_tenants(), batch.known_tenants());
    }
    let want: Vec<u32> = single.drain().collect();
    let got: Vec<u32> = batch.drain().collect();
    assert_eq!(got, want, "the same items left, in the same order");
    ledger.back(got);
    ledger.check();
}

// ===== Scheduler =====

fn scheduler(clock: &ManualClock) -> Scheduler<u8, u32, ManualClock> {
    // A tight rate, per-tenant caps and a small global capacity that evicts: every check
    // of the pipeline refuses something in a short run.
    let quota = Quota::per_second(nz(200)).allow_burst(NonZeroU32::new(12).unwrap());
    let limits = TenantLimits::new()
        .with_quota(quota)
        .with_max_items(9)
        .with_max_in_flight(3);
    let cfg = SchedulerConfig::new()
        .with_tenant_limits(limits)
        .with_capacity(Capacity::new().with_max_items(24))
        .with_shed_policy(ShedPolicy::EvictOverShare)
        .with_max_in_flight(Some(10));
    let mut s = Scheduler::with_clock(cfg, clock.clone());
    s.set_classes(two_classes()).unwrap();
    s
}

fn run_scheduler(ops: &[Op]) {
    let clock = ManualClock::new();
    let mut single = scheduler(&clock);
    let mut batch = scheduler(&clock);
    let (mut t_single, mut t_batch): (Vec<Ticket>, Vec<Ticket>) = (Vec::new(), Vec::new());
    let mut ledger = Ledger::default();
    let mut next_id = 0u32;
    for op in ops {
        match op {
            Op::Push(items) => {
                let ids: Vec<u32> = (next_id..).take(items.len()).collect();
                next_id += items.len() as u32;
                ledger.pushed.extend(&ids);
                let want: Vec<_> = items
                    .iter()
                    .zip(&ids)
                    .map(|(it, &id)| refusal(single.try_push_with(it.0, id, options(it))))
                    .collect();
                let got: Vec<_> = batch
                    .try_push_batch(
                        items
                            .iter()
                            .zip(&ids)
                            .map(|(it, &id)| (it.0, id, options(it))),
                    )
                    .into_iter()
                    .map(refusal)
                    .collect();
                assert_eq!(got, want);
                ledger.back(got.into_iter().filter_map(|r| r.err().map(|(_, id)| id)));
            }
            Op::Pop(max) => {
                let want: Vec<u32> = (0..*max).map_while(|_| single.pop()).collect();
                let got = batch.pop_batch(*max);
                assert_eq!(got, want);
                ledger.back(got);
            }
            Op::Dispatch(max) => {
                let want: Vec<_> = (0..*max).map_while(|_| single.dispatch()).collect();
                let got = batch.dispatch_batch(*max);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.into_iter().zip(want) {
                    assert_eq!(g.item, w.item);
                    assert_eq!(g.ticket, w.ticket);
                    ledger.back([g.item]);
                    t_single.push(w.ticket);
                    t_batch.push(g.ticket);
                }
            }
            Op::Complete { which, actual } => {
                if !t_single.is_empty() {
                    let i = which % t_single.len();
                    let a = single.complete(t_single.swap_remove(i), *actual);
                    let b = batch.complete(t_batch.swap_remove(i), *actual);
                    assert_eq!(a, b);
                }
            }
            Op::Block(t) => {
                single.block(*t, BlockReason::Abuse);
                batch.block(*t, BlockReason::Abuse);
            }
            Op::Unblock(t) => {
                assert_eq!(single.unblock(t), batch.unblock(t));
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(*ms))),
        }
        // Evicted, expired and shed items, with their reasons.
        let want: Vec<_> = single
            .take_returned()
            .into_iter()
            .map(|r| refusal(Err(r)))
            .collect();
        let got: Vec<_> = batch
            .take_returned()
            .into_iter()
            .map(|r| refusal(Err(r)))
            .collect();
        assert_eq!(got, want);
        ledger.back(got.into_iter().filter_map(|r| r.err().map(|(_, id)| id)));
        assert_eq!(single.stats(), batch.stats());
    }
    for t in t_single {
        single.complete(t, 1);
    }
    for t in t_batch {
        batch.complete(t, 1);
    }
    let want: Vec<u32> = std::iter::from_fn(|| single.pop()).collect();
    let got: Vec<u32> = std::iter::from_fn(|| batch.pop()).collect();
    assert_eq!(got, want, "the same items left, in the same order");
    ledger.back(got);
    let returned: Vec<u32> = batch
        .take_returned()
        .into_iter()
        .map(Rejected::into_inner)
        .collect();
    ledger.back(returned);
    ledger.check();
}

proptest! {
    #![proptest_config(proptest_config(64))]

    #[test]
    fn queue_batches_match_single_calls(ops in proptest::collection::vec(op(), 1..40)) {
        run_queue(&ops);
    }

    #[test]
    fn scheduler_batches_match_single_calls(ops in proptest::collection::vec(op(), 1..40)) {
        run_scheduler(&ops);
    }
}

// ===== fixed cases =====

#[test]
fn batch_naming_a_new_tenant_twice_creates_it_once() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let results = q.try_push_batch([
        ("new", 1, PushOptions::new()),
        ("new", 2, PushOptions::new()),
    ]);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!((q.known_tenants(), q.tenant_len(&"new")), (1, 2));
}

#[test]
fn refused_new_tenant_in_a_batch_is_forgotten_and_made_again() {
    // The first item's refusal lets the fresh slot go; the second must not push into it.
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.try_push("old", 0).unwrap();
    let results = q.try_push_batch([
        ("new", 1, PushOptions::new().with_cost(0)),
        ("other", 2, PushOptions::new()),
        ("new", 3, PushOptions::new()),
    ]);
    assert_eq!(
        results[0].as_ref().unwrap_err().reason(),
        RejectReason::ZeroCost
    );
    assert!(results[1].is_ok() && results[2].is_ok());
    assert_eq!(q.known_tenants(), 3);
    assert_eq!(q.pop_batch(10), [0, 2, 3]);
}

#[test]
fn empty_batches() {
    let mut q: FairQueue<u8, u8> = FairQueue::new();
    assert!(q.try_push_batch(std::iter::empty()).is_empty());
    assert!(q.pop_batch(4).is_empty());
    assert!(q.dispatch_batch(4).is_empty());
    q.try_push(1, 1).unwrap();
    assert!(q.pop_batch(0).is_empty());
    assert_eq!(q.len(), 1);
}

#[test]
fn batches_longer_than_a_chunk_keep_their_order() {
    let mut q: FairQueue<u32, u32> = FairQueue::new();
    let results = q.try_push_batch((0..1000).map(|i| (i % 7, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));
    let mut reference: FairQueue<u32, u32> = FairQueue::new();
    for i in 0..1000 {
        reference.try_push(i % 7, i).unwrap();
    }
    let want: Vec<u32> = std::iter::from_fn(|| reference.pop()).collect();
    assert_eq!(q.pop_batch(usize::MAX), want);
}

#[test]
fn shared_batches_go_through_the_scheduler() {
    let clock = ManualClock::new();
    let limits = TenantLimits::new().with_max_items(2);
    let h = SharedScheduler::from_scheduler(Scheduler::<u8, u32, _>::with_clock(
        SchedulerConfig::new().with_tenant_limits(limits),
        clock,
    ));
    let results = h.try_push_batch((0..5).map(|i| (1, i, PushOptions::new())));
    let reasons: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().err().map(Rejected::reason))
        .collect();
    assert_eq!(reasons[..2], [None, None]);
    assert!(
        reasons[2..]
            .iter()
            .all(|r| matches!(r, Some(RejectReason::TenantFull { .. })))
    );
    let jobs = h.dispatch_batch(1);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].item, 0);
    assert_eq!(h.pop_batch(5), [1]);
    drop(jobs);
    assert!(h.close().is_empty());
    let closed = h.try_push_batch([(1, 9, PushOptions::new())]);
    let refused = closed.into_iter().next().unwrap().unwrap_err();
    assert_eq!(refused.reason(), RejectReason::Closed);
    assert_eq!(refused.into_inner(), 9);
}
