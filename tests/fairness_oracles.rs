//! Fairness against independent references: `FairQueue`'s pop order equals a naive
//! textbook deficit-round-robin (item for item, including activation order, overdraft debt and
//! weights), and on uniform demand over simulated time each tenant's achieved share of a
//! saturated server is within 1% of its weighted max-min fair share.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;
use std::num::NonZeroU32;

use fairshare::{FairQueue, PushOptions, config::QueueConfig};
use proptest::{prelude::*, test_runner::FileFailurePersistence};

const N: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Push { t: usize, cost: u32 },
    Pop,
    SetWeight { t: usize, w: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..N, 1..=9u32).prop_map(|(t, cost)| Op::Push { t, cost }),
        5 => Just(Op::Pop),
        1 => (0..N, 1..=4u32).prop_map(|(t, w)| Op::SetWeight { t, w }),
    ]
}

/// Naive DRR: deficit += Q*w when a tenant reaches the front without credit, served while
/// deficit > 0 (overdraft allowed, carried as debt), leftover credit forfeited when it
/// empties, debt kept while the tenant is remembered (here: it has a weight override).
struct Ref {
    q: i64,
    ring: VecDeque<usize>,
    fifo: Vec<VecDeque<(u64, u32)>>,
    deficit: Vec<i64>,
    weight: Vec<Option<i64>>,
}

impl Ref {
    fn quantum(&self, t: usize) -> i64 {
        self.q * self.weight[t].unwrap_or(1)
    }
    fn push(&mut self, t: usize, id: u64, cost: u32) {
        self.fifo[t].push_back((id, cost));
        if self.fifo[t].len() == 1 {
            self.deficit[t] = self.deficit[t].min(0) + self.quantum(t);
            self.ring.push_back(t);
        }
    }
    fn pop(&mut self) -> Option<u64> {
        loop {
            let &t = self.ring.front()?;
            if self.deficit[t] > 0 {
                let (id, cost) = self.fifo[t].pop_front().unwrap();
                self.deficit[t] -= i64::from(cost);
                if self.fifo[t].is_empty() {
                    self.deficit[t] = self.deficit[t].min(0);
                    self.ring.pop_front();
                    if self.weight[t].is_none() {
                        self.deficit[t] = 0; // forgotten: a fresh tenant next time
                    }
                }
                return Some(id);
            }
            self.deficit[t] += self.quantum(t);
            self.ring.rotate_left(1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]
    #[test]
    fn pop_order_matches_naive_drr(q in 1..=4u32, ops in prop::collection::vec(op(), 1..300)) {
        let mut fq: FairQueue<usize, u64> =
            FairQueue::with_config(QueueConfig::new().with_quantum(NonZeroU32::new(q).unwrap()));
        let mut r = Ref { q: i64::from(q), ring: VecDeque::new(), fifo: vec![VecDeque::new(); N],
                          deficit: vec![0; N], weight: vec![None; N] };
        let mut next = 0u64;
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Push { t, cost } => {
                    fq.try_push_with(t, next, PushOptions::new().with_cost(cost)).unwrap();
                    r.push(t, next, cost);
                    next += 1;
                }
                Op::Pop => prop_assert_eq!(fq.pop(), r.pop(), "step {}: {:?}", step, op),
                Op::SetWeight { t, w } => {
                    fq.set_weight(t, NonZeroU32::new(w).unwrap());
                    r.weight[t] = Some(i64::from(w));
                }
            }
        }
        loop {
            let (a, b) = (fq.pop(), r.pop());
            prop_assert_eq!(a, b);
            if a.is_none() { break; }
        }
    }
}

