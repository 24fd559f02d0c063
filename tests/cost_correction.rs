#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Cost correction through `complete`: debt is carried (also across re-activation while the
//! tenant is remembered) and capped at `max_debt_rounds` rounds; credit is capped at one
//! quantum. Exact pop orders for Q = 1, w = 1, max_debt_rounds = 2.

use fairshare::{FairQueue, PushOptions, config::QueueConfig};
use std::num::NonZeroU32;

fn q(debt_rounds: u32) -> FairQueue<&'static str, (&'static str, u32)> {
    FairQueue::with_config(
        QueueConfig::new()
            .with_quantum(NonZeroU32::new(1).unwrap())
            .with_max_debt_rounds(debt_rounds),
    )
}

/// An underestimated item puts its tenant in debt, capped at `max_debt_rounds · Q · w`; the
/// debt survives the tenant emptying (it is pinned) and delays its next item by exactly
/// that many rounds.
#[test]
fn debt_is_carried_across_reactivation_and_capped() {
    let mut q = q(2);
    let _pin = q.tenant("a");
    q.try_push("a", ("a", 1)).unwrap();
    for i in 0..10 {
        q.try_push("b", ("b", i)).unwrap();
    }
    let d = q.dispatch().unwrap();
    assert_eq!(d.item, ("a", 1));
    assert!(q.complete(d.ticket, 1_000_000)); // far costlier than estimated
    q.try_push("a", ("a", 2)).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| q.pop()).take(4).collect();
    // Debt -2 (capped), re-activation adds one quantum: -1; two empty rounds for a.
    assert_eq!(order, [("b", 0), ("b", 1), ("b", 2), ("a", 2)]);
}

/// An overestimated item earns at most one quantum of credit, however many complete.
#[test]
fn credit_is_capped_at_one_quantum() {
    let mut q = q(4);
    for (i, c) in [5u32, 5, 1, 1, 1, 1, 1, 1].into_iter().enumerate() {
        q.try_push_with("a", ("a", i as u32), PushOptions::new().with_cost(c))
            .unwrap();
    }
    for i in 0..40 {
        q.try_push("b", ("b", i)).unwrap();
    }
    let mut tickets = Vec::new();
    let mut order = Vec::new();
    while tickets.len() < 2 {
        let d = q.dispatch().unwrap();
        order.push(d.item.0);
        if d.item.0 == "a" {
            tickets.push(d.ticket);
        } else {
            assert!(q.complete(d.ticket, 1));
        }
    }
    for t in tickets {
        assert!(q.complete(t, 0)); // both cost nothing in the end
    }
    let rest: Vec<&str> = std::iter::from_fn(|| q.pop()).map(|(t, _)| t).collect();
    // While both are backlogged, `a` never gets more than one turn's credit (Q) plus its
    // quantum: at most 2 unit items in a row.
    let b_left = rest.iter().rposition(|&t| t == "b").unwrap();
    let longest_a_run = rest[..b_left]
        .split(|&t| t == "b")
        .map(<[_]>::len)
        .max()
        .unwrap();
    assert!(longest_a_run <= 2, "credit not capped: {rest:?}");
}
