//! Groups of tenants: a group's share of the capacity does not grow with its number of keys,
//! its members share it by their weights, and group settings (weight, in-flight limit,
//! block, purge) hold in every layer, with nothing lost.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use common::class_oracle::water_fill;
use common::{Ledger, Way, nz, proptest_config};
use fairshare::config::QueueConfig;
use fairshare::{BlockReason, FairQueue, PushOptions, Ticket};
use proptest::prelude::*;
use std::collections::HashMap;

/// 1,000 keys of one group against 9 single-key groups: the big group gets a tenth of the
/// service, and its keys share that tenth evenly.
#[test]
fn a_thousand_keys_of_one_group_get_one_groups_share() {
    let mut q: FairQueue<u32, u32> = FairQueue::new();
    for k in 0..1000 {
        q.set_group(k, 10_000);
        for _ in 0..20 {
            q.try_push(k, k).unwrap();
        }
    }
    for g in 1..=9 {
        let key = 20_000 + g;
        q.set_group(key, 10_000 + g);
        for _ in 0..3000 {
            q.try_push(key, key).unwrap();
        }
    }
    let mut served: HashMap<u32, u32> = HashMap::new();
    for _ in 0..10_000 {
        let k = q.pop().unwrap();
        *served.entry(k).or_default() += 1;
    }
    let big: u32 = (0..1000)
        .map(|k| served.get(&k).copied().unwrap_or(0))
        .sum();
    assert_eq!(big, 1000, "one tenth of 10,000 pops: {big}");
    for g in 1..=9 {
        assert_eq!(served[&(20_000 + g)], 1000);
    }
    assert!((0..1000).all(|k| served[&k] == 1), "each key one pop");
}

#[test]
fn group_weight_and_member_weights() {
    let mut q: FairQueue<&str, &str> = FairQueue::new();
    q.set_group_weight("acme", nz(3));
    q.set_group("a1", "acme");
    q.set_group("a2", "acme");
    q.set_weight("a2", nz(2));
    for _ in 0..100 {
        q.try_push("a1", "a1").unwrap();
        q.try_push("a2", "a2").unwrap();
        q.try_push("solo", "solo").unwrap();
    }
    let mut served: HashMap<&str, u32> = HashMap::new();
    for _ in 0..80 {
        *served.entry(q.pop().unwrap()).or_default() += 1;
    }
    assert_eq!(served["solo"], 20, "{served:?}");
    assert_eq!(served["a1"], 20, "{served:?}");
    assert_eq!(served["a2"], 40, "{served:?}");
}

/// A group's members: each one's weight and item cost.
type Members = Vec<(u32, u32)>;

/// A random population: groups of 1 to 6 members (a member of a one-member group, or an
/// ungrouped tenant) with random group and member weights and item costs.
#[derive(Debug, Clone)]
struct Population {
    quantum: u32,
    /// Per group: its weight (`None`: its one member is ungrouped, with that member's
    /// weight) and its members' weights and item costs.
    groups: Vec<(Option<u32>, Members)>,
}

fn population() -> impl Strategy<Value = Population> {
    (
        1..=8u32,
        prop::collection::vec(
            (
                prop::option::weighted(0.8, 1..=4u32),
                prop::collection::vec((1..=4u32, 1..=12u32), 1..=6),
            ),
            2..=5,
        ),
    )
        .prop_map(|(quantum, mut groups)| {
            for g in &mut groups {
                if g.0.is_none() {
                    g.1.truncate(1);
                }
            }
            Population { quantum, groups }
        })
}

/// Tenant key of member `m` of group `g`, and the group key.
fn tenant(g: usize, m: usize) -> u32 {
    (g * 100 + m) as u32
}
fn group_key(g: usize) -> u32 {
    1_000_000 + g as u32
}

