//! Model-based property test of `FairQueue`: random operation sequences run on the queue and on
//! a naive reference model (per-tenant `VecDeque`s); both agree on every answer and every item
//! pushed is popped, handed back or still queued, exactly once.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::VecDeque;

use fairshare::{
    BlockReason, FairQueue, RejectReason, TenantHandle, config::QueueConfig, stats::QueueCounters,
};
use proptest::prelude::*;

use common::queue_model::{MAX_COST, TENANTS, tenant};
use common::{Ledger, Way, config, nz, opts, proptest_config};

// ===== the operations =====

#[derive(Debug, Clone)]
enum Op {
    /// `try_push_with_cost` by key (cost 0 is a bad input).
    Push {
        tenant: u8,
        cost: u32,
    },
    /// `try_push_to` with the tenant's stored handle; `fresh` (or no stored handle) first gets
    /// one with `tenant()`, which pins the tenant. A stored handle may have gone stale.
    PushByHandle {
        tenant: u8,
        cost: u32,
        fresh: bool,
    },
    Pop,
    Dispatch,
    /// Completes in-flight ticket number `which % in_flight` with `actual` cost.
    Complete {
        which: usize,
        actual: u32,
    },
    SetWeight {
        tenant: u8,
        weight: u32,
    },
    ClearWeight {
        tenant: u8,
    },
    Block {
        tenant: u8,
        reason: BlockReason,
    },
    Unblock {
        tenant: u8,
    },
    Purge {
        tenant: u8,
    },
    /// Keeps the tenant's items whose id is not a multiple of `modulus`.
    Retain {
        tenant: u8,
        modulus: u64,
    },
    /// Releases the tenant's stored handle (which may be stale).
    Release {
        tenant: u8,
    },
    /// Takes `take` items from `drain()` and drops the iterator, which removes the rest.
    DrainSome {
        take: usize,
    },
}

fn push_cost() -> impl Strategy<Value = u32> {
    prop_oneof![12 => 1..=MAX_COST, 1 => Just(0)]
}

fn block_reason() -> impl Strategy<Value = BlockReason> {
    prop_oneof![
        Just(BlockReason::Operator),
        Just(BlockReason::Abuse),
        Just(BlockReason::Billing),
        Just(BlockReason::Maintenance),
        any::<u32>().prop_map(BlockReason::Code),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (tenant(), push_cost()).prop_map(|(tenant, cost)| Op::Push { tenant, cost }),
        8 => (tenant(), push_cost(), any::<bool>())
            .prop_map(|(tenant, cost, fresh)| Op::PushByHandle { tenant, cost, fresh }),
        14 => Just(Op::Pop),
        8 => Just(Op::Dispatch),
        6 => (any::<usize>(), prop_oneof![0..=2 * MAX_COST, Just(u32::MAX)])
            .prop_map(|(which, actual)| Op::Complete { which, actual }),
        3 => (tenant(), 1..=4u32).prop_map(|(tenant, weight)| Op::SetWeight { tenant, weight }),
        2 => tenant().prop_map(|tenant| Op::ClearWeight { tenant }),
        2 => (tenant(), block_reason()).prop_map(|(tenant, reason)| Op::Block { tenant, reason }),
        2 => tenant().prop_map(|tenant| Op::Unblock { tenant }),
        2 => tenant().prop_map(|tenant| Op::Purge { tenant }),
        3 => (tenant(), 1..=4u64).prop_map(|(tenant, modulus)| Op::Retain { tenant, modulus }),
        3 => tenant().prop_map(|tenant| Op::Release { tenant }),
        1 => (0..6usize).prop_map(|take| Op::DrainSome { take }),
    ]
}

// ===== the reference model =====

