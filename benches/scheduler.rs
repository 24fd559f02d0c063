//! Criterion benches for `fairshare`: one module per area, each group measuring its baseline
//! (crossbeam `SegQueue`, ...) beside our code, so every ratio quoted in the README comes from
//! one run on one (noisy) machine.
//!
//! Run everything with `cargo bench --bench scheduler`, or one group with e.g.
//! `cargo bench --bench scheduler -- push_pop`. Compare only results of the same run.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
// `criterion_group!` defines an undocumented `pub fn` for each group.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main};

/// The baseline every group measures beside its own code: crossbeam `SegQueue` holding
/// `items` values (`0..keys` round robin), one pop and one push per iteration. Built on the
/// case's first call, so a filtered run never builds what it skips.
pub(crate) fn segqueue_push_pop(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: criterion::BenchmarkId,
    items: u64,
    keys: u64,
) {
    let mut seg: Option<crossbeam::queue::SegQueue<u64>> = None;
    g.bench_function(id, |b| {
        let s = seg.get_or_insert_with(|| {
            let s = crossbeam::queue::SegQueue::new();
            for i in 0..items {
                s.push(i % keys);
            }
            s
        });
        b.iter(|| {
            let v = s.pop().unwrap();
            s.push(std::hint::black_box(v));
        });
    });
}

/// The fair queue core: push+pop against `SegQueue` push+pop.
mod queue {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{BenchmarkId, Criterion, Throughput};
    use fairshare::{FairQueue, PushOptions, TenantHandle};

    /// Backlogged tenant counts.
    const TENANTS: [u64; 4] = [1, 1_000, 100_000, 1_000_000];
    /// Items queued per tenant; every tenant stays backlogged through the closed loop.
    const DEPTH: u64 = 4;

    /// A fair queue holding `DEPTH` items for each of `n` tenants, pushed round by round
    /// (item = tenant key).
    fn prefilled(n: u64) -> FairQueue<u64, u64> {
        let mut q = FairQueue::new();
        for _ in 0..DEPTH {
            for k in 0..n {
                q.try_push(k, k).unwrap();
            }
        }
        q
    }

    /// Closed-loop push+pop with `n` backlogged tenants. The popped item is pushed straight
    /// back (to the same tenant), so the backlog, and every tenant's place in it, is
    /// unchanged between iterations.
    ///
    /// Each structure is built once per case, outside the timed loop, on the case's first
    /// call (so a filtered run never builds what it skips), and reused by every warm-up and
    /// sample call; criterion calls the closure once per sample.
    pub(crate) fn push_pop(c: &mut Criterion) {
        let mut g = c.benchmark_group("push_pop");
        g.throughput(Throughput::Elements(1))
            .sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));

        for n in TENANTS {
            // Baseline: the same number of items in one lock-free FIFO.
            crate::segqueue_push_pop(&mut g, BenchmarkId::new("segqueue", n), n * DEPTH, n);

            // Ours, hashing the key on every push.
            let mut fq: Option<FairQueue<u64, u64>> = None;
            g.bench_with_input(BenchmarkId::new("fairqueue_key", n), &n, |b, &n| {
                let q = fq.get_or_insert_with(|| prefilled(n));
                b.iter(|| {
                    let k = q.pop().unwrap();
                    q.try_push(black_box(k), k).unwrap();
                });
            });
            if let Some(q) = fq.take() {
                assert_eq!((q.len() as u64, q.active_tenants() as u64), (n * DEPTH, n));
            }

            // Ours, pushing by pinned tenant handle (no hashing).
            let mut fq: Option<(FairQueue<u64, u64>, Vec<TenantHandle>)> = None;
            g.bench_with_input(BenchmarkId::new("fairqueue_handle", n), &n, |b, &n| {
                let (q, handles) = fq.get_or_insert_with(|| {
                    let mut q = prefilled(n);
                    let handles = (0..n).map(|k| q.tenant(k)).collect();
                    (q, handles)
                });
                b.iter(|| {
                    let k = q.pop().unwrap();
                    q.try_push_to(
                        handles[black_box(k) as usize],
                        k,
                        PushOptions::new().with_cost(1),
                    )
                    .unwrap();
                });
            });
            if let Some((q, _)) = fq.take() {
                assert_eq!((q.len() as u64, q.active_tenants() as u64), (n * DEPTH, n));
            }

            // Yardstick: the brief's reference O(1) DRR (see `reference`), same closed loop.
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
            if let Some(q) = drr.take() {
                assert_eq!(q.len() as u64, n * DEPTH);
            }

            // Peer: firq-core's enqueue+dequeue by tenant key (see `firq`), same closed loop.
            if matches!(n, 1_000 | 100_000) {
                crate::firq::push_pop(&mut g, n, DEPTH);
            }
        }
        g.finish();
    }
}

/// The simplest designs the bars were calibrated with, measured beside ours.
#[path = "groups/reference.rs"]
mod reference;

/// A published peer, firq-core, measured in the push+pop group.
#[path = "groups/firq.rs"]
mod firq;

/// Admission: rate-limit check beside governor; admit + push + pop + complete.
#[path = "groups/admission.rs"]
mod admission;

/// The shared handle: producer/consumer throughput beside crossbeam-channel.
#[path = "groups/shared.rs"]
mod shared;

/// Classes: dispatch + complete with 3 classes beside the flat queue and SegQueue.
#[path = "groups/classes.rs"]
mod classes;

/// Noisy-tenant detection: the record call per admitted item beside the admission check.
#[path = "groups/detect.rs"]
mod detect;

/// Groups of tenants: push+pop with every tenant in a group beside the same without.
#[path = "groups/grouped.rs"]
mod grouped;

/// Batches: push+pop of 64 items by key beside the reference DRR's single push+pop.
#[path = "groups/batch.rs"]
mod batch;

// One group per area; add each new module's bench functions to `targets`.
criterion_group!(
    benches,
    queue::push_pop,
    admission::check,
    admission::round_trip,
    shared::throughput,
    classes::dispatch,
    detect::record,
    grouped::push_pop,
    batch::push_pop
);
criterion_main!(benches);
