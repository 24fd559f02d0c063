//! Model-based property tests of admission caps and shedding (`Scheduler` on a manual clock):
//! tenant caps and the global capacity are never exceeded and every refusal names a limit that
//! really was binding; eviction always hits a tenant furthest over its fair share, oldest items
//! first.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use fairshare::{
    Clock, Limit, ManualClock, PushOptions, RejectReason, Scheduler, SchedulerConfig, Ticket,
    config::{Capacity, ShedPolicy},
};
use proptest::prelude::*;

use common::admission_model::{Sched, TENANTS, capacity, policy, tenant_limits};
use common::{nz, proptest_config};

// ===== caps and capacity =====

#[derive(Debug, Clone)]
enum CapOp {
    Push { tenant: u8, cost: u32 },
    Pop,
    Dispatch,
    Complete { which: usize },
    Advance { ms: u64 },
    SetWeight { tenant: u8, weight: u32 },
}

fn cap_op() -> impl Strategy<Value = CapOp> {
    prop_oneof![
        10 => (0..TENANTS, 1..=10u32).prop_map(|(tenant, cost)| CapOp::Push { tenant, cost }),
        3 => Just(CapOp::Pop),
        1 => Just(CapOp::Dispatch),
        1 => any::<usize>().prop_map(|which| CapOp::Complete { which }),
        1 => (0..300u64).prop_map(|ms| CapOp::Advance { ms }),
        1 => (0..TENANTS, 1..=4u32).prop_map(|(tenant, weight)| CapOp::SetWeight { tenant, weight }),
    ]
}

#[derive(Debug, Clone)]
struct CapSetup {
    quota: Option<(u32, u32)>,
    tenant_items: Option<u32>,
    tenant_cost: Option<u64>,
    override0: Option<(Option<u32>, Option<u64>)>,
    cap_items: Option<u64>,
    cap_cost: Option<u64>,
    evict: bool,
}

fn cap_setup() -> impl Strategy<Value = CapSetup> {
    (
        prop::option::weighted(0.3, (1..=50u32, 1..=10u32)),
        prop::option::of(1..=6u32),
        prop::option::of(1..=20u64),
        prop::option::weighted(
            0.3,
            (prop::option::of(1..=8u32), prop::option::of(1..=30u64)),
        ),
        prop::option::of(1..=12u64),
        prop::option::of(1..=40u64),
        any::<bool>(),
    )
        .prop_map(
            |(quota, tenant_items, tenant_cost, override0, cap_items, cap_cost, evict)| CapSetup {
                quota,
                tenant_items,
                tenant_cost,
                override0,
                cap_items,
                cap_cost,
                evict,
            },
        )
}

