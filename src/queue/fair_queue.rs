//! [`FairQueue`]: the single-threaded weighted fair queue at the heart of the crate.

use super::deadlines::DeadlineEntry;
use super::tenants::Attachment;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::classes::{ClassState, Classes, MAX_CLASSES};
use super::group_table::Groups;
use super::items::ItemSlab;
use super::over_share::OverShare;
use super::tenants::Tenants;
pub use super::ticket::{Dispatch, Ticket};
use crate::clock::Nanos;
use crate::config::QueueConfig;
use crate::error::RejectReason;

/// The default hasher of the tenant table: fast, and seeded per process so attacker-chosen
/// tenant ids cannot be crafted to collide. The seed never changes the order of service.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// Deficit values stay far from `i64` overflow: `quantum × weight` is capped here (in cost
/// units), and every deficit update saturates.
pub(super) const MAX_QUANTUM: i64 = 1 << 44;

/// Deficits count cost in units of `2^-UNIT_SHIFT`, so that a tenant's quantum can be split
/// between its classes without rounding a small quantum away.
pub(super) const UNIT_SHIFT: u32 = 16;

/// When a class's virtual time passes this, every virtual time is shifted down by the least
/// of them (only differences matter). One charge adds at most `2^32 · 2^16`, so a virtual
/// time stays below the 2^56 that `ClassState::pick_key` tells apart.
pub(super) const VTIME_RENORM: u64 = 1 << 55;

/// `quantum × weight` in deficit units, split between `flows` backlogged flows (a free
/// function, for callers holding a flow borrowed from the queue).
#[inline(always)]
pub(super) fn split_quantum(quantum: NonZeroU32, weight: NonZeroU32, flows: u16) -> i64 {
    let q = u64::from(quantum.get()) * u64::from(weight.get());
    let q = (q.min(MAX_QUANTUM as u64) as i64) << UNIT_SHIFT;
    if flows > 1 {
        (q / i64::from(flows)).max(1)
    } else {
        q
    }
}

/// A flow's grant for one round of quantum `q`: the quantum, less the debt it repays (at
/// most the whole quantum, so repaying never takes more than the tenant's own turn) or plus
/// the credit it gets back (at most `credit_cap`), taken out of the tenant's `carry`.
#[inline(always)]
pub(super) fn grant(carry: &mut i64, q: i64, credit_cap: i64) -> i64 {
    if *carry == 0 {
        return q;
    }
    let pay = (*carry).clamp(-credit_cap, q);
    *carry -= pay;
    q - pay
}

/// `cost` in deficit units.
#[inline(always)]
pub(super) fn units(cost: i64) -> i64 {
    // |cost| < 2^33 here (a cost, or the difference of two), so this cannot overflow.
    cost << UNIT_SHIFT
}

