//! `FairQueue`: pushes by key and by handle with any options, pop, dispatch, complete with any
//! actual cost, weights, classes, the in-flight limit, block/unblock, purge, retain (with a
//! predicate that may panic), drain (dropped early too), take_expired, and groups of tenants
//! (membership, group weight, group in-flight limit, block/unblock and purge of a group).

use crate::common::{
    Class, Cost, Item, Ledger, Opts, Way, Weight, catch_host, classes, host_panic, reason,
};
use arbitrary::{Arbitrary, Unstructured};
use fairshare::config::QueueConfig;
use fairshare::{ClassId, FairQueue, Nanos, RejectReason, TenantHandle, Ticket};

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// `try_push_with`.
    Push { tenant: u8, opts: Opts },
    /// `try_push_to` with a held handle.
    PushTo { handle: u8, opts: Opts },
    /// `tenant` (keeps the handle).
    Tenant { tenant: u8 },
    /// `release` a held handle.
    Release { handle: u8 },
    /// `pop`.
    Pop,
    /// `dispatch` (keeps the ticket).
    Dispatch,
    /// `complete` a held ticket.
    Complete { which: u8, actual: Cost },
    /// `set_weight`.
    SetWeight { tenant: u8, weight: Weight },
    /// `clear_weight`.
    ClearWeight { tenant: u8 },
    /// `set_default_weight`.
    SetDefaultWeight { weight: Weight },
    /// `set_classes`.
    SetClasses { classes: Vec<Class> },
    /// `set_in_flight_limit`.
    SetInFlightLimit { limit: Option<u8> },
    /// `block`.
    Block { tenant: u8, reason: u8 },
    /// `unblock`.
    Unblock { tenant: u8 },
    /// `purge`.
    Purge { tenant: u8 },
    /// `retain` keeping ids with `id % modulo != 0`; panics at call `panic_at` if set.
    Retain {
        tenant: u8,
        modulo: u8,
        panic_at: Option<u8>,
    },
    /// `drain`, dropping the iterator after `take` items.
    Drain { take: u8 },
    /// `take_expired(now)`.
    TakeExpired { now_ms: u16 },
    /// `set_group`.
    SetGroup { tenant: u8, group: u8 },
    /// `clear_group`.
    ClearGroup { tenant: u8 },
    /// `set_group_weight`.
    SetGroupWeight { group: u8, weight: Weight },
    /// `set_group_in_flight_limit`.
    GroupLimit { group: u8, limit: Option<u8> },
    /// `block_group`.
    BlockGroup { group: u8, reason: u8 },
    /// `unblock_group`.
    UnblockGroup { group: u8 },
    /// `purge_group`.
    PurgeGroup { group: u8 },
}

/// The groups as the host set them: each tenant's group and each group's in-flight limit
/// and block.
#[derive(Debug, Default)]
struct GroupModel {
    member: [Option<u8>; 8],
    limit: [Option<u32>; 3],
    blocked: [bool; 3],
}

/// Group keys live in their own namespace; three groups.
fn group(g: u8) -> u8 {
    g % 3
}

/// The queue's configuration.
#[derive(Debug, Arbitrary)]
pub struct Setup {
    quantum: Weight,
    default_weight: Weight,
    max_credit_rounds: u8,
}

fn tenant(t: u8) -> u8 {
    t % 8
}

/// Decodes and runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    run_ops(&setup, &ops);
}

