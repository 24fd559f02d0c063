#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Hostile input at scale: a million tenants that push once and go idle, a hasher that sends
//! every key to one bucket, costs, weights and the quantum at `u32::MAX`, host callbacks that
//! panic (a retain predicate, a key's `Clone`/`Hash`/`Eq`, a `with_scheduler` closure, a
//! `Waker`), and a manual clock that jumps by years in both directions. Every test checks
//! that nothing is lost: each item pushed comes back exactly once.
//!
//! Memory is measured with the queue's own [`FairQueue::heap_bytes`] accounting and the
//! process's resident set: a counting global allocator needs an `unsafe impl GlobalAlloc`,
//! which the crate's `unsafe_code = "forbid"` lint rules out in every target.

use fairshare::config::{QueueConfig, QueueDelay, Quota, SchedulerConfig, TenantLimits};
use fairshare::{
    BlockReason, ClassId, Clock, FairQueue, ManualClock, Nanos, PushOptions, RejectReason,
    Scheduler, SharedScheduler,
};
use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

// ===== a million idle tenants =====

/// After every tenant's one item is gone, the queue holds what it held empty plus its item
/// slab (which keeps the backlog's high-water mark, as documented), within this factor: the
/// tenant table gives its memory back.
const AFTER_DRAIN_SLACK: f64 = 1.1;

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_million_tenants_that_push_once_and_go_idle() {
    const TENANTS: u32 = 1_000_000;
    let mut q: FairQueue<u32, u32> = FairQueue::new();
    let before = q.heap_bytes();
    let rss_before = rss_kib("VmRSS:");
    for t in 0..TENANTS {
        q.try_push(t, t).unwrap();
    }
    assert_eq!(
        (q.len(), q.known_tenants()),
        (TENANTS as usize, TENANTS as usize)
    );
    let peak = q.heap_bytes();
    let rss_peak = rss_kib("VmRSS:");
    // Fair order across a million one-item tenants is push order: each is served once.
    for t in 0..TENANTS {
        assert_eq!(q.pop(), Some(t));
    }
    assert!(q.is_empty());
    assert_eq!(
        q.known_tenants(),
        0,
        "idle tenants with no settings are forgotten"
    );
    let after = q.heap_bytes();
    let rss_after = rss_kib("VmRSS:");
    println!(
        "1M idle tenants: heap_bytes before {before}, peak {peak} ({} B/tenant), after drain {after}; \
         VmRSS KiB before {rss_before:?}, peak {rss_peak:?}, after {rss_after:?}",
        (peak - before) / TENANTS as usize
    );
    let item_slab = TENANTS as usize * FairQueue::<u32, u32>::footprint().1;
    let bound = AFTER_DRAIN_SLACK * (before + item_slab) as f64;
    assert!(
        after as f64 <= bound,
        "after the drain the queue holds {after} B, above the bound {bound} (peak {peak})"
    );
    // A second, smaller wave grows nothing beyond the first's peak.
    for t in 0..1000 {
        q.try_push(t + TENANTS, t).unwrap();
    }
    assert!(q.heap_bytes() <= peak);
    assert_eq!(q.drain().count(), 1000);
}

// ===== every key in one bucket =====

#[derive(Clone, Default)]
struct OneBucket;

struct ConstHasher;

impl Hasher for ConstHasher {
    fn finish(&self) -> u64 {
        0x5eed
    }
    fn write(&mut self, _: &[u8]) {}
}

impl BuildHasher for OneBucket {
    type Hasher = ConstHasher;
    fn build_hasher(&self) -> ConstHasher {
        ConstHasher
    }
}

fn one_bucket_run<S: BuildHasher>(
    q: &mut FairQueue<u32, (u32, u32), S>,
    tenants: u32,
) -> Vec<(u32, u32)> {
    for round in 0..3 {
        for t in 0..tenants {
            q.try_push(t, (t, round)).unwrap();
        }
    }
    q.set_weight(7, NonZeroU32::new(3).unwrap());
    assert_eq!(q.purge(&11).len(), 3);
    q.block(12, BlockReason::Abuse);
    assert!(q.try_push(12, (12, 9)).is_err());
    std::iter::from_fn(|| q.pop()).collect()
}

