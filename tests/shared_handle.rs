//! `SharedScheduler` across threads: concurrent producers and workers lose no item and keep
//! each tenant's FIFO order, a lease releases its slot exactly once (on completion, drop or a
//! worker's panic), dropped jobs hand their slots to waiting workers, and close wakes every
//! waiter and hands back every item.
//!
//! Real threads are used where the behaviour is about threads. Tests that need to know that
//! a thread is already asleep before acting give it a short head start. The assertions hold
//! whether or not the head start was long enough (a late thread simply finds the work or room
//! already there); only how sharply a lost wake-up is exposed can depend on it.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{
    Limit, PushOptions, RejectReason, SchedulerConfig, SharedScheduler, adaptive::Outcome,
    config::Capacity, shared::WaitError,
};

use common::threads::{
    Item, LONG, PROMPT, Received, Rng, SETTLE, Shared, block_on, recv_prompt, spawn_recv, work,
};
use common::{Ledger, Way};

const PRODUCERS: u32 = 4;
const WORKERS: u32 = 4;
const TENANTS: u32 = 6;
const ITEMS_PER_PRODUCER: u64 = 2_500;

fn produce(h: &Shared<Item>, producer: u32, seed: u64) -> BTreeMap<u32, Vec<u64>> {
    let mut rng = Rng::new(seed);
    // The order in which this producer's items were admitted, per tenant.
    let mut admitted: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut fresh = |rng: &mut Rng| {
        let item = Item {
            producer,
            tenant: rng.range(0, u64::from(TENANTS) - 1) as u32,
            id: (u64::from(producer) << 32) | next_id,
        };
        next_id += 1;
        item
    };
    let mut pushed = 0u64;
    while pushed < ITEMS_PER_PRODUCER {
        let opts = PushOptions::new().with_cost(rng.range(1, 4) as u32);
        if rng.chance(40) {
            let n = rng.range(1, 12).min(ITEMS_PER_PRODUCER - pushed);
            let batch: Vec<Item> = (0..n).map(|_| fresh(&mut rng)).collect();
            let results = h.try_push_batch(batch.iter().map(|it| (it.tenant, *it, opts)));
            assert_eq!(results.len(), batch.len());
            let mut retry = Vec::new();
            for (sent, result) in batch.iter().zip(results) {
                match result {
                    Ok(()) => admitted.entry(sent.tenant).or_default().push(sent.id),
                    Err(rejected) => {
                        assert!(
                            matches!(rejected.reason(), RejectReason::CapacityFull { .. }),
                            "unexpected refusal {rejected:?}"
                        );
                        let back = rejected.into_inner();
                        assert_eq!(&back, sent, "a refusal must hand back the same item");
                        retry.push(back);
                    }
                }
            }
            for item in retry {
                h.push_timeout(item.tenant, item, opts, LONG)
                    .expect("room appears while workers run");
                admitted.entry(item.tenant).or_default().push(item.id);
            }
            pushed += n;
        } else {
            let item = fresh(&mut rng);
            if rng.chance(50) {
                h.push_timeout(item.tenant, item, opts, LONG)
                    .expect("room appears while workers run");
                admitted.entry(item.tenant).or_default().push(item.id);
            } else {
                let mut item = item;
                loop {
                    match h.try_push_with(item.tenant, item, opts) {
                        Ok(()) => break,
                        Err(rejected) => {
                            assert!(matches!(
                                rejected.reason(),
                                RejectReason::CapacityFull { .. }
                            ));
                            item = rejected.into_inner();
                            thread::yield_now();
                        }
                    }
                }
                admitted.entry(item.tenant).or_default().push(item.id);
            }
            pushed += 1;
        }
    }
    admitted
}