fn build(p: &Population, items_each: u32) -> FairQueue<u32, (usize, usize)> {
    let mut q = FairQueue::with_config(QueueConfig::new().with_quantum(nz(p.quantum)));
    for (g, (weight, members)) in p.groups.iter().enumerate() {
        if let Some(w) = weight {
            q.set_group_weight(group_key(g), nz(*w));
        }
        for (m, &(w, cost)) in members.iter().enumerate() {
            if weight.is_some() {
                q.set_group(tenant(g, m), group_key(g));
            }
            q.set_weight(tenant(g, m), nz(w));
            for _ in 0..items_each {
                q.try_push_with(tenant(g, m), (g, m), PushOptions::new().with_cost(cost))
                    .unwrap();
            }
        }
    }
    q
}

proptest! {
    #![proptest_config(proptest_config(48))]

    /// Over a stretch in which everyone stays backlogged: between two groups (an ungrouped
    /// tenant counts as a group of one), `|S_G/W_G - S_H/W_H| < 3Q + M/W_G + M/W_H`; between
    /// two members of one group, the same with member weights. So a group of k keys gets its
    /// group's share, whatever k.
    #[test]
    fn two_level_fairness_bound(p in population(), pops in 50..600usize) {
        let mut q = build(&p, 600);
        let mut group_cost = vec![0f64; p.groups.len()];
        let mut member_cost: Vec<Vec<f64>> =
            p.groups.iter().map(|(_, m)| vec![0.0; m.len()]).collect();
        for _ in 0..pops {
            let (g, m) = q.pop().expect("saturated");
            let cost = f64::from(p.groups[g].1[m].1);
            group_cost[g] += cost;
            member_cost[g][m] += cost;
        }
        let big_m = p.groups.iter().flat_map(|(_, m)| m.iter().map(|x| x.1)).max().unwrap();
        let (q3, big_m) = (3.0 * f64::from(p.quantum), f64::from(big_m));
        let gw = |g: usize| f64::from(p.groups[g].0.unwrap_or(p.groups[g].1[0].0));
        for a in 0..p.groups.len() {
            for b in 0..p.groups.len() {
                let gap = (group_cost[a] / gw(a) - group_cost[b] / gw(b)).abs();
                let bound = q3 + big_m / gw(a) + big_m / gw(b);
                prop_assert!(gap < bound, "groups {a} and {b}: gap {gap} >= {bound}: {group_cost:?}");
            }
            let members = &p.groups[a].1;
            for i in 0..members.len() {
                for j in 0..members.len() {
                    let (wi, wj) = (f64::from(members[i].0), f64::from(members[j].0));
                    let gap = (member_cost[a][i] / wi - member_cost[a][j] / wj).abs();
                    let bound = q3 + big_m / wi + big_m / wj;
                    prop_assert!(gap < bound, "group {a} members {i}, {j}: gap {gap} >= {bound}");
                }
            }
        }
    }

    /// Uniform demand (every tenant offered the same rate, unit costs) on a queue serving
    /// `capacity` items a step: each tenant's served share is within 1% of the capacity of
    /// the two-level weighted max-min share (groups by group weight capped at their
    /// demand, then members by weight capped at theirs).
    #[test]
    fn two_level_max_min_within_one_percent(
        p in population(),
        demand_per_mille in 20..=400u32,
    ) {
        let mut q: FairQueue<u32, (usize, usize)> = FairQueue::new();
        let mut keys = Vec::new();
        for (g, (weight, members)) in p.groups.iter().enumerate() {
            if let Some(w) = weight {
                q.set_group_weight(group_key(g), nz(*w));
            }
            for (m, &(w, _)) in members.iter().enumerate() {
                if weight.is_some() {
                    q.set_group(tenant(g, m), group_key(g));
                }
                q.set_weight(tenant(g, m), nz(w));
                keys.push((g, m));
            }
        }
        let capacity = 10.0;
        let demand = capacity * f64::from(demand_per_mille) / 1000.0;
        let steps = 20_000;
        let mut offered = vec![0f64; keys.len()];
        let mut served: HashMap<(usize, usize), f64> = HashMap::new();
        let mut budget = 0.0;
        for step in 0..steps {
            for (i, &(g, m)) in keys.iter().enumerate() {
                offered[i] += demand;
                while offered[i] >= 1.0 {
                    offered[i] -= 1.0;
                    // A bounded backlog: what a saturated tenant is served does not depend
                    // on how much more it queues.
                    if q.tenant_len(&tenant(g, m)) < 64 {
                        q.try_push(tenant(g, m), (g, m)).unwrap();
                    }
                }
            }
            budget += capacity;
            while budget >= 1.0 {
                budget -= 1.0;
                match q.pop() {
                    Some(k) if step >= steps / 4 => *served.entry(k).or_default() += 1.0,
                    Some(_) => {}
                    None => break,
                }
            }
        }
        let measured = f64::from(steps - steps / 4);
        // The oracle: groups first, then members.
        let gw: Vec<f64> = p.groups.iter().map(|(w, m)| f64::from(w.unwrap_or(m[0].0))).collect();
        let gdemand: Vec<f64> = p.groups.iter().map(|(_, m)| demand * m.len() as f64).collect();
        let zeros = vec![0.0; gw.len()];
        let gshare = water_fill(capacity, &gw, &zeros, &gdemand);
        for (g, (_, members)) in p.groups.iter().enumerate() {
            let w: Vec<f64> = members.iter().map(|m| f64::from(m.0)).collect();
            let share = water_fill(gshare[g], &w, &vec![0.0; w.len()], &vec![demand; w.len()]);
            for (m, want) in share.iter().enumerate() {
                let got = served.get(&(g, m)).copied().unwrap_or(0.0) / measured;
                prop_assert!(
                    (got - want).abs() <= 0.01 * capacity,
                    "group {g} member {m}: served {got:.3}/step, max-min share {want:.3}/step"
                );
            }
        }
    }
}

