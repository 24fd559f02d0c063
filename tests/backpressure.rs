#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Capability 4 (host integration and backpressure) through the public API of
//! [`SharedScheduler`]: many producer and worker threads, leases, blocking waits with
//! timeouts, waker-based futures, close, graded pressure with hysteresis and adaptive
//! concurrency limits.
//!
//! Real threads are used where the behaviour is about threads. Tests that need to know that
//! a thread is already asleep before acting give it a short head start. The assertions hold
//! whether or not the head start was long enough (a late thread simply finds the work or room
//! already there); only how sharply a lost wake-up is exposed can depend on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{
    Limit, ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig,
    SharedScheduler,
    adaptive::{AdaptiveLimit, Aimd, Gradient, Outcome},
    config::{Capacity, TenantLimits},
    pressure::{Band, PressureConfig, PressureGauge, PressureLevel},
    shared::WaitError,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Long enough that a wait ending on its own timeout would fail the test's own deadline.
const LONG: Duration = Duration::from_secs(30);
/// How long a test waits for something that must happen promptly.
const PROMPT: Duration = Duration::from_secs(5);
/// A head start for a thread that is about to block.
const SETTLE: Duration = Duration::from_millis(100);

// ===== helpers =====

/// SplitMix64: a tiny seeded generator, so every run makes the same choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Wakes a parked thread: the waker of [`block_on`].
struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The smallest executor: polls `fut` on this thread, parking between polls.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    (counter, waker)
}

fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Runs `f` on a new thread and returns a receiver for its result.
fn spawn_recv<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> mpsc::Receiver<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[track_caller]
fn recv_prompt<R>(rx: &mpsc::Receiver<R>, what: &str) -> R {
    match rx.recv_timeout(PROMPT) {
        Ok(out) => out,
        Err(e) => panic!("{what}: no result within {PROMPT:?} ({e})"),
    }
}

type Shared<T> = SharedScheduler<u32, T>;

// ===== conservation and FIFO under real threads =====

/// An item of the conservation test: which producer pushed it, for which tenant, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Item {
    producer: u32,
    tenant: u32,
    id: u64,
}

/// One item as a worker received it. `before`/`after` are readings of a global counter taken
/// just before the call that returned it and just after; the item left the scheduler in
/// between. `call` names the call (items of a batch share it), `pos` is the position in it.
#[derive(Debug, Clone, Copy)]
struct Received {
    item: Item,
    before: u64,
    after: u64,
    call: (u32, u64),
    pos: usize,
}

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

fn work(h: &Shared<Item>, worker: u32, seed: u64, clock: &AtomicU64) -> Vec<Received> {
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut calls = 0u64;
    let wait = Duration::from_millis(20);
    loop {
        calls += 1;
        let call = (worker, calls);
        // Release held leases before anything that blocks, so workers never wait on each
        // other's leases until a timeout.
        let mode = rng.range(0, 5);
        if mode <= 1 {
            for lease in held.drain(..) {
                drop(lease);
            }
        }
        let before = clock.fetch_add(1, SeqCst);
        let (items, leases, closed) = match mode {
            0 => match h.dispatch_timeout(wait) {
                Ok(job) => (vec![job.item], vec![job.lease], false),
                Err(WaitError::Timeout) => (vec![], vec![], false),
                Err(e) => (vec![], vec![], e == WaitError::Closed),
            },
            1 => match h.pop_timeout(wait) {
                Ok(item) => (vec![item], vec![], false),
                Err(WaitError::Timeout) => (vec![], vec![], false),
                Err(e) => (vec![], vec![], e == WaitError::Closed),
            },
            2 => (h.pop_batch(rng.range(1, 8) as usize), vec![], false),
            3 => {
                let jobs = h.dispatch_batch(rng.range(1, 5) as usize);
                let (items, leases): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.item, j.lease)).unzip();
                (items, leases, false)
            }
            4 => match h.try_dispatch() {
                Some(job) => (vec![job.item], vec![job.lease], false),
                None => (vec![], vec![], false),
            },
            _ => (h.try_pop().into_iter().collect(), vec![], false),
        };
        let after = clock.fetch_add(1, SeqCst);
        if closed {
            break;
        }
        let empty = items.is_empty();
        for (pos, item) in items.into_iter().enumerate() {
            got.push(Received {
                item,
                before,
                after,
                call,
                pos,
            });
        }
        for lease in leases {
            match rng.range(0, 3) {
                0 => lease.complete(rng.range(1, 6) as u32),
                1 => lease.complete_with(rng.range(1, 6) as u32, Outcome::Failure),
                2 => drop(lease),
                _ => held.push(lease),
            }
        }
        if held.len() > 2 {
            drop(held.remove(0));
        }
        if empty && mode >= 2 {
            if h.is_closed() {
                break;
            }
            thread::yield_now();
        }
    }
    drop(held);
    got
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
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in &received {
        *seen.entry(r.item.id).or_default() += 1;
    }
    for it in &left {
        *seen.entry(it.id).or_default() += 1;
    }
    let expected: HashSet<u64> = admitted
        .iter()
        .flat_map(|m| m.values().flatten().copied())
        .collect();
    assert_eq!(
        expected.len() as u64,
        u64::from(PRODUCERS) * ITEMS_PER_PRODUCER
    );
    let dupes: Vec<_> = seen.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(dupes.is_empty(), "items handed out twice: {dupes:?}");
    let seen_ids: HashSet<u64> = seen.keys().copied().collect();
    assert_eq!(
        seen_ids.difference(&expected).count(),
        0,
        "unknown items came back"
    );
    let lost: Vec<_> = expected.difference(&seen_ids).collect();
    assert!(lost.is_empty(), "{} items lost: {:?}", lost.len(), lost);

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