#[test]
fn threads_conserve_items_and_keep_tenant_fifo() {
    let config = SchedulerConfig::new()
        .with_capacity(Capacity::new().with_max_items(200))
        .with_max_in_flight(Some(5));
    let h: Shared<Item> = SharedScheduler::new(config);
    let clock = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let h = h.clone();
            let clock = Arc::clone(&clock);
            thread::spawn(move || work(&h, w, 0xF00D + u64::from(w), &clock))
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let h = h.clone();
            thread::spawn(move || produce(&h, p, 0xBEEF + u64::from(p)))
        })
        .collect();

    let admitted: Vec<BTreeMap<u32, Vec<u64>>> = producers
        .into_iter()
        .map(|p| p.join().expect("producer panicked"))
        .collect();
    // Close while the workers still run: whatever is still queued comes back from close.
    let left = h.close();
    let received: Vec<Received> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker panicked"))
        .collect();

    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    assert!(h.is_empty());
    // RejectNew never evicts: no push made room by handing a queued item back.
    assert_eq!(
        h.with_scheduler(|s| s.counters().evicted),
        0,
        "RejectNew never evicts"
    );
    assert!(
        h.with_scheduler(|s| s.take_returned()).is_empty(),
        "RejectNew never evicts, and nothing expires or is shed here"
    );

    // Conservation: every admitted id exactly once, from a worker or from close.
    let mut ledger = Ledger::new();
    for id in admitted.iter().flat_map(|m| m.values().flatten().copied()) {
        ledger.pushed(id);
    }
    assert_eq!(
        ledger.pushed_count() as u64,
        u64::from(PRODUCERS) * ITEMS_PER_PRODUCER
    );
    for r in &received {
        ledger.back(r.item.id, Way::Dispatched);
    }
    for it in &left {
        ledger.back(it.id, Way::Closed);
    }
    ledger.assert_all_back();

    // Per-tenant FIFO per producer. Rank each item within its (producer, tenant) sequence.
    let mut rank: HashMap<u64, (u32, u32, usize)> = HashMap::new();
    for (p, per_tenant) in admitted.iter().enumerate() {
        for (&t, ids) in per_tenant {
            for (i, &id) in ids.iter().enumerate() {
                rank.insert(id, (p as u32, t, i));
            }
        }
    }
    let mut by_seq: HashMap<(u32, u32), Vec<(usize, Received)>> = HashMap::new();
    for r in &received {
        let (p, t, i) = rank[&r.item.id];
        assert_eq!((p, t), (r.item.producer, r.item.tenant));
        by_seq.entry((p, t)).or_default().push((i, *r));
    }
    for ((p, t), mut recs) in by_seq {
        recs.sort_by_key(|(i, _)| *i);
        // An earlier item's call must not start after a later item's call returned.
        let mut max_before = 0u64;
        let mut max_before_rank = 0usize;
        for (i, r) in &recs {
            assert!(
                r.after >= max_before,
                "producer {p} tenant {t}: item #{i} was dispatched before item #{max_before_rank}"
            );
            if r.before > max_before {
                max_before = r.before;
                max_before_rank = *i;
            }
        }
        // Within one batch, positions follow admission order.
        let mut by_call: HashMap<(u32, u64), Vec<(usize, usize)>> = HashMap::new();
        for (i, r) in &recs {
            by_call.entry(r.call).or_default().push((*i, r.pos));
        }
        for (call, mut v) in by_call {
            v.sort_by_key(|(i, _)| *i);
            assert!(
                v.windows(2).all(|w| w[0].1 < w[1].1),
                "producer {p} tenant {t}: batch {call:?} out of FIFO order: {v:?}"
            );
        }
        // Items still queued at close must be the tail of each sequence: nothing after them
        // may have been dispatched.
        let highest_dispatched = recs.last().map(|(i, _)| *i);
        for it in left.iter().filter(|it| (it.producer, it.tenant) == (p, t)) {
            let (_, _, i) = rank[&it.id];
            assert!(
                highest_dispatched.is_none_or(|h| h < i),
                "producer {p} tenant {t}: item #{i} was left queued behind a dispatched later item"
            );
        }
    }
    // close hands each tenant's items back in FIFO order too.
    let mut last: HashMap<(u32, u32), usize> = HashMap::new();
    for it in &left {
        let (p, t, i) = rank[&it.id];
        if let Some(prev) = last.insert((p, t), i) {
            assert!(
                prev < i,
                "close returned producer {p} tenant {t} out of order"
            );
        }
    }
}

// ===== leases =====

#[test]
fn lease_released_exactly_once_on_drop_and_panic() {
    let h: SharedScheduler<&'static str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    let in_flight = |h: &SharedScheduler<&'static str, u32>| {
        h.with_scheduler(|s| (s.queue().total_in_flight(), s.queue().in_flight(&"a")))
    };
    for i in 0..4 {
        h.try_push("a", i).unwrap();
    }

    // A worker thread panics while holding its lease.
    let worker = {
        let h = h.clone();
        thread::spawn(move || {
            let job = h.dispatch_timeout(PROMPT).expect("an item is queued");
            assert_eq!(job.item, 0);
            panic!("worker crashed holding item {}", job.item);
        })
    };
    assert!(worker.join().is_err(), "the worker panicked");
    assert_eq!(in_flight(&h), (0, 0), "unwinding released the lease");

    // The same inside catch_unwind on this thread.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let job = h.try_dispatch().expect("the slot is free again");
        assert_eq!(job.item, 1);
        assert_eq!(in_flight(&h), (1, 1));
        panic!("job failed");
    }));
    assert!(caught.is_err());
    assert_eq!(in_flight(&h), (0, 0));

    // complete, then the lease's drop: released once, not twice. Two items in flight make
    // a double release visible.
    h.with_scheduler(|s| s.set_in_flight_limit(Some(2)));
    let j2 = h.try_dispatch().unwrap();
    let j3 = h.try_dispatch().unwrap();
    assert_eq!(in_flight(&h), (2, 2));
    j2.lease.complete(5);
    assert_eq!(in_flight(&h), (1, 1), "complete released exactly one slot");
    let lease = j3.lease;
    assert_eq!(lease.cost(), 1);
    lease.complete_with(1, Outcome::Failure);
    assert_eq!(in_flight(&h), (0, 0));

    // A panic inside with_scheduler leaves the handle usable (the lock is not poisoned).
    let caught = catch_unwind(AssertUnwindSafe(|| {
        h.with_scheduler(|_| panic!("host closure panicked"));
    }));
    assert!(caught.is_err());
    h.try_push("a", 9).unwrap();
    assert_eq!(h.try_pop(), Some(9));
}