/// One random operation on a queue of grouped tenants.
#[derive(Debug, Clone)]
enum Op {
    Push { tenant: u32, cost: u32 },
    SetGroup { tenant: u32, group: u32 },
    ClearGroup { tenant: u32 },
    Limit { group: u32, limit: Option<u32> },
    Block { group: u32 },
    Unblock { group: u32 },
    Purge { group: u32 },
    Dispatch,
    Complete,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8u32, 1..=5u32).prop_map(|(tenant, cost)| Op::Push { tenant, cost }),
        2 => (0..8u32, 0..3u32).prop_map(|(tenant, group)| Op::SetGroup { tenant, group }),
        1 => (0..8u32).prop_map(|tenant| Op::ClearGroup { tenant }),
        1 => (0..3u32, prop::option::of(0..4u32)).prop_map(|(group, limit)| Op::Limit { group, limit }),
        1 => (0..3u32).prop_map(|group| Op::Block { group }),
        1 => (0..3u32).prop_map(|group| Op::Unblock { group }),
        1 => (0..3u32).prop_map(|group| Op::Purge { group }),
        5 => Just(Op::Dispatch),
        3 => Just(Op::Complete),
    ]
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Random group operations: every item comes back exactly once (dispatched, purged,
    /// refused or drained), a blocked group's members are refused, no dispatch takes a
    /// group past its in-flight limit, and the group totals are the sums over its members.
    #[test]
    fn group_operations_lose_nothing_and_keep_limits(ops in prop::collection::vec(op(), 1..200)) {
        let mut q: FairQueue<u32, u64> = FairQueue::new();
        let mut ledger = Ledger::new();
        let mut next_id = 0u64;
        let mut flight: Vec<(Ticket, u64)> = Vec::new();
        let mut blocked = [false; 3];
        let mut limits = [None::<u32>; 3];
        let mut member: HashMap<u32, u32> = HashMap::new();
        let gkey = |g: u32| 100 + g;
        for op in ops {
            match op {
                Op::Push { tenant, cost } => {
                    next_id += 1;
                    ledger.pushed(next_id);
                    let res = q.try_push_with(tenant, next_id, PushOptions::new().with_cost(cost));
                    let group_blocked = member.get(&tenant).is_some_and(|&g| blocked[g as usize]);
                    match res {
                        Ok(()) => prop_assert!(!group_blocked, "a blocked group's member was admitted"),
                        Err(e) => {
                            prop_assert!(group_blocked, "refused: {:?}", e.reason());
                            ledger.back(e.into_inner(), Way::Refused);
                        }
                    }
                }
                Op::SetGroup { tenant, group } => {
                    q.set_group(tenant, gkey(group));
                    member.insert(tenant, group);
                }
                Op::ClearGroup { tenant } => {
                    prop_assert_eq!(q.clear_group(&tenant), member.remove(&tenant).is_some());
                }
                Op::Limit { group, limit } => {
                    q.set_group_in_flight_limit(gkey(group), limit);
                    limits[group as usize] = limit;
                }
                Op::Block { group } => {
                    q.block_group(gkey(group), BlockReason::Abuse);
                    blocked[group as usize] = true;
                }
                Op::Unblock { group } => {
                    let was = q.unblock_group(&gkey(group)).is_some();
                    prop_assert_eq!(was, blocked[group as usize]);
                    blocked[group as usize] = false;
                }
                Op::Purge { group } => {
                    let out = q.purge_group(&gkey(group));
                    prop_assert_eq!(q.group_len(&gkey(group)), 0);
                    ledger.back_all(out, Way::Purged);
                }
                Op::Dispatch => {
                    let before: Vec<u32> = (0..3).map(|g| q.group_in_flight(&gkey(g))).collect();
                    if let Some(d) = q.dispatch() {
                        let t = *q.key(d.ticket.tenant()).unwrap();
                        if let Some(&g) = member.get(&t) {
                            if let Some(limit) = limits[g as usize] {
                                prop_assert!(before[g as usize] < limit, "group {g} at its limit {limit} was served");
                            }
                        }
                        ledger.back(d.item, Way::Dispatched);
                        flight.push((d.ticket, d.item));
                    }
                }
                Op::Complete => {
                    if !flight.is_empty() {
                        let (ticket, _) = flight.remove(0);
                        prop_assert!(q.complete(ticket, 1));
                    }
                }
            }
            for g in 0..3u32 {
                let members: Vec<u32> = member.iter().filter(|&(_, &mg)| mg == g).map(|(&t, _)| t).collect();
                let len: usize = members.iter().map(|t| q.tenant_len(t)).sum();
                let in_flight: u32 = members.iter().map(|t| q.in_flight(t)).sum();
                prop_assert_eq!(q.group_len(&gkey(g)), len);
                prop_assert_eq!(q.group_in_flight(&gkey(g)), in_flight);
                prop_assert_eq!(q.group_members(&gkey(g)), members.len());
            }
        }
        for (ticket, _) in flight.drain(..) {
            prop_assert!(q.complete(ticket, 1));
        }
        let drained: Vec<u64> = q.drain().collect();
        ledger.back_all(drained, Way::Drained);
        prop_assert_eq!(ledger.owed(), 0);
    }
}

