#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Differential test: FairQueue's pop order equals an independent, naive DRR reference
//! (textbook deficit round robin over a VecDeque ring), item for item, including
//! activation order, overdraft debt carried while the tenant is remembered, and weights.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use fairshare::{FairQueue, PushOptions, config::QueueConfig};
use proptest::prelude::*;

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
