//! Fairness of `FairQueue`: the DRR bounds stated in its `# Fairness` rustdoc (the weighted
//! service gap between two backlogged tenants and the latency of a newly backlogged tenant) hold
//! on random workloads, and the pop order does not depend on the hasher's seed.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;
use std::hash::BuildHasher;

use fairshare::FairQueue;
use proptest::prelude::*;

use common::queue_model::MAX_COST;
use common::{PopTrace, config, nz, opts, proptest_config};

// ===== fairness and latency workloads =====

/// Tenants, weights, quantum, the items each tenant has queued up front and pushes interleaved
/// with the pops (`(before pop number, tenant, cost)`).
#[derive(Debug, Clone)]
struct Workload {
    quantum: u32,
    weights: Vec<u32>,
    upfront: Vec<Vec<u32>>,
    interleaved: Vec<(usize, usize, u32)>,
}

fn workload(max_items: usize) -> impl Strategy<Value = Workload> {
    (1..=4u32, 1..=MAX_COST, 2..=5usize)
        .prop_flat_map(move |(quantum, max_cost, n)| {
            (
                Just(quantum),
                proptest::collection::vec(1..=4u32, n),
                proptest::collection::vec(
                    proptest::collection::vec(1..=max_cost, 1..=max_items),
                    n,
                ),
                proptest::collection::vec((0..(n * max_items), 0..n, 1..=max_cost), 0..=max_items),
            )
        })
        .prop_map(|(quantum, weights, upfront, interleaved)| Workload {
            quantum,
            weights,
            upfront,
            interleaved,
        })
}

/// Items of the fairness and latency runs: (tenant, sequence number within the tenant).
type Tagged = (usize, usize);

fn queue_for(w: &Workload) -> FairQueue<usize, Tagged> {
    let mut q = FairQueue::with_config(config(w.quantum, 1, 4));
    for (t, &weight) in w.weights.iter().enumerate() {
        q.set_weight(t, nz(weight));
    }
    q
}

fn lens(q: &FairQueue<usize, Tagged>, n: usize) -> Vec<usize> {
    (0..n).map(|t| q.tenant_len(&t)).collect()
}

/// Pushes `cost` for tenant `t` and records it in the tenant's expected FIFO.
fn push_tagged(
    q: &mut FairQueue<usize, Tagged>,
    fifos: &mut [VecDeque<(usize, u32)>],
    next_seq: &mut [usize],
    t: usize,
    cost: u32,
) {
    let seq = next_seq[t];
    next_seq[t] += 1;
    q.try_push_with(t, (t, seq), opts(cost))
        .expect("the workload never blocks and never uses cost 0");
    fifos[t].push_back((seq, cost));
}

/// Pops one item, checking per-tenant FIFO, and returns (tenant, cost).
fn pop_tagged(
    q: &mut FairQueue<usize, Tagged>,
    fifos: &mut [VecDeque<(usize, u32)>],
) -> Option<(usize, u32)> {
    let (t, seq) = q.pop()?;
    let head = fifos[t].pop_front();
    assert_eq!(
        head.map(|(s, _)| s),
        Some(seq),
        "tenant {t}: popped #{seq}, FIFO head is {head:?}"
    );
    head.map(|(_, cost)| (t, cost))
}

fn fairness_trace(w: &Workload) -> PopTrace {
    let n = w.weights.len();
    let mut q = queue_for(w);
    let mut fifos = vec![VecDeque::new(); n];
    let mut next_seq = vec![0; n];
    for (t, costs) in w.upfront.iter().enumerate() {
        for &c in costs {
            push_tagged(&mut q, &mut fifos, &mut next_seq, t, c);
        }
    }
    let mut interleaved = w.interleaved.clone();
    interleaved.sort_by_key(|&(at, _, _)| at);
    let mut pending = interleaved.into_iter().peekable();
    let mut trace = PopTrace {
        weights: w.weights.iter().map(|&x| u64::from(x)).collect(),
        ..PopTrace::default()
    };
    loop {
        let k = trace.pops.len();
        while let Some(&(_, t, c)) = pending.peek().filter(|&&(at, _, _)| at <= k) {
            push_tagged(&mut q, &mut fifos, &mut next_seq, t, c);
            pending.next();
        }
        let pre = lens(&q, n);
        let Some((t, cost)) = pop_tagged(&mut q, &mut fifos) else {
            assert!(
                pre.iter().all(|&l| l == 0),
                "pop gave None with {pre:?} queued"
            );
            if pending.peek().is_none() {
                break;
            }
            // Nothing queued now, more pushes scheduled later: jump to them.
            let (_, t, c) = pending.next().expect("peeked");
            push_tagged(&mut q, &mut fifos, &mut next_seq, t, c);
            continue;
        };
        trace.pops.push((t, u64::from(cost)));
        trace.pre.push(pre);
        trace.post.push(lens(&q, n));
    }
    assert!(q.is_empty());
    trace
}