proptest! {
    #![proptest_config(proptest_config(128))]

    /// A group's limits hold over all its members together, through the scheduler: the
    /// cost admitted for the group up to any moment never exceeds its quota's burst plus its
    /// rate times the time elapsed (the GCRA bound), its queued items never exceed its cap,
    /// its in-flight items never exceed its limit; and nothing is lost.
    #[test]
    fn group_limits_hold_in_the_scheduler(
        rate in 1..=50u32,
        burst in 1..=20u32,
        max_items in 1..=12u32,
        max_in_flight in 1..=4u32,
        ops in prop::collection::vec((0..4u32, 1..=3u32, 0..3u8, 0..40u64), 1..300),
    ) {
        use common::scheduler::{quota, sched};
        use fairshare::config::TenantLimits;
        use fairshare::{Clock, RejectReason, SchedulerConfig};
        let (mut s, clock) = sched::<u32>(SchedulerConfig::new());
        for m in 0..3 {
            s.set_group(m, 100);
        }
        s.set_group_limits(
            100,
            TenantLimits::new()
                .with_quota(quota(rate, burst))
                .with_max_items(max_items)
                .with_max_in_flight(max_in_flight),
        );
        let mut ledger = Ledger::new();
        let mut next = 0u32;
        let mut admitted_cost = 0u64;
        let mut flight = Vec::new();
        for (tenant, cost, action, advance_ms) in ops {
            clock.advance(std::time::Duration::from_millis(advance_ms));
            match action {
                0 => {
                    next += 1;
                    ledger.pushed(next);
                    match s.try_push_with(tenant, next, PushOptions::new().with_cost(cost)) {
                        Ok(()) => {
                            if tenant < 3 {
                                admitted_cost += u64::from(cost);
                            }
                        }
                        Err(e) => {
                            if tenant == 3 {
                                prop_assert!(false, "an ungrouped tenant was refused: {:?}", e.reason());
                            }
                            prop_assert!(matches!(
                                e.reason(),
                                RejectReason::GroupRateLimited { .. }
                                    | RejectReason::GroupFull { .. }
                                    | RejectReason::TooLarge { .. }
                            ), "{:?}", e.reason());
                            ledger.back(e.into_inner(), Way::Refused);
                        }
                    }
                }
                1 => {
                    if let Some(d) = s.dispatch() {
                        ledger.back(d.item, Way::Dispatched);
                        flight.push(d.ticket);
                    }
                }
                _ => {
                    if !flight.is_empty() {
                        s.complete(flight.remove(0), 1);
                    }
                }
            }
            let elapsed = s.clock().now().as_u64();
            let allowed = u64::from(burst) + (u128::from(rate) * u128::from(elapsed) / 1_000_000_000) as u64;
            prop_assert!(admitted_cost <= allowed, "admitted {admitted_cost} > {allowed}");
            prop_assert!(s.queue().group_len(&100) <= max_items as usize);
            prop_assert!(s.queue().group_in_flight(&100) <= max_in_flight);
        }
        for t in flight {
            s.complete(t, 1);
        }
        ledger.back_all(std::iter::from_fn(|| s.pop()), Way::Popped);
        prop_assert_eq!(ledger.owed(), 0);
    }
}