#[test]
fn a_hasher_that_sends_every_key_to_one_bucket_is_correct_and_only_slower() {
    const TENANTS: u32 = 2_000;
    let start = Instant::now();
    let mut fast: FairQueue<u32, (u32, u32)> = FairQueue::new();
    let expected = one_bucket_run(&mut fast, TENANTS);
    let fast_time = start.elapsed();
    let start = Instant::now();
    let mut slow: FairQueue<u32, (u32, u32), OneBucket> =
        FairQueue::with_config_and_hasher(QueueConfig::new(), OneBucket);
    let got = one_bucket_run(&mut slow, TENANTS);
    let slow_time = start.elapsed();
    // Hash values never change decisions: the same order, item for item.
    assert_eq!(got, expected);
    assert_eq!(got.len(), 3 * TENANTS as usize - 3);
    // Only the tenants with settings are remembered (7's weight, 12's block).
    assert!(slow.is_empty());
    assert_eq!(slow.known_tenants(), fast.known_tenants());
    assert_eq!(slow.known_tenants(), 2);
    let mut seen = HashSet::new();
    assert!(got.iter().all(|x| seen.insert(*x)));
    println!(
        "one-bucket hasher, {TENANTS} tenants: {slow_time:?} vs {fast_time:?} with the default hasher ({:.1}x)",
        slow_time.as_secs_f64() / fast_time.as_secs_f64().max(1e-9)
    );
}

// ===== extremes =====

#[test]
fn costs_weights_and_quantum_at_u32_max() {
    let config = QueueConfig::new()
        .with_quantum(NonZeroU32::MAX)
        .with_default_weight(NonZeroU32::MAX);
    let mut q: FairQueue<u8, u32> = FairQueue::with_config(config);
    q.set_weight(1, NonZeroU32::MIN);
    for i in 0..1000u32 {
        let cost = if i % 3 == 0 { u32::MAX } else { 1 + i };
        q.try_push_with((i % 4) as u8, i, PushOptions::new().with_cost(cost))
            .unwrap();
    }
    assert_eq!(
        q.queued_cost(),
        (0..1000u64)
            .map(|i| if i % 3 == 0 {
                u64::from(u32::MAX)
            } else {
                1 + i
            })
            .sum::<u64>()
    );
    let mut tickets = Vec::new();
    let mut seen = HashSet::new();
    while let Some(d) = q.dispatch() {
        assert!(seen.insert(d.item));
        tickets.push(d.ticket);
        if tickets.len() > 10 {
            // Completions far above the estimate, and at zero, never overflow.
            for (j, t) in tickets.drain(..).enumerate() {
                assert!(q.complete(t, if j % 2 == 0 { u32::MAX } else { 0 }));
            }
        }
    }
    for t in tickets {
        assert!(q.complete(t, u32::MAX));
    }
    assert_eq!(seen.len(), 1000);
    assert!(q.is_empty());
    assert_eq!(q.total_in_flight(), 0);

    // A tenant deep in debt (every completion u32::MAX) is still served when it is the only
    // one with work: the queue is work-conserving.
    let mut q: FairQueue<u8, u32> = FairQueue::new();
    for round in 0..50 {
        q.try_push(0, round).unwrap();
        let d = q.dispatch().unwrap();
        assert!(q.complete(d.ticket, u32::MAX));
    }
    q.try_push(0, 99).unwrap();
    q.try_push(1, 100).unwrap();
    let rest: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(rest.len(), 2);
}

