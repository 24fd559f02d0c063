//! firq-core, a published multi-tenant DRR scheduler, as a peer of the fair queue: its
//! enqueue+dequeue by tenant key in the same closed loop as our push+pop by key.

use std::hint::black_box;
use std::time::Instant;

use criterion::BenchmarkId;
use firq_core::{DequeueResult, EnqueueResult, Scheduler, SchedulerConfig, Task, TenantKey};

/// A firq-core scheduler holding `depth` items for each of `n` tenants, enqueued round by
/// round (item = tenant key). Its defaults (one shard, quantum 10, reject on full, 100 items
/// per tenant) except the global capacity, which must hold the whole backlog.
fn prefilled(n: u64, depth: u64) -> Scheduler<u64> {
    let s = Scheduler::new(SchedulerConfig {
        max_global: usize::MAX,
        ..SchedulerConfig::default()
    });
    let now = Instant::now();
    for _ in 0..depth {
        for k in 0..n {
            let task = Task {
                payload: k,
                enqueue_ts: now,
                deadline: None,
                priority: Default::default(),
                cost: 1,
            };
            assert!(matches!(
                s.enqueue(TenantKey::from(k), task),
                EnqueueResult::Enqueued
            ));
        }
    }
    s
}

/// Closed-loop dequeue+enqueue with `n` backlogged tenants, `depth` items each: the dequeued
/// task goes straight back to its tenant, keyed by its item, as in `push_pop`. The task keeps
/// its enqueue timestamp, so the loop reads no clock of its own (firq-core's dequeue reads
/// `Instant::now` itself, to expire deadlines and record queue time). A `try_dequeue` pass
/// over the active tenants that finds every deficit spent refills them and returns
/// `Empty`; a consumer calls again, so the loop does too, and those passes are in the time.
///
/// Built on the case's first call, so a filtered run never builds what it skips.
pub(crate) fn push_pop(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: u64,
    depth: u64,
) {
    let mut sched: Option<Scheduler<u64>> = None;
    g.bench_with_input(BenchmarkId::new("firq_core_key", n), &n, |b, &n| {
        let s = sched.get_or_insert_with(|| prefilled(n, depth));
        b.iter(|| {
            let task = loop {
                match s.try_dequeue() {
                    DequeueResult::Task { task, .. } => break task,
                    // A pass that only refills deficits comes back empty; call again.
                    DequeueResult::Empty => continue,
                    DequeueResult::Closed => panic!("firq-core closed by itself"),
                }
            };
            let key = TenantKey::from(black_box(task.payload));
            match s.enqueue(key, task) {
                EnqueueResult::Enqueued => {}
                other => panic!("firq-core refused a task back: {other:?}"),
            }
        });
    });
    if let Some(s) = sched.take() {
        assert_eq!(s.stats().queue_len_estimate, n * depth);
    }
}
