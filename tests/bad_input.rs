//! Bad input gets a clear answer: refusals name the reason and hand the item back, config
//! errors name the field, and extreme values neither panic nor overflow nor hang.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{PopTrace, config, must_finish_within, nz, opts};
use fairshare::{BlockReason, ClassId, ConfigError, FairQueue, RejectReason, config::QueueConfig};

/// Generous: every call below finishes in microseconds unless it loops forever.
const WATCHDOG: Duration = Duration::from_secs(5);

// ===== refusals =====

#[test]
fn zero_cost_rejected_with_item_back() {
    let mut q: FairQueue<&str, String> = FairQueue::new();
    let err = q
        .try_push_with("acme", "job".to_string(), opts(0))
        .unwrap_err();
    assert_eq!(err.reason(), RejectReason::ZeroCost);
    assert!(!err.is_retryable());
    assert_eq!(err.to_string(), "item cost must be at least 1");
    assert_eq!(err.into_inner(), "job");
    assert!(q.is_empty());
    assert_eq!(
        q.known_tenants(),
        0,
        "a refused push creates no tenant state"
    );

    let h = q.tenant("acme");
    let err = q.try_push_to(h, "job2".to_string(), opts(0)).unwrap_err();
    assert_eq!(
        err.into_parts(),
        ("job2".to_string(), RejectReason::ZeroCost)
    );
    assert_eq!(q.tenant_len(&"acme"), 0);
    assert_eq!(q.counters().rejected, 2);
    assert_eq!(q.counters().pushed, 0);
}

/// `TenantCounters::rejected` documents that it counts "items refused (blocked, bad cost,
/// capacity)"; a zero-cost push to a known tenant counts whether it came by key or by handle.
#[test]
fn zero_cost_counts_in_known_tenants_rejected_counter() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let h = q.tenant("acme");
    q.try_push_to(h, 1, opts(0)).unwrap_err();
    assert_eq!(q.tenant_counters(&"acme").map(|c| c.rejected), Some(1));
    q.try_push_with("acme", 2, opts(0)).unwrap_err();
    assert_eq!(
        q.tenant_counters(&"acme").map(|c| c.rejected),
        Some(2),
        "a keyed zero-cost push to a known tenant is not counted in its `rejected`"
    );
}

#[test]
fn stale_handle_after_release_rejected() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let h = q.tenant("acme");
    q.try_push_to(h, 1, opts(1)).unwrap();
    assert_eq!(q.pop(), Some(1));
    assert!(q.release(h));
    assert_eq!(q.key(h), None);
    let err = q.try_push_to(h, 2, opts(1)).unwrap_err();
    assert_eq!(err.reason(), RejectReason::StaleHandle);
    assert!(!err.is_retryable());
    assert_eq!(err.into_inner(), 2);
    assert!(!q.release(h), "releasing a stale handle again is refused");
    assert!(q.is_empty());
}

/// A stale handle never reaches the tenant that reuses its slot, nor the same key come back.
#[test]
fn stale_handle_does_not_touch_the_tenant_reusing_its_slot() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let old = q.tenant("acme");
    q.release(old);
    let other = q.tenant("globex"); // likely reuses acme's freed slot
    q.try_push("acme", 5).unwrap(); // acme is known again, under a new generation
    assert_eq!(
        q.try_push_to(old, 1, opts(1)).unwrap_err().reason(),
        RejectReason::StaleHandle
    );
    assert!(!q.release(old));
    assert_eq!(q.key(old), None);
    assert_eq!(q.tenant_len(&"globex"), 0);
    assert_eq!(q.tenant_len(&"acme"), 1);
    assert_eq!(q.key(other), Some(&"globex"));
}

#[test]
fn blocked_push_rejected_with_reason_and_item() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.block("acme", BlockReason::Code(7));
    let err = q.try_push_with("acme", 1, opts(3)).unwrap_err();
    assert_eq!(
        err.reason(),
        RejectReason::Blocked {
            reason: BlockReason::Code(7)
        }
    );
    assert_eq!(err.to_string(), "tenant is blocked (code 7)");
    assert_eq!(err.into_inner(), 1);
    let h = q.tenant("acme");
    assert!(matches!(
        q.try_push_to(h, 2, opts(1)).unwrap_err().reason(),
        RejectReason::Blocked { .. }
    ));
    assert_eq!(q.tenant_counters(&"acme").map(|c| c.rejected), Some(2));
}