#[derive(Debug, Default)]
struct TenantModel {
    fifo: VecDeque<(u64, u32)>,
    in_flight: u32,
    pinned: bool,
    weight: Option<u32>,
    blocked: Option<BlockReason>,
    /// Bumped every time the queue must forget the tenant (nothing queued, in flight, pinned
    /// or set). A handle is live iff it was taken in the current generation and the tenant is
    /// alive.
    generation: u64,
    was_alive: bool,
    /// The last handle `tenant()` returned, with the generation it was taken in.
    handle: Option<(TenantHandle, u64)>,
    /// Lifetime counters, reset when the tenant is forgotten.
    pushed: u64,
    dispatched: u64,
    /// Refused pushes while known (a refusal of an unknown tenant leaves nothing behind).
    rejected: u64,
    /// What the queue says the tenant still owes from cost corrections (read after every
    /// step; `settle_tenants` checks that it only ever appears or grows through a completion
    /// of this tenant whose actual cost exceeded its estimate).
    debt: u64,
}

impl TenantModel {
    fn alive(&self) -> bool {
        !self.fifo.is_empty()
            || self.in_flight > 0
            || self.pinned
            || self.weight.is_some()
            || self.blocked.is_some()
            || self.debt > 0
    }

    fn queued_cost(&self) -> u64 {
        self.fifo.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    fn handle_is_live(&self) -> Option<TenantHandle> {
        match self.handle {
            Some((h, generation)) if generation == self.generation && self.alive() => Some(h),
            _ => None,
        }
    }
}

struct Harness {
    q: FairQueue<u8, u64>,
    cfg: QueueConfig,
    tenants: Vec<TenantModel>,
    /// Indexed by item id.
    owner: Vec<u8>,
    /// Every item id and how it came back (popped or dispatched, refused, purged, ...).
    ledger: Ledger,
    in_flight: Vec<(u8, fairshare::Ticket)>,
    /// The tenant and estimate of the item the current step completed, if any.
    last_completed: Option<(u8, u32)>,
    counters: QueueCounters,
}

impl Harness {
    fn new(cfg: QueueConfig) -> Self {
        Harness {
            q: FairQueue::with_config(cfg),
            cfg,
            tenants: (0..TENANTS).map(|_| TenantModel::default()).collect(),
            owner: Vec::new(),
            ledger: Ledger::new(),
            in_flight: Vec::new(),
            last_completed: None,
            counters: QueueCounters::default(),
        }
    }

    fn new_id(&mut self, tenant: u8) -> u64 {
        self.owner.push(tenant);
        let id = (self.owner.len() - 1) as u64;
        self.ledger.pushed(id);
        id
    }

    /// Records that `id` left the queue (or never entered it) as `fate`.
    fn settle_item(&mut self, id: u64, fate: Way) {
        self.ledger.back(id, fate);
    }

    /// The model's view of a push's outcome: the one refusal due, checked in the documented
    /// order (a blocked tenant is refused as blocked, whatever the cost; then zero cost).
    fn expected_refusal(&self, tenant: u8, cost: u32) -> Vec<RejectReason> {
        if let Some(reason) = self.tenants[tenant as usize].blocked {
            vec![RejectReason::Blocked { reason }]
        } else if cost == 0 {
            vec![RejectReason::ZeroCost]
        } else {
            Vec::new()
        }
    }

    fn push_result(
        &mut self,
        tenant: u8,
        id: u64,
        cost: u32,
        refusals: &[RejectReason],
        result: Result<(), fairshare::Rejected<u64>>,
    ) {
        match result {
            Ok(()) => {
                assert!(
                    refusals.is_empty(),
                    "push of item {id} (cost {cost}) to tenant {tenant} accepted, expected one of {refusals:?}"
                );
                let t = &mut self.tenants[tenant as usize];
                t.fifo.push_back((id, cost));
                t.pushed += 1;
                self.counters.pushed += 1;
            }
            Err(rejected) => {
                let reason = rejected.reason();
                assert!(
                    refusals.contains(&reason),
                    "push of item {id} (cost {cost}) to tenant {tenant} refused with {reason:?}, \
                     expected {refusals:?}"
                );
                assert_eq!(
                    rejected.into_inner(),
                    id,
                    "a refusal must hand back the same item"
                );
                self.counters.rejected += 1;
                // A stale handle names no tenant: its refusal is the queue's alone.
                if reason != RejectReason::StaleHandle {
                    self.tenants[tenant as usize].rejected += 1;
                }
                self.settle_item(id, Way::Refused);
            }
        }
    }