#[test]
fn scheduler_refuses_never_admissible_costs_and_survives_u64_time() {
    let clock = ManualClock::new();
    let limits = TenantLimits::new()
        .with_quota(Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX))
        .with_max_cost(u64::MAX);
    let mut s: Scheduler<u8, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(limits),
        clock.clone(),
    );
    clock.set(Nanos::new(u64::MAX - 1_000));
    // Ten tenants, each one item of the largest cost the burst allows.
    for i in 0..10 {
        s.try_push_with(i, u32::from(i), PushOptions::new().with_cost(u32::MAX))
            .unwrap();
    }
    let err = s
        .try_push_with(0, 77, PushOptions::new().with_cost(u32::MAX))
        .unwrap_err();
    assert!(matches!(err.reason(), RejectReason::RateLimited { .. }));
    s.try_push_with(
        20,
        99,
        PushOptions::new().with_deadline(Nanos::new(u64::MAX)),
    )
    .unwrap();
    clock.set(Nanos::new(u64::MAX));
    let mut out: Vec<u32> = std::iter::from_fn(|| s.pop()).collect();
    out.extend(s.take_returned().into_iter().map(|r| r.into_inner()));
    out.sort_unstable();
    assert_eq!(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99]);

    let tiny = TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(5).unwrap()));
    let mut s: Scheduler<u8, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(tiny),
        ManualClock::new(),
    );
    let err = s
        .try_push_with(0, 7, PushOptions::new().with_cost(u32::MAX))
        .unwrap_err();
    assert!(matches!(err.reason(), RejectReason::TooLarge { .. }));
    assert!(!err.is_retryable());
    assert_eq!(err.into_inner(), 7);
}

// ===== the clock jumps by years =====

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

#[test]
fn a_clock_that_jumps_years_backwards_and_forwards() {
    let clock = ManualClock::new();
    clock.set(Nanos::from_secs(200 * 365 * 24 * 3600)); // 200 years of uptime
    let t0 = clock.now();
    let limits = TenantLimits::new().with_quota(
        Quota::per_second(NonZeroU32::new(10).unwrap()).allow_burst(NonZeroU32::new(10).unwrap()),
    );
    let config = SchedulerConfig::new()
        .with_tenant_limits(limits)
        .with_queue_delay(Some(QueueDelay::new(
            Nanos::from_millis(5),
            Nanos::from_millis(100),
        )));
    let mut s: Scheduler<u8, u32, _> = Scheduler::with_clock(config, clock.clone());
    let mut pushed = 0u32;
    let mut refused = Vec::new();
    for i in 0..12 {
        match s.try_push_with(
            0,
            i,
            PushOptions::new().with_deadline(t0.saturating_add_nanos(1_000_000_000)),
        ) {
            Ok(()) => pushed += 1,
            Err(r) => refused.push(r.into_inner()),
        }
    }
    assert_eq!(pushed, 10, "the burst passes");
    // Fifty years back: no time passes, so no token comes back and nothing expires.
    clock.set(Nanos::new(t0.as_u64() - 50 * YEAR.as_nanos() as u64));
    let err = s.try_push(0, 100).unwrap_err();
    assert!(matches!(err.reason(), RejectReason::RateLimited { .. }));
    refused.push(err.into_inner());
    assert!(s.take_returned().is_empty());
    // Forward to t0 + 100 ms: one token back (10 per second).
    clock.set(t0.saturating_add_nanos(100_000_000));
    s.try_push(1, 200)
        .unwrap_or_else(|_| panic!("another tenant is unaffected"));
    s.try_push(0, 101).unwrap();
    assert!(s.try_push(0, 102).is_err());
    refused.push(102);
    // A hundred years on: the deadlines have passed (handed back), the quota holds a burst,
    // not a hundred years of tokens.
    clock.advance(100 * YEAR);
    let expired = s.take_returned().len()
        + {
            let mut n = 0;
            while let Some(x) = s.pop() {
                assert!(x >= 100, "item {x} was served after its deadline");
                n += 1;
            }
            n
        }
        + s.take_returned().len();
    assert_eq!(expired, 12, "10 expired + 101 + 200");
    let admitted = (0..100).filter(|i| s.try_push(0, 1000 + i).is_ok()).count();
    assert_eq!(admitted, 10, "a century refills one burst, no more");
    // Back by years again, then serve: the waits count as zero, nothing is shed.
    clock.set(Nanos::new(
        clock.now().as_u64() - 70 * YEAR.as_nanos() as u64,
    ));
    let served = std::iter::from_fn(|| s.pop()).count() + s.take_returned().len();
    assert_eq!(served, 10);
    assert_eq!(refused.len(), 4);
}

trait AddNanos {
    fn saturating_add_nanos(self, n: u64) -> Nanos;
}

impl AddNanos for Nanos {
    fn saturating_add_nanos(self, n: u64) -> Nanos {
        Nanos::new(self.as_u64().saturating_add(n))
    }
}

// ===== host callbacks that panic =====

/// The panic a host callback raises on purpose.
fn host_panic() -> ! {
    std::panic::panic_any(HOST_PANIC)
}