/// The queue checks a push in the scheduler's order: blocked first (whatever else is wrong with
/// the push), then zero cost, then an unknown class; by key and by handle alike.
#[test]
fn refusal_order_is_blocked_then_zero_cost_then_unknown_class() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    let nowhere = ClassId::new(5);
    let h = q.tenant("acme");
    q.block("acme", BlockReason::Abuse);
    let blocked = RejectReason::Blocked {
        reason: BlockReason::Abuse,
    };
    let e = q
        .try_push_with("acme", 1, opts(0).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (1, blocked));
    let e = q
        .try_push_to(h, 2, opts(0).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (2, blocked));

    assert_eq!(q.unblock(&"acme"), Some(BlockReason::Abuse));
    let e = q
        .try_push_with("acme", 3, opts(0).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (3, RejectReason::ZeroCost));
    let e = q
        .try_push_to(h, 4, opts(0).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (4, RejectReason::ZeroCost));

    let unknown = RejectReason::UnknownClass { class: nowhere };
    let e = q
        .try_push_with("acme", 5, opts(1).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (5, unknown));
    let e = q
        .try_push_to(h, 6, opts(1).with_class(nowhere))
        .unwrap_err();
    assert_eq!(e.into_parts(), (6, unknown));

    assert!(q.is_empty());
    assert_eq!(q.counters().rejected, 6);
}

#[test]
fn blocked_tenants_queued_items_still_served_until_purged() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    for i in 0..5 {
        q.try_push("flood", i).unwrap();
        q.try_push("other", 100 + i).unwrap();
    }
    q.block("flood", BlockReason::Abuse);
    let first: Vec<u32> = (0..4).filter_map(|_| q.pop()).collect();
    assert_eq!(first, [0, 100, 1, 101], "a block does not stop service");
    assert!(q.try_push("flood", 99).is_err());
    assert_eq!(q.purge(&"flood"), [2, 3, 4]);
    let rest: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(rest, [102, 103, 104]);
    assert_eq!(
        q.blocked(&"flood"),
        Some(BlockReason::Abuse),
        "purge keeps the block"
    );
}

// ===== configuration =====

#[test]
fn config_try_from_raw_errors_name_the_field() {
    let quantum = QueueConfig::try_from_raw(0, 1, 4).unwrap_err();
    assert!(matches!(
        quantum,
        ConfigError::Invalid {
            field: "quantum",
            ..
        }
    ));
    assert!(quantum.to_string().contains("`quantum`"), "{quantum}");

    let weight = QueueConfig::try_from_raw(1, 0, 4).unwrap_err();
    assert!(matches!(
        weight,
        ConfigError::Invalid {
            field: "default_weight",
            ..
        }
    ));
    assert!(weight.to_string().contains("`default_weight`"), "{weight}");

    for err in [quantum, weight] {
        let ConfigError::Invalid { problem, .. } = err else {
            unreachable!("only one variant is produced")
        };
        assert!(
            !problem.is_empty() && !problem.ends_with('.'),
            "{problem:?}"
        );
        assert_eq!(problem, problem.to_lowercase(), "messages are lowercase");
    }

    assert!(QueueConfig::try_from_raw(0, 0, 0).is_err());
    let ok = QueueConfig::try_from_raw(u32::MAX, u32::MAX, u32::MAX).unwrap();
    assert_eq!(
        (
            ok.quantum().get(),
            ok.default_weight().get(),
            ok.max_credit_rounds()
        ),
        (u32::MAX, u32::MAX, u32::MAX)
    );
}

// ===== extreme values =====