// ===== in-flight limits =====

#[test]
fn in_flight_limits_hold_under_concurrent_workers() {
    const GLOBAL: u32 = 3;
    const PER_TENANT: u32 = 2;
    const HOT: u32 = 0; // overridden to 1
    const N_TENANTS: u32 = 5;
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(GLOBAL))
        .with_tenant_limits(TenantLimits::new().with_max_in_flight(PER_TENANT));
    let h: Shared<(u32, u32)> = SharedScheduler::new(config);
    h.with_scheduler(|s| s.set_limits(HOT, TenantLimits::new().with_max_in_flight(1)));
    let limit_of = |t: u32| if t == HOT { 1 } else { PER_TENANT };

    let global = Arc::new(AtomicU64::new(0));
    let per: Arc<Vec<AtomicU64>> = Arc::new((0..N_TENANTS).map(|_| AtomicU64::new(0)).collect());
    let max_global = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));

    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (h, global, per, max_global, violations) = (
                h.clone(),
                Arc::clone(&global),
                Arc::clone(&per),
                Arc::clone(&max_global),
                Arc::clone(&violations),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(77 + w);
                let mut done = 0u64;
                loop {
                    let jobs = if rng.chance(30) {
                        let jobs = h.dispatch_batch(rng.range(1, 4) as usize);
                        if jobs.is_empty() {
                            if h.is_closed() {
                                break;
                            }
                            thread::yield_now();
                            continue;
                        }
                        jobs
                    } else {
                        match h.dispatch_timeout(Duration::from_millis(50)) {
                            Ok(job) => vec![job],
                            Err(WaitError::Closed) => break,
                            Err(_) => continue,
                        }
                    };
                    // Count first (after the lease exists), uncount before releasing: what
                    // the test sees in flight is a subset of what the scheduler has.
                    for job in &jobs {
                        let (t, _) = job.item;
                        let g = global.fetch_add(1, SeqCst) + 1;
                        max_global.fetch_max(g, SeqCst);
                        let n = per[t as usize].fetch_add(1, SeqCst) + 1;
                        let mut v = violations.lock().unwrap();
                        if g > u64::from(GLOBAL) {
                            v.push(format!("{g} in flight, global limit {GLOBAL}"));
                        }
                        if n > u64::from(limit_of(t)) {
                            v.push(format!("tenant {t}: {n} in flight, limit {}", limit_of(t)));
                        }
                    }
                    if rng.chance(20) {
                        h.with_scheduler(|s| {
                            let q = s.queue();
                            let mut v = violations.lock().unwrap();
                            if q.total_in_flight() > u64::from(GLOBAL) {
                                v.push(format!("scheduler reports {}", q.total_in_flight()));
                            }
                            for t in 0..N_TENANTS {
                                if q.in_flight(&t) > limit_of(t) {
                                    v.push(format!("scheduler: tenant {t} {}", q.in_flight(&t)));
                                }
                            }
                        });
                    }
                    for _ in 0..rng.range(0, 50) {
                        std::hint::spin_loop();
                    }
                    for job in jobs {
                        let (t, _) = job.item;
                        per[t as usize].fetch_sub(1, SeqCst);
                        global.fetch_sub(1, SeqCst);
                        done += 1;
                        if rng.chance(50) {
                            job.lease.complete(1);
                        } else {
                            drop(job.lease);
                        }
                    }
                }
                done
            })
        })
        .collect();

    let mut rng = Rng::new(5);
    let total = 3_000u32;
    for i in 0..total {
        // The hot tenant sends half of everything.
        let t = if rng.chance(50) {
            HOT
        } else {
            rng.range(1, u64::from(N_TENANTS) - 1) as u32
        };
        h.try_push(t, (t, i)).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !h.is_empty() && Instant::now() < until {
        thread::sleep(Duration::from_millis(2));
    }
    assert!(
        h.close().is_empty(),
        "workers should have drained the queue"
    );
    let done: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(done, u64::from(total));
    let v = violations.lock().unwrap();
    assert!(v.is_empty(), "limits exceeded: {:?}", &v[..v.len().min(10)]);
    assert!(max_global.load(SeqCst) >= 1);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn tenant_at_in_flight_limit_does_not_block_others() {
    let h: SharedScheduler<&'static str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(10)));
    h.with_scheduler(|s| s.set_limits("hog", TenantLimits::new().with_max_in_flight(1)));
    for i in 0..3 {
        h.try_push("hog", i).unwrap();
    }
    h.try_push("light", 100).unwrap();
    h.try_push("light", 101).unwrap();

    let hog = h.try_dispatch().expect("hog's first item");
    assert_eq!(hog.item, 0);
    // hog is at its limit with two items queued: light is served anyway.
    let l1 = h.try_dispatch().expect("light is not blocked by hog");
    let l2 = h.try_dispatch().expect("light is not blocked by hog");
    assert_eq!((l1.item, l2.item), (100, 101));
    assert!(h.try_dispatch().is_none(), "hog is at its limit");
    assert!(
        h.try_pop().is_none(),
        "pop honours the in-flight limits too"
    );

    // A worker asleep while only hog's items are queued gets a light item pushed later.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.try_push("light", 102).unwrap();
    assert_eq!(recv_prompt(&rx, "worker waiting behind hog"), Ok(102));

    // Releasing hog's lease wakes a waiting worker for hog's next item.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    drop(hog);
    assert_eq!(recv_prompt(&rx, "worker waiting for hog's slot"), Ok(1));
    drop((l1, l2));
    assert_eq!(h.close(), [2]);
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

// ===== producers waiting for room =====

#[test]
fn push_timeout_waits_for_room() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(1));
    let h: Shared<u32> = SharedScheduler::new(config);
    h.try_push(0, 1).unwrap();

    // Room made by a pop.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(1, 2, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    assert!(
        rx.try_recv().is_err(),
        "the queue is full: the producer waits"
    );
    assert_eq!(h.try_pop(), Some(1));
    assert!(recv_prompt(&rx, "producer after a pop").is_ok());

    // Room made by a dispatch (the lease does not hold room in the queue).
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(2, 3, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    let job = h.dispatch_timeout(PROMPT).unwrap();
    assert_eq!(job.item, 2);
    assert!(recv_prompt(&rx, "producer after a dispatch").is_ok());

    // Room made by a batch pop, for several producers at once.
    let rxs: Vec<_> = (0..3u32)
        .map(|p| {
            let h = h.clone();
            spawn_recv(move || {
                h.push_timeout(p, 10 + p, PushOptions::new(), LONG)
                    .map(|_| ())
            })
        })
        .collect();
    thread::sleep(SETTLE);
    let mut taken = h.pop_batch(1);
    for _ in 0..3 {
        // Each pop makes room for one producer.
        let until = Instant::now() + PROMPT;
        loop {
            if let Some(x) = h.try_pop() {
                taken.push(x);
                break;
            }
            assert!(
                Instant::now() < until,
                "a producer should have filled the room"
            );
            thread::yield_now();
        }
    }
    for rx in &rxs {
        assert!(recv_prompt(rx, "producers after pops").is_ok());
    }
    taken.sort_unstable();
    assert_eq!(taken, [3, 10, 11, 12]);

    // A producer that times out gets its item back with the binding limit.
    let started = Instant::now();
    h.try_push(0, 1).unwrap();
    let err = h
        .push_timeout(1, 7, PushOptions::new(), Duration::from_millis(30))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        err.into_parts(),
        (
            7,
            RejectReason::CapacityFull {
                limit: Limit::Items(1)
            }
        )
    );
    drop(job);
}