const HOST_PANIC: &str = "host callback panicked on purpose";

thread_local! {
    static PANIC_ON: Cell<u8> = const { Cell::new(0) };
    static DROPPED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

const CLONE: u8 = 1;
const HASH: u8 = 2;
const EQ: u8 = 4;

fn panic_on(mask: u8) {
    PANIC_ON.with(|p| p.set(mask));
}

/// A tenant key whose `Clone`, `Hash` or `Eq` panics on demand (per thread).
#[derive(Debug)]
struct PanicKey(u32);

impl Clone for PanicKey {
    fn clone(&self) -> Self {
        if PANIC_ON.with(Cell::get) & CLONE != 0 {
            host_panic();
        }
        PanicKey(self.0)
    }
}

impl Hash for PanicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if PANIC_ON.with(Cell::get) & HASH != 0 {
            host_panic();
        }
        self.0.hash(state);
    }
}

impl PartialEq for PanicKey {
    fn eq(&self, other: &Self) -> bool {
        if PANIC_ON.with(Cell::get) & EQ != 0 {
            host_panic();
        }
        self.0 == other.0
    }
}

impl Eq for PanicKey {}

/// An item that records its id when the library drops it (items handed back are forgotten
/// by the test after being recorded, so every recorded drop is the library's).
#[derive(Debug)]
struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.with(|d| d.borrow_mut().push(self.0));
    }
}

/// The ids handed back, and the ids the library dropped.
#[derive(Default)]
struct Book {
    back: Vec<u64>,
}

impl Book {
    fn take(&mut self, t: Tracked) {
        self.back.push(t.0);
        std::mem::forget(t);
    }
    /// Every id in `0..n` came back exactly once, or was dropped inside a call that panicked
    /// (`dropped_ok`); nothing is both.
    fn check(&self, n: u64, dropped_ok: &[u64]) {
        let dropped: Vec<u64> = DROPPED.with(|d| d.borrow_mut().drain(..).collect());
        let back: HashSet<u64> = self.back.iter().copied().collect();
        assert_eq!(back.len(), self.back.len(), "an item came back twice");
        for id in &dropped {
            assert!(
                !back.contains(id),
                "item {id} was handed back and also dropped"
            );
            assert!(
                dropped_ok.contains(id),
                "item {id} was dropped by the library (lost)"
            );
        }
        for id in 0..n {
            assert!(
                back.contains(&id) || dropped.contains(&id),
                "item {id} was neither handed back nor dropped (leaked)"
            );
        }
    }
}

fn caught<R>(f: impl FnOnce() -> R) -> Option<R> {
    // Keep the intended panics out of the test output; any other panic is still reported.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&HOST_PANIC) {
                prev(info);
            }
        }));
    });
    catch_unwind(AssertUnwindSafe(f)).ok()
}

#[test]
fn a_panicking_retain_predicate_leaves_every_layer_unchanged() {
    let mut book = Book::default();
    let mut q: FairQueue<u32, Tracked> = FairQueue::new();
    let mut s: Scheduler<u32, Tracked> = Scheduler::new(SchedulerConfig::new());
    let h: SharedScheduler<u32, Tracked> = SharedScheduler::new(SchedulerConfig::new());
    for i in 0..30u64 {
        let t = (i % 3) as u32;
        match i % 3 {
            0 => q.try_push(t, Tracked(i)).unwrap(),
            1 => s.try_push(t, Tracked(i)).unwrap(),
            _ => h.try_push(t, Tracked(i)).unwrap(),
        }
    }
    let mut calls = 0;
    assert!(
        caught(|| q.retain(&0, |_| {
            calls += 1;
            if calls == 4 {
                host_panic()
            }
            true
        }))
        .is_none()
    );
    assert!(caught(|| s.retain(&1, |x| if x.0 > 20 { host_panic() } else { false })).is_none());
    assert!(
        caught(|| h.with_scheduler(|s| s.retain(&2, |x| if x.0 > 20 {
            host_panic()
        } else {
            false
        })))
        .is_none()
    );
    assert_eq!((q.len(), s.queue().len(), h.len()), (10, 10, 10));
    // Every layer still works after the panic, in FIFO order.
    let from_q: Vec<u64> = std::iter::from_fn(|| q.pop())
        .map(|t| {
            let id = t.0;
            book.take(t);
            id
        })
        .collect();
    assert_eq!(from_q, (0..30).step_by(3).collect::<Vec<_>>());
    for t in s.retain(&1, |x| x.0 % 2 == 0) {
        book.take(t)
    }
    while let Some(t) = s.pop() {
        book.take(t)
    }
    for t in h.close() {
        book.take(t)
    }
    book.check(30, &[]);
}