/// Pushes `items` (tenant, cost), pops everything under a watchdog and checks per-tenant FIFO
/// and that every item came out exactly once. Returns the pop trace.
fn pop_all_checked(
    label: &str,
    cfg: QueueConfig,
    weights: &[u32],
    items: &[(usize, u32)],
) -> PopTrace {
    let weights = weights.to_vec();
    let items = items.to_vec();
    let label = label.to_string();
    must_finish_within(WATCHDOG, &label.clone(), move || {
        let n = weights.len();
        let mut q: FairQueue<usize, (usize, usize)> = FairQueue::with_config(cfg);
        for (t, &w) in weights.iter().enumerate() {
            q.set_weight(t, nz(w));
        }
        let mut fifos = vec![VecDeque::new(); n];
        for (seq, &(t, cost)) in items.iter().enumerate() {
            q.try_push_with(t, (t, seq), opts(cost)).expect("accepted");
            fifos[t].push_back((seq, cost));
        }
        let total: u64 = items.iter().map(|&(_, c)| u64::from(c)).sum();
        assert_eq!(q.queued_cost(), total, "{label}: queued_cost does not wrap");
        let mut trace = PopTrace {
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            ..PopTrace::default()
        };
        loop {
            let pre: Vec<usize> = (0..n).map(|t| q.tenant_len(&t)).collect();
            let Some((t, seq)) = q.pop() else { break };
            let head = fifos[t].pop_front();
            assert_eq!(
                head.map(|(s, _)| s),
                Some(seq),
                "{label}: FIFO of tenant {t}"
            );
            trace.pops.push((t, u64::from(head.map_or(0, |(_, c)| c))));
            trace.pre.push(pre);
            trace.post.push((0..n).map(|t| q.tenant_len(&t)).collect());
        }
        assert_eq!(
            trace.pops.len(),
            items.len(),
            "{label}: every item served once"
        );
        assert!(
            fifos.iter().all(VecDeque::is_empty),
            "{label}: nothing left behind"
        );
        assert_eq!((q.len(), q.queued_cost()), (0, 0));
        trace
    })
}

fn mixed_items(n: usize, per_tenant: usize, costs: &[u32]) -> Vec<(usize, u32)> {
    (0..per_tenant)
        .flat_map(|k| (0..n).map(move |t| (t, costs[(k + t) % costs.len()])))
        .collect()
}

#[test]
fn max_quantum_pops_terminate_in_fifo_order() {
    let items = mixed_items(3, 20, &[1, 7, u32::MAX, 2]);
    pop_all_checked(
        "quantum u32::MAX, weights 1..3",
        config(u32::MAX, 1, 4),
        &[1, 2, 3],
        &items,
    );
}

#[test]
fn max_weights_pops_terminate_in_fifo_order() {
    let items = mixed_items(3, 20, &[1, 7, u32::MAX, 2]);
    pop_all_checked(
        "quantum 1, weights u32::MAX",
        config(1, u32::MAX, 4),
        &[u32::MAX, 1, u32::MAX - 1],
        &items,
    );
}

/// `quantum × weight` is about 2^64 here, beyond `i64`: it must saturate, not wrap.
#[test]
fn max_quantum_and_max_weights_pops_terminate_in_fifo_order() {
    let items = mixed_items(3, 20, &[1, 7, u32::MAX, 2]);
    pop_all_checked(
        "quantum u32::MAX, weights u32::MAX",
        config(u32::MAX, u32::MAX, u32::MAX),
        &[u32::MAX, u32::MAX, u32::MAX],
        &items,
    );
}

/// The same with a single tenant: the smallest input that must not hang.
#[test]
fn max_quantum_and_max_weight_single_item_pops() {
    let popped = must_finish_within(WATCHDOG, "one item, quantum and weight u32::MAX", || {
        let mut q: FairQueue<u8, u8> = FairQueue::with_config(config(u32::MAX, u32::MAX, 4));
        q.try_push(0, 42).unwrap();
        q.pop()
    });
    assert_eq!(popped, Some(42));
}

/// A weight of 2^31 + 1 with quantum u32::MAX already takes `quantum × weight` past `i64::MAX`.
#[test]
fn quantum_times_weight_above_i64_max_pops_terminate() {
    let items = mixed_items(2, 10, &[3, 1]);
    pop_all_checked(
        "quantum u32::MAX, weights 2^31+1 and 1",
        config(u32::MAX, 1, 4),
        &[(1 << 31) + 1, 1],
        &items,
    );
}

#[test]
fn max_costs_with_unit_quantum_pops_terminate_and_stay_fair() {
    let items = mixed_items(3, 30, &[u32::MAX, u32::MAX - 1, 1]);
    let trace = pop_all_checked(
        "costs u32::MAX, quantum 1",
        config(1, 1, 4),
        &[1, 2, 3],
        &items,
    );
    for gap in trace.pair_gaps(1) {
        assert!(gap.holds(), "fairness bound: {gap}");
    }
}