/// Runs `ops` on a queue set up by `setup`, checking every contract.
pub fn run_ops(setup: &Setup, ops: &[Op]) {
    let config = QueueConfig::new()
        .with_quantum(setup.quantum.get())
        .with_default_weight(setup.default_weight.get())
        .with_max_credit_rounds(u32::from(setup.max_credit_rounds));
    let mut q: FairQueue<u8, Item> = FairQueue::with_config(config);
    let mut ledger = Ledger::default();
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut handles: Vec<(TenantHandle, u8)> = Vec::new();
    let mut groups = GroupModel::default();
    for op in ops {
        let before = group_in_flight(&q);
        if !group_step(&mut q, &mut ledger, &mut groups, op) {
            step(&mut q, &mut ledger, &mut tickets, &mut handles, &groups, op);
        }
        check(&q, &ledger, &tickets);
        check_groups(&q, &groups, &before, op);
    }
    // Wind down: every ticket completed, everything left drained.
    for t in tickets.drain(..) {
        assert!(q.complete(t, 1), "a held ticket was refused");
    }
    assert_eq!(q.total_in_flight(), 0);
    for item in q.drain() {
        ledger.back(item, Way::Drained);
    }
    for r in q.take_expired(Nanos::new(u64::MAX)) {
        ledger.back(r.into_inner(), Way::Returned);
    }
    assert!(q.is_empty());
    assert_eq!(q.queued_cost(), 0);
    ledger.assert_empty();
    for (h, _) in handles {
        q.release(h);
    }
    assert_eq!(q.known_tenants(), q.tenants().count());
}

/// Runs `op` if it is a group operation; returns whether it was.
fn group_step(
    q: &mut FairQueue<u8, Item>,
    ledger: &mut Ledger,
    groups: &mut GroupModel,
    op: &Op,
) -> bool {
    match *op {
        Op::SetGroup { tenant: t, group: g } => {
            q.set_group(tenant(t), group(g));
            groups.member[usize::from(tenant(t))] = Some(group(g));
        }
        Op::ClearGroup { tenant: t } => {
            let was = groups.member[usize::from(tenant(t))].take().is_some();
            assert_eq!(q.clear_group(&tenant(t)), was);
        }
        Op::SetGroupWeight { group: g, weight } => {
            q.set_group_weight(group(g), weight.get());
            assert_eq!(q.group_weight(&group(g)), weight.get());
        }
        Op::GroupLimit { group: g, limit } => {
            let limit = limit.map(|l| u32::from(l % 4));
            q.set_group_in_flight_limit(group(g), limit);
            groups.limit[usize::from(group(g))] = limit;
        }
        Op::BlockGroup { group: g, reason: r } => {
            q.block_group(group(g), reason(r));
            groups.blocked[usize::from(group(g))] = true;
        }
        Op::UnblockGroup { group: g } => {
            let was = q.unblock_group(&group(g)).is_some();
            assert_eq!(was, groups.blocked[usize::from(group(g))]);
            groups.blocked[usize::from(group(g))] = false;
        }
        Op::PurgeGroup { group: g } => {
            let n = q.group_len(&group(g));
            let out = q.purge_group(&group(g));
            assert_eq!(out.len(), n);
            for item in out {
                assert_eq!(groups.member[usize::from(item.tenant)], Some(group(g)));
                ledger.back(item, Way::Purged);
            }
            assert_eq!(q.group_len(&group(g)), 0);
        }
        _ => return false,
    }
    true
}

/// Each group's items in flight.
fn group_in_flight(q: &FairQueue<u8, Item>) -> [u32; 3] {
    [0, 1, 2].map(|g| q.group_in_flight(&g))
}

/// The group totals are the sums over the members the model holds; a push by a blocked
/// group's member was refused; no dispatch took a group past its in-flight limit.
fn check_groups(q: &FairQueue<u8, Item>, groups: &GroupModel, before: &[u32; 3], op: &Op) {
    for g in 0..3u8 {
        let members: Vec<u8> = (0..8u8)
            .filter(|&t| groups.member[usize::from(t)] == Some(g))
            .collect();
        let len: usize = members.iter().map(|t| q.tenant_len(t)).sum();
        let in_flight: u32 = members.iter().map(|t| q.in_flight(t)).sum();
        let cost: u64 = members.iter().map(|t| q.tenant_queued_cost(t)).sum();
        assert_eq!(q.group_len(&g), len, "group {g}'s length is not its members'");
        assert_eq!(q.group_in_flight(&g), in_flight, "group {g}'s in-flight count");
        assert_eq!(q.group_queued_cost(&g), cost, "group {g}'s queued cost");
        assert_eq!(q.group_members(&g), members.len());
        let now = q.group_in_flight(&g);
        if let (Op::Dispatch, Some(limit)) = (op, groups.limit[usize::from(g)]) {
            if now > before[usize::from(g)] {
                assert!(
                    before[usize::from(g)] < limit,
                    "group {g} at its in-flight limit {limit} was served"
                );
            }
        }
    }
}

