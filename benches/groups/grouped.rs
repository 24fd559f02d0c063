//! Groups of tenants: closed-loop push+pop by key with every tenant in a group (ten keys a
//! group) beside the same queue without groups, at 1k and 1M tenants, in one group so the
//! ratio comes from one run. Two layouts of the same groups: keys `10g..10g+9` in group `g`
//! (a group's members in adjacent slots, so consecutive pops, one per group, stride over
//! the slot array), and key `k` in group `k mod (n/10)` (consecutive pops walk the slots in
//! order, as the ungrouped queue's do). Which one a host gets depends on the order its
//! tenants first arrive.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::FairQueue;

const TENANTS: [u64; 2] = [1_000, 1_000_000];
/// Items queued per tenant; every tenant stays backlogged through the closed loop.
const DEPTH: u64 = 4;
/// Keys per group.
const KEYS_PER_GROUP: u64 = 10;

/// How tenants are put in groups.
#[derive(Clone, Copy)]
enum Layout {
    Ungrouped,
    /// Keys `10g..10g+9` in group `g`.
    Adjacent,
    /// Key `k` in group `k mod (n/10)`.
    Interleaved,
}

/// `n` tenants with `DEPTH` items each, pushed round by round, in groups of
/// `KEYS_PER_GROUP` by `layout` (group keys share the key type, in their own namespace).
fn prefilled(n: u64, layout: Layout) -> FairQueue<u64, u64> {
    let mut q = FairQueue::new();
    let groups = n / KEYS_PER_GROUP;
    for k in 0..n {
        match layout {
            Layout::Ungrouped => {}
            Layout::Adjacent => q.set_group(k, k / KEYS_PER_GROUP),
            Layout::Interleaved => q.set_group(k, k % groups),
        }
    }
    for _ in 0..DEPTH {
        for k in 0..n {
            q.try_push(k, k).unwrap();
        }
    }
    q
}

pub(crate) fn push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("groups_push_pop");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in TENANTS {
        let layouts = [
            ("ungrouped", Layout::Ungrouped),
            ("grouped_adjacent", Layout::Adjacent),
            ("grouped_interleaved", Layout::Interleaved),
        ];
        for (name, layout) in layouts {
            let mut fq: Option<FairQueue<u64, u64>> = None;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                let q = fq.get_or_insert_with(|| prefilled(n, layout));
                b.iter(|| {
                    let k = q.pop().unwrap();
                    q.try_push(black_box(k), k).unwrap();
                });
            });
            if let Some(q) = fq.take() {
                assert_eq!(q.len() as u64, n * DEPTH);
            }
        }
    }
    g.finish();
}