#[test]
fn a_key_whose_clone_hash_or_eq_panics_leaves_the_queue_consistent() {
    let mut book = Book::default();
    let mut q: FairQueue<PanicKey, Tracked> = FairQueue::new();
    let mut panicked_pushes = Vec::new();
    let mut next = 0u64;
    for round in 0..4u32 {
        for mask in [CLONE, HASH, EQ, CLONE | EQ] {
            for tenant in [round, 100 + round] {
                // Existing tenant (round) and a new one (100 + round) every time.
                let id = next;
                next += 1;
                panic_on(mask);
                let r = caught(|| q.try_push(PanicKey(tenant), Tracked(id)));
                panic_on(0);
                match r {
                    Some(Ok(())) => {}
                    Some(Err(e)) => book.take(e.into_inner()),
                    None => panicked_pushes.push(id),
                }
                // Whatever panicked, the books balance.
                let by_tenant: usize = q.tenants().map(|(_, n, _)| n).sum();
                assert_eq!(
                    by_tenant,
                    q.len(),
                    "per-tenant lengths differ from the total"
                );
                panic_on(mask);
                let _ = caught(|| q.purge(&PanicKey(999)));
                let _ = caught(|| q.set_weight(PanicKey(tenant), NonZeroU32::new(2).unwrap()));
                let _ = caught(|| q.block(PanicKey(500 + tenant), BlockReason::Operator));
                panic_on(0);
                q.unblock(&PanicKey(500 + tenant));
            }
        }
        // Serve one between rounds, with every key callback panicking: popping may forget
        // an idle tenant, which hashes its key (see also the focused test below).
        panic_on(CLONE | HASH | EQ);
        let popped = caught(|| q.pop());
        panic_on(0);
        let lost: Vec<u64> = DROPPED.with(|d| d.borrow().clone());
        assert!(
            lost.iter().all(|id| panicked_pushes.contains(id)),
            "queued items {lost:?} were dropped (round {round}): only the items of pushes \
             that panicked may be"
        );
        if let Some(Some(t)) = popped {
            book.take(t);
        }
    }
    // Every tenant can still be reached by key and everything comes back.
    let mut total = 0;
    let keys: Vec<u32> = q.tenants().map(|(k, _, _)| k.0).collect();
    for k in keys {
        for t in q.purge(&PanicKey(k)) {
            book.take(t);
            total += 1;
        }
    }
    assert!(
        q.is_empty(),
        "purging every known key left {} items",
        q.len()
    );
    assert!(total > 0);
    println!(
        "panicking keys: {} of {next} pushes panicked",
        panicked_pushes.len()
    );
    book.check(next, &panicked_pushes);
}