fn step(
    q: &mut FairQueue<u8, Item>,
    ledger: &mut Ledger,
    tickets: &mut Vec<Ticket>,
    handles: &mut Vec<(TenantHandle, u8)>,
    groups: &GroupModel,
    op: &Op,
) {
    match *op {
        Op::Push { tenant: t, opts } => {
            let t = tenant(t);
            let item = ledger.item(t, opts.class());
            let id = item.id;
            let r = q.try_push_with(t, item, opts.get());
            let group_blocked = groups.member[usize::from(t)]
                .is_some_and(|g| groups.blocked[usize::from(g)]);
            if group_blocked {
                assert!(r.is_err(), "a blocked group's member was admitted");
            }
            ledger.pushed(id, r);
        }
        Op::PushTo { handle, opts } => {
            if handles.is_empty() {
                return;
            }
            let (h, t) = handles[usize::from(handle) % handles.len()];
            let item = ledger.item(t, opts.class());
            let id = item.id;
            let r = q.try_push_to(h, item, opts.get());
            ledger.pushed(id, r);
        }
        Op::Tenant { tenant: t } => {
            if handles.len() < 16 {
                let t = tenant(t);
                handles.push((q.tenant(t), t));
                assert_eq!(q.key(handles.last().unwrap().0), Some(&t));
            }
        }
        Op::Release { handle } => {
            if !handles.is_empty() {
                let (h, _) = handles.swap_remove(usize::from(handle) % handles.len());
                q.release(h);
            }
        }
        Op::Pop => {
            let before = q.len();
            let can = dispatchable_unlimited(q) && groups.limit.iter().all(Option::is_none);
            match q.pop() {
                Some(item) => ledger.back(item, Way::Dispatched),
                None => assert!(
                    !(can && before > 0),
                    "pop returned nothing with work queued and no limits"
                ),
            }
        }
        Op::Dispatch => {
            let global_before = q.total_in_flight();
            let can = dispatchable_unlimited(q) && groups.limit.iter().all(Option::is_none);
            let before = q.len();
            let class_before: Vec<u32> = (0..q.classes().len())
                .map(|c| q.class_in_flight(ClassId::new(c as u16)))
                .collect();
            match q.dispatch() {
                Some(d) => {
                    if let Some(l) = q.in_flight_limit() {
                        assert!(
                            global_before < u64::from(l),
                            "dispatched at the global in-flight limit {l}"
                        );
                    }
                    let c = d.ticket.class();
                    if let Some(m) = q.classes().get(c).and_then(|s| s.max_in_flight()) {
                        assert!(
                            class_before[c.index()] < m,
                            "dispatched at class {c}'s in-flight cap {m}"
                        );
                    }
                    assert_eq!(c.index(), d.item.class, "ticket names another class");
                    assert_eq!(q.key(d.ticket.tenant()), Some(&d.item.tenant));
                    ledger.back(d.item, Way::Dispatched);
                    tickets.push(d.ticket);
                }
                None => assert!(
                    !(can && before > 0),
                    "dispatch returned nothing with work queued and no limits"
                ),
            }
        }
        Op::Complete { which, actual } => {
            if !tickets.is_empty() {
                let t = tickets.swap_remove(usize::from(which) % tickets.len());
                let before = q.total_in_flight();
                assert!(q.complete(t, actual.get()), "a live ticket was refused");
                assert_eq!(q.total_in_flight(), before - 1);
            }
        }
        Op::SetWeight { tenant: t, weight } => {
            q.set_weight(tenant(t), weight.get());
            assert_eq!(q.weight(&tenant(t)), weight.get());
        }
        Op::ClearWeight { tenant: t } => q.clear_weight(&tenant(t)),
        Op::SetDefaultWeight { weight } => q.set_default_weight(weight.get()),
        Op::SetClasses { classes: ref specs } => {
            if let Ok(c) = classes(specs) {
                let len = q.len();
                let _ = q.set_classes(c);
                assert_eq!(q.len(), len, "set_classes changed the backlog");
            }
        }
        Op::SetInFlightLimit { limit } => q.set_in_flight_limit(limit.map(|l| u32::from(l % 8))),
        Op::Block {
            tenant: t,
            reason: r,
        } => q.block(tenant(t), reason(r)),
        Op::Unblock { tenant: t } => {
            q.unblock(&tenant(t));
        }
        Op::Purge { tenant: t } => {
            let t = tenant(t);
            let n = q.tenant_len(&t);
            let out = q.purge(&t);
            assert_eq!(out.len(), n);
            for item in out {
                assert_eq!(item.tenant, t);
                ledger.back(item, Way::Purged);
            }
            assert_eq!(q.tenant_len(&t), 0);
        }
        Op::Retain {
            tenant: t,
            modulo,
            panic_at,
        } => {
            let t = tenant(t);
            let m = u64::from(modulo.max(1));
            let len = q.len();
            let mut calls = 0u8;
            let out = catch_host(|| {
                q.retain(&t, |item| {
                    if Some(calls) == panic_at {
                        host_panic();
                    }
                    calls = calls.wrapping_add(1);
                    item.id % m != 0
                })
            });
            match out {
                Some(out) => {
                    for item in out {
                        assert_eq!(item.tenant, t);
                        assert_eq!(item.id % m, 0);
                        ledger.back(item, Way::Retained);
                    }
                }
                None => assert_eq!(
                    q.len(),
                    len,
                    "a panicking retain predicate changed the queue"
                ),
            }
        }
        Op::Drain { take } => {
            let mut d = q.drain();
            for _ in 0..take {
                match d.next() {
                    Some(item) => ledger.back(item, Way::Drained),
                    None => break,
                }
            }
            drop(d);
            // Dropping the iterator drops what it did not yield, as std's `Drain`: the host
            // asked for that, so those items are the host's choice, not a loss.
            let dropped: Vec<u64> = ledger.held.iter().copied().collect();
            for id in dropped {
                ledger.held.remove(&id);
                *ledger.back.entry("drain_dropped").or_default() += 1;
            }
            assert!(q.is_empty(), "a dropped drain left items queued");
        }
        Op::SetGroup { .. }
        | Op::ClearGroup { .. }
        | Op::SetGroupWeight { .. }
        | Op::GroupLimit { .. }
        | Op::BlockGroup { .. }
        | Op::UnblockGroup { .. }
        | Op::PurgeGroup { .. } => unreachable!("group operations run in group_step"),
        Op::TakeExpired { now_ms } => {
            let now = Nanos::from_millis(u64::from(now_ms));
            for r in q.take_expired(now) {
                match r.reason() {
                    RejectReason::DeadlineExpired { deadline } => {
                        assert!(deadline <= now, "expired before its deadline")
                    }
                    other => panic!("take_expired handed back {other:?}"),
                }
                ledger.back(r.into_inner(), Way::Returned);
            }
        }
    }
}

/// No in-flight limit of any kind can hold work back.
fn dispatchable_unlimited(q: &FairQueue<u8, Item>) -> bool {
    q.in_flight_limit().is_none() && q.classes().iter().all(|(_, s)| s.max_in_flight().is_none())
}

fn check(q: &FairQueue<u8, Item>, ledger: &Ledger, tickets: &[Ticket]) {
    assert_eq!(
        q.len(),
        ledger.held.len(),
        "queue length differs from the ledger"
    );
    assert_eq!(
        q.total_in_flight(),
        tickets.len() as u64,
        "in-flight count differs from the tickets held"
    );
    let by_tenant: usize = q.tenants().map(|(k, _, _)| q.tenant_len(k)).sum();
    assert_eq!(by_tenant, q.len(), "per-tenant lengths do not add up");
    let by_class: usize = (0..q.classes().len())
        .map(|c| q.class_len(ClassId::new(c as u16)))
        .sum();
    assert_eq!(by_class, q.len(), "per-class lengths do not add up");
    let cost: u64 = q.tenants().map(|(k, _, _)| q.tenant_queued_cost(k)).sum();
    assert_eq!(cost, q.queued_cost(), "per-tenant costs do not add up");
}
