//! [`FairQueue`]: the single-threaded weighted fair queue at the heart of the crate.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::classes::{ClassCounters, ClassState, Classes, MAX_CLASSES};
use super::config::QueueConfig;
use super::items::{ItemSlab, NIL, Taken};
use super::over_share::OverShare;
use super::tenants::{EXTRA, Flow, PINNED, TenantCounters, TenantHandle, Tenants};
use crate::clock::Nanos;
use crate::error::{BlockReason, ConfigError, RejectReason, Rejected};
use crate::push::{ClassId, PushOptions};

/// The default hasher of the tenant table: fast, and seeded per process so attacker-chosen
/// tenant ids cannot be crafted to collide. The seed never changes the order of service.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// Deficit values stay far from `i64` overflow: `quantum × weight` is capped here (in cost
/// units), and every deficit update saturates.
const MAX_QUANTUM: i64 = 1 << 44;

/// Deficits count cost in units of `2^-UNIT_SHIFT`, so that a tenant's quantum can be split
/// between its classes without rounding a small quantum away.
const UNIT_SHIFT: u32 = 16;

/// When a class's virtual time passes this, every virtual time is shifted down by the least
/// of them (only differences matter). One charge adds at most `2^32 · 2^16`, so a virtual
/// time stays below the 2^56 that `ClassState::pick_key` tells apart.
const VTIME_RENORM: u64 = 1 << 55;

/// `quantum × weight` in deficit units, split between `flows` backlogged flows (a free
/// function, for callers holding a flow borrowed from the queue).
#[inline(always)]
fn split_quantum(quantum: NonZeroU32, weight: NonZeroU32, flows: u16) -> i64 {
    let q = u64::from(quantum.get()) * u64::from(weight.get());
    let q = (q.min(MAX_QUANTUM as u64) as i64) << UNIT_SHIFT;
    if flows > 1 {
        (q / i64::from(flows)).max(1)
    } else {
        q
    }
}