/// A deterministic hasher with a chosen seed (FNV-1a over the seed, then the bytes).
#[derive(Debug, Clone, Copy)]
struct SeededFnv(u64);

#[derive(Debug)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

impl BuildHasher for SeededFnv {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        std::hash::Hasher::write_u64(&mut h, self.0);
        h
    }
}

proptest! {
    #![proptest_config(proptest_config(1024))]

    /// Over any window of pops in which two tenants both stay backlogged,
    /// `|S_i/w_i - S_j/w_j| < 3Q + M/w_i + M/w_j`.
    #[test]
    fn fairness_bound(w in workload(40)) {
        let trace = fairness_trace(&w);
        let gaps = trace.pair_gaps(u64::from(w.quantum));
        let worst = gaps
            .iter()
            .copied()
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        if let Some(bad) = gaps.iter().find(|g| !g.holds()) {
            let worst = worst.expect("a violating pair exists");
            prop_assert!(
                false,
                "fairness bound broken (Q = {}, M = {}, weights {:?}): {bad}; worst: {worst}",
                w.quantum,
                trace.max_cost(),
                w.weights
            );
        }
    }

    /// A brand-new tenant's first item is served before any other tenant `j` gets more than
    /// `Q*w_j` items or `Q*w_j + M` cost.
    #[test]
    fn latency_bound(
        w in workload(30),
        pops_first in 0..80usize,
        new_cost in 1..=MAX_COST,
    ) {
        let n = w.weights.len();
        let mut q = queue_for(&w);
        let mut fifos = vec![VecDeque::new(); n + 1];
        let mut next_seq = vec![0; n + 1];
        for (t, costs) in w.upfront.iter().enumerate() {
            for &c in costs {
                push_tagged(&mut q, &mut fifos, &mut next_seq, t, c);
            }
        }
        let mut max_cost = 0;
        for k in 0..pops_first {
            for &(_, t, c) in w.interleaved.iter().filter(|&&(at, _, _)| at == k) {
                push_tagged(&mut q, &mut fifos, &mut next_seq, t, c);
            }
            match pop_tagged(&mut q, &mut fifos) {
                Some((_, c)) => max_cost = max_cost.max(c),
                None => break,
            }
        }
        let newcomer = n; // a key never used before
        push_tagged(&mut q, &mut fifos, &mut next_seq, newcomer, new_cost);
        let backlog = lens(&q, n);
        let mut items = vec![0u64; n];
        let mut cost = vec![0u64; n];
        loop {
            let (t, c) = pop_tagged(&mut q, &mut fifos).expect("the newcomer's item is queued");
            max_cost = max_cost.max(c);
            if t == newcomer {
                break;
            }
            items[t] += 1;
            cost[t] += u64::from(c);
        }
        let m = u64::from(max_cost);
        for j in 0..n {
            let share = u64::from(w.quantum) * u64::from(w.weights[j]);
            prop_assert!(
                items[j] <= share && cost[j] < share + m,
                "tenant {j} (weight {}, backlog {}) was served {} items / cost {} before the \
                 newcomer; bound: <= {share} items, < {} cost (Q = {}, M = {m}, backlogs {backlog:?})",
                w.weights[j], backlog[j], items[j], cost[j], share + m, w.quantum
            );
        }
    }

}

proptest! {
    #![proptest_config(proptest_config(128))]

    /// The hasher's seed never changes the order of service.
    #[test]
    fn pop_order_does_not_depend_on_hash_seed(
        w in workload(20),
        seeds in (any::<u64>(), any::<u64>()),
    ) {
        fn order<S: BuildHasher>(w: &Workload, hasher: S) -> Vec<Tagged> {
            // Annotated: the constructor is generic over the slot attachment `A` as well, and
            // a type parameter's default does not guide inference.
            let mut q: FairQueue<usize, Tagged, S> =
                FairQueue::with_config_and_hasher(config(w.quantum, 1, 4), hasher);
            for (t, &weight) in w.weights.iter().enumerate() {
                q.set_weight(t, nz(weight));
            }
            for (t, costs) in w.upfront.iter().enumerate() {
                for (seq, &c) in costs.iter().enumerate() {
                    q.try_push_with(t, (t, seq), opts(c)).expect("accepted");
                }
            }
            std::iter::from_fn(|| q.pop()).collect()
        }
        let a = order(&w, SeededFnv(seeds.0));
        let b = order(&w, SeededFnv(seeds.1));
        let c = order(&w, std::collections::hash_map::RandomState::new());
        let d = order(&w, fairshare::queue::DefaultHashBuilder::default());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
        prop_assert_eq!(&a, &d);
    }
}