#[test]
fn push_timeout_waits_for_tenant_room() {
    let config = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_items(1));
    let h: Shared<u32> = SharedScheduler::new(config);
    h.try_push(0, 1).unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(0, 2, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err());
    // Another tenant is not affected.
    h.try_push(1, 3).unwrap();
    let job = h.try_dispatch().unwrap();
    assert_eq!(job.item, 1);
    assert!(recv_prompt(&rx, "producer after its tenant's pop").is_ok());
    let mut left = h.close();
    left.sort_unstable();
    assert_eq!(left, [2, 3]);
}

#[test]
fn push_timeout_returns_at_once_on_refusals_no_wait_can_lift() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.block("bad", fairshare::BlockReason::Abuse));
    let started = Instant::now();
    let err = h
        .push_timeout("bad", 1, PushOptions::new(), LONG)
        .unwrap_err();
    assert!(matches!(err.reason(), RejectReason::Blocked { .. }));
    let err = h
        .push_timeout("good", 2, PushOptions::new().with_cost(0), LONG)
        .unwrap_err();
    assert_eq!(err.into_parts(), (2, RejectReason::ZeroCost));
    assert!(
        started.elapsed() < PROMPT,
        "no waiting for a refusal time cannot lift"
    );
}

/// The first incident: one tenant floods a full queue, producers of other tenants wait for
/// room, and an operator purges the flood through `with_scheduler`. The room the purge
/// makes must reach the waiting producer.
#[test]
fn push_timeout_wakes_when_operator_purges() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2));
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(config);
    h.try_push("flood", 1).unwrap();
    h.try_push("flood", 2).unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("victim", 3, PushOptions::new(), LONG)
                .map(|_| ())
        })
    };
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err(), "queue full: the producer waits");
    let purged = h.with_scheduler(|s| {
        s.block("flood", fairshare::BlockReason::Abuse);
        s.purge(&"flood")
    });
    assert_eq!(purged, [1, 2]);
    assert!(
        recv_prompt(&rx, "producer after the operator purged the flood").is_ok(),
        "the purge made room"
    );
    assert_eq!(h.try_pop(), Some(3));
}