/// A weighted, cost-based fair queue of items `T` from tenants `K`.
///
/// Each tenant has its own FIFO. [`pop`](Self::pop) serves tenants by deficit round robin: in
/// every round a backlogged tenant may be served `quantum × weight` of cost, carrying any
/// overdraft (an item costlier than what was left) into the next round as debt. One tenant's
/// 140,000 queued jobs therefore delay every other tenant by at most one turn of that tenant.
///
/// The queue does no IO and reads no clock; it is driven with `&mut self`. Wrap it in a lock (or
/// use the crate's shared handle) to share it between threads.
///
/// # Fairness
///
/// Let `Q` be the quantum, `M` the largest cost among the items served, and `w_i`, `w_j` the
/// weights of two tenants `i` and `j`. Over any stretch of pops during which both tenants stay
/// backlogged (never empty) and below their in-flight limits, their weights do not change and
/// no cost correction is pending for them, the cost `S_i`, `S_j` served to each satisfies
///
/// ```text
/// | S_i / w_i  -  S_j / w_j |  <  3·Q + M / w_i + M / w_j
/// ```
///
/// *Why:* each turn of tenant `i` adds `Q·w_i` to its deficit; between two turns of `i` every
/// other backlogged tenant has exactly one turn, so the turn counts differ by at most one; and
/// a backlogged tenant's deficit stays in `(-M, Q·w_i]`. The property test
/// `tests/fairness.rs::fairness_bound` checks this bound on random workloads.
///
/// **Cost correction.** [`complete`](Self::complete) reports an item's actual cost `a` (0
/// counts as 1) against its estimate `e`, and `a - e` joins the tenant's *carry*, which is
/// never forgiven. Each later round's grant `Q·w_i` is reduced by the debt it repays, at most
/// the whole grant (repaying takes nothing from the other tenants), or raised by the credit
/// it gets back, at most `R·Q·w_i` with `R` =
/// [`max_credit_rounds`](crate::config::QueueConfig::max_credit_rounds). Credit is never
/// banked: when the tenant has nothing queued it only cancels the overdraft its estimates
/// left, and the rest is forfeited; debt is kept, and the tenant with it. So in *actual*
/// costs `A`, over a stretch of dispatches in which `i` and `j` stay backlogged as above,
///
/// ```text
/// | A_i / w_i  -  A_j / w_j |  <  3·Q + M / w_i + M / w_j
///                                + (|C_i| + |C_i'| + F_i) / w_i + (|C_j| + |C_j'| + F_j) / w_j
/// ```
///
/// where `C`, `C'` are the carries at the start and the end of the stretch and `F` the
/// corrections of the stretch's items not yet reported at its end (with `M` the largest
/// estimate). None of these grows with the stretch: a tenant in debt by more than its grant
/// gets no new grant until it has repaid, and spends only what it was granted before, so its
/// carry stays below `Q·w + (⌈Q·w / e⌉ + L + 1)·D`, where `e` is its smallest estimate, `D`
/// its largest single correction and `L` the items it has in flight; credit likewise stays
/// bounded while estimates are at most `1 + R` times the actual costs. A tenant that
/// over-declares is owed up to one estimate at a time (its turn ends after one overdrawn
/// item and the credit comes back a round later), so shares in actual costs converge at the
/// pace of the largest estimate. `tests/cost_correction.rs::actual_cost_per_weight_converges`
/// checks this bound, with those carries, for tenants under- and over-declaring by random
/// factors up to 100, and that each is within 5% of the mean once the stretch is long
/// enough for the bound to be 5% of it.
///
/// One correction of `d` (a bad estimate) delays its tenant by `⌈d / (Q·w)⌉` of its rounds
/// and nobody else at all.
///
/// **Latency.** A tenant that becomes backlogged with no carried debt is appended behind every
/// other backlogged tenant and is served before any of them has a second turn: each other
/// tenant `j` is served at most `Q·w_j` items (less than `Q·w_j + M` cost) first, whatever it
/// has queued, plus the credit `j` gets back in that turn (at most `R·Q·w_j`). A tenant with
/// debt `C` waits `⌈C / (Q·w)⌉` rounds more.
///
/// **Groups.** Tenants put in a group ([`set_group`](Self::set_group)) share the group's turn:
/// the round robin above runs over groups and ungrouped tenants, a group granted `Q·W` a round
/// (`W` its [`group_weight`](Self::group_weight)), and each of its turns serves its members by
/// the same round robin among them, charging each item to the member and to the group. Both
/// statements above hold at each level: between two groups `G`, `H` (an ungrouped tenant
/// being a group of one) `| S_G / W_G - S_H / W_H | < 3·Q + M / W_G + M / W_H`, however many
/// keys each has; between two members of one group, with their weights, over the group's pops.
/// `tests/groups.rs` checks both, and shares within 1% of a two-level max-min reference.
///
/// **Classes.** With several [`Classes`], each class runs this round robin over its own
/// tenants, so both statements hold for tenants of one class (counting only that class's
/// pops), with `w/k` for a tenant backlogged in `k` classes. Which class a pop serves is
/// decided above the tenants; see [`ClassSpec`](super::ClassSpec) for that rule and its
/// reservation bound. `tests/classes_oracle.rs` and `tests/classes_oracle_random.rs` check class and tenant shares against a
/// weighted max-min reference.
///
/// # Performance
///
/// `try_push` hashes the key once (`try_push_to` with a [`TenantHandle`](crate::TenantHandle) not at all); push and
/// pop are O(1) and allocate nothing once the item slab has grown to the backlog's high-water
/// mark. A tenant with nothing queued or in flight and no custom settings holds no memory.
/// See [`pop`](Self::pop) for the one case where a pop is not O(1).
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
///
/// let mut q: FairQueue<&str, String> = FairQueue::new();
/// // One tenant floods the queue...
/// for i in 0..1000 {
///     q.try_push("flood", format!("bulk-{i}")).unwrap();
/// }
/// // ...and a light tenant arrives afterwards.
/// q.try_push("light", "sign-in".to_string()).unwrap();
///
/// assert_eq!(q.pop().as_deref(), Some("bulk-0"));
/// assert_eq!(q.pop().as_deref(), Some("sign-in")); // served after one turn of the flood
/// assert_eq!(q.len(), 999);
/// ```
#[derive(Debug)]
pub struct FairQueue<K, T, S = DefaultHashBuilder, A = ()> {
    pub(super) tenants: Tenants<K, S, A>,
    pub(super) items: ItemSlab<T>,
    /// One DRR ring of backlogged flows per class, by its front (the flow served next); the
    /// last is the front's `prev`. Keeping the front saves pop a load of the last flow. Every
    /// possible class's state is kept in one fixed array (the first `class_count` are live;
    /// classes are few), so the dispatch path reaches any class without a bounds check or a
    /// length that a store elsewhere would force it to reload.
    pub(super) rings: Box<[ClassState; MAX_CLASSES]>,
    pub(super) class_count: usize,
    /// While the queue has one class, the per-class bookkeeping (each flow's `len`, each
    /// tenant's `active_flows`, `rings[0]`'s totals and counters) is skipped: everything is in
    /// the default class. `rings[0].counters` then holds the counters as of the last switch to one
    /// class, and `single_since` the queue's counters at that moment.
    pub(super) single_since: QueueCounters,
    /// The only class has a ceiling or an in-flight cap of its own.
    pub(super) single_capped: bool,
    /// The virtual time at which the last charged class pick started: where a class that
    /// finds every other class idle starts, so idling banks nothing.
    pub(super) vclock: u64,
    pub(super) classes: Classes,
    /// Tenants with items queued.
    pub(super) active_tenants: u32,
    pub(super) queued_cost: u64,
    pub(super) config: QueueConfig,
    pub(super) counters: QueueCounters,
    /// Items dispatched and not yet completed, and the global limit on them.
    pub(super) in_flight: u64,
    pub(super) max_in_flight: u64,
    /// Kept only while a shedding policy asks who is furthest over its share.
    pub(super) over: Option<OverShare>,
    /// Pending item deadlines (min-heap); entries of items gone since are skipped.
    pub(super) deadlines: BinaryHeap<Reverse<DeadlineEntry>>,
    /// Groups of tenants (the upper level of the round robin); empty unless the host
    /// groups tenants.
    pub(super) groups: Groups<K>,
}