/// Every tenant's and the global length and cost are within their caps.
fn check_caps(s: &Sched, cap: Capacity) -> Result<(), TestCaseError> {
    let q = s.queue();
    for t in 0..TENANTS {
        let l = s.limits(&t);
        if let Some(m) = l.max_items() {
            prop_assert!(
                q.tenant_len(&t) <= m as usize,
                "tenant {t}: {} items > cap {m}",
                q.tenant_len(&t)
            );
        }
        if let Some(m) = l.max_cost() {
            prop_assert!(
                q.tenant_queued_cost(&t) <= m,
                "tenant {t}: cost {} > cap {m}",
                q.tenant_queued_cost(&t)
            );
        }
    }
    if let Some(m) = cap.max_items() {
        prop_assert!(q.len() as u64 <= m, "{} items > capacity {m}", q.len());
    }
    if let Some(m) = cap.max_cost() {
        prop_assert!(
            q.queued_cost() <= m,
            "cost {} > capacity {m}",
            q.queued_cost()
        );
    }
    let per_tenant: usize = (0..TENANTS).map(|t| q.tenant_len(&t)).sum();
    prop_assert_eq!(per_tenant, q.len());
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn caps_and_capacity_never_exceeded(
        setup in cap_setup(),
        ops in prop::collection::vec(cap_op(), 1..150),
    ) {
        let defaults = tenant_limits(setup.quota, setup.tenant_items, setup.tenant_cost);
        let cap = capacity(setup.cap_items, setup.cap_cost);
        let cfg = SchedulerConfig::new()
            .with_tenant_limits(defaults)
            .with_capacity(cap)
            .with_shed_policy(policy(setup.evict));
        let clock = ManualClock::new();
        let mut s: Sched = Scheduler::with_clock(cfg, clock.clone());
        if let Some((items, cost)) = setup.override0 {
            s.set_limits(0, tenant_limits(None, items, cost));
        }
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                CapOp::Push { tenant, cost } => {
                    let l = s.limits(&tenant);
                    let q = s.queue();
                    let (t_len, t_cost) = (q.tenant_len(&tenant) as u64, q.tenant_queued_cost(&tenant));
                    let (len, total) = (q.len() as u64, q.queued_cost());
                    let c = u64::from(cost);
                    let now = clock.now();
                    let id = next_id;
                    next_id += 1;
                    match s.try_push_with(tenant, id, PushOptions::new().with_cost(cost)) {
                        Ok(()) => {
                            // No deadlines here: whatever comes back was evicted by this push.
                            let back = s.take_returned();
                            if !setup.evict {
                                prop_assert!(back.is_empty(), "RejectNew evicted");
                            }
                            for e in &back {
                                prop_assert_eq!(e.reason(), RejectReason::Evicted);
                            }
                        }
                        Err(e) => {
                            prop_assert_eq!(*e.item(), id);
                            match e.reason() {
                                RejectReason::TenantFull { limit: Limit::Items(m) } => {
                                    prop_assert_eq!(l.max_items().map(u64::from), Some(m));
                                    prop_assert!(t_len >= m, "TenantFull(items {m}) with {t_len} queued");
                                }
                                RejectReason::TenantFull { limit: Limit::Cost(m) } => {
                                    prop_assert_eq!(l.max_cost(), Some(m));
                                    prop_assert!(t_cost + c > m, "TenantFull(cost {m}) with {t_cost} + {c}");
                                }
                                RejectReason::CapacityFull { limit: Limit::Items(m) } => {
                                    prop_assert_eq!(cap.max_items(), Some(m));
                                    prop_assert!(len + 1 > m, "CapacityFull(items {m}) with {len} queued");
                                }
                                RejectReason::CapacityFull { limit: Limit::Cost(m) } => {
                                    prop_assert_eq!(cap.max_cost(), Some(m));
                                    prop_assert!(total + c > m, "CapacityFull(cost {m}) with {total} + {c}");
                                }
                                RejectReason::TooLarge { cost: tc, max } => {
                                    prop_assert_eq!(tc, c);
                                    prop_assert!(c > max);
                                    let burst = l.quota().map(|q| u64::from(q.burst().get()));
                                    prop_assert!(
                                        burst == Some(max) || l.max_cost() == Some(max) || cap.max_cost() == Some(max),
                                        "TooLarge names max {max}, which is no limit in force"
                                    );
                                }
                                RejectReason::RateLimited { retry_at } => {
                                    prop_assert!(l.quota().is_some());
                                    prop_assert!(retry_at > now);
                                }
                                other => prop_assert!(false, "unexpected refusal {other:?}"),
                            }
                        }
                    }
                }
                CapOp::Pop => {
                    let _ = s.pop();
                }
                CapOp::Dispatch => {
                    if let Some(d) = s.dispatch() {
                        tickets.push(d.ticket);
                    }
                }
                CapOp::Complete { which } => {
                    if !tickets.is_empty() {
                        let t = tickets.swap_remove(which % tickets.len());
                        let cost = t.cost();
                        prop_assert!(s.complete(t, cost));
                    }
                }
                CapOp::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                CapOp::SetWeight { tenant, weight } => s.set_weight(tenant, nz(weight)),
            }
            check_caps(&s, cap)?;
        }
    }
}

// ===== eviction targets =====

