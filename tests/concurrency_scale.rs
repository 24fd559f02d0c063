#![cfg(not(loom))] // tokio, its executor, is not built under loom
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Four producers and four workers through one `SharedScheduler`, as threads and as tasks on
//! a multi-threaded tokio runtime: 10^7 items in release (`cargo test --release --test
//! concurrency_scale`), fewer in debug. Checks conservation (every item dispatched or handed
//! back by `close` exactly once), per-tenant FIFO, no lost wake-up (a worker never times out
//! while work is queued), and that `close()` hands back everything not dispatched.

use fairshare::shared::WaitError;
use fairshare::{SchedulerConfig, SharedScheduler};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 4;
const WORKERS: usize = 4;
const TENANTS: u64 = 64;

fn total_items() -> u64 {
    if cfg!(debug_assertions) {
        2_000_000
    } else {
        10_000_000
    }
}

/// Item: (producer, sequence within the producer). Each producer's tenants are its own, so a
/// tenant's items are pushed in sequence order and must be dispatched in that order.
type Item = (u64, u64);

fn tenant_of(producer: u64, seq: u64) -> u64 {
    producer * (TENANTS / PRODUCERS) + seq % (TENANTS / PRODUCERS)
}

/// What one worker saw: per tenant the last sequence, and how many items.
struct Seen {
    last: Vec<Option<u64>>,
    count: u64,
    sum: u64,
    timeouts_with_work: u64,
}

impl Seen {
    fn new() -> Self {
        Seen {
            last: vec![None; TENANTS as usize],
            count: 0,
            sum: 0,
            timeouts_with_work: 0,
        }
    }
    fn record(&mut self, (p, seq): Item) {
        let t = tenant_of(p, seq) as usize;
        if let Some(prev) = self.last[t] {
            assert!(
                prev < seq,
                "tenant {t}: item {seq} dispatched after {prev} by one worker"
            );
        }
        self.last[t] = Some(seq);
        self.count += 1;
        self.sum += p * total_items() + seq;
    }
}

fn expected_sum(n: u64) -> u128 {
    let per = n / PRODUCERS;
    (0..PRODUCERS)
        .map(|p| {
            (0..per)
                .map(|s| u128::from(p * total_items() + s))
                .sum::<u128>()
        })
        .sum()
}

/// Aborts the test binary if the test has not finished in `limit` (a lost wake-up would
/// otherwise hang it forever); dropping the guard disarms it.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn arm(name: &'static str, limit: Duration) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !d.load(Ordering::Acquire) {
                if start.elapsed() > limit {
                    eprintln!("{name}: still running after {limit:?}: a worker was never woken");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn threads_four_producers_four_workers() {
    let n = total_items();
    let per = n / PRODUCERS;
    let h: SharedScheduler<u64, Item> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(64)));
    let _watchdog = Watchdog::arm("threads", Duration::from_secs(300));
    let start = Instant::now();
    let dispatched = Arc::new(AtomicU64::new(0));
    // Producers push until the scheduler is closed under them; each reports how far it got
    // and the items refused as closed (handed back inside the refusal).
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut refused = Vec::new();
                let mut attempted = 0;
                for seq in 0..per {
                    attempted += 1;
                    if let Err(e) = h.try_push(tenant_of(p, seq), (p, seq)) {
                        assert_eq!(e.reason(), fairshare::RejectReason::Closed);
                        refused.push(e.into_inner());
                        break;
                    }
                }
                (attempted, refused)
            })
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let h = h.clone();
            let dispatched = dispatched.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::new();
                loop {
                    match h.dispatch_timeout(Duration::from_secs(5)) {
                        Ok(job) => {
                            // Per-tenant FIFO: each worker sees a tenant's items in order.
                            seen.record(job.item);
                            job.lease.complete(1);
                            dispatched.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(WaitError::Timeout) => {
                            // Producers never pause for 5 s: a timeout means a lost wake-up
                            // whether or not the queue looks empty at this instant.
                            seen.timeouts_with_work += 1;
                        }
                        Err(WaitError::Closed) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                seen
            })
        })
        .collect();
    // Close mid-run, with producers still pushing and a backlog queued.
    while dispatched.load(Ordering::Relaxed) < n * 3 / 4
        && !producers.iter().all(|p| p.is_finished())
    {
        std::thread::yield_now();
    }
    let closed = h.close();
    let mut count = closed.len() as u64;
    let mut sum: u128 = closed.iter().map(|&(p, s)| u128::from(p * n + s)).sum();
    let mut expected: u128 = 0;
    let mut pushed_total = 0;
    for (p, producer) in producers.into_iter().enumerate() {
        let (attempted, refused) = producer.join().unwrap();
        pushed_total += attempted;
        count += refused.len() as u64;
        sum += refused
            .iter()
            .map(|&(p, s)| u128::from(p * n + s))
            .sum::<u128>();
        expected += (0..attempted)
            .map(|s| u128::from(p as u64 * n + s))
            .sum::<u128>();
    }
    let mut timeouts = 0;
    for w in workers {
        let seen = w.join().unwrap();
        count += seen.count;
        sum += u128::from(seen.sum);
        timeouts += seen.timeouts_with_work;
    }
    let elapsed = start.elapsed();
    println!(
        "threads: {pushed_total} of {n} items pushed in {elapsed:?} ({:.2} M items/s), {} handed back by close",
        pushed_total as f64 / elapsed.as_secs_f64() / 1e6,
        closed.len()
    );
    assert_eq!(count, pushed_total, "items lost or duplicated");
    assert_eq!(sum, expected, "a different set of items came back");
    assert_eq!(
        timeouts, 0,
        "a worker timed out while work was coming (lost wake-up)"
    );
    assert!(h.is_empty());
}

#[test]
fn tokio_tasks_four_producers_four_workers() {
    let n = total_items();
    let per = n / PRODUCERS;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let h: SharedScheduler<u64, Item> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(64)));
    let _watchdog = Watchdog::arm("tokio", Duration::from_secs(300));
    let start = Instant::now();
    let (count, sum, closed) = rt.block_on(async {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let h = h.clone();
                tokio::spawn(async move {
                    for seq in 0..per {
                        h.try_push(tenant_of(p, seq), (p, seq)).unwrap();
                        if seq % 1024 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut seen = Seen::new();
                    while let Ok(job) = h.dispatch_async().await {
                        seen.record(job.item);
                        job.lease.complete(1);
                        if seen.count % 1024 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        while h.len() as u64 > n / 4 {
            tokio::task::yield_now().await;
        }
        // Close wakes every waiting worker: each future resolves to Closed once empty.
        let closed = h.close();
        let mut count = closed.len() as u64;
        let mut sum: u128 = closed.iter().map(|&(p, s)| u128::from(p * n + s)).sum();
        for w in workers {
            let seen = w.await.unwrap();
            count += seen.count;
            sum += u128::from(seen.sum);
        }
        (count, sum, closed.len())
    });
    let elapsed = start.elapsed();
    println!(
        "tokio: {n} items in {elapsed:?} ({:.2} M items/s), {closed} handed back by close",
        n as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(count, n, "items lost or duplicated");
    assert_eq!(sum, expected_sum(n), "a different set of items came back");
}