/// Two producers wait for different reasons: one for its tenant's cap, one for global room.
/// A pop of a third tenant's item frees global room only; it must reach the producer that
/// can use it, not be spent on the one that cannot.
#[test]
fn room_reaches_the_producer_that_can_use_it() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2));
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(config);
    h.with_scheduler(|s| s.set_limits("capped", TenantLimits::new().with_max_items(1)));
    h.try_push("other", 1).unwrap();
    h.try_push("capped", 2).unwrap();

    // Waits for its tenant's cap (checked before the global capacity).
    let capped = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("capped", 3, PushOptions::new(), LONG)
                .map(|_| ())
                .map_err(|r| r.into_parts())
        })
    };
    thread::sleep(SETTLE);
    // Waits for global room.
    let newcomer = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("new", 4, PushOptions::new(), LONG)
                .map(|_| ())
                .map_err(|r| r.into_parts())
        })
    };
    thread::sleep(SETTLE);
    assert!(capped.try_recv().is_err() && newcomer.try_recv().is_err());

    // DRR serves "other" first: global room, but "capped" is still at its cap.
    assert_eq!(h.try_pop(), Some(1));
    assert!(
        recv_prompt(&newcomer, "producer waiting for global room").is_ok(),
        "the freed room must reach the producer that can use it"
    );
    assert!(capped.try_recv().is_err(), "capped's tenant is still full");
    assert_eq!(h.try_pop(), Some(2));
    assert!(recv_prompt(&capped, "producer waiting for its tenant's cap").is_ok());
}

// ===== workers waiting for work =====

#[test]
fn one_push_wakes_one_waiter() {
    const N: usize = 6;
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let returned = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..N)
        .map(|_| {
            let (h, returned, tx) = (h.clone(), Arc::clone(&returned), tx.clone());
            thread::spawn(move || {
                let out = h.dispatch_timeout(LONG).map(|j| j.item);
                returned.fetch_add(1, SeqCst);
                let _ = tx.send(out);
            })
        })
        .collect();
    thread::sleep(SETTLE);
    h.try_push(0, 42).unwrap();
    assert_eq!(recv_prompt(&rx, "one waiter takes the item"), Ok(42));
    thread::sleep(SETTLE);
    assert_eq!(returned.load(SeqCst), 1, "the others keep waiting");

    // Two more items: two more waiters return, no more.
    let _ = h.try_push_batch([(1, 43, PushOptions::new()), (2, 44, PushOptions::new())]);
    let mut two = [
        recv_prompt(&rx, "batch wake 1").unwrap(),
        recv_prompt(&rx, "batch wake 2").unwrap(),
    ];
    two.sort_unstable();
    assert_eq!(two, [43, 44]);
    thread::sleep(SETTLE);
    assert_eq!(returned.load(SeqCst), 3);

    assert!(h.close().is_empty());
    let rest: Vec<_> = (0..N - 3).map(|_| recv_prompt(&rx, "close")).collect();
    assert!(
        rest.iter().all(|r| *r == Err(WaitError::Closed)),
        "{rest:?}"
    );
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(returned.load(SeqCst), N);
}

#[test]
fn waiters_time_out_without_work() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let started = Instant::now();
    assert_eq!(
        h.dispatch_timeout(Duration::from_millis(20))
            .map(|j| j.item),
        Err(WaitError::Timeout)
    );
    assert_eq!(
        h.pop_timeout(Duration::from_millis(20)),
        Err(WaitError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(h.pop_timeout(Duration::ZERO), Err(WaitError::Timeout));
    h.try_push(0, 1).unwrap();
    assert_eq!(
        h.pop_timeout(Duration::ZERO),
        Ok(1),
        "work queued: no wait needed"
    );
}

#[test]
fn with_scheduler_push_wakes_a_waiting_worker() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.pop_timeout(LONG))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.try_push(3, 33).map(|_| ()).unwrap());
    assert_eq!(recv_prompt(&rx, "worker after with_scheduler push"), Ok(33));
}

/// An operator raises a tenant's in-flight cap through `with_scheduler` (its rustdoc names
/// `set_limits` as a use): a worker asleep while that tenant's queued items were blocked by
/// the old cap must be woken to take them.
#[test]
fn raising_a_tenant_in_flight_cap_wakes_waiting_workers() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.set_limits("a", TenantLimits::new().with_max_in_flight(1)));
    h.try_push("a", 1).unwrap();
    h.try_push("a", 2).unwrap();
    let held = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none(), "a is at its cap");
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.set_limits("a", TenantLimits::new().with_max_in_flight(2)));
    assert_eq!(
        recv_prompt(&rx, "worker after the tenant's cap was raised"),
        Ok(2)
    );
    drop(held);
}

/// The same for the global in-flight limit, raised through `with_scheduler`.
#[test]
fn raising_the_global_in_flight_limit_wakes_waiting_workers() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push(0, 1).unwrap();
    h.try_push(1, 2).unwrap();
    let held = h.try_dispatch().unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.set_in_flight_limit(Some(2)));
    assert_eq!(
        recv_prompt(&rx, "worker after the global limit was raised"),
        Ok(2)
    );
    drop(held);
}

// ===== async =====