    /// An item came out of `pop`, `dispatch` or `drain`: it must be the head of its tenant's
    /// FIFO.
    fn took_head(&mut self, id: u64, fate: Way) -> (u8, u32) {
        let tenant = self.owner[id as usize];
        let t = &mut self.tenants[tenant as usize];
        let head = t.fifo.pop_front();
        assert_eq!(
            head.map(|(h, _)| h),
            Some(id),
            "tenant {tenant}: took item {id}, but its FIFO head is {head:?} (FIFO {:?})",
            t.fifo
        );
        self.settle_item(id, fate);
        (tenant, head.map_or(0, |(_, c)| c))
    }

    fn any_queued(&self) -> bool {
        self.tenants.iter().any(|t| !t.fifo.is_empty())
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Push { tenant, cost } => {
                let id = self.new_id(tenant);
                let refusals = self.expected_refusal(tenant, cost);
                let result = self.q.try_push_with(tenant, id, opts(cost));
                self.push_result(tenant, id, cost, &refusals, result);
            }
            Op::PushByHandle {
                tenant,
                cost,
                fresh,
            } => {
                let t = &mut self.tenants[tenant as usize];
                if fresh || t.handle.is_none() {
                    let live = t.handle_is_live();
                    let h = self.q.tenant(tenant);
                    if let Some(old) = live {
                        assert_eq!(h, old, "tenant() must return the same handle while live");
                    }
                    let t = &mut self.tenants[tenant as usize];
                    t.pinned = true;
                    t.handle = Some((h, t.generation));
                }
                let t = &self.tenants[tenant as usize];
                let (h, _) = t.handle.expect("a handle was just stored");
                let live = t.handle_is_live().is_some();
                let refusals = if live {
                    self.expected_refusal(tenant, cost)
                } else {
                    vec![RejectReason::StaleHandle]
                };
                let id = self.new_id(tenant);
                let result = self.q.try_push_to(h, id, opts(cost));
                self.push_result(tenant, id, cost, &refusals, result);
            }
            Op::Pop => {
                let popped = self.q.pop();
                assert_eq!(
                    popped.is_some(),
                    self.any_queued(),
                    "work conservation: pop returned {popped:?}"
                );
                if let Some(id) = popped {
                    let (tenant, cost) = self.took_head(id, Way::Dispatched);
                    self.tenants[tenant as usize].dispatched += 1;
                    self.counters.dispatched += 1;
                    self.counters.served_cost += u64::from(cost);
                }
            }
            Op::Dispatch => {
                let d = self.q.dispatch();
                assert_eq!(
                    d.is_some(),
                    self.any_queued(),
                    "work conservation: dispatch returned {:?}",
                    d.as_ref().map(|d| d.item)
                );
                if let Some(d) = d {
                    let (tenant, cost) = self.took_head(d.item, Way::Dispatched);
                    assert_eq!(
                        self.q.key(d.ticket.tenant()),
                        Some(&tenant),
                        "ticket names the wrong tenant"
                    );
                    assert_eq!(d.ticket.cost(), cost, "ticket carries the pushed cost");
                    let t = &mut self.tenants[tenant as usize];
                    t.dispatched += 1;
                    t.in_flight += 1;
                    self.counters.dispatched += 1;
                    self.counters.served_cost += u64::from(cost);
                    self.in_flight.push((tenant, d.ticket));
                }
            }
            Op::Complete { which, actual } => {
                if !self.in_flight.is_empty() {
                    let (tenant, ticket) = self.in_flight.remove(which % self.in_flight.len());
                    self.last_completed = Some((tenant, ticket.cost()));
                    // served cost is corrected from the estimate to the actual cost (0 counts
                    // as 1, the least an item can cost)
                    let served = self.counters.served_cost + u64::from(actual.max(1));
                    self.counters.served_cost = served.saturating_sub(u64::from(ticket.cost()));
                    assert!(
                        self.q.complete(ticket, actual),
                        "complete of a live ticket of tenant {tenant} returned false"
                    );
                    self.tenants[tenant as usize].in_flight -= 1;
                }
            }
            Op::SetWeight { tenant, weight } => {
                self.q.set_weight(tenant, nz(weight));
                self.tenants[tenant as usize].weight = Some(weight);
            }
            Op::ClearWeight { tenant } => {
                self.q.clear_weight(&tenant);
                self.tenants[tenant as usize].weight = None;
            }
            Op::Block { tenant, reason } => {
                self.q.block(tenant, reason);
                self.tenants[tenant as usize].blocked = Some(reason);
            }
            Op::Unblock { tenant } => {
                let got = self.q.unblock(&tenant);
                let want = self.tenants[tenant as usize].blocked.take();
                assert_eq!(got, want, "unblock returns the reason the tenant had");
            }
            Op::Purge { tenant } => {
                let got = self.q.purge(&tenant);
                let want: Vec<u64> = self.tenants[tenant as usize]
                    .fifo
                    .drain(..)
                    .map(|(id, _)| id)
                    .collect();
                assert_eq!(got, want, "purge returns the tenant's items in FIFO order");
                for id in got {
                    self.settle_item(id, Way::Purged);
                }
                self.counters.removed += want.len() as u64;
            }
            Op::Retain { tenant, modulus } => {
                let got = self.q.retain(&tenant, |&id| id % modulus != 0);
                let t = &mut self.tenants[tenant as usize];
                let want: Vec<u64> = t
                    .fifo
                    .iter()
                    .map(|&(id, _)| id)
                    .filter(|id| id % modulus == 0)
                    .collect();
                t.fifo.retain(|&(id, _)| id % modulus != 0);
                assert_eq!(
                    got, want,
                    "retain returns exactly the rejected items in FIFO order"
                );
                for id in got {
                    self.settle_item(id, Way::RetainedOut);
                }
                self.counters.removed += want.len() as u64;
            }
            Op::Release { tenant } => {
                let t = &self.tenants[tenant as usize];
                if let Some((h, _)) = t.handle {
                    let live = t.handle_is_live().is_some();
                    assert_eq!(
                        self.q.release(h),
                        live,
                        "release returns whether the handle was live"
                    );
                    if live {
                        self.tenants[tenant as usize].pinned = false;
                    }
                }
            }
            Op::DrainSome { take } => {
                let before = self.q.len();
                let taken: Vec<u64> = self.q.drain().take(take).collect();
                assert_eq!(
                    taken.len(),
                    take.min(before),
                    "drain yields while items remain"
                );
                for &id in &taken {
                    self.took_head(id, Way::Drained);
                }
                // Dropping the iterator removed (and dropped) every item it did not yield.
                assert!(
                    self.q.is_empty(),
                    "{} items left queued after the drain was dropped",
                    self.q.len()
                );
                let rest: Vec<u64> = self
                    .tenants
                    .iter_mut()
                    .flat_map(|t| t.fifo.drain(..).map(|(id, _)| id))
                    .collect();
                for id in rest {
                    self.settle_item(id, Way::Drained);
                }
                self.counters.removed += before as u64;
            }
        }
        self.settle_tenants(op);
        self.check();
    }