/// The incident's shape through the shared handle: one customer's 1,000 keys in one group
/// against nine customers of one key each; the flood's group gets a tenth of the
/// dispatches, and blocking and purging the group hands back everything it had queued.
#[test]
fn the_flood_spread_over_keys_through_the_shared_handle() {
    use fairshare::{SchedulerConfig, SharedScheduler};
    let h: SharedScheduler<u32, u32> = SharedScheduler::new(SchedulerConfig::new());
    for k in 0..1000 {
        h.set_group(k, 1_000_000);
        for _ in 0..10 {
            h.try_push(k, k).unwrap();
        }
    }
    for c in 0..9 {
        let key = 5000 + c;
        h.set_group(key, 2_000_000 + c);
        for _ in 0..200 {
            h.try_push(key, key).unwrap();
        }
    }
    let flood = (0..1000)
        .filter(|_| h.try_pop().is_some_and(|k| k < 1000))
        .count();
    assert_eq!(flood, 100, "a tenth of 1,000 pops");
    h.block_group(1_000_000, BlockReason::Abuse);
    assert!(h.try_push(7, 7).is_err());
    let purged = h.purge_group(&1_000_000);
    assert_eq!(purged.len(), 10_000 - 100);
    assert_eq!(h.len(), 9 * 200 - 900);
}