#[test]
fn async_dispatch_and_pop_resolve_after_a_push_from_another_thread() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let dispatcher = {
        let h = h.clone();
        spawn_recv(move || {
            block_on(async {
                let job = h.dispatch_async().await?;
                let item = job.item;
                job.lease.complete(2);
                Ok::<_, WaitError>(item)
            })
        })
    };
    let popper = {
        let h = h.clone();
        spawn_recv(move || block_on(h.pop_async()))
    };
    thread::sleep(SETTLE);
    let pusher = {
        let h = h.clone();
        thread::spawn(move || {
            h.try_push(1, 10).unwrap();
            h.try_push(2, 20).unwrap();
        })
    };
    pusher.join().unwrap();
    let mut got = [
        recv_prompt(&dispatcher, "dispatch_async").unwrap(),
        recv_prompt(&popper, "pop_async").unwrap(),
    ];
    got.sort_unstable();
    assert_eq!(got, [10, 20]);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn async_stream_of_items_on_one_task() {
    // One task awaits many items in turn while another thread pushes them.
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(2)));
    let n = 500u32;
    let consumer = {
        let h = h.clone();
        spawn_recv(move || {
            block_on(async {
                let mut got = Vec::new();
                while let Ok(job) = h.dispatch_async().await {
                    got.push(job.item);
                }
                got
            })
        })
    };
    for i in 0..n {
        h.try_push(0, i).unwrap();
        if i % 64 == 0 {
            thread::yield_now();
        }
    }
    let until = Instant::now() + PROMPT;
    while !h.is_empty() && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(h.close().is_empty());
    let got = recv_prompt(&consumer, "async consumer");
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "one tenant: FIFO");
}

#[test]
fn dropping_a_woken_future_passes_the_wake_up_on() {
    for use_pop in [false, true] {
        let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
        let (c1, w1) = counting_waker();
        let (c2, w2) = counting_waker();
        let mut f1: Pin<Box<dyn Future<Output = Result<u32, WaitError>> + '_>> = if use_pop {
            Box::pin(h.pop_async())
        } else {
            Box::pin(async { h.dispatch_async().await.map(|j| j.item) })
        };
        let mut f2: Pin<Box<dyn Future<Output = Result<u32, WaitError>> + '_>> = if use_pop {
            Box::pin(h.pop_async())
        } else {
            Box::pin(async { h.dispatch_async().await.map(|j| j.item) })
        };
        assert!(poll_once(f1.as_mut(), &w1).is_pending());
        assert!(poll_once(f2.as_mut(), &w2).is_pending());

        h.try_push(0, 5).unwrap();
        assert_eq!(
            (c1.0.load(SeqCst), c2.0.load(SeqCst)),
            (1, 0),
            "one item, one wake"
        );
        drop(f1); // woken, never polled again
        assert_eq!(
            c2.0.load(SeqCst),
            1,
            "the wake-up passed to the other waiter"
        );
        assert_eq!(poll_once(f2.as_mut(), &w2), Poll::Ready(Ok(5)));
    }
}

#[test]
fn dropping_a_future_that_was_not_woken_keeps_wake_ups_for_others() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let (c1, w1) = counting_waker();
    let (c2, w2) = counting_waker();
    let mut f1 = Box::pin(h.dispatch_async());
    let mut f2 = Box::pin(h.dispatch_async());
    assert!(poll_once(f1.as_mut(), &w1).is_pending());
    assert!(poll_once(f2.as_mut(), &w2).is_pending());
    drop(f1);
    assert_eq!(c2.0.load(SeqCst), 0, "no work: nothing to pass on");
    h.try_push(0, 6).unwrap();
    assert_eq!(
        c1.0.load(SeqCst),
        0,
        "the dropped future is no longer a waiter"
    );
    assert_eq!(c2.0.load(SeqCst), 1);
    match poll_once(f2.as_mut(), &w2) {
        Poll::Ready(Ok(job)) => assert_eq!(job.item, 6),
        other => panic!("expected the item, got {other:?}"),
    }
}

#[test]
fn one_push_wakes_one_task() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let wakers: Vec<_> = (0..5).map(|_| counting_waker()).collect();
    let mut futs: Vec<_> = (0..5).map(|_| Box::pin(h.pop_async())).collect();
    for (f, (_, w)) in futs.iter_mut().zip(&wakers) {
        assert!(poll_once(f.as_mut(), w).is_pending());
    }
    // Re-polling a pending future does not register it twice.
    assert!(poll_once(futs[0].as_mut(), &wakers[0].1).is_pending());
    let woken = || {
        wakers
            .iter()
            .map(|(c, _)| c.0.load(SeqCst))
            .collect::<Vec<_>>()
    };

    h.try_push(0, 1).unwrap();
    assert_eq!(woken(), [1, 0, 0, 0, 0], "oldest waiter first, only one");
    let _ = h.try_push_batch([(0, 2, PushOptions::new()), (0, 3, PushOptions::new())]);
    assert_eq!(woken(), [1, 1, 1, 0, 0], "two items, two more");
    for (i, f) in futs.iter_mut().take(3).enumerate() {
        assert_eq!(
            poll_once(f.as_mut(), &wakers[i].1),
            Poll::Ready(Ok(i as u32 + 1))
        );
    }
    let left = h.close();
    assert!(left.is_empty());
    assert_eq!(woken(), [1, 1, 1, 1, 1], "close wakes everyone left");
    for (i, f) in futs.iter_mut().enumerate().skip(3) {
        assert_eq!(
            poll_once(f.as_mut(), &wakers[i].1),
            Poll::Ready(Err(WaitError::Closed))
        );
    }
}