/// Lifetime counters of a whole queue.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<u8, u8> = FairQueue::new();
/// q.try_push(1, 1).unwrap();
/// q.try_push_with(1, 2, fairshare::PushOptions::new().with_cost(0)).unwrap_err();
/// let c = q.counters();
/// assert_eq!((c.pushed, c.rejected), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct QueueCounters {
    /// Items accepted.
    pub pushed: u64,
    /// Items refused.
    pub rejected: u64,
    /// Items handed out by `pop` or `dispatch`.
    pub dispatched: u64,
    /// Items removed without being dispatched: purged, retained out, drained, evicted,
    /// expired or shed.
    pub removed: u64,
    /// Cost handed out, corrected by the actual costs reported to `complete`.
    pub served_cost: u64,
}

// ===== impl FairQueue: construction =====

impl<K, T> FairQueue<K, T> {
    /// An empty queue with the default [`QueueConfig`] and hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<u64, String> = fairshare::FairQueue::new();
    /// assert!(q.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_config(QueueConfig::new())
    }

    /// An empty queue with `config` and the default hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::FairQueue;
    /// use fairshare::config::QueueConfig;
    /// use std::num::NonZeroU32;
    /// let cfg = QueueConfig::new().with_quantum(NonZeroU32::new(100).unwrap());
    /// let q: FairQueue<u64, String> = FairQueue::with_config(cfg);
    /// assert_eq!(q.config().quantum().get(), 100);
    /// ```
    pub fn with_config(config: QueueConfig) -> Self {
        Self::with_config_and_hasher(config, DefaultHashBuilder::default())
    }
}