#[test]
fn a_panicking_with_scheduler_closure_still_wakes_the_workers() {
    let h: SharedScheduler<u32, u32> = SharedScheduler::new(SchedulerConfig::new());
    let worker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let job = h.dispatch_timeout(Duration::from_secs(5));
            (
                job.map(|j| {
                    let x = j.item;
                    j.lease.complete(1);
                    x
                }),
                start.elapsed(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(100)); // let the worker park
    let r = caught(|| {
        h.with_scheduler(|s| {
            s.try_push(1, 42).unwrap();
            host_panic()
        })
    });
    assert!(r.is_none());
    let (job, waited) = worker.join().unwrap();
    assert_eq!(
        job,
        Ok(42),
        "the worker was left asleep with work queued (waited {waited:?})"
    );
    assert!(
        waited < Duration::from_secs(4),
        "woken only by its timeout ({waited:?})"
    );
    assert!(h.is_empty());
}

struct PanicWaker;

impl Wake for PanicWaker {
    fn wake(self: Arc<Self>) {
        host_panic()
    }
}

#[test]
fn a_panicking_waker_loses_nothing_on_push_or_close() {
    use std::future::Future;
    let mut book = Book::default();
    let h: SharedScheduler<u32, Tracked> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.set_in_flight_limit(Some(0))); // nothing dispatchable: futures wait
    let waker = Waker::from(Arc::new(PanicWaker));
    let mut cx = Context::from_waker(&waker);
    let mut panicked = Vec::new();
    for i in 0..10u64 {
        let mut fut = Box::pin(h.dispatch_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // A push wakes the waiting future: its waker panics inside our push.
        if caught(|| h.try_push(1, Tracked(i))).is_none() {
            panicked.push(i);
        }
        std::mem::forget(fut); // keep the waiter registered
    }
    let queued = h.len();
    println!(
        "panicking waker: {} of 10 pushes panicked, {queued} items queued",
        panicked.len()
    );
    let mut fut = Box::pin(h.dispatch_async());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    // Close wakes every waiter; with a panicking waker, the queued items must still come back.
    match caught(|| h.close()) {
        Some(items) => items.into_iter().for_each(|t| book.take(t)),
        None => {
            // The panic escaped close: whatever it had not handed back must still be there.
            assert!(h.is_closed());
            for t in h.close() {
                book.take(t);
            }
        }
    }
    std::mem::forget(fut);
    book.check(10, &panicked);
    assert_eq!(
        book.back.len(),
        queued,
        "close handed back fewer items than were queued"
    );
}

#[test]
fn classes_and_deadlines_at_scale_hand_everything_back() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u32, u64, _> =
        Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    s.set_classes(
        fairshare::Classes::new([
            fairshare::ClassSpec::new("a"),
            fairshare::ClassSpec::new("b"),
        ])
        .unwrap(),
    )
    .unwrap();
    let n = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    for i in 0..n {
        let opts = PushOptions::new()
            .with_class(ClassId::new((i % 2) as u16))
            .with_deadline(Nanos::from_millis(1 + i % 1000));
        s.try_push_with((i % 10_000) as u32, i, opts).unwrap();
    }
    clock.set(Nanos::from_millis(500));
    let mut seen = 0u64;
    while let Some(_x) = s.pop() {
        seen += 1;
        if seen % 1000 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    let returned = s.take_returned();
    assert!(
        returned
            .iter()
            .all(|r| matches!(r.reason(), RejectReason::DeadlineExpired { .. }))
    );
    assert_eq!(seen + returned.len() as u64, n);
}

/// Regression: `pop` takes the item out, then forgets the tenant that went idle, which hashes
/// its key; if that `Hash` (or `Eq`) panics, the item taken out is dropped during the unwind
/// and lost. Expected: the item stays queued (or comes back), as a panicking retain predicate
/// leaves everything in place.
#[test]
fn pop_with_a_panicking_key_loses_no_item() {
    for mask in [HASH, EQ, CLONE] {
        let mut book = Book::default();
        let mut q: FairQueue<PanicKey, Tracked> = FairQueue::new();
        q.try_push(PanicKey(1), Tracked(0)).unwrap();
        panic_on(mask);
        let r = caught(|| q.pop());
        panic_on(0);
        println!(
            "pop with panicking key (mask {mask}): {}",
            if r.is_none() { "panicked" } else { "fine" }
        );
        match r {
            Some(Some(t)) => book.take(t),
            Some(None) => panic!("pop returned nothing with an item queued"),
            None => {
                let by_tenant: usize = q.tenants().map(|(_, n, _)| n).sum();
                assert_eq!(by_tenant, q.len());
                for t in q.drain() {
                    book.take(t);
                }
            }
        }
        book.check(1, &[]);
    }
}

// ===== replays of fuzz findings =====

/// From the scheduler fuzz target (a contract the harness had wrong, kept as a replay): after
/// the clock steps back, a deadline between the clock's reading and the latest time the
/// scheduler saw has already passed (time going backwards counts as no time passed), so the
/// push is refused as never admissible, the item handed back.
#[test]
fn fuzz_replay_deadline_between_a_stepped_back_clock_and_the_latest_time_is_refused() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u8, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    clock.set(Nanos::from_secs(100));
    s.try_push(0, 1).unwrap(); // the scheduler sees t = 100 s
    clock.set(Nanos::from_secs(10)); // stepped back 90 s
    let err = s
        .try_push_with(0, 2, PushOptions::new().with_deadline(Nanos::from_secs(50)))
        .unwrap_err();
    assert_eq!(
        err.reason(),
        RejectReason::DeadlineExpired {
            deadline: Nanos::from_secs(50)
        }
    );
    assert_eq!(err.into_inner(), 2);
    s.try_push_with(
        0,
        3,
        PushOptions::new().with_deadline(Nanos::from_secs(150)),
    )
    .unwrap();
    assert_eq!(std::iter::from_fn(|| s.pop()).collect::<Vec<_>>(), [1, 3]);
}