/// `cost` in deficit units.
#[inline(always)]
fn units(cost: i64) -> i64 {
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
/// no cost correction is reported for them, the cost `S_i`, `S_j` served to each satisfies
///
/// ```text
/// | S_i / w_i  -  S_j / w_j |  <  3·Q + M / w_i + M / w_j
/// ```
///
/// *Why:* each turn of tenant `i` adds `Q·w_i` to its deficit; between two turns of `i` every
/// other backlogged tenant has exactly one turn, so the turn counts differ by at most one; and
/// a backlogged tenant's deficit stays in `(-M, Q·w_i]`. The property test
/// `tests/model_queue.rs::fairness_bound` checks this bound on random workloads.
///
/// **Latency.** A tenant that becomes backlogged with no carried debt is appended behind every
/// other backlogged tenant and is served before any of them has a second turn: each other
/// tenant `j` is served at most `Q·w_j` items (less than `Q·w_j + M` cost) first, whatever it
/// has queued. Debt carried from cost correction (bounded by `max_debt_rounds`) delays a tenant
/// by at most that many extra rounds.
///
/// **Classes.** With several [`Classes`], each class runs this round robin over its own
/// tenants, so both statements hold for tenants of one class (counting only that class's
/// pops), with `w/k` for a tenant backlogged in `k` classes. Which class a pop serves is
/// decided above the tenants; see [`ClassSpec`](super::ClassSpec) for that rule and its
/// reservation bound. `tests/class_oracle.rs` checks class and tenant shares against a
/// weighted max-min reference.
///
/// # Performance
///
/// `try_push` hashes the key once (`try_push_to` with a [`TenantHandle`] not at all); push and
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
pub struct FairQueue<K, T, S = DefaultHashBuilder> {
    tenants: Tenants<K, S>,
    items: ItemSlab<T>,
    /// One DRR ring of backlogged flows per class, by its front (the flow served next); the
    /// last is the front's `prev`. Keeping the front saves pop a load of the last flow. Every
    /// possible class's state is kept in one fixed array (the first `class_count` are live;
    /// classes are few), so the dispatch path reaches any class without a bounds check or a
    /// length that a store elsewhere would force it to reload.
    rings: Box<[ClassState; MAX_CLASSES]>,
    class_count: usize,
    /// While the queue has one class, the per-class bookkeeping (each flow's `len`, each
    /// tenant's `active_flows`, `rings[0]`'s totals and counters) is skipped: everything is in
    /// the default class. `rings[0].counters` then holds the counters as of the last switch to one
    /// class, and `single_since` the queue's counters at that moment.
    single_since: QueueCounters,
    /// The only class has a ceiling or an in-flight cap of its own.
    single_capped: bool,
    /// The virtual time at which the last charged class pick started: where a class that
    /// finds every other class idle starts, so idling banks nothing.
    vclock: u64,
    classes: Classes,
    /// Tenants with items queued.
    active_tenants: u32,
    queued_cost: u64,
    config: QueueConfig,
    counters: QueueCounters,
    /// Items dispatched and not yet completed, and the global limit on them.
    in_flight: u64,
    max_in_flight: u64,
    /// Kept only while a shedding policy asks who is furthest over its share.
    over: Option<OverShare>,
    /// Pending item deadlines (min-heap); entries of items gone since are skipped.
    deadlines: BinaryHeap<Reverse<DeadlineEntry>>,
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

/// A dispatched item and the [`Ticket`] to report its completion with.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<&str, &str> = FairQueue::new();
/// q.try_push_with("acme", "report", fairshare::PushOptions::new().with_cost(10)).unwrap();
/// let d = q.dispatch().unwrap();
/// assert_eq!(d.item, "report");
/// assert_eq!(d.ticket.cost(), 10);
/// assert!(q.complete(d.ticket, 25)); // it was costlier than estimated
/// ```
#[derive(Debug)]
#[must_use = "report completion with FairQueue::complete, or the tenant stays in flight"]
#[non_exhaustive]
pub struct Dispatch<T> {
    /// The item, now the host's to run.
    pub item: T,
    /// Hand this back to [`FairQueue::complete`] with the actual cost.
    pub ticket: Ticket,
}

/// Proof that an item was dispatched; [`FairQueue::complete`] consumes it exactly once.
///
/// Not `Clone`: a completion cannot be reported twice.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<&str, u32> = FairQueue::new();
/// q.try_push("acme", 7).unwrap();
/// let d = q.dispatch().unwrap();
/// assert_eq!(q.key(d.ticket.tenant()), Some(&"acme"));
/// assert_eq!(q.in_flight(&"acme"), 1);
/// q.complete(d.ticket, 1);
/// assert_eq!(q.in_flight(&"acme"), 0);
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "report completion with FairQueue::complete, or the tenant stays in flight"]
pub struct Ticket {
    tenant: TenantHandle,
    cost: u32,
    class: ClassId,
}

impl Ticket {
    /// The tenant the item belonged to.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(q.key(d.ticket.tenant()), Some(&"a"));
    /// # q.complete(d.ticket, 1);
    /// ```
    pub fn tenant(&self) -> TenantHandle {
        self.tenant
    }

    /// The cost the item was pushed with (the estimate).
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(3)).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(d.ticket.cost(), 3);
    /// # q.complete(d.ticket, 3);
    /// ```
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The class the item was pushed to.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(d.ticket.class(), fairshare::ClassId::DEFAULT);
    /// # q.complete(d.ticket, 1);
    /// ```
    pub fn class(&self) -> ClassId {
        self.class
    }
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

    /// The key of a handle's tenant, or `None` if the handle is stale.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u8> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert_eq!(q.key(h), Some(&"acme"));
    /// q.release(h);
    /// assert_eq!(q.key(h), None);
    /// ```
    pub fn key(&self, handle: TenantHandle) -> Option<&K> {
        self.tenants.resolve(handle).map(|i| self.tenants.key(i))
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
            + std::mem::size_of::<[ClassState; MAX_CLASSES]>()
    }

    /// Bytes per known tenant (its slot, its key twice, its table entry; load-factor slack
    /// not included) and per queued item (its node, `T` included).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tenant, item) = fairshare::FairQueue::<u64, u64>::footprint();
    /// assert!(tenant > 0 && item >= 8);
    /// ```
    pub const fn footprint() -> (usize, usize) {
        (Tenants::<K, S>::slot_size(), ItemSlab::<T>::node_size())
    }

    /// Re-ranks tenant `idx` in the over-share heap, if one is kept.
    #[inline(always)]
    fn touch(&mut self, idx: u32) {
        if let Some(over) = &mut self.over {
            over.update(&mut self.tenants, idx, self.config.default_weight());
        }
    }

    /// Keeps (or stops keeping) the over-share heap that [`most_over_share`] reads.
    ///
    /// [`most_over_share`]: Self::most_over_share
    pub(crate) fn set_over_share_tracking(&mut self, on: bool) {
        match (on, self.over.is_some()) {
            (true, false) => {
                let mut over = OverShare::default();
                let dw = self.config.default_weight();
                for idx in self.tenants.backlogged() {
                    over.update(&mut self.tenants, idx, dw);
                }
                self.over = Some(over);
            }
            (false, true) => {
                if let Some(mut over) = self.over.take() {
                    over.clear(&mut self.tenants);
                }
            }
            _ => {}
        }
    }

    /// The backlogged tenant with the largest queued cost per unit of weight.
    pub(crate) fn most_over_share(&self) -> Option<u32> {
        self.over.as_ref().and_then(OverShare::top)
    }

    // ----- the DRR rings -----

    /// Whether the queue has one class (see `single_since`).
    #[inline(always)]
    fn single(&self) -> bool {
        self.class_count == 1
    }

    /// Class `c`'s state (`c` below `class_count`; the mask only spares a bounds check).
    #[inline(always)]
    fn ring(&self, c: usize) -> &ClassState {
        debug_assert!(c < self.class_count);
        &self.rings[c & (MAX_CLASSES - 1)]
    }

    #[inline(always)]
    fn ring_mut(&mut self, c: usize) -> &mut ClassState {
        debug_assert!(c < self.class_count);
        &mut self.rings[c & (MAX_CLASSES - 1)]
    }

    /// The state of `class`, with the default class's totals filled in while it is the only
    /// one (see `single_since`).
    fn ring_get(&self, class: ClassId) -> Option<ClassState> {
        match class.index() {
            0 if self.single() => Some(self.class0_state()),
            c if c < self.class_count() => Some(self.ring(c).clone()),
            _ => None,
        }
    }

    /// The default class's state while it is the only class.
    fn class0_state(&self) -> ClassState {
        let (now, then, base) = (&self.counters, &self.single_since, &self.rings[0].counters);
        ClassState {
            items: u64::from(self.items.len()),
            queued_cost: self.queued_cost,
            in_flight: u32::try_from(self.in_flight).unwrap_or(u32::MAX),
            counters: ClassCounters {
                pushed: base.pushed + (now.pushed - then.pushed),
                dispatched: base.dispatched + (now.dispatched - then.dispatched),
                // Signed: corrections while single may bring the total below `then`.
                served_cost: (i128::from(base.served_cost) + i128::from(now.served_cost)
                    - i128::from(then.served_cost))
                .clamp(0, i128::from(u64::MAX)) as u64,
            },
            ..self.rings[0].clone()
        }
    }

    /// Number of classes.
    #[inline(always)]
    fn class_count(&self) -> usize {
        self.class_count
    }

    /// Every class's state, in class order.
    fn all_rings(&self) -> impl Iterator<Item = &ClassState> + '_ {
        self.rings[..self.class_count].iter()
    }

    /// Flow `fid`. With `EMB` the caller knows `fid` is embedded in its tenant's slot (always
    /// so with one class), which the compiler then sees; otherwise the id says where it
    /// lives. The DRR helpers below take `ONE` (the queue has one class, so every flow is
    /// embedded) and, for the flow they serve, `EMB`: `true` only on fast paths that
    /// checked, `false` everywhere else (correct for any flow).
    #[inline(always)]
    fn flow_in<const EMB: bool>(&self, fid: u32) -> &Flow {
        if EMB {
            &self.tenants.get(fid).flow
        } else {
            self.tenants.flow(fid)
        }
    }

    #[inline(always)]
    fn flow_in_mut<const EMB: bool>(&mut self, fid: u32) -> &mut Flow {
        if EMB {
            &mut self.tenants.get_mut(fid).flow
        } else {
            self.tenants.flow_mut(fid)
        }
    }

    /// The quantum of each flow of tenant `idx`: its `quantum × weight`, split evenly between
    /// its backlogged flows so that spreading work over classes gains nothing.
    #[inline(always)]
    fn quantum_of_flow(&self, idx: u32) -> i64 {
        let t = self.tenants.get(idx);
        self.split_quantum(
            t.weight.unwrap_or(self.config.default_weight()),
            t.active_flows,
        )
    }

    /// `quantum × weight` in deficit units, split between `flows` backlogged flows.
    #[inline(always)]
    fn split_quantum(&self, weight: NonZeroU32, flows: u16) -> i64 {
        split_quantum(self.config.quantum(), weight, flows)
    }

    /// Appends flow `fid` behind every backlogged flow of its class `c`.
    #[inline(always)]
    fn ring_push_back<const ONE: bool>(&mut self, c: usize, fid: u32) {
        let front = self.ring(c).front;
        if front == NIL {
            let f = self.flow_in_mut::<ONE>(fid);
            f.prev = fid;
            f.next = fid;
            self.ring_mut(c).front = fid;
            if !ONE && !self.single() {
                self.class_activated(c);
            }
        } else {
            let tail = self.flow_in::<ONE>(front).prev;
            {
                let f = self.flow_in_mut::<ONE>(fid);
                f.prev = tail;
                f.next = front;
            }
            self.flow_in_mut::<ONE>(tail).next = fid;
            self.flow_in_mut::<ONE>(front).prev = fid;
        }
        self.ring_mut(c).ring_len += 1;
    }

    #[inline(always)]
    fn ring_unlink<const ONE: bool>(&mut self, c: usize, fid: u32) {
        if self.ring(c).ring_len == 1 {
            self.ring_mut(c).front = NIL;
        } else {
            let (prev, next) = {
                let f = self.flow_in::<ONE>(fid);
                (f.prev, f.next)
            };
            if self.ring(c).front == fid {
                self.ring_mut(c).front = next;
            }
            self.flow_in_mut::<ONE>(prev).next = next;
            self.flow_in_mut::<ONE>(next).prev = prev;
        }
        self.ring_mut(c).ring_len -= 1;
        let f = self.flow_in_mut::<ONE>(fid);
        f.prev = NIL;
        f.next = NIL;
    }

    /// Class `c` has work again: it may not bank the service it missed while idle, so its
    /// virtual time starts no earlier than the least of the classes that stayed busy.
    #[cold]
    fn class_activated(&mut self, c: usize) {
        let floor = self
            .all_rings()
            .enumerate()
            .filter(|&(i, r)| i != c && r.ring_len > 0)
            .map(|(_, r)| r.vtime)
            .min()
            .unwrap_or(self.vclock);
        let r = self.ring_mut(c);
        r.vtime = r.vtime.max(floor);
    }

    /// Every backlogged flow of class `c` has had a turn without being able to afford its
    /// head item: grant all of them the smallest number of whole rounds after which one of
    /// them can, exactly as that many empty rounds would. O(backlogged flows of the class);
    /// only reached when items cost more than the flows' quanta.
    #[cold]
    fn skip_dead_rounds(&mut self, c: usize) {
        let ring = self.ring(c);
        let (front, len) = (ring.front, ring.ring_len);
        let mut rounds = i64::MAX;
        let mut fid = front;
        for _ in 0..len {
            let q = self.quantum_of_flow(self.tenants.flow_owner(fid).0);
            let f = self.tenants.flow(fid);
            let need = if f.deficit > 0 {
                0
            } else {
                // smallest k with deficit + k*q > 0 (deficit <= 0, so no overflow here)
                (1i64.saturating_sub(f.deficit)).saturating_add(q - 1) / q
            };
            rounds = rounds.min(need);
            fid = f.next;
        }
        if rounds == 0 || rounds == i64::MAX {
            return;
        }
        for _ in 0..len {
            let q = self.quantum_of_flow(self.tenants.flow_owner(fid).0);
            let f = self.tenants.flow_mut(fid);
            f.deficit = f.deficit.saturating_add(rounds.saturating_mul(q));
            fid = f.next;
        }
    }

    /// The class the next dispatch (`track`) or pop serves, among classes with a flow on
    /// their ring; `None` if no class may be served. See [`ClassSpec`] for the rule.
    /// Returns the class and whether its service counts towards its virtual time.
    ///
    /// One pass over the classes, on settings cached by [`ClassState::resolve`].
    #[inline(always)]
    fn pick_class(&self, track: bool) -> Option<(usize, bool)> {
        // Nothing is reserved without a global limit (`ClassState::resolve`), so the
        // reservation test needs no test of the limit.
        debug_assert!(self.max_in_flight != u64::MAX || self.all_rings().all(|r| r.reserved == 0));
        // The class furthest below its reservation: smallest in_flight / reserved, compared
        // as f·r' < f'·r (`NONE`: no class below its reservation).
        const NONE: usize = usize::MAX;
        let (mut under, mut uf, mut ur) = (NONE, 0u64, 1u64);
        // The highest priority, then the least served per weight: the least
        // `ClassState::pick_key` (`u64::MAX` is above every key).
        let (mut best, mut bkey) = (NONE, u64::MAX);
        for (c, ring) in self.rings[..self.class_count].iter().enumerate() {
            let f = u64::from(ring.in_flight);
            if ring.ring_len == 0 || (track && f >= ring.cap) {
                continue;
            }
            if track
                && f < ring.reserved
                && (under == NONE
                    || u128::from(f) * u128::from(ur) < u128::from(uf) * u128::from(ring.reserved))
            {
                (under, uf, ur) = (c, f, ring.reserved);
            }
            let key = ring.pick_key();
            if key < bkey {
                (best, bkey) = (c, key);
            }
        }
        if best == NONE {
            return None;
        }
        // Reservations first. Service is charged to a class's virtual time only while it
        // competes at the top priority: reserved service received while outranked would
        // otherwise count against it when the higher priority goes quiet.
        Some(if under == NONE {
            (best, true)
        } else {
            (under, self.ring(under).priority == self.ring(best).priority)
        })
    }

    /// Shifts every virtual time (and the clock) down by the least of them.
    #[cold]
    fn renormalize_vtimes(&mut self) {
        // Idle classes are raised to where their next activation would put them at least, so
        // a long-idle class cannot pin the shift at zero.
        let least = self
            .all_rings()
            .filter(|r| r.ring_len > 0)
            .map(|r| r.vtime)
            .min()
            .unwrap_or(self.vclock)
            .min(self.vclock);
        // A backlogged class that cannot be served (held at its ceiling by work that never
        // completes) keeps at most 2^54 of lag - far more than any real backlog - so the
        // shift always brings the leader back below `VTIME_RENORM` and the pick key never
        // saturates.
        let top = self.all_rings().map(|r| r.vtime).max().unwrap_or(0);
        let least = least.max(top.saturating_sub(VTIME_RENORM / 2));
        for r in &mut self.rings[..self.class_count] {
            r.vtime = r.vtime.max(least) - least;
        }
        self.vclock = self.vclock.max(least) - least;
    }

    /// Re-resolves every class's settings (after a change of classes or of the global limit).
    fn resolve_classes(&mut self) {
        let limit = self.max_in_flight;
        let specs = self.classes.specs();
        for (ring, spec) in self.rings.iter_mut().zip(specs) {
            ring.resolve(spec, limit);
        }
    }
}

