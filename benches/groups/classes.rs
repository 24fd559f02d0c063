//! Classes: dispatch + complete (+ push to keep the backlog steady) with 3 classes and 1k
//! backlogged tenants, beside the flat fair queue doing the same operations with 1 class, and
//! crossbeam `SegQueue` push+pop. The target: classes cost at most 1.5x the flat queue.

use std::collections::VecDeque;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::{ClassId, ClassSpec, Classes, Dispatch, FairQueue, PushOptions};

/// Backlogged tenants.
const TENANTS: u64 = 1_000;
/// Items queued per tenant; every tenant stays backlogged through the closed loop.
const DEPTH: u64 = 4;
/// The global in-flight limit (worker slots); this many items are always in flight, so the
/// class choice (reservations, ceilings, weights) runs on real in-flight counts.
const SLOTS: u32 = 40;

/// The class of tenant `k` in the 3-class queue: tenants are spread over the classes.
fn class_of(k: u64) -> ClassId {
    ClassId::new((k % 3) as u16)
}

/// A queue and the tickets of its items in flight, oldest first.
type Running = (FairQueue<u64, u64>, VecDeque<Dispatch<u64>>);

/// A queue with `SLOTS` in flight and `DEPTH` items queued for each of `TENANTS` tenants
/// (item = tenant key), with 3 classes or with the single default class.
fn prefilled(three_classes: bool) -> Running {
    let mut q = FairQueue::new();
    if three_classes {
        let classes = Classes::new([
            ClassSpec::new("signin").with_reserved_percent(20),
            ClassSpec::new("api").with_weight(NonZeroU32::new(3).unwrap()),
            ClassSpec::new("bulk").with_ceiling_percent(50),
        ])
        .unwrap();
        q.set_classes(classes).unwrap();
    }
    q.set_in_flight_limit(Some(SLOTS));
    for _ in 0..DEPTH {
        for k in 0..TENANTS {
            if three_classes {
                q.try_push_with(
                    k,
                    k,
                    PushOptions::new().with_class(class_of(k)).with_cost(1),
                )
                .unwrap();
            } else {
                q.try_push(k, k).unwrap();
            }
        }
    }
    let mut running = VecDeque::with_capacity(SLOTS as usize);
    while let Some(d) = q.dispatch() {
        running.push_back(d);
    }
    assert_eq!(running.len(), SLOTS as usize);
    (q, running)
}

/// One closed-loop step: the oldest in-flight item completes, its slot is dispatched to the
/// next item the queue picks, and that item is pushed straight back to its tenant and class,
/// so the backlog, the in-flight count and every tenant's place are unchanged.
#[inline]
fn step(q: &mut FairQueue<u64, u64>, running: &mut VecDeque<Dispatch<u64>>, classes: bool) {
    let done = running.pop_front().unwrap();
    q.complete(done.ticket, 1);
    let d = q.dispatch().unwrap();
    let k = d.item;
    if classes {
        // Back to the class it came from, as the ticket says (no recomputing in the loop).
        q.try_push_with(
            black_box(k),
            k,
            PushOptions::new().with_class(d.ticket.class()).with_cost(1),
        )
        .unwrap();
    } else {
        // The flat queue's own push (into the default class).
        q.try_push(black_box(k), k).unwrap();
    }
    running.push_back(d);
}

pub(crate) fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("classes_dispatch");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    // Baseline: the same number of items in one lock-free FIFO, push+pop.
    crate::segqueue_push_pop(
        &mut g,
        BenchmarkId::new("segqueue", TENANTS),
        TENANTS * DEPTH,
        TENANTS,
    );

    // The flat fair queue (one class), then 3 classes: complete + dispatch + push.
    for (name, classes) in [("flat_1_class", false), ("classes_3", true)] {
        let mut state: Option<Running> = None;
        g.bench_with_input(BenchmarkId::new(name, TENANTS), &TENANTS, |b, _| {
            let (q, running) = state.get_or_insert_with(|| prefilled(classes));
            b.iter(|| step(q, running, classes));
        });
        if let Some((mut q, running)) = state.take() {
            assert_eq!(q.len() as u64, TENANTS * DEPTH - u64::from(SLOTS));
            assert_eq!(q.total_in_flight(), u64::from(SLOTS));
            for d in running {
                q.complete(d.ticket, 1);
            }
        }
    }
    g.finish();
}