/// Weighted max-min fair (water-filling) allocation of `capacity` among tenants with the given
/// weights and demands: every tenant gets min(demand, weight * level), with the level chosen so
/// the allocations sum to the capacity (or every demand is met).
fn max_min_fair(capacity: f64, weights: &[f64], demands: &[f64]) -> Vec<f64> {
    let n = weights.len();
    let mut alloc = vec![0.0; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut left = capacity;
    while !active.is_empty() && left > 1e-12 {
        let total_w: f64 = active.iter().map(|&i| weights[i]).sum();
        let level = left / total_w;
        // Tenants whose remaining demand fits under this level are satisfied.
        let (sated, hungry): (Vec<usize>, Vec<usize>) = active
            .iter()
            .partition(|&&i| demands[i] - alloc[i] <= weights[i] * level);
        if sated.is_empty() {
            for &i in &hungry {
                alloc[i] += weights[i] * level;
            }
            break;
        }
        for &i in &sated {
            left -= demands[i] - alloc[i];
            alloc[i] = demands[i];
        }
        active = hungry;
    }
    alloc
}

#[test]
fn oracle_sanity() {
    let a = max_min_fair(10.0, &[1.0, 1.0, 2.0], &[1.0, 100.0, 100.0]);
    assert!((a[0] - 1.0).abs() < 1e-9 && (a[1] - 3.0).abs() < 1e-9 && (a[2] - 6.0).abs() < 1e-9);
}

#[derive(Debug, Clone)]
struct Workload {
    /// Per tenant: weight, demand in cost units per tick, item cost.
    tenants: Vec<(u32, u32, u32)>,
    /// Cost the server completes per tick.
    capacity: u32,
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        prop::collection::vec((1u32..=4, 1u32..=40, 1u32..=4), 2..=6),
        20u32..=60,
    )
        .prop_map(|(tenants, capacity)| Workload { tenants, capacity })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn achieved_shares_match_weighted_max_min(w in workload()) {
        const TICKS: u64 = 6_000;
        const WARMUP: u64 = 1_000;
        let mut q: FairQueue<usize, u32> = FairQueue::with_config(
            QueueConfig::new().with_quantum(NonZeroU32::new(4).unwrap()),
        );
        for (i, &(weight, _, _)) in w.tenants.iter().enumerate() {
            q.set_weight(i, NonZeroU32::new(weight).unwrap());
        }
        let n = w.tenants.len();
        let mut offered = vec![0u64; n]; // cost units offered so far
        let mut served = vec![0u64; n]; // cost served after warm-up
        // Server capacity this tick; an item that overdraws it is paid from the next tick, and
        // capacity left while nothing is queued is lost (the server idles).
        let mut budget = 0i64;
        for tick in 0..TICKS {
            // Uniform demand: each tenant offers `demand` cost units per tick, in items of
            // its fixed cost.
            for (i, &(_, demand, cost)) in w.tenants.iter().enumerate() {
                offered[i] += u64::from(demand);
                while offered[i] >= u64::from(cost) {
                    offered[i] -= u64::from(cost);
                    q.try_push_with(i, cost, PushOptions::new().with_cost(cost)).unwrap();
                }
            }
            budget += i64::from(w.capacity);
            while budget > 0 {
                let Some(d) = q.dispatch() else { budget = 0; break };
                let i = q.key(d.ticket.tenant()).copied().unwrap();
                let cost = u64::from(d.item);
                budget -= i64::from(d.item);
                if tick >= WARMUP {
                    served[i] += cost;
                }
                q.complete(d.ticket, d.item);
            }
        }
        let window = (TICKS - WARMUP) as f64;
        let weights: Vec<f64> = w.tenants.iter().map(|t| f64::from(t.0)).collect();
        let demands: Vec<f64> = w.tenants.iter().map(|t| f64::from(t.1)).collect();
        let fair = max_min_fair(f64::from(w.capacity), &weights, &demands);
        for i in 0..n {
            let achieved = served[i] as f64 / window;
            // Within 1% of the fair share, plus the service that can straddle the two edges of
            // the measured window (at most one turn, quantum * weight + an item, at each edge),
            // spread over the window.
            let edge = f64::from(4 * w.tenants[i].0 + w.tenants[i].2);
            let tolerance = 0.01 * fair[i] + 2.0 * edge / window;
            prop_assert!(
                (achieved - fair[i]).abs() <= tolerance,
                "tenant {} (w={}, demand={}, cost={}): achieved {:.3}, fair {:.3}, tolerance {:.3}; all fair {:?}",
                i, w.tenants[i].0, w.tenants[i].1, w.tenants[i].2, achieved, fair[i], tolerance, fair
            );
        }
    }
}