#[derive(Debug, Clone)]
enum EvOp {
    Push { tenant: u8, cost: u32 },
    Pop,
    SetWeight { tenant: u8, weight: u32 },
    ClearWeight { tenant: u8 },
}

fn ev_op() -> impl Strategy<Value = EvOp> {
    prop_oneof![
        12 => (0..TENANTS, prop_oneof![3 => Just(1u32), 2 => 2..=6u32])
            .prop_map(|(tenant, cost)| EvOp::Push { tenant, cost }),
        3 => Just(EvOp::Pop),
        1 => (0..TENANTS, 1..=5u32).prop_map(|(tenant, weight)| EvOp::SetWeight { tenant, weight }),
        1 => (0..TENANTS).prop_map(|tenant| EvOp::ClearWeight { tenant }),
    ]
}

/// `a_q / a_w` compared with `b_q / b_w`, exactly.
fn cmp_ratio(a: (u64, u64), b: (u64, u64)) -> std::cmp::Ordering {
    (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
}

proptest! {
    #![proptest_config(proptest_config(512))]

    #[test]
    fn eviction_hits_most_over_share(
        cap_items in prop::option::of(2..=10u64),
        cap_cost in prop::option::of(4..=30u64),
        weights0 in prop::collection::vec(1..=4u32, TENANTS as usize),
        ops in prop::collection::vec(ev_op(), 1..150),
    ) {
        let cap_items = if cap_items.is_none() && cap_cost.is_none() { Some(6) } else { cap_items };
        let cap = capacity(cap_items, cap_cost);
        let cfg = SchedulerConfig::new()
            .with_capacity(cap)
            .with_shed_policy(ShedPolicy::EvictOverShare);
        let mut s: Sched = Scheduler::with_clock(cfg, ManualClock::new());
        let mut weights: HashMap<u8, u64> = HashMap::new();
        for (t, &w) in weights0.iter().enumerate() {
            if w != 1 {
                s.set_weight(t as u8, nz(w));
                weights.insert(t as u8, u64::from(w));
            }
        }
        let mut fifo: Vec<VecDeque<(u64, u64)>> = vec![VecDeque::new(); TENANTS as usize];
        let mut owner: HashMap<u64, u8> = HashMap::new();
        let mut next_id = 0u64;

        for op in ops {
            match op {
                EvOp::Push { tenant: p, cost } => {
                    let c = u64::from(cost);
                    let w = |t: u8| weights.get(&t).copied().unwrap_or(1);
                    let q = |t: u8| fifo[t as usize].iter().map(|&(_, c)| c).sum::<u64>();
                    let n = |t: u8| fifo[t as usize].len() as u64;
                    let total_len: u64 = (0..TENANTS).map(n).sum();
                    let total_cost: u64 = (0..TENANTS).map(q).sum();
                    prop_assert_eq!(total_len, s.queue().len() as u64);
                    prop_assert_eq!(total_cost, s.queue().queued_cost());
                    let need_items = cap.max_items().map_or(0, |m| (total_len + 1).saturating_sub(m));
                    let need_cost = cap.max_cost().map_or(0, |m| (total_cost + c).saturating_sub(m));
                    let short = need_items > 0 || need_cost > 0;
                    // The largest queued_cost / weight among the other backlogged tenants.
                    let others: Vec<u8> = (0..TENANTS).filter(|&t| t != p && n(t) > 0).collect();
                    let max = others.iter().map(|&t| (q(t), w(t))).max_by(|&a, &b| cmp_ratio(a, b));
                    let newcomer = (q(p) + c, w(p));
                    let can_make_room = |t: u8| n(t) >= need_items && q(t) >= need_cost;

                    let id = next_id;
                    next_id += 1;
                    match s.try_push_with(p, id, PushOptions::new().with_cost(cost)) {
                        Ok(()) => {
                            // No deadlines and no queue-delay target here: whatever comes
                            // back was evicted by this push.
                            let ev: Vec<u64> = s
                                .take_returned()
                                .into_iter()
                                .map(|r| {
                                    assert_eq!(r.reason(), RejectReason::Evicted);
                                    r.into_inner()
                                })
                                .collect();
                            if !short {
                                prop_assert!(ev.is_empty(), "evicted {ev:?} with room to spare");
                            } else {
                                prop_assert!(!ev.is_empty(), "admitted over capacity without evicting");
                                let v = owner[&ev[0]];
                                prop_assert!(ev.iter().all(|e| owner[e] == v), "evicted from several tenants: {ev:?}");
                                prop_assert_ne!(v, p, "evicted from the pusher");
                                let max = max.expect("a victim exists, so some other tenant is backlogged");
                                prop_assert_eq!(
                                    cmp_ratio((q(v), w(v)), max),
                                    std::cmp::Ordering::Equal,
                                    "victim {} at {}/{} but the most over share is {}/{}",
                                    v, q(v), w(v), max.0, max.1
                                );
                                prop_assert_eq!(
                                    cmp_ratio((q(v), w(v)), newcomer),
                                    std::cmp::Ordering::Greater,
                                    "victim {} at {}/{} not further over than the newcomer's {}/{}",
                                    v, q(v), w(v), newcomer.0, newcomer.1
                                );
                                // The oldest items, and no more than needed.
                                let head: Vec<u64> = fifo[v as usize].iter().take(ev.len()).map(|&(id, _)| id).collect();
                                prop_assert_eq!(&ev, &head, "not the oldest items of tenant {}", v);
                                let freed = |k: usize| -> (u64, u64) {
                                    (k as u64, fifo[v as usize].iter().take(k).map(|&(_, c)| c).sum())
                                };
                                let (fi, fc) = freed(ev.len());
                                prop_assert!(fi >= need_items && fc >= need_cost);
                                let (pi, pc) = freed(ev.len() - 1);
                                prop_assert!(pi < need_items || pc < need_cost, "evicted more than needed");
                                for _ in 0..ev.len() {
                                    let (e, _) = fifo[v as usize].pop_front().expect("checked above");
                                    owner.remove(&e);
                                }
                            }
                            fifo[p as usize].push_back((id, c));
                            owner.insert(id, p);
                        }
                        Err(e) => {
                            let reason = e.reason();
                            if let Some(m) = cap.max_cost().filter(|&m| c > m) {
                                prop_assert_eq!(reason, RejectReason::TooLarge { cost: c, max: m });
                                continue;
                            }
                            prop_assert!(matches!(reason, RejectReason::CapacityFull { .. }), "{reason:?}");
                            prop_assert!(short, "refused with room to spare: {reason:?}");
                            if let Some(max) = max {
                                let tied: Vec<u8> = others
                                    .iter()
                                    .copied()
                                    .filter(|&t| cmp_ratio((q(t), w(t)), max).is_eq())
                                    .collect();
                                prop_assert!(
                                    !(cmp_ratio(max, newcomer).is_gt() && tied.iter().all(|&t| can_make_room(t))),
                                    "refused although tenant(s) {tied:?} at {}/{} are further over than the \
                                     newcomer's {}/{} and can make the room ({need_items} items, cost {need_cost})",
                                    max.0, max.1, newcomer.0, newcomer.1
                                );
                            }
                        }
                    }
                }
                EvOp::Pop => match s.pop() {
                    Some(id) => {
                        let t = owner.remove(&id).expect("popped an item the model does not hold");
                        let head = fifo[t as usize].pop_front().map(|(id, _)| id);
                        prop_assert_eq!(head, Some(id), "per-tenant FIFO broken");
                    }
                    None => prop_assert!(owner.is_empty()),
                },
                EvOp::SetWeight { tenant, weight } => {
                    s.set_weight(tenant, nz(weight));
                    weights.insert(tenant, u64::from(weight));
                }
                EvOp::ClearWeight { tenant } => {
                    s.clear_weight(&tenant);
                    weights.remove(&tenant);
                }
            }
        }
    }
}