#[test]
fn close_resolves_pending_futures_with_closed() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let h = h.clone();
            spawn_recv(move || {
                if i % 2 == 0 {
                    block_on(h.dispatch_async()).map(|j| j.item)
                } else {
                    block_on(h.pop_async())
                }
            })
        })
        .collect();
    thread::sleep(SETTLE);
    assert!(h.close().is_empty());
    for rx in &tasks {
        assert_eq!(
            recv_prompt(rx, "future after close"),
            Err(WaitError::Closed)
        );
    }
    // A future made after close resolves at once.
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        pin!(h.pop_async()).poll(&mut cx),
        Poll::Ready(Err(WaitError::Closed))
    );
}

#[test]
fn async_dispatch_waits_for_a_free_slot() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push(0, 1).unwrap();
    h.try_push(1, 2).unwrap();
    let held = h.try_dispatch().unwrap();
    let (c, w) = counting_waker();
    let mut fut = Box::pin(h.dispatch_async());
    assert!(
        poll_once(fut.as_mut(), &w).is_pending(),
        "the one slot is held"
    );
    held.lease.complete(1);
    assert_eq!(c.0.load(SeqCst), 1, "completion wakes the task");
    match poll_once(fut.as_mut(), &w) {
        Poll::Ready(Ok(job)) => assert_eq!(job.item, 2),
        other => panic!("{other:?}"),
    }
}

// ===== pressure =====

fn level_after(s: &mut Scheduler<u32, u32, ManualClock>, target: usize) -> PressureLevel {
    while s.queue().len() < target {
        let n = s.queue().len() as u32;
        s.try_push(n % 7, n).unwrap();
    }
    while s.queue().len() > target {
        assert!(s.pop().is_some());
    }
    s.pressure()
}

#[test]
fn pressure_rises_at_enter_and_falls_below_exit() {
    use PressureLevel::*;
    let config =
        SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(100)));
    let mut s: Scheduler<u32, u32, ManualClock> = Scheduler::with_clock(config, ManualClock::new());
    // Rising, one item at a time: each level exactly at its enter threshold.
    let rising = [
        (0, Normal),
        (49, Normal),
        (50, Elevated),
        (79, Elevated),
        (80, Shedding),
        (94, Shedding),
        (95, Critical),
        (100, Critical),
        (120, Critical),
    ];
    for (n, want) in rising {
        assert_eq!(level_after(&mut s, n), want, "rising to {n} items");
    }
    // Falling: a level holds down to its exit threshold and is left only below it.
    let falling = [
        (85, Critical),
        (84, Shedding),
        (79, Shedding), // below shedding's enter, above its exit: no flapping
        (70, Shedding),
        (69, Elevated),
        (40, Elevated),
        (39, Normal),
        (45, Normal), // above elevated's exit, below its enter
        (49, Normal),
    ];
    for (n, want) in falling {
        assert_eq!(level_after(&mut s, n), want, "at {n} items");
    }
    // Oscillating around a threshold does not flap.
    assert_eq!(level_after(&mut s, 80), Shedding);
    for _ in 0..5 {
        assert_eq!(level_after(&mut s, 78), Shedding);
        assert_eq!(level_after(&mut s, 81), Shedding);
    }
    // Jumps: several levels at once, both ways.
    assert_eq!(level_after(&mut s, 0), Normal);
    assert_eq!(level_after(&mut s, 99), Critical);
    assert_eq!(level_after(&mut s, 60), Elevated);
}

#[test]
fn shared_pressure_follows_the_queue() {
    use PressureLevel::*;
    let config =
        SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(100)));
    let h: SharedScheduler<u32, u32, ManualClock> =
        SharedScheduler::from_scheduler(Scheduler::with_clock(config, ManualClock::new()));
    let mut levels = Vec::new();
    let results = h.try_push_batch((0..95).map(|i| (i % 5, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));
    levels.push(h.pressure());
    // Down to 86: still critical (exit 850).
    let _ = h.pop_batch(9);
    levels.push(h.pressure());
    let _ = h.pop_batch(2); // 84
    levels.push(h.pressure());
    let _ = h.pop_batch(14); // 70
    levels.push(h.pressure());
    let _ = h.pop_batch(1); // 69
    levels.push(h.pressure());
    let left = h.close();
    assert_eq!(left.len(), 69);
    levels.push(h.pressure());
    assert_eq!(
        levels,
        [Critical, Critical, Shedding, Shedding, Elevated, Normal]
    );
    assert_eq!(h.with_scheduler(|s| s.pressure()), Normal);
}

/// The documented rule, written independently: the level rises to the highest level whose
/// enter threshold the load reaches; otherwise it stays at the highest level at or below the
/// current one whose exit threshold the load still reaches (`Normal` at worst), never below
/// the entered level.
fn reference_level(bands: [(u32, u32); 3], current: usize, load: u32) -> usize {
    let enter = |l: usize| bands[l - 1].0;
    let exit = |l: usize| bands[l - 1].1.min(bands[l - 1].0);
    let entered = (1..=3).rev().find(|&l| load >= enter(l)).unwrap_or(0);
    if entered >= current {
        return entered;
    }
    let stay = (1..=current).rev().find(|&l| load >= exit(l)).unwrap_or(0);
    stay.max(entered)
}