// ===== impl FairQueue: internals shared with the scheduler =====

impl<K, T, S> FairQueue<K, T, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Restores "the head node is live, or the list is empty" for flow `fid` of class `c`
    /// by freeing the tombstones at its head.
    #[inline(always)]
    fn skip_tombstones<const EMB: bool>(&mut self, fid: u32) {
        let mut head = self.flow_in::<EMB>(fid).head;
        while head != NIL && !self.items.is_live(head) {
            head = self.items.free(head);
        }
        let f = self.flow_in_mut::<EMB>(fid);
        f.head = head;
        if head == NIL {
            f.tail = NIL;
        }
    }

    /// Bookkeeping after `n` items of total cost `cost` left flow `fid` of tenant `idx` in
    /// class `c` (whatever the way).
    #[inline(always)]
    fn after_removal<const ONE: bool, const EMB: bool>(
        &mut self,
        c: usize,
        idx: u32,
        fid: u32,
        n: u32,
        cost: u64,
    ) {
        if n == 0 {
            return;
        }
        self.queued_cost -= cost;
        if ONE || self.single() {
            // One class: the tenant's totals are its flow's.
            let t = self.tenants.get_mut(idx);
            t.len -= n;
            t.queued_cost -= cost;
            let emptied = t.len == 0;
            let in_ring = t.flow.in_ring();
            if emptied {
                // Leftover credit is forfeited (classic DRR); debt is carried while the slot
                // lives.
                t.flow.deficit = t.flow.deficit.min(0);
                self.active_tenants -= 1;
                if in_ring {
                    self.ring_unlink::<ONE>(0, fid);
                }
            }
            self.touch(idx);
            return;
        }
        let (t, extra) = self.tenants.tenant_and_flow::<EMB>(idx, fid);
        let f = match extra {
            Some(f) => f,
            None => &mut t.flow,
        };
        f.len -= n;
        let emptied = f.len == 0;
        let in_ring = f.in_ring();
        if emptied {
            f.deficit = f.deficit.min(0);
            t.active_flows -= 1;
        }
        t.len -= n;
        t.queued_cost -= cost;
        if t.len == 0 {
            self.active_tenants -= 1;
        }
        let ring = self.ring_mut(c);
        ring.items -= u64::from(n);
        ring.queued_cost -= cost;
        if emptied && in_ring {
            self.ring_unlink::<ONE>(c, fid);
        }
        self.touch(idx);
    }

    /// Items tenant `idx` still has queued in `class`.
    #[inline]
    pub(crate) fn class_backlog(&self, idx: u32, class: u16) -> u32 {
        self.tenants
            .find_flow(idx, class)
            .map_or(0, |fid| self.flow_len(fid))
    }

    /// Items queued in flow `fid` (see the note on `single_since`).
    #[inline]
    fn flow_len(&self, fid: u32) -> u32 {
        if self.single() && fid & EXTRA == 0 {
            self.tenants.get(fid).len
        } else {
            self.tenants.flow(fid).len
        }
    }

    /// Takes the head item of backlogged flow `fid` (tenant `idx`, class `c`). Leaves the
    /// deficit to the caller and does not free the tenant slot.
    #[inline(always)]
    fn take_head<const ONE: bool, const EMB: bool>(
        &mut self,
        c: usize,
        idx: u32,
        fid: u32,
    ) -> (T, Taken) {
        let head = self.flow_in::<EMB>(fid).head;
        let (item, taken, next) = self.items.take_and_free(head);
        let f = self.flow_in_mut::<EMB>(fid);
        f.head = next;
        if next == NIL {
            f.tail = NIL;
        } else if self.items.has_tombstones() {
            // Only deadlines make tombstones; without them the next node is not touched.
            self.skip_tombstones::<EMB>(fid);
        }
        self.after_removal::<ONE, EMB>(c, idx, fid, 1, u64::from(taken.cost));
        (item, taken)
    }

    /// The next item in fair order, for a dispatch (`track`) or an untracked pop. Counts
    /// nothing and frees no tenant slot: [`finish_pop`](Self::finish_pop) does.
    #[inline(always)]
    pub(crate) fn pop_inner(&mut self, track: bool) -> Option<Popped<T>> {
        self.pop_in_order(true, track)
    }

    /// The next item; with `respect_limits` false (draining), in-flight limits neither stop it
    /// nor park anyone.
    #[inline(always)]
    fn pop_in_order(&mut self, respect_limits: bool, track: bool) -> Option<Popped<T>> {
        if respect_limits && self.in_flight >= self.max_in_flight {
            return None;
        }
        if self.single() {
            if track && respect_limits && self.single_capped && self.class0_full() {
                return None;
            }
            return self.pop_class::<true>(0, respect_limits);
        }
        match (respect_limits, track) {
            (true, true) => self.pop_classes_inline::<true, true>(),
            (true, false) => self.pop_classes::<true, false>(),
            (false, _) => self.pop_classes::<false, false>(),
        }
    }

    /// Whether the only class is at its ceiling or its own in-flight cap.
    #[cold]
    fn class0_full(&self) -> bool {
        self.in_flight >= self.rings[0].cap
    }

    /// The next item when there are several classes: choose the class, then its DRR step.
    /// Out of line for untracked pops and draining; a dispatch inlines
    /// [`pop_classes_inline`](Self::pop_classes_inline) (measured: 15 instructions a
    /// dispatch of call overhead and a result passed through memory).
    #[inline(never)]
    fn pop_classes<const LIMITS: bool, const TRACK: bool>(&mut self) -> Option<Popped<T>> {
        self.pop_classes_inline::<LIMITS, TRACK>()
    }

    /// The body of [`pop_classes`](Self::pop_classes).
    #[inline(always)]
    fn pop_classes_inline<const LIMITS: bool, const TRACK: bool>(&mut self) -> Option<Popped<T>> {
        let (respect_limits, track) = (LIMITS, TRACK);
        loop {
            let (c, charge) = self.pick_class(track && respect_limits)?;
            let popped = self.pop_class::<false>(c, respect_limits);
            if let Some(p) = popped {
                if charge {
                    let ring = self.ring_mut(c);
                    let start = ring.vtime;
                    ring.vtime += u64::from(p.cost) * ring.vstep;
                    let high = ring.vtime > VTIME_RENORM;
                    self.vclock = start;
                    if high {
                        self.renormalize_vtimes();
                    }
                }
                return Some(p);
            }
            // Every flow of class `c` belonged to a tenant at its in-flight limit and is
            // parked now: choose again.
        }
    }

    /// The DRR step inside class `c` (`ONE`: the queue's only class, `c` = 0).
    #[inline(always)]
    fn pop_class<const ONE: bool>(&mut self, c: usize, respect_limits: bool) -> Option<Popped<T>> {
        let mut rotations = 0u32;
        let (default_weight, quantum) = (self.config.default_weight(), self.config.quantum());
        loop {
            let front = self.ring(c).front;
            if front == NIL {
                return None;
            }
            let idx = if ONE || front & EXTRA == 0 {
                front
            } else {
                self.tenants.flow_owner(front).0
            };
            let (t, extra) = self.tenants.tenant_and_flow::<ONE>(idx, front);
            if respect_limits && t.in_flight >= t.max_in_flight {
                // At its in-flight limit: park the flow (off the ring) so it blocks nobody; a
                // completion brings it back.
                self.ring_unlink::<ONE>(c, front);
                continue;
            }
            let (weight, split) = (t.weight.unwrap_or(default_weight), t.active_flows);
            let f = match extra {
                Some(f) => f,
                None => &mut t.flow,
            };
            if f.deficit > 0 {
                // Charge before taking: a flow the item empties keeps only its debt.
                let cost = self.items.cost(f.head);
                f.deficit = f.deficit.saturating_sub(units(i64::from(cost)));
                // A flow in its tenant's slot (always, with one class) is served without
                // asking its id where it lives at every step.
                let (item, taken) = if ONE || front & EXTRA == 0 {
                    self.take_head::<ONE, true>(c, idx, front)
                } else {
                    self.take_head::<ONE, false>(c, idx, front)
                };
                return Some(Popped {
                    item,
                    tenant: idx,
                    class: c as u16,
                    cost,
                    enqueued: taken.enqueued,
                });
            }
            f.deficit = f
                .deficit
                .saturating_add(split_quantum(quantum, weight, split));
            let next = f.next;
            // Rotate: the front goes to the back of the ring.
            self.ring_mut(c).front = next;
            rotations += 1;
            if rotations >= self.ring(c).ring_len {
                self.skip_dead_rounds(c);
                rotations = 0;
            }
        }
    }

    /// Counts a popped item as dispatched; with `track`, marks it in flight and returns its
    /// ticket, otherwise frees the tenant slot if nothing else keeps it.
    #[inline(always)]
    pub(crate) fn finish_pop(
        &mut self,
        idx: u32,
        class: u16,
        cost: u32,
        track: bool,
    ) -> Option<Ticket> {
        let t = self.tenants.get_mut(idx);
        t.counters.dispatched += 1;
        t.counters.served_cost = t.counters.served_cost.saturating_add(u64::from(cost));
        if track {
            t.in_flight += 1;
        }
        self.counters.dispatched += 1;
        self.counters.served_cost = self.counters.served_cost.saturating_add(u64::from(cost));
        if !self.single() {
            // One class's totals while it is the only one are the queue's (`single_since`).
            let ring = self.ring_mut(usize::from(class));
            ring.counters.dispatched += 1;
            ring.counters.served_cost = ring.counters.served_cost.saturating_add(u64::from(cost));
            if track {
                ring.in_flight += 1;
            }
        }
        if track {
            self.in_flight += 1;
            Some(Ticket {
                tenant: self.tenants.handle(idx),
                cost,
                class: ClassId::new(class),
            })
        } else {
            self.tenants.release_if_idle(idx);
            None
        }
    }

    /// Brings tenant `idx`'s parked flows (backlogged, off their rings) back if the tenant is
    /// below its in-flight limit.
    fn unpark(&mut self, idx: u32) {
        let t = self.tenants.get(idx);
        if t.len == 0 || t.in_flight >= t.max_in_flight {
            return;
        }
        self.relink_parked(idx);
    }

    /// Puts tenant `idx`'s backlogged flows that are off their rings back on them.
    fn relink_parked(&mut self, idx: u32) {
        let parked: Vec<u32> = self
            .tenants
            .flows_of(idx)
            .filter(|&fid| self.flow_len(fid) > 0 && !self.tenants.flow(fid).in_ring())
            .collect();
        for fid in parked {
            let c = usize::from(self.tenants.flow_owner(fid).1);
            self.ring_push_back::<false>(c, fid);
        }
    }

    /// Appends `item` to tenant `idx`'s FIFO in class `class`. The caller checked the class,
    /// the block and the room.
    #[inline(always)]
    pub(crate) fn link(
        &mut self,
        idx: u32,
        class: u16,
        item: T,
        cost: u32,
        now: Nanos,
        deadline: Option<Nanos>,
    ) {
        if self.single() {
            debug_assert_eq!(class, 0);
            self.link_in::<true>(idx, 0, item, cost, now, deadline);
        } else {
            self.link_in::<false>(idx, class, item, cost, now, deadline);
        }
    }

    /// [`link`](Self::link), with `ONE` telling whether the queue has one class.
    #[inline(always)]
    fn link_in<const ONE: bool>(
        &mut self,
        idx: u32,
        class: u16,
        item: T,
        cost: u32,
        now: Nanos,
        deadline: Option<Nanos>,
    ) {
        let fid = if ONE {
            idx
        } else {
            self.tenants.flow_or_insert(idx, class)
        };
        let c = usize::from(class);
        let node = self.items.alloc(item, cost, now);
        let default_weight = self.config.default_weight();
        let quantum = self.config.quantum();
        let single = ONE;
        let (t, mut extra) = self.tenants.tenant_and_flow::<ONE>(idx, fid);
        let f = match extra.as_deref_mut() {
            Some(f) => f,
            None => &mut t.flow,
        };
        if f.tail == NIL {
            f.head = node;
        } else {
            self.items.set_next(f.tail, node);
        }
        f.tail = node;
        let activated = if single {
            false // decided below, from the tenant's total
        } else {
            f.len += 1;
            f.len == 1
        };
        t.len += 1;
        t.queued_cost += u64::from(cost);
        t.counters.pushed += 1;
        let tenant_activated = t.len == 1;
        let activated = if single {
            tenant_activated
        } else {
            if activated {
                t.active_flows += 1;
            }
            activated
        };
        if activated {
            // A newly backlogged flow starts its round with a fresh quantum (a debt carried
            // over is kept), set while the flow is at hand.
            let q = split_quantum(quantum, t.weight.unwrap_or(default_weight), t.active_flows);
            let f = match extra {
                Some(f) => f,
                None => &mut t.flow,
            };
            f.deficit = f.deficit.min(0).saturating_add(q);
        }
        if tenant_activated {
            self.active_tenants += 1;
        }
        self.queued_cost += u64::from(cost);
        self.counters.pushed += 1;
        if !single {
            let ring = self.ring_mut(c);
            ring.items += 1;
            ring.queued_cost += u64::from(cost);
            ring.counters.pushed += 1;
        }
        if activated {
            self.ring_push_back::<ONE>(c, fid);
        }
        if let Some(at) = deadline {
            // Entries of items that left before their deadline stay until it passes; compact
            // when they outnumber the live items, so the heap follows the backlog (amortised
            // O(1) per push).
            if self.deadlines.len() > 2 * self.items.len() as usize + 64 {
                let items = &self.items;
                self.deadlines
                    .retain(|Reverse(e)| items.holds(e.node, e.generation, e.enqueued));
            }
            self.deadlines.push(Reverse(DeadlineEntry {
                at,
                node,
                generation: self.items.generation(node),
                flow: fid,
                enqueued: now,
            }));
        }
        self.touch(idx);
    }

    #[cold]
    pub(crate) fn reject(&mut self, item: T, reason: RejectReason) -> Result<(), Rejected<T>> {
        self.counters.rejected += 1;
        Err(Rejected::new(item, reason))
    }

    /// Hands every item whose deadline is at or before `now` to `out`, as
    /// [`RejectReason::DeadlineExpired`], and the tenant slot of each to `owners` if given.
    /// O(log n) per expired item.
    pub(crate) fn expire_due(
        &mut self,
        now: Nanos,
        out: &mut Vec<Rejected<T>>,
        mut owners: Option<&mut Vec<u32>>,
    ) {
        while let Some(Reverse(e)) = self.deadlines.peek().copied() {
            if e.at > now {
                break;
            }
            self.deadlines.pop();
            if !self.items.holds(e.node, e.generation, e.enqueued) {
                continue; // dispatched or removed since
            }
            let (item, taken) = self.items.take_item(e.node);
            let (idx, class) = self.tenants.flow_owner(e.flow);
            let c = usize::from(class);
            self.skip_tombstones::<false>(e.flow);
            self.after_removal::<false, false>(c, idx, e.flow, 1, u64::from(taken.cost));
            self.counters.removed += 1;
            out.push(Rejected::new(
                item,
                RejectReason::DeadlineExpired { deadline: e.at },
            ));
            if let Some(owners) = owners.as_deref_mut() {
                owners.push(idx);
            }
            self.tenants.release_if_idle(idx);
        }
    }

    /// The earliest pending deadline, if any (it may belong to an item already gone).
    pub(crate) fn next_deadline(&self) -> Option<Nanos> {
        self.deadlines.peek().map(|e| e.0.at)
    }

    /// Takes the oldest item of backlogged tenant `idx` out of the queue (shedding): the
    /// oldest head among its classes.
    pub(crate) fn evict_head(&mut self, idx: u32) -> (T, u32) {
        let fid = self
            .tenants
            .flows_of(idx)
            .filter(|&fid| self.flow_len(fid) > 0)
            .min_by_key(|&fid| self.items.enqueued(self.tenants.flow(fid).head))
            .expect("evict_head: the tenant has items queued");
        let c = usize::from(self.tenants.flow_owner(fid).1);
        let (item, taken) = self.take_head::<false, false>(c, idx, fid);
        self.counters.removed += 1;
        (item, taken.cost)
    }

    /// Counts an item the scheduler's admission refused.
    pub(crate) fn count_rejected(&mut self) {
        self.counters.rejected += 1;
    }

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

    /// When the oldest item among the flows served next (one per class) was queued.
    pub(crate) fn front_enqueued(&self) -> Option<Nanos> {
        self.all_rings()
            .filter(|r| r.front != NIL)
            .map(|r| self.tenants.flow(r.front).head)
            .filter(|&head| head != NIL)
            .map(|head| self.items.enqueued(head))
            .min()
    }

    /// Sets tenant `idx`'s in-flight limit (`u32::MAX`: none), bringing it back to the ring
    /// if it was parked and now has room.
    #[cold]
    #[inline(never)]
    pub(crate) fn set_slot_in_flight_limit(&mut self, idx: u32, max: u32) {
        self.tenants.get_mut(idx).max_in_flight = max;
        self.unpark(idx);
    }

    pub(crate) fn tenants_ref(&self) -> &Tenants<K, S> {
        &self.tenants
    }

    pub(crate) fn tenants_mut(&mut self) -> &mut Tenants<K, S> {
        &mut self.tenants
    }

    /// Unlinks every item of flow `fid` whose position (among its live items) `remove`
    /// selects, appending them to `out` in FIFO order; frees tombstones on the way. Keeps the
    /// flow, tenant, ring and totals consistent. Returns the removed cost.
    fn remove_where(
        &mut self,
        fid: u32,
        mut remove: impl FnMut(usize) -> bool,
        out: &mut Vec<T>,
    ) -> u64 {
        let mut node = self.tenants.flow(fid).head;
        let mut prev_kept = NIL;
        let mut new_head = NIL;
        let mut removed_cost = 0u64;
        let mut removed = 0u32;
        let mut pos = 0usize;
        while node != NIL {
            if !self.items.is_live(node) {
                node = self.items.free(node);
                continue;
            }
            let next = self.items.next(node);
            if remove(pos) {
                let (item, taken) = self.items.take_item(node);
                self.items.free(node);
                out.push(item);
                removed_cost += u64::from(taken.cost);
                removed += 1;
            } else {
                if prev_kept == NIL {
                    new_head = node;
                } else {
                    self.items.set_next(prev_kept, node);
                }
                prev_kept = node;
            }
            node = next;
            pos += 1;
        }
        if prev_kept != NIL {
            self.items.set_next(prev_kept, NIL);
        }
        let f = self.tenants.flow_mut(fid);
        f.head = new_head;
        f.tail = prev_kept;
        self.counters.removed += u64::from(removed);
        let (idx, class) = self.tenants.flow_owner(fid);
        self.after_removal::<false, false>(usize::from(class), idx, fid, removed, removed_cost);
        removed_cost
    }

    /// Purges tenant `idx`, class by class (the default class first); returns the items and
    /// their total cost.
    pub(crate) fn purge_slot(&mut self, idx: u32) -> (Vec<T>, ClassCosts) {
        let mut out = Vec::with_capacity(self.tenants.get(idx).len as usize);
        let mut costs = ClassCosts::default();
        for fid in self.flows_in_class_order(idx) {
            if self.flow_len(fid) > 0 {
                let cost = self.remove_where(fid, |_| true, &mut out);
                costs.add(self.tenants.flow_owner(fid).1, cost);
            }
        }
        (out, costs)
    }

    /// Tenant `idx`'s flows in class order (the side entries chain newest first).
    fn flows_in_class_order(&self, idx: u32) -> Vec<u32> {
        let mut flows: Vec<u32> = self.tenants.flows_of(idx).collect();
        flows.sort_by_key(|&fid| (self.tenants.flow_owner(fid).1, fid & EXTRA));
        flows
    }

    /// Retains tenant `idx`'s items by `keep`; returns the removed items and their cost.
    /// Every predicate call happens before anything is changed.
    pub(crate) fn retain_slot(
        &mut self,
        idx: u32,
        mut keep: impl FnMut(&T) -> bool,
    ) -> (Vec<T>, ClassCosts) {
        let flows = self.flows_in_class_order(idx);
        // One verdict list per flow, all asked before anything changes.
        let mut verdicts: Vec<Vec<bool>> = Vec::with_capacity(flows.len());
        for &fid in &flows {
            let mut v = Vec::with_capacity(self.flow_len(fid) as usize);
            let mut node = self.tenants.flow(fid).head;
            while node != NIL {
                if self.items.is_live(node) {
                    v.push(keep(self.items.get(node)));
                }
                node = self.items.next(node);
            }
            verdicts.push(v);
        }
        let mut out = Vec::new();
        let mut costs = ClassCosts::default();
        for (fid, v) in flows.into_iter().zip(&verdicts) {
            if v.iter().any(|&k| !k) {
                let cost = self.remove_where(fid, |pos| !v[pos], &mut out);
                costs.add(self.tenants.flow_owner(fid).1, cost);
            }
        }
        (out, costs)
    }
}