impl<K, T> Default for FairQueue<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T, S> FairQueue<K, T, S> {
    /// An empty queue with `config` and a custom hasher for the tenant table.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::FairQueue;
    /// use fairshare::config::QueueConfig;
    /// use std::collections::hash_map::RandomState;
    /// let q: FairQueue<u64, u8, RandomState> =
    ///     FairQueue::with_config_and_hasher(QueueConfig::new(), RandomState::new());
    /// assert!(q.is_empty());
    /// ```
    pub fn with_config_and_hasher(config: QueueConfig, hasher: S) -> Self {
        Self::with_attachment(config, hasher)
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A> {
    /// An empty queue whose tenant slots each keep an `A` for the layer above.
    pub(crate) fn with_attachment(config: QueueConfig, hasher: S) -> Self {
        FairQueue {
            tenants: Tenants::with_hasher(hasher),
            items: ItemSlab::new(),
            rings: Box::new(std::array::from_fn(|_| ClassState::new())),
            class_count: 1,
            single_since: QueueCounters::default(),
            single_capped: false,
            vclock: 0,
            classes: Classes::single(),
            active_tenants: 0,
            queued_cost: 0,
            config,
            counters: QueueCounters::default(),
            over: None,
            deadlines: BinaryHeap::new(),
            groups: Groups::default(),
            in_flight: 0,
            max_in_flight: u64::MAX,
        }
    }

    /// The configuration in force.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// assert_eq!(q.config().default_weight().get(), 1);
    /// ```
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Number of queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.try_push(1, 1).unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.items.len() as usize
    }

    /// Whether nothing is queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// assert!(q.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    /// Sum of the costs of all queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.try_push_with(1, 1, fairshare::PushOptions::new().with_cost(5)).unwrap();
    /// q.try_push_with(2, 2, fairshare::PushOptions::new().with_cost(7)).unwrap();
    /// assert_eq!(q.queued_cost(), 12);
    /// ```
    pub fn queued_cost(&self) -> u64 {
        self.queued_cost
    }

    /// Number of tenants with items queued, in any class (a tenant at its in-flight limit
    /// counts: its items wait for a completion).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.try_push(1, 1).unwrap();
    /// q.try_push(1, 2).unwrap();
    /// q.try_push(2, 3).unwrap();
    /// assert_eq!(q.active_tenants(), 2);
    /// ```
    pub fn active_tenants(&self) -> usize {
        self.active_tenants as usize
    }

    /// Number of tenants the queue holds state for: those with queued or in-flight items or
    /// custom settings (weight, block, pinned handle).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.set_weight(7, NonZeroU32::new(3).unwrap());
    /// assert_eq!((q.active_tenants(), q.known_tenants()), (0, 1));
    /// ```
    pub fn known_tenants(&self) -> usize {
        self.tenants.live() as usize
    }

    /// Items dispatched with [`dispatch`](Self::dispatch) and not yet completed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.try_push(1, 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(q.total_in_flight(), 1);
    /// q.complete(d.ticket, 1);
    /// assert_eq!(q.total_in_flight(), 0);
    /// ```
    pub fn total_in_flight(&self) -> u64 {
        self.in_flight
    }

    /// The global in-flight limit (`None`: unlimited).
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// assert_eq!(q.in_flight_limit(), None);
    /// ```
    pub fn in_flight_limit(&self) -> Option<u32> {
        (self.max_in_flight != u64::MAX).then_some(self.max_in_flight as u32)
    }

    /// Sets the global in-flight limit: while `limit` items are dispatched and not completed,
    /// [`pop`](Self::pop) and [`dispatch`](Self::dispatch) return `None` (`pop` itself does not
    /// count as in flight). Lowering it below the current count dispatches nothing until enough
    /// complete; nothing is revoked.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.set_in_flight_limit(Some(1));
    /// q.try_push(1, 1).unwrap();
    /// q.try_push(2, 2).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert!(q.dispatch().is_none()); // the one slot is taken
    /// q.complete(d.ticket, 1);
    /// assert_eq!(q.dispatch().map(|d| d.item), Some(2));
    /// ```
    pub fn set_in_flight_limit(&mut self, limit: Option<u32>) {
        self.max_in_flight = limit.map_or(u64::MAX, u64::from);
        self.resolve_classes();
    }

    /// Lifetime counters of the whole queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
    /// q.try_push(1, 1).unwrap();
    /// q.pop();
    /// assert_eq!(q.counters().dispatched, 1);
    /// ```
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }

    /// Bytes of heap memory the queue holds for tenants and items (capacities, not lengths).
    /// Memory follows the backlog's high-water mark; it does not include what `T` or `K` own
    /// on the heap.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<u64, u64> = fairshare::FairQueue::new();
    /// let before = q.heap_bytes();
    /// q.try_push(1, 1).unwrap();
    /// assert!(q.heap_bytes() > before);
    /// ```
    pub fn heap_bytes(&self) -> usize {
        self.tenants.allocated_bytes()
            + self.items.allocated_bytes()
            + self.deadlines.capacity() * std::mem::size_of::<Reverse<DeadlineEntry>>()
            + self.over.as_ref().map_or(0, OverShare::allocated_bytes)
            + self.groups.allocated_bytes()
            + std::mem::size_of::<[ClassState; MAX_CLASSES]>()
    }

    /// Bytes per known tenant (its slot, which holds its key, and its key-table entry;
    /// growth slack not included) and per queued item (its node, `T` included). A tenant that
    /// is blocked or was refused holds a side-table entry more, and a tenant in a queue that
    /// sheds holds 4 B more.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tenant, item) = fairshare::FairQueue::<u64, u64>::footprint();
    /// assert!(tenant > 0 && item >= 8);
    /// ```
    pub const fn footprint() -> (usize, usize) {
        (Tenants::<K, S, A>::slot_size(), ItemSlab::<T>::node_size())
    }

    // ----- the DRR rings -----
}

// ===== impl FairQueue: internals shared with the scheduler =====

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Counts `n` items removed by the scheduler's shedding.
    pub(crate) fn count_removed(&mut self, n: u64) {
        self.counters.removed += n;
    }

    /// Replaces the queue settings; queued items stay. The over-share order is rebuilt when
    /// the default weight changes.
    pub(crate) fn set_queue_config(&mut self, config: QueueConfig) {
        let reweighted = config.default_weight() != self.config.default_weight();
        self.config = config;
        if reweighted && self.over.is_some() {
            self.set_over_share_tracking(false);
            self.set_over_share_tracking(true);
        }
    }

    /// Sets tenant `idx`'s in-flight limit (`u32::MAX`: none), bringing it back to the ring
    /// if it was parked and now has room.
    #[cold]
    #[inline(never)]
    pub(crate) fn set_slot_in_flight_limit(&mut self, idx: u32, max: u32) {
        self.tenants.get_mut(idx).max_in_flight = max;
        self.unpark(idx);
    }
}

/// Cost removed from one tenant, in total and by class (for refunds).
#[derive(Debug, Default)]
pub(crate) struct ClassCosts {
    pub(crate) total: u64,
    pub(crate) by_class: Vec<(u16, u64)>,
}

impl ClassCosts {
    pub(super) fn add(&mut self, class: u16, cost: u64) {
        self.total += cost;
        if cost > 0 {
            self.by_class.push((class, cost));
        }
    }
}

/// An item taken by the DRR step, before it is counted.
#[derive(Debug)]
pub(crate) struct Popped<T> {
    pub(crate) item: T,
    pub(crate) tenant: u32,
    pub(crate) class: u16,
    pub(crate) cost: u32,
    pub(crate) enqueued: Nanos,
}

#[cold]
pub(super) fn full() -> RejectReason {
    RejectReason::QueueFull {
        capacity: u64::from(super::items::MAX_ITEMS),
    }
}