fn level_index(l: PressureLevel) -> usize {
    match l {
        PressureLevel::Normal => 0,
        PressureLevel::Elevated => 1,
        PressureLevel::Shedding => 2,
        PressureLevel::Critical => 3,
    }
}

fn small_config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

fn load_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..1_200,
        1 => Just(u32::MAX),
        1 => prop::sample::select(vec![399, 400, 499, 500, 699, 700, 799, 800, 849, 850, 949, 950]),
    ]
}

proptest! {
    #![proptest_config(small_config())]

    #[test]
    fn pressure_gauge_matches_the_documented_rule(
        custom in any::<bool>(),
        raw in prop::array::uniform3((0u32..1_200, 0u32..1_200)),
        loads in prop::collection::vec(load_strategy(), 1..60),
    ) {
        let bands = if custom {
            raw
        } else {
            [(500, 400), (800, 700), (950, 850)]
        };
        let config = PressureConfig::new().with_bands(
            Band::new(bands[0].0, bands[0].1),
            Band::new(bands[1].0, bands[1].1),
            Band::new(bands[2].0, bands[2].1),
        );
        let mut gauge = PressureGauge::new(config);
        let mut level = 0;
        for load in loads {
            let got = gauge.update(load);
            prop_assert_eq!(got, gauge.level());
            let want = reference_level(bands, level, load);
            prop_assert_eq!(level_index(got), want, "load {} from level {}", load, level);
            if !custom {
                // Default bands are ordered, so the level only reflects thresholds reached.
                if level_index(got) > level {
                    prop_assert!(load >= bands[level_index(got) - 1].0);
                }
                if level_index(got) > 0 {
                    prop_assert!(load >= bands[level_index(got) - 1].1);
                }
            }
            level = want;
        }
    }

    #[test]
    fn adaptive_limits_stay_within_bounds(
        min in 0u32..40,
        max in 0u32..200,
        initial in 0u32..300,
        threshold_ms in 0u64..100,
        backoff in 0u32..1_500,
        samples in prop::collection::vec((0u64..300_000_000, 0u8..3), 0..200),
    ) {
        let aimd = Aimd::new(min, max, Nanos::from_millis(threshold_ms)).with_backoff_permille(backoff);
        let (lo, hi) = aimd.bounds();
        prop_assert_eq!(lo, min.max(1));
        prop_assert_eq!(hi, max.max(lo));
        let mut a = AdaptiveLimit::aimd(aimd, initial);
        let grad = Gradient::new(min, max);
        prop_assert_eq!(grad.bounds(), (lo, hi));
        let mut g = AdaptiveLimit::gradient(grad, initial);
        prop_assert!((lo..=hi).contains(&a.current()));
        prop_assert!((lo..=hi).contains(&g.current()));
        for (latency, outcome) in samples {
            let outcome = match outcome {
                0 => Outcome::Success,
                1 => Outcome::Failure,
                _ => Outcome::Dropped,
            };
            let latency = Nanos::new(latency);
            let before = a.current();
            let after = a.on_sample(latency, outcome);
            prop_assert_eq!(after, a.current());
            prop_assert!((lo..=hi).contains(&after), "aimd {} outside [{}, {}]", after, lo, hi);
            match outcome {
                Outcome::Dropped => prop_assert_eq!(after, before, "a dropped lease is no signal"),
                Outcome::Failure => prop_assert!(after <= before, "failure never grows"),
                _ if latency > Nanos::from_millis(threshold_ms) => {
                    prop_assert!(after <= before, "slow never grows")
                }
                _ => prop_assert!(after == before || after == before + 1, "fast grows by at most one"),
            }
            let before = g.current();
            let after = g.on_sample(latency, outcome);
            prop_assert!((lo..=hi).contains(&after), "gradient {} outside [{}, {}]", after, lo, hi);
            if outcome == Outcome::Dropped {
                prop_assert_eq!(after, before);
            }
        }
    }
}

// ===== adaptive limits =====

#[test]
fn aimd_backs_off_on_failure_and_slowness_and_grows_after_a_limits_worth() {
    let threshold = Nanos::from_millis(100);
    let fast = Nanos::from_millis(10);
    let slow = Nanos::from_millis(101);
    let mut l = AdaptiveLimit::aimd(Aimd::new(1, 10, threshold), 4);
    assert_eq!(l.current(), 4);
    for _ in 0..3 {
        assert_eq!(l.on_sample(fast, Outcome::Success), 4);
    }
    assert_eq!(
        l.on_sample(fast, Outcome::Success),
        5,
        "4 fast successes at limit 4"
    );
    assert_eq!(
        l.on_sample(threshold, Outcome::Success),
        5,
        "at the threshold is fast"
    );
    assert_eq!(l.on_sample(fast, Outcome::Failure), 4, "5 * 0.9 = 4.5 → 4");
    assert_eq!(
        l.on_sample(slow, Outcome::Success),
        3,
        "too slow backs off too"
    );
    assert_eq!(l.on_sample(slow, Outcome::Dropped), 3, "dropped: no signal");
    // A back-off resets the success count: a limit's worth is counted afresh.
    assert_eq!(l.on_sample(fast, Outcome::Success), 3);
    assert_eq!(l.on_sample(fast, Outcome::Failure), 2);
    assert_eq!(l.on_sample(fast, Outcome::Success), 2);
    assert_eq!(l.on_sample(fast, Outcome::Success), 3);
    // Never below min, never above max.
    for _ in 0..20 {
        l.on_sample(fast, Outcome::Failure);
    }
    assert_eq!(l.current(), 1);
    for _ in 0..200 {
        l.on_sample(fast, Outcome::Success);
    }
    assert_eq!(l.current(), 10);
    // A custom back-off.
    let mut half = AdaptiveLimit::aimd(Aimd::new(1, 64, threshold).with_backoff_permille(500), 8);
    assert_eq!(half.on_sample(fast, Outcome::Failure), 4);
}