#[test]
fn dropped_jobs_release_their_slots_to_waiting_workers() {
    // Every worker drops its lease without completing; with one slot, each drop must let
    // the next waiting worker in.
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    let n = 200;
    for i in 0..n {
        h.try_push(i % 3, i).unwrap();
    }
    let got = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (h, got) = (h.clone(), Arc::clone(&got));
            thread::spawn(move || {
                loop {
                    match h.dispatch_timeout(LONG) {
                        Ok(job) => {
                            got.fetch_add(1, SeqCst);
                            drop(job);
                        }
                        Err(e) => return e,
                    }
                }
            })
        })
        .collect();
    let until = Instant::now() + PROMPT;
    while got.load(SeqCst) < n as usize && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        got.load(SeqCst),
        n as usize,
        "every item dispatched promptly"
    );
    assert!(h.close().is_empty());
    for w in workers {
        assert_eq!(w.join().unwrap(), WaitError::Closed);
    }
}

// ===== close =====

#[test]
fn close_wakes_waiters_and_returns_every_item() {
    // One slot, held by the test: workers find queued items they may not take and sleep;
    // the queue is full, so a producer sleeps too.
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(1))
        .with_capacity(Capacity::new().with_max_items(2));
    let h: Shared<u32> = SharedScheduler::new(config);
    h.try_push(0, 0).unwrap();
    h.try_push(1, 1).unwrap();
    let held = h.try_dispatch().expect("one slot");
    assert_eq!(held.item, 0);
    h.try_push(0, 2).unwrap();
    let full = h.try_push(1, 3).unwrap_err();
    assert_eq!(
        full.reason(),
        RejectReason::CapacityFull {
            limit: Limit::Items(2)
        }
    );

    let dispatchers: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
        })
        .collect();
    let poppers: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            spawn_recv(move || h.pop_timeout(LONG))
        })
        .collect();
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let h = h.clone();
            spawn_recv(move || {
                h.push_timeout(p, 10 + p, PushOptions::new(), LONG)
                    .map(|_| ())
                    .map_err(|r| r.into_parts())
            })
        })
        .collect();
    // An async waiter too.
    let h2 = h.clone();
    let task = spawn_recv(move || block_on(h2.dispatch_async()).map(|j| j.item));
    thread::sleep(SETTLE);
    for rx in dispatchers.iter() {
        assert!(
            rx.try_recv().is_err(),
            "no slot: the worker must still wait"
        );
    }

    let started = Instant::now();
    let mut left = h.close();
    left.sort_unstable();
    assert_eq!(left, [1, 2], "close returns exactly the queued items");
    for rx in &dispatchers {
        assert_eq!(
            recv_prompt(rx, "dispatch_timeout after close"),
            Err(WaitError::Closed)
        );
    }
    for rx in &poppers {
        assert_eq!(
            recv_prompt(rx, "pop_timeout after close"),
            Err(WaitError::Closed)
        );
    }
    let mut refused: Vec<_> = producers
        .iter()
        .map(|rx| recv_prompt(rx, "push_timeout after close").unwrap_err())
        .collect();
    refused.sort_unstable_by_key(|(item, _)| *item);
    assert_eq!(
        refused,
        [(10, RejectReason::Closed), (11, RejectReason::Closed)],
        "blocked producers get their item back with Closed"
    );
    assert_eq!(
        recv_prompt(&task, "dispatch_async after close"),
        Err(WaitError::Closed)
    );
    assert!(started.elapsed() < PROMPT);

    // After close: refusals, immediate Closed, and the held lease still completes.
    assert!(h.is_closed());
    let err = h.try_push(0, 99).unwrap_err();
    assert_eq!(err.into_parts(), (99, RejectReason::Closed));
    let results = h.try_push_batch([(0, 1, PushOptions::new()), (1, 2, PushOptions::new())]);
    assert!(
        results
            .into_iter()
            .all(|r| r.is_err_and(|r| r.reason() == RejectReason::Closed))
    );
    assert_eq!(
        h.dispatch_timeout(LONG).map(|j| j.item),
        Err(WaitError::Closed)
    );
    assert_eq!(h.pop_timeout(LONG), Err(WaitError::Closed));
    held.lease.complete(1);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    assert!(h.close().is_empty(), "a second close has nothing left");
}