    /// Reads each tenant's debt (which may grow only by the under-estimate of a completion
    /// of that tenant in `op`), then bumps the generation of every tenant the queue must have
    /// forgotten.
    fn settle_tenants(&mut self, op: &Op) {
        for (k, t) in self.tenants.iter_mut().enumerate() {
            let debt = self.q.tenant_debt(&(k as u8));
            if debt > t.debt {
                let grew = debt - t.debt;
                let allowed = match (op, self.last_completed) {
                    (Op::Complete { actual, .. }, Some((tenant, cost))) if tenant as usize == k => {
                        u64::from(*actual).saturating_sub(u64::from(cost))
                    }
                    _ => 0,
                };
                assert!(
                    grew <= allowed,
                    "tenant {k}'s debt grew by {grew} in {op:?} (allowed {allowed})"
                );
            }
            t.debt = debt;
        }
        self.last_completed = None;
        for t in &mut self.tenants {
            let alive = t.alive();
            if t.was_alive && !alive {
                t.generation += 1;
            }
            if !alive {
                (t.pushed, t.dispatched, t.rejected) = (0, 0, 0);
            }
            t.was_alive = alive;
        }
    }

    fn check(&self) {
        let q = &self.q;
        let len: usize = self.tenants.iter().map(|t| t.fifo.len()).sum();
        let cost: u64 = self.tenants.iter().map(TenantModel::queued_cost).sum();
        let active = self.tenants.iter().filter(|t| !t.fifo.is_empty()).count();
        let known = self.tenants.iter().filter(|t| t.alive()).count();
        assert_eq!(q.len(), len, "len");
        assert_eq!(q.is_empty(), len == 0, "is_empty");
        assert_eq!(q.queued_cost(), cost, "queued_cost");
        assert_eq!(q.active_tenants(), active, "active_tenants");
        assert_eq!(q.known_tenants(), known, "known_tenants");
        assert_eq!(q.counters(), self.counters, "queue counters");
        for (k, t) in self.tenants.iter().enumerate() {
            let key = k as u8;
            assert_eq!(q.tenant_len(&key), t.fifo.len(), "tenant_len({key})");
            assert_eq!(
                q.tenant_queued_cost(&key),
                t.queued_cost(),
                "tenant_queued_cost({key})"
            );
            assert_eq!(q.in_flight(&key), t.in_flight, "in_flight({key})");
            assert_eq!(q.blocked(&key), t.blocked, "blocked({key})");
            let weight = t.weight.unwrap_or(self.cfg.default_weight().get());
            assert_eq!(q.weight(&key).get(), weight, "weight({key})");
            assert_eq!(q.handle_of(&key).is_some(), t.alive(), "handle_of({key})");
            if let Some(h) = t.handle_is_live() {
                assert_eq!(
                    q.handle_of(&key),
                    Some(h),
                    "handle_of({key}) = pinned handle"
                );
                assert_eq!(q.key(h), Some(&key), "key(handle of {key})");
            } else if let Some((h, _)) = t.handle {
                // A stale handle names no tenant; in particular not another one.
                assert_eq!(q.key(h), None, "key(stale handle of {key})");
            }
            let counters = q.tenant_counters(&key);
            assert_eq!(counters.is_some(), t.alive(), "tenant_counters({key})");
            if let Some(c) = counters {
                assert_eq!(
                    (c.pushed, c.dispatched, c.rejected),
                    (t.pushed, t.dispatched, t.rejected),
                    "tenant_counters({key}) pushed/dispatched/rejected"
                );
            }
        }
    }