/// Cost removed from one tenant, in total and by class (for refunds).
#[derive(Debug, Default)]
pub(crate) struct ClassCosts {
    pub(crate) total: u64,
    pub(crate) by_class: Vec<(u16, u64)>,
}

impl ClassCosts {
    fn add(&mut self, class: u16, cost: u64) {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DeadlineEntry {
    at: Nanos,
    node: u32,
    /// The node's allocation count and the item's enqueue time: together they tell this
    /// item from any later occupant of the node.
    generation: u32,
    /// The flow the item was queued in (it cannot be freed while the item is live).
    flow: u32,
    enqueued: Nanos,
}

// ===== impl FairQueue: keyed operations =====

impl<K, T, S> FairQueue<K, T, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Queues `item` for tenant `key` with the default [`PushOptions`] (cost 1, the default
    /// class, no deadline).
    ///
    /// # Errors
    ///
    /// See [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("acme", 1).unwrap();
    /// assert_eq!(q.tenant_len(&"acme"), 1);
    /// ```
    #[inline(always)]
    pub fn try_push(&mut self, key: K, item: T) -> Result<(), Rejected<T>> {
        self.try_push_with(key, item, PushOptions::new())
    }

    /// Queues `item` for tenant `key` with its cost, class and deadline (report the actual
    /// cost later through [`dispatch`](Self::dispatch) and [`complete`](Self::complete)).
    ///
    /// The queue reads no clock: a deadline takes effect when the host calls
    /// [`take_expired`](Self::take_expired) (the [`Scheduler`](crate::Scheduler) does so before
    /// every dispatch).
    ///
    /// # Errors
    ///
    /// The item comes back inside [`Rejected`], checked in this order (the same as the
    /// [`Scheduler`](crate::Scheduler)'s first checks), with
    /// - [`RejectReason::Blocked`] if an operator blocked the tenant,
    /// - [`RejectReason::ZeroCost`] if the cost is 0,
    /// - [`RejectReason::UnknownClass`] if the queue has no such class,
    /// - [`RejectReason::QueueFull`] if the queue holds `u32::MAX - 1` items or 2^31 tenants.
    ///
    /// # Performance
    ///
    /// One hash of `key`; O(1); no allocation unless the backlog reaches a new high-water mark.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, FairQueue, PushOptions};
    /// let mut q: FairQueue<&str, &str> = FairQueue::new();
    /// q.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap())
    ///     .unwrap();
    /// let bulk = q.classes().id("bulk").unwrap();
    /// q.try_push_with("acme", "export", PushOptions::new().with_cost(50).with_class(bulk))
    ///     .unwrap();
    /// assert_eq!(q.tenant_queued_cost(&"acme"), 50);
    /// assert_eq!(q.class_len(bulk), 1);
    /// ```
    #[inline(always)]
    pub fn try_push_with(&mut self, key: K, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let Some(idx) = self.tenants.find_or_insert(key) else {
            return self.reject(item, full());
        };
        self.push_slot(idx, item, opts)
    }

    /// Pins tenant `key` and returns its handle, for pushes and queries without hashing.
    ///
    /// The tenant's slot, settings and counters are kept until [`release`](Self::release),
    /// even while it has nothing queued. Calling it again returns the same handle.
    ///
    /// # Panics
    ///
    /// If the queue already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert_eq!(q.tenant("acme"), h);
    /// q.try_push_to(h, 5, fairshare::PushOptions::new()).unwrap();
    /// assert_eq!(q.pop(), Some(5));
    /// assert_eq!(q.known_tenants(), 1); // still pinned
    /// ```
    #[track_caller]
    pub fn tenant(&mut self, key: K) -> TenantHandle {
        let idx = self
            .tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^31 tenants)");
        self.tenants.get_mut(idx).flags |= PINNED;
        self.tenants.handle(idx)
    }

    /// The handle of a known tenant, without pinning it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.handle_of(&"acme"), None);
    /// q.try_push("acme", 1).unwrap();
    /// assert!(q.handle_of(&"acme").is_some());
    /// ```
    pub fn handle_of(&self, key: &K) -> Option<TenantHandle> {
        self.tenants.find(key).map(|i| self.tenants.handle(i))
    }

    /// Unpins a tenant pinned by [`tenant`](Self::tenant). Its slot is forgotten once it also
    /// has nothing queued or in flight and no settings; the handle is then stale.
    /// Returns `false` if the handle was already stale.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert!(q.release(h));
    /// assert_eq!(q.known_tenants(), 0);
    /// assert!(!q.release(h));
    /// ```
    pub fn release(&mut self, handle: TenantHandle) -> bool {
        let Some(idx) = self.tenants.resolve(handle) else {
            return false;
        };
        self.tenants.get_mut(idx).flags &= !PINNED;
        self.tenants.release_if_idle(idx);
        true
    }

    /// Queues `item` for the tenant behind `handle` (from [`tenant`](Self::tenant)), without
    /// hashing its key.
    ///
    /// # Errors
    ///
    /// As [`try_push_with`](Self::try_push_with), after [`RejectReason::StaleHandle`] if the
    /// handle's tenant was forgotten.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{FairQueue, PushOptions, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// let h = q.tenant("acme");
    /// q.try_push_to(h, 1, PushOptions::new()).unwrap();
    /// q.pop();
    /// q.release(h);
    /// let err = q.try_push_to(h, 2, PushOptions::new()).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::StaleHandle);
    /// ```
    #[inline(always)]
    pub fn try_push_to(
        &mut self,
        handle: TenantHandle,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let Some(idx) = self.tenants.resolve(handle) else {
            return self.reject(item, RejectReason::StaleHandle);
        };
        self.push_slot(idx, item, opts)
    }

    /// The push of every entry point, once the tenant's slot is found.
    #[inline(always)]
    fn push_slot(&mut self, idx: u32, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let t = self.tenants.get(idx);
        let class = opts.class().index();
        if t.blocked.is_some()
            | (opts.cost() == 0)
            | (class >= self.class_count())
            | self.items.is_full()
        {
            return self.refuse_push(idx, item, opts);
        }
        // `class_count() <= MAX_CLASSES`, so a known class fits in a `u16`.
        self.link(
            idx,
            class as u16,
            item,
            opts.cost(),
            Nanos::ZERO,
            opts.deadline(),
        );
        Ok(())
    }

    /// The refusal of [`push_slot`](Self::push_slot), in the documented order.
    #[cold]
    #[inline(never)]
    fn refuse_push(&mut self, idx: u32, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let t = self.tenants.get_mut(idx);
        let reason = if let Some(reason) = t.blocked {
            RejectReason::Blocked { reason }
        } else if opts.cost() == 0 {
            RejectReason::ZeroCost
        } else if opts.class().index() >= self.class_count {
            RejectReason::UnknownClass {
                class: opts.class(),
            }
        } else {
            full()
        };
        t.counters.rejected += 1;
        // A tenant the push itself created goes again.
        self.tenants.release_if_idle(idx);
        self.reject(item, reason)
    }

    /// Takes the next item in fair order, or `None` if nothing is queued.
    ///
    /// Work-conserving: returns an item whenever a queued item may be dispatched (its tenant
    /// is below its in-flight limit and the global limit is not reached). The item is not
    /// tracked as in flight; use [`dispatch`](Self::dispatch) to report actual costs.
    ///
    /// # Performance
    ///
    /// O(1) amortised while items cost at most about `quantum × weight`. When every backlogged
    /// tenant's head item costs more than it can afford, the empty rounds are skipped in one
    /// pass over the backlogged tenants (never over idle ones), so a pop costs at most two
    /// rotations of the ring; set the quantum near the typical item cost to stay O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("a", 2).unwrap();
    /// q.try_push("b", 3).unwrap();
    /// let order: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    /// assert_eq!(order, [1, 3, 2]);
    /// ```
    #[inline(always)]
    pub fn pop(&mut self) -> Option<T> {
        let p = self.pop_inner(false)?;
        self.finish_pop(p.tenant, p.class, p.cost, false);
        Some(p.item)
    }

    /// Takes the next item in fair order and tracks it as in flight until its [`Ticket`] is
    /// passed to [`complete`](Self::complete).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!((d.item, q.in_flight(&"a")), (1, 1));
    /// q.complete(d.ticket, 1);
    /// ```
    #[inline(always)]
    pub fn dispatch(&mut self) -> Option<Dispatch<T>> {
        let p = self.pop_inner(true)?;
        let ticket = self.finish_pop(p.tenant, p.class, p.cost, true)?;
        Some(Dispatch {
            item: p.item,
            ticket,
        })
    }

    /// Charges flow `fid` of tenant `idx` (class `class`) for `delta` more cost than its
    /// estimate (less, if negative): the deficit within the debt and credit caps, and the
    /// served-cost counts of the tenant, the queue and the class.
    #[inline(never)]
    fn correct_cost(&mut self, idx: u32, fid: u32, class: u16, delta: i64) {
        let q = self.quantum_of_flow(idx);
        let max_debt = q.saturating_mul(i64::from(self.config.max_debt_rounds()));
        let f = self.tenants.flow_mut(fid);
        let corrected = f.deficit.saturating_sub(units(delta));
        let lo = f.deficit.min(-max_debt);
        let hi = f.deficit.max(q);
        f.deficit = corrected.clamp(lo, hi);
        let correct = |served: u64| {
            if delta >= 0 {
                served.saturating_add(delta.unsigned_abs())
            } else {
                served.saturating_sub(delta.unsigned_abs())
            }
        };
        let t = self.tenants.get_mut(idx);
        t.counters.served_cost = correct(t.counters.served_cost);
        self.counters.served_cost = correct(self.counters.served_cost);
        if !self.single() && usize::from(class) < self.class_count() {
            let ring = self.ring_mut(usize::from(class));
            ring.counters.served_cost = correct(ring.counters.served_cost);
        }
    }

    /// Reports that a dispatched item finished, with what it actually cost. The tenant's
    /// future share is corrected by `actual_cost - estimate`: debt is capped at
    /// `max_debt_rounds` rounds of its quantum and credit at one quantum, so one bad estimate
    /// can neither starve nor flood. Returns `false` (and changes nothing) if the ticket's
    /// tenant is no longer known. A ticket belongs to the queue that issued it: passing it to
    /// another queue is a programming error that may credit an unrelated tenant there.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(10)).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert!(q.complete(d.ticket, 4));
    /// assert_eq!(q.tenant_counters(&"a"), None); // forgotten: nothing left to remember
    /// ```
    #[inline]
    pub fn complete(&mut self, ticket: Ticket, actual_cost: u32) -> bool {
        let Some(idx) = self.tenants.resolve(ticket.tenant) else {
            return false;
        };
        let class = ticket.class.index() as u16;
        // The flow lives as long as its tenant, and a tenant with work in flight lives.
        let Some(fid) = self.tenants.find_flow(idx, class) else {
            return false;
        };
        if self.tenants.get(idx).in_flight == 0 {
            return false;
        }
        let delta = i64::from(actual_cost) - i64::from(ticket.cost);
        if delta != 0 {
            // An exact estimate (the common case) changes no share and no count.
            self.correct_cost(idx, fid, class, delta);
        }
        let t = self.tenants.get_mut(idx);
        t.in_flight -= 1;
        // Only a tenant that was at its limit can have parked flows.
        let was_full = t.in_flight + 1 == t.max_in_flight;
        self.in_flight -= 1;
        if !self.single() && usize::from(class) < self.class_count() {
            let ring = self.ring_mut(usize::from(class));
            ring.in_flight = ring.in_flight.saturating_sub(1);
        }
        if was_full {
            self.unpark(idx);
        }
        self.tenants.release_if_idle(idx);
        true
    }

    /// Replaces the classes. Classes may be added, changed or reordered in place (work queued
    /// in class `i` stays in class `i`, under its new settings); a class may only be removed
    /// (by a shorter list) while it holds no queued or in-flight items. A removed class takes
    /// every tenant's state in it along (carried debt, per-tenant class rate state): a class
    /// added later at the same index starts fresh.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`] naming the first class that would be removed with work
    /// in it; nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, FairQueue};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// let two = Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap();
    /// q.set_classes(two).unwrap();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_class(q.classes().id("bulk").unwrap())).unwrap();
    /// assert!(q.set_classes(Classes::single()).is_err()); // "bulk" still holds an item
    /// ```
    pub fn set_classes(&mut self, classes: Classes) -> Result<(), ConfigError> {
        if let Some((c, _)) = self
            .all_rings()
            .enumerate()
            .skip(classes.len())
            .find(|(_, r)| r.items > 0 || r.in_flight > 0)
        {
            return Err(ConfigError::InvalidClass {
                class: self.classes.specs()[c].name().to_string(),
                field: "name",
                problem: "cannot remove a class that has work queued or in flight",
            });
        }
        let was_single = self.single();
        if was_single && classes.len() > 1 {
            // Resume the per-class bookkeeping skipped while everything was in one class.
            self.rings[0] = self.class0_state();
            let backlogged: Vec<u32> = self.tenants.iter().map(|(i, _, _)| i).collect();
            for idx in backlogged {
                let t = self.tenants.get_mut(idx);
                t.flow.len = t.len;
                t.active_flows = u16::from(t.len > 0);
            }
        } else if !was_single && classes.len() == 1 {
            self.single_since = self.counters;
        }
        if classes.len() < self.class_count() {
            // Clamped: a class list never holds more than `MAX_CLASSES`.
            let moved = self
                .tenants
                .drop_classes_from(u16::try_from(classes.len()).unwrap_or(u16::MAX));
            self.relink_moved_flows(&moved);
        }
        // States past the last class stay fresh, for a class added later.
        for ring in self.rings.iter_mut().skip(classes.len()) {
            *ring = ClassState::new();
        }
        self.class_count = classes.len();
        let spec = &classes.specs()[0];
        self.single_capped = spec.ceiling_percent() < 100 || spec.max_in_flight().is_some();
        self.classes = classes;
        self.resolve_classes();
        Ok(())
    }

    /// Fixes every reference to the default-class flows that `Tenants::drop_classes_from`
    /// moved from the side slab into their tenants' slots (`(slot, old id)` pairs): ring
    /// links (neighbours may have moved too), the default class's ring front and deadline
    /// entries.
    #[cold]
    fn relink_moved_flows(&mut self, moved: &[(u32, u32)]) {
        if moved.is_empty() {
            return;
        }
        let new_id: std::collections::HashMap<u32, u32> =
            moved.iter().map(|&(idx, old)| (old, idx)).collect();
        let id = |fid: u32| new_id.get(&fid).copied().unwrap_or(fid);
        for &(idx, _) in moved {
            let f = self.tenants.flow_mut(idx);
            if f.in_ring() {
                (f.prev, f.next) = (id(f.prev), id(f.next));
            }
        }
        for &(idx, _) in moved {
            let f = *self.tenants.flow(idx);
            if f.in_ring() {
                self.tenants.flow_mut(f.prev).next = idx;
                self.tenants.flow_mut(f.next).prev = idx;
            }
        }
        self.rings[0].front = id(self.rings[0].front);
        if self
            .deadlines
            .iter()
            .any(|Reverse(e)| new_id.contains_key(&e.flow))
        {
            let mut entries = std::mem::take(&mut self.deadlines).into_vec();
            for Reverse(e) in &mut entries {
                e.flow = id(e.flow);
            }
            self.deadlines = entries.into();
        }
    }

    /// The queue's classes.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.classes().len(), 1);
    /// ```
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Number of items queued in `class` (0 for an unknown class).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.class_len(ClassId::DEFAULT), 1);
    /// ```
    pub fn class_len(&self, class: ClassId) -> usize {
        self.ring_get(class).map_or(0, |r| r.items as usize)
    }