#[test]
fn gradient_shrinks_on_rising_latency_and_grows_when_steady() {
    let mut g = AdaptiveLimit::gradient(Gradient::new(1, 100), 20);
    let steady = Nanos::from_millis(10);
    for _ in 0..50 {
        g.on_sample(steady, Outcome::Success);
    }
    let grown = g.current();
    assert!(grown > 20, "steady latency grows the limit ({grown})");
    // A latency jump far above the long-term average shrinks the limit at once, sample by
    // sample, while the long-term average still remembers the old latency.
    let mut prev = grown;
    for i in 0..5 {
        let now = g.on_sample(Nanos::from_millis(200), Outcome::Success);
        assert!(now < prev, "slow sample {i}: {now} !< {prev}");
        prev = now;
    }
    // Once the long-term average has adapted to the new latency, it grows again: the
    // gradient tracks change, not absolute latency.
    for _ in 0..100 {
        g.on_sample(Nanos::from_millis(200), Outcome::Success);
    }
    assert!(g.current() > prev, "{} after adapting", g.current());
    // A failure halves the gradient: never grows.
    let before = g.current();
    g.on_sample(Nanos::from_millis(200), Outcome::Failure);
    assert!(g.current() <= before);
}

type Clocked = SharedScheduler<u32, u32, ManualClock>;

fn clocked(config: SchedulerConfig) -> (Clocked, ManualClock) {
    let clock = ManualClock::new();
    let h = SharedScheduler::from_scheduler(Scheduler::with_clock(config, clock.clone()));
    (h, clock)
}

#[test]
fn adaptive_limit_follows_completion_latency_on_a_manual_clock() {
    let (h, clock) = clocked(SchedulerConfig::new());
    let limit = |h: &Clocked| h.with_scheduler(|s| s.queue().in_flight_limit());
    h.set_adaptive_limit(Some(AdaptiveLimit::aimd(
        Aimd::new(1, 16, Nanos::from_millis(50)),
        8,
    )));
    assert_eq!(limit(&h), Some(8));
    let results = h.try_push_batch((0..200).map(|i| (i % 4, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));

    // Slow completions shrink the limit.
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(51));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(7));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(100));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6), "7 * 0.9 = 6.3 → 6");

    // The limit binds dispatch.
    let jobs = h.dispatch_batch(100);
    assert_eq!(jobs.len(), 6);
    assert!(h.try_dispatch().is_none());
    // Six fast successes (a limit's worth) grow it by one.
    clock.advance(Duration::from_millis(10));
    for job in jobs {
        job.lease.complete(1);
    }
    assert_eq!(limit(&h), Some(7));

    // A failure backs off even when fast; a dropped lease is no signal even when slow.
    let job = h.try_dispatch().unwrap();
    job.lease.complete_with(1, Outcome::Failure);
    assert_eq!(limit(&h), Some(6));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_secs(10));
    drop(job);
    assert_eq!(limit(&h), Some(6));
    // Latency is measured from dispatch, not from push.
    clock.advance(Duration::from_secs(10));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(1));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6), "fast since its dispatch: no back-off");

    // Turning the adaptive limit off leaves the limit where it is and stops adapting.
    h.set_adaptive_limit(None);
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_secs(1));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6));
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn adaptive_growth_wakes_as_many_workers_as_it_frees() {
    let (h, clock) = clocked(SchedulerConfig::new());
    h.set_adaptive_limit(Some(AdaptiveLimit::aimd(
        Aimd::new(1, 16, Nanos::from_millis(50)),
        2,
    )));
    let results = h.try_push_batch((0..10).map(|i| (i, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));
    let j1 = h.try_dispatch().unwrap();
    let j2 = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none());
    clock.advance(Duration::from_millis(1));
    j1.lease.complete(1); // one fast success of two needed
    let j3 = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none());

    let rxs: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            // The job (and its lease) comes back to the test, so a worker's own
            // completion cannot be what frees the other worker's slot.
            spawn_recv(move || h.dispatch_timeout(LONG))
        })
        .collect();
    thread::sleep(SETTLE);
    // The second fast success grows the limit to 3: one slot freed by the completion and
    // one by the growth, so both sleeping workers get an item.
    j2.lease.complete(1);
    assert_eq!(h.with_scheduler(|s| s.queue().in_flight_limit()), Some(3));
    let jobs: Vec<_> = rxs
        .iter()
        .map(|rx| recv_prompt(rx, "worker woken by growth").expect("an item"))
        .collect();
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 3);
    drop((j3, jobs));
}
