#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Model-based property tests of `FairQueue`: random operation sequences run on the queue and
//! on a naive reference model (per-tenant `VecDeque`s), plus the fairness and latency bounds
//! stated in `FairQueue`'s `# Fairness` rustdoc.

mod common;

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use common::{PopTrace, config, nz, opts};
use fairshare::{
    BlockReason, FairQueue, RejectReason, TenantHandle, config::QueueConfig, stats::QueueCounters,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const TENANTS: u8 = 6;
const MAX_COST: u32 = 8;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

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

fn tenant() -> impl Strategy<Value = u8> {
    0..TENANTS
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

/// Where an item id ended up. Every id moves out of `Queued` at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fate {
    Queued,
    Dispatched,
    Rejected,
    Purged,
    RetainedOut,
    Drained,
}

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
}

impl TenantModel {
    fn alive(&self) -> bool {
        !self.fifo.is_empty()
            || self.in_flight > 0
            || self.pinned
            || self.weight.is_some()
            || self.blocked.is_some()
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
    fate: Vec<Fate>,
    in_flight: Vec<(u8, fairshare::Ticket)>,
    counters: QueueCounters,
}

impl Harness {
    fn new(cfg: QueueConfig) -> Self {
        Harness {
            q: FairQueue::with_config(cfg),
            cfg,
            tenants: (0..TENANTS).map(|_| TenantModel::default()).collect(),
            owner: Vec::new(),
            fate: Vec::new(),
            in_flight: Vec::new(),
            counters: QueueCounters::default(),
        }
    }

    fn new_id(&mut self, tenant: u8) -> u64 {
        self.owner.push(tenant);
        self.fate.push(Fate::Queued);
        (self.owner.len() - 1) as u64
    }

    /// Records that `id` left the queue (or never entered it) as `fate`.
    fn settle_item(&mut self, id: u64, fate: Fate) {
        let slot = &mut self.fate[id as usize];
        assert_eq!(
            *slot,
            Fate::Queued,
            "item {id} handed back twice: already {slot:?}, now {fate:?}"
        );
        *slot = fate;
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
                self.settle_item(id, Fate::Rejected);
            }
        }
    }

    /// An item came out of `pop`, `dispatch` or `drain`: it must be the head of its tenant's
    /// FIFO.
    fn took_head(&mut self, id: u64, fate: Fate) -> (u8, u32) {
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
                    let (tenant, cost) = self.took_head(id, Fate::Dispatched);
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
                    let (tenant, cost) = self.took_head(d.item, Fate::Dispatched);
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
                    // served cost is corrected from the estimate to the actual cost
                    let served = self.counters.served_cost + u64::from(actual);
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
                    self.settle_item(id, Fate::Purged);
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
                    self.settle_item(id, Fate::RetainedOut);
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
                    self.took_head(id, Fate::Drained);
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
                    self.settle_item(id, Fate::Drained);
                }
                self.counters.removed += before as u64;
            }
        }
        self.settle_tenants();
        self.check();
    }

    /// Bumps the generation of every tenant the queue must have forgotten.
    fn settle_tenants(&mut self) {
        for t in &mut self.tenants {
            let alive = t.alive();
            if t.was_alive && !alive {
                t.generation += 1;
                t.pushed = 0;
                t.dispatched = 0;
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
                    (c.pushed, c.dispatched),
                    (t.pushed, t.dispatched),
                    "tenant_counters({key}) pushed/dispatched"
                );
            }
        }
    }

    /// Drains what is left and checks that every item id has exactly one fate.
    fn finish(mut self) {
        let rest: Vec<u64> = self.q.drain().collect();
        for &id in &rest {
            self.took_head(id, Fate::Drained);
        }
        self.counters.removed += rest.len() as u64;
        self.settle_tenants();
        self.check();
        assert!(self.q.is_empty() && self.q.active_tenants() == 0);
        let still_queued: Vec<usize> = (0..self.fate.len())
            .filter(|&id| self.fate[id] == Fate::Queued)
            .collect();
        assert!(
            still_queued.is_empty(),
            "items never handed back: {still_queued:?}"
        );
        let mut tally: HashMap<Fate, u64> = HashMap::new();
        for &f in &self.fate {
            *tally.entry(f).or_default() += 1;
        }
        let c = self.q.counters();
        assert_eq!(
            c.pushed + c.rejected,
            self.fate.len() as u64,
            "every push counted"
        );
        assert_eq!(c.rejected, tally.get(&Fate::Rejected).copied().unwrap_or(0));
        assert_eq!(
            c.dispatched,
            tally.get(&Fate::Dispatched).copied().unwrap_or(0)
        );
        let removed: u64 = [Fate::Purged, Fate::RetainedOut, Fate::Drained]
            .iter()
            .map(|f| tally.get(f).copied().unwrap_or(0))
            .sum();
        assert_eq!(c.removed, removed);
    }
}

fn queue_config() -> impl Strategy<Value = QueueConfig> {
    (1..=4u32, 1..=3u32, 0..=4u32).prop_map(|(q, w, d)| config(q, w, d))
}

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