    /// Total estimated cost queued in `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(7)).unwrap();
    /// assert_eq!(q.class_queued_cost(ClassId::DEFAULT), 7);
    /// ```
    pub fn class_queued_cost(&self, class: ClassId) -> u64 {
        self.ring_get(class).map_or(0, |r| r.queued_cost)
    }

    /// Items of `class` dispatched and not yet completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(q.class_in_flight(ClassId::DEFAULT), 1);
    /// q.complete(d.ticket, 1);
    /// assert_eq!(q.class_in_flight(ClassId::DEFAULT), 0);
    /// ```
    pub fn class_in_flight(&self, class: ClassId) -> u32 {
        self.ring_get(class).map_or(0, |r| r.in_flight)
    }

    /// Lifetime counters of `class`, or `None` for an unknown class.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.class_counters(ClassId::DEFAULT).unwrap().pushed, 0);
    /// assert!(q.class_counters(ClassId::new(1)).is_none());
    /// ```
    pub fn class_counters(&self, class: ClassId) -> Option<ClassCounters> {
        self.ring_get(class).map(|r| r.counters)
    }

    /// Items currently in flight (dispatched, not completed) for tenant `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.in_flight(&"a"), 0);
    /// ```
    pub fn in_flight(&self, key: &K) -> u32 {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).in_flight)
    }

    /// Number of items queued for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!((q.tenant_len(&"a"), q.tenant_len(&"b")), (1, 0));
    /// ```
    pub fn tenant_len(&self, key: &K) -> usize {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).len as usize)
    }

    /// Sum of the costs queued for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(9)).unwrap();
    /// assert_eq!(q.tenant_queued_cost(&"a"), 9);
    /// ```
    pub fn tenant_queued_cost(&self, key: &K) -> u64 {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).queued_cost)
    }

    /// The tenant's lifetime counters, or `None` if the queue holds no state for it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.tenant_counters(&"a").unwrap().pushed, 1);
    /// ```
    pub fn tenant_counters(&self, key: &K) -> Option<TenantCounters> {
        self.tenants.find(key).map(|i| self.tenants.get(i).counters)
    }

    /// Number of items `key` has queued in `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.tenant_class_len(&"a", ClassId::DEFAULT), 1);
    /// assert_eq!(q.tenant_class_len(&"a", ClassId::new(1)), 0);
    /// ```
    pub fn tenant_class_len(&self, key: &K, class: ClassId) -> usize {
        let Ok(c) = u16::try_from(class.index()) else {
            return 0;
        };
        self.tenants
            .find(key)
            .and_then(|i| self.tenants.find_flow(i, c))
            .map_or(0, |fid| self.flow_len(fid) as usize)
    }

    /// Visits every known tenant in a deterministic order (not hash order) with its queued
    /// length and counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("b", 2).unwrap();
    /// let keys: Vec<&str> = q.tenants().map(|(k, _, _)| *k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn tenants(&self) -> impl Iterator<Item = (&K, usize, TenantCounters)> + '_ {
        self.tenants
            .iter()
            .map(|(_, k, t)| (k, t.len as usize, t.counters))
    }

    /// The weight in force for `key` (its override, or the default).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(4).unwrap());
    /// assert_eq!((q.weight(&"gold").get(), q.weight(&"free").get()), (4, 1));
    /// ```
    pub fn weight(&self, key: &K) -> NonZeroU32 {
        self.tenants
            .find(key)
            .and_then(|i| self.tenants.get(i).weight)
            .unwrap_or(self.config.default_weight())
    }

    /// Overrides a tenant's weight. Takes effect from the tenant's next turn; queued items stay.
    ///
    /// # Panics
    ///
    /// If the queue already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(2).unwrap());
    /// for i in 0..4 { q.try_push("gold", i).unwrap(); q.try_push("free", 10 + i).unwrap(); }
    /// let first: Vec<u32> = (0..6).filter_map(|_| q.pop()).collect();
    /// assert_eq!(first, [0, 1, 10, 2, 3, 11]);
    /// ```
    #[track_caller]
    pub fn set_weight(&mut self, key: K, weight: NonZeroU32) {
        let idx = self
            .tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^31 tenants)");
        self.tenants.get_mut(idx).weight = Some(weight);
        self.touch(idx);
    }

    /// Removes a tenant's weight override; it gets the default weight again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(2).unwrap());
    /// q.clear_weight(&"gold");
    /// assert_eq!(q.weight(&"gold").get(), 1);
    /// assert_eq!(q.known_tenants(), 0);
    /// ```
    pub fn clear_weight(&mut self, key: &K) {
        if let Some(idx) = self.tenants.find(key) {
            self.tenants.get_mut(idx).weight = None;
            self.touch(idx);
            self.tenants.release_if_idle(idx);
        }
    }

    /// Changes the weight of every tenant without an override. Takes effect from each
    /// tenant's next turn.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_default_weight(NonZeroU32::new(5).unwrap());
    /// assert_eq!(q.weight(&"anyone").get(), 5);
    /// ```
    pub fn set_default_weight(&mut self, weight: NonZeroU32) {
        self.config = self.config.with_default_weight(weight);
        if self.over.is_some() {
            // Every ratio may have changed: rebuild the heap.
            self.set_over_share_tracking(false);
            self.set_over_share_tracking(true);
        }
    }

    /// Blocks a tenant: every later push is refused with [`RejectReason::Blocked`] carrying
    /// `reason`, the item handed back. What is already queued stays (see
    /// [`purge`](Self::purge)) and is still served.
    ///
    /// # Panics
    ///
    /// If the queue already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, FairQueue, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// q.block("flood", BlockReason::Abuse);
    /// let err = q.try_push("flood", 1).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::Blocked { reason: BlockReason::Abuse });
    /// assert_eq!(err.into_inner(), 1);
    /// ```
    #[track_caller]
    pub fn block(&mut self, key: K, reason: BlockReason) {
        let idx = self
            .tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^31 tenants)");
        self.tenants.get_mut(idx).blocked = Some(reason);
    }

    /// Lifts a block. Returns the reason it had, if it was blocked.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, FairQueue};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// q.block("t", BlockReason::Billing);
    /// assert_eq!(q.unblock(&"t"), Some(BlockReason::Billing));
    /// assert!(q.try_push("t", 1).is_ok());
    /// ```
    pub fn unblock(&mut self, key: &K) -> Option<BlockReason> {
        let idx = self.tenants.find(key)?;
        let reason = self.tenants.get_mut(idx).blocked.take();
        self.tenants.release_if_idle(idx);
        reason
    }

    /// Why `key` is blocked, if it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, FairQueue};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// q.block("t", BlockReason::Code(7));
    /// assert_eq!(q.blocked(&"t"), Some(BlockReason::Code(7)));
    /// assert_eq!(q.blocked(&"u"), None);
    /// ```
    pub fn blocked(&self, key: &K) -> Option<BlockReason> {
        self.tenants
            .find(key)
            .and_then(|i| self.tenants.get(i).blocked)
    }

    /// Removes every item queued for `key` and hands them back in FIFO order (with several
    /// classes: class by class in class order, FIFO within each).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, FairQueue};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// for i in 0..3 { q.try_push("flood", i).unwrap(); }
    /// q.try_push("other", 9).unwrap();
    /// q.block("flood", BlockReason::Abuse); // stop new jobs, then delete the bad ones
    /// assert_eq!(q.purge(&"flood"), [0, 1, 2]);
    /// assert_eq!(q.pop(), Some(9));
    /// ```
    pub fn purge(&mut self, key: &K) -> Vec<T> {
        let Some(idx) = self.tenants.find(key) else {
            return Vec::new();
        };
        let (out, _) = self.purge_slot(idx);
        self.tenants.release_if_idle(idx);
        out
    }

    /// Keeps only the items of `key` for which `keep` returns `true`, handing back the others
    /// in FIFO order (with several classes: class by class in class order, FIFO within each).
    /// The kept items keep their order.
    ///
    /// # Panics
    ///
    /// If `keep` panics, the panic propagates and the queue is unchanged: every predicate call
    /// happens before anything is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// for i in 0..6 { q.try_push("acme", i).unwrap(); }
    /// let invalid = q.retain(&"acme", |job| job % 2 == 0);
    /// assert_eq!(invalid, [1, 3, 5]);
    /// assert_eq!(q.tenant_len(&"acme"), 3);
    /// ```
    pub fn retain(&mut self, key: &K, keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let Some(idx) = self.tenants.find(key) else {
            return Vec::new();
        };
        // Ask first, change after: a panicking predicate leaves everything in place.
        let (out, _) = self.retain_slot(idx, keep);
        self.tenants.release_if_idle(idx);
        out
    }

    /// Removes and yields every queued item in fair order, in-flight limits notwithstanding.
    /// Items not taken from the iterator stay queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("b", 2).unwrap();
    /// let all: Vec<u32> = q.drain().collect();
    /// assert_eq!(all, [1, 2]);
    /// assert!(q.is_empty());
    /// ```
    pub fn drain(&mut self) -> Drain<'_, K, T, S> {
        // Tenants parked at their in-flight limit rejoin the ring: draining serves everyone.
        // (A later pop parks them again when they reach the front.)
        for idx in self.tenants.backlogged() {
            self.relink_parked(idx);
        }
        Drain { queue: self }
    }

    /// Takes every queued item whose deadline ([`PushOptions::with_deadline`]) is at or before
    /// `now`, each as [`RejectReason::DeadlineExpired`]. The queue reads no clock, so a
    /// deadline takes effect only here; the [`Scheduler`](crate::Scheduler) calls this before
    /// every dispatch.
    ///
    /// # Performance
    ///
    /// O(log n) per expired item; O(1) when nothing is due.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{FairQueue, Nanos, PushOptions, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// q.try_push_with("a", 1, PushOptions::new().with_deadline(Nanos::from_secs(1))).unwrap();
    /// q.try_push("a", 2).unwrap();
    /// let expired = q.take_expired(Nanos::from_secs(1));
    /// assert_eq!(expired[0].reason(), RejectReason::DeadlineExpired { deadline: Nanos::from_secs(1) });
    /// assert_eq!(q.pop(), Some(2));
    /// ```
    pub fn take_expired(&mut self, now: Nanos) -> Vec<Rejected<T>> {
        let mut out = Vec::new();
        self.expire_due(now, &mut out, None);
        out
    }
}

/// Iterator returned by [`FairQueue::drain`]. Like std's `Drain`, dropping it removes (and
/// drops) whatever it did not yield, so the queue is empty afterwards either way.
///
/// # Examples
///
/// ```
/// let mut q: fairshare::FairQueue<u8, u8> = fairshare::FairQueue::new();
/// q.try_push(1, 1).unwrap();
/// q.try_push(2, 2).unwrap();
/// assert_eq!(q.drain().next(), Some(1));
/// assert!(q.is_empty()); // the rest went with the iterator
/// ```
#[derive(Debug)]
pub struct Drain<'a, K, T, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    queue: &'a mut FairQueue<K, T, S>,
}

impl<K, T, S> Drop for Drain<'_, K, T, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

impl<K, T, S> Iterator for Drain<'_, K, T, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let p = self.queue.pop_in_order(false, false)?;
        self.queue.counters.removed += 1;
        self.queue.tenants.release_if_idle(p.tenant);
        Some(p.item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.queue.len(), Some(self.queue.len()))
    }
}

#[cold]
fn full() -> RejectReason {
    RejectReason::QueueFull {
        capacity: u64::from(super::items::MAX_ITEMS),
    }
}