/// From the config fuzz target (a contract the harness had wrong, kept as a replay): with a
/// capacity of 5 and `evict_over_share`, pushing 24 items leaves 5 queued and the evicted ones
/// waiting in `take_returned`; applying another configuration keeps both.
#[cfg(feature = "serde")]
#[test]
fn fuzz_replay_apply_keeps_queued_and_evicted_items() {
    let first: fairshare::config::Config = serde_json::from_str(
        r#"{"capacity":{"max_cost":5,"max_items":5},"classes":[{"name":"c0"}],
            "max_credit_rounds":4294967295,"max_in_flight":5,
            "queue_delay":{"interval_ms":5,"target_ms":5},"shed_policy":"evict_over_share",
            "tenant_detail":true,"tenants":{"t1":{"limits":{"max_cost":5,"max_items":5,
            "rate":{"burst":5,"per_second":5}},"weight":4294967295}}}"#,
    )
    .unwrap();
    let mut s: Scheduler<String, u32, ManualClock> =
        first.validate().unwrap().build(ManualClock::new());
    let mut refused = 0;
    for i in 0..24u32 {
        if s.try_push(format!("t{}", i % 6), i).is_err() {
            refused += 1;
        }
    }
    let held = s.queue().len() + s.pending_returns();
    assert_eq!(s.queue().len(), 5);
    let second: fairshare::config::Config = serde_json::from_str("{}").unwrap();
    second.validate().unwrap().apply(&mut s).unwrap();
    assert_eq!(s.queue().len() + s.pending_returns(), held);
    let mut back: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(|r| r.into_inner())
        .collect();
    back.extend(std::iter::from_fn(|| s.pop()));
    assert_eq!(back.len() + refused, 24);
}

#[test]
fn a_scheduler_whose_key_clone_hash_or_eq_panics_stays_consistent() {
    let mut book = Book::default();
    let limits = TenantLimits::new().with_max_items(1_000);
    let mut s: Scheduler<PanicKey, Tracked> =
        Scheduler::new(SchedulerConfig::new().with_tenant_limits(limits));
    let mut panicked = Vec::new();
    let mut next = 0u64;
    for round in 0..3u32 {
        for mask in [CLONE, HASH, EQ] {
            for tenant in [round, 100 + round] {
                let id = next;
                next += 1;
                panic_on(mask);
                let r = caught(|| s.try_push(PanicKey(tenant), Tracked(id)));
                let _ = caught(|| s.set_limits(PanicKey(200 + tenant), limits));
                let _ = caught(|| s.set_weight(PanicKey(tenant), NonZeroU32::MAX));
                panic_on(0);
                match r {
                    Some(Ok(())) => {}
                    Some(Err(e)) => book.take(e.into_inner()),
                    None => panicked.push(id),
                }
                let q = s.queue();
                let by_tenant: usize = q.tenants().map(|(_, n, _)| n).sum();
                assert_eq!(
                    by_tenant,
                    q.len(),
                    "per-tenant lengths differ from the total"
                );
            }
        }
        if let Some(t) = s.pop() {
            book.take(t);
        }
    }
    let keys: Vec<u32> = s.queue().tenants().map(|(k, _, _)| k.0).collect();
    for k in keys {
        for t in s.purge(&PanicKey(k)) {
            book.take(t);
        }
    }
    assert!(
        s.queue().is_empty(),
        "purging every known key left {} items",
        s.queue().len()
    );
    println!(
        "scheduler, panicking keys: {} of {next} pushes panicked",
        panicked.len()
    );
    book.check(next, &panicked);
}
