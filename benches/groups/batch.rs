//! Batches: closed-loop push+pop by key, 64 items a batch (`pop_batch` then `try_push_batch`
//! of what it popped), beside the reference DRR's single push+pop and our own single calls,
//! one group so every ratio comes from one run. Compare per item: the batch cases count 64
//! elements an iteration, the single cases one.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::{FairQueue, PushOptions};

/// Backlogged tenant counts: the tenant table in cache, and far out of it.
const TENANTS: [u64; 2] = [1_000, 1_000_000];
/// Items queued per tenant; every tenant stays backlogged through the closed loop.
const DEPTH: u64 = 4;
/// Items per batch.
const BATCH: usize = 64;

/// As the `push_pop` group: `DEPTH` items for each of `n` tenants, round by round (item =
/// tenant key).
fn prefilled(n: u64) -> FairQueue<u64, u64> {
    let mut q = FairQueue::new();
    for _ in 0..DEPTH {
        for k in 0..n {
            q.try_push(k, k).unwrap();
        }
    }
    q
}

/// Each structure is built on its case's first call (a filtered run builds only what it
/// runs) and kept for every warm-up and sample call; the closed loop leaves the backlog, and
/// every tenant's place in it, as it was.
pub(crate) fn push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for n in TENANTS {
        g.throughput(Throughput::Elements(1));

        // Yardstick: the reference O(1) DRR, one push+pop an iteration.
        let mut drr: Option<crate::reference::ReferenceDrr> = None;
        g.bench_with_input(BenchmarkId::new("reference_drr", n), &n, |b, &n| {
            let q = drr.get_or_insert_with(|| {
                let mut q = crate::reference::ReferenceDrr::default();
                for _ in 0..DEPTH {
                    for k in 0..n {
                        q.push(k, k);
                    }
                }
                q
            });
            b.iter(|| {
                let k = q.pop().unwrap();
                q.push(black_box(k), k);
            });
        });
        drop(drr);

        // Ours, one push+pop an iteration (as `push_pop/fairqueue_key`).
        let mut fq: Option<FairQueue<u64, u64>> = None;
        g.bench_with_input(BenchmarkId::new("fairqueue_single", n), &n, |b, &n| {
            let q = fq.get_or_insert_with(|| prefilled(n));
            b.iter(|| {
                let k = q.pop().unwrap();
                q.try_push(black_box(k), k).unwrap();
            });
        });
        drop(fq);

        g.throughput(Throughput::Elements(BATCH as u64));

        // Ours, 64 single pops then 64 single pushes: the batch's work without its phases.
        let mut fq: Option<(FairQueue<u64, u64>, Vec<u64>)> = None;
        g.bench_with_input(BenchmarkId::new("fairqueue_single_x64", n), &n, |b, &n| {
            let (q, popped) = fq.get_or_insert_with(|| (prefilled(n), Vec::with_capacity(BATCH)));
            b.iter(|| {
                popped.extend((0..BATCH).map_while(|_| q.pop()));
                for k in popped.drain(..) {
                    q.try_push_with(black_box(k), k, PushOptions::new())
                        .unwrap();
                }
            });
        });
        if let Some((q, _)) = fq.take() {
            assert_eq!((q.len() as u64, q.active_tenants() as u64), (n * DEPTH, n));
        }

        // Ours, batched: `pop_batch(64)`, then `try_push_batch` of the 64 popped.
        let mut fq: Option<FairQueue<u64, u64>> = None;
        g.bench_with_input(BenchmarkId::new("fairqueue_batch", n), &n, |b, &n| {
            let q = fq.get_or_insert_with(|| prefilled(n));
            b.iter(|| {
                let popped = q.pop_batch(BATCH);
                let results = q.try_push_batch(
                    popped
                        .into_iter()
                        .map(|k| (black_box(k), k, PushOptions::new())),
                );
                assert!(results.iter().all(Result::is_ok));
            });
        });
        if let Some(q) = fq.take() {
            assert_eq!((q.len() as u64, q.active_tenants() as u64), (n * DEPTH, n));
        }
    }
    g.finish();
}