    /// Drains what is left and checks that every item id has exactly one fate.
    fn finish(mut self) {
        let rest: Vec<u64> = self.q.drain().collect();
        for &id in &rest {
            self.took_head(id, Way::Drained);
        }
        self.counters.removed += rest.len() as u64;
        self.settle_tenants(&Op::DrainSome { take: usize::MAX });
        self.check();
        assert!(self.q.is_empty() && self.q.active_tenants() == 0);
        self.ledger.assert_all_back();
        let tally = |f: Way| self.ledger.count(f) as u64;
        let c = self.q.counters();
        assert_eq!(
            c.pushed + c.rejected,
            self.ledger.pushed_count() as u64,
            "every push counted"
        );
        assert_eq!(c.rejected, tally(Way::Refused));
        assert_eq!(c.dispatched, tally(Way::Dispatched));
        let removed: u64 = [Way::Purged, Way::RetainedOut, Way::Drained]
            .into_iter()
            .map(tally)
            .sum();
        assert_eq!(c.removed, removed);
    }
}

fn queue_config() -> impl Strategy<Value = QueueConfig> {
    (1..=4u32, 1..=3u32, 0..=4u32).prop_map(|(q, w, d)| config(q, w, d))
}

proptest! {
    #![proptest_config(proptest_config(1024))]

    /// Random operation sequences agree with the reference model after every step, and every
    /// item comes back exactly once.
    #[test]
    fn model_agrees_and_conserves_items(
        cfg in queue_config(),
        ops in proptest::collection::vec(op(), 1..160),
    ) {
        let mut h = Harness::new(cfg);
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}