/// Items costing 1000 times `quantum × weight` are all served, in round-robin order for equal
/// weights and within the fairness bound for unequal ones.
#[test]
fn items_far_costlier_than_quantum_served_fairly() {
    let equal = pop_all_checked(
        "cost 1000, quantum 1, equal weights",
        config(1, 1, 4),
        &[1, 1, 1],
        &mixed_items(3, 10, &[1000]),
    );
    let order: Vec<usize> = equal.pops.iter().map(|&(t, _)| t).collect();
    let round_robin: Vec<usize> = (0..30).map(|k| k % 3).collect();
    assert_eq!(order, round_robin);

    let weighted = pop_all_checked(
        "cost 1000, quantum 1, weights 1..3",
        config(1, 1, 4),
        &[1, 2, 3],
        &mixed_items(3, 60, &[1000]),
    );
    for gap in weighted.pair_gaps(1) {
        assert!(gap.holds(), "fairness bound: {gap}");
    }
    // While all three are backlogged, weight 3 gets about three times weight 1's service.
    let first_60: Vec<usize> = weighted.pops[..60].iter().map(|&(t, _)| t).collect();
    let count = |t: usize| first_60.iter().filter(|&&x| x == t).count();
    assert_eq!((count(0), count(1), count(2)), (10, 20, 30), "{first_60:?}");
}

/// Completing with actual costs `u32::MAX` and 0, over and over, neither panics nor wraps, and
/// the queue keeps serving everything in FIFO order afterwards.
#[test]
fn extreme_actual_costs_in_complete_do_not_break_the_queue() {
    for (quantum, weight, debt_rounds) in [
        (1, 1, 4),
        (1, 1, u32::MAX),
        (u32::MAX, 1, u32::MAX),
        (u32::MAX, u32::MAX, u32::MAX),
    ] {
        let label = format!("complete with extremes, Q={quantum}, w={weight}, debt={debt_rounds}");
        let inner_label = label.clone();
        let served = must_finish_within(WATCHDOG, &label, move || {
            let label = inner_label;
            let mut q: FairQueue<u8, (u8, u32)> =
                FairQueue::with_config(config(quantum, weight, debt_rounds));
            let mut next = [0u32; 3];
            let mut served: Vec<(u8, u32)> = Vec::new();
            for round in 0..200u32 {
                for t in 0..3u8 {
                    let cost = [1, u32::MAX, 1000][t as usize];
                    q.try_push_with(t, (t, next[t as usize]), opts(cost))
                        .unwrap();
                    next[t as usize] += 1;
                }
                let d = q.dispatch().expect("items are queued");
                served.push(d.item);
                let actual = if round % 2 == 0 { u32::MAX } else { 0 };
                assert!(q.complete(d.ticket, actual), "{label}: live ticket");
            }
            served.extend(std::iter::from_fn(|| q.pop()));
            let c = q.counters();
            assert_eq!((c.pushed, c.dispatched), (600, 600), "{label}");
            assert_eq!(q.in_flight(&0) + q.in_flight(&1) + q.in_flight(&2), 0);
            // A tenant whose actual costs exceeded its estimates is remembered while it
            // owes (corrections are never forgiven); it repays by being served, and then it
            // is forgotten too.
            for _ in 0..8 {
                if q.known_tenants() == 0 {
                    break;
                }
                for t in 0..3u8 {
                    q.try_push(t, (t, u32::MAX)).unwrap();
                }
                let repaid: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
                assert_eq!(repaid.len(), 3, "{label}: work conservation while repaying");
            }
            assert_eq!(
                q.known_tenants(),
                0,
                "{label}: idle tenants forgotten once repaid"
            );
            for t in 0..3u8 {
                let got: Vec<u32> = served.iter().filter(|s| s.0 == t).map(|s| s.1).collect();
                let want: Vec<u32> = (0..200).collect();
                assert_eq!(got, want, "{label}: tenant {t} FIFO");
            }
            served.len()
        });
        assert_eq!(served, 600);
    }
}

/// Costs of `u32::MAX` sum exactly (in `u64`) in the queued-cost totals and the served-cost
/// counter.
#[test]
fn huge_costs_sum_exactly_in_queued_cost_and_counters() {
    let mut q: FairQueue<u8, u32> = FairQueue::with_config(config(u32::MAX, 1, 4));
    for i in 0..1000 {
        q.try_push_with(0, i, opts(u32::MAX)).unwrap();
    }
    assert_eq!(q.queued_cost(), 1000 * u64::from(u32::MAX));
    assert_eq!(q.tenant_queued_cost(&0), 1000 * u64::from(u32::MAX));
    let h = q.tenant(0);
    let served: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(served, (0..1000).collect::<Vec<_>>());
    let c = q.tenant_counters(&0).expect("pinned");
    assert_eq!(c.served_cost, 1000 * u64::from(u32::MAX));
    assert!(q.release(h));
}
