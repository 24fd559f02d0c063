//! # Implementation details
//!
//! The tenant table: a slab of tenant slots indexed by `u32`, and a
//! `hashbrown::HashTable<(K, u32)>` from key to slot (the key beside the index, so a lookup
//! compares keys inside the table's bucket), plus a dense slot -> key array. A slot is
//! live while its tenant has queued or in-flight work or custom settings (a weight override, a
//! block, a pinned handle); the moment none is left the slot is freed, its generation bumped
//! (so stale [`TenantHandle`]s are detected) and its index reused. Order never depends on the
//! hash: the table only answers "which slot", never "in which order".

use super::flows::{ExtraFlow, Flow, HOME_UNSET};
use super::group_table::GROUP;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;

use hashbrown::HashTable;

use super::items::NIL;
use crate::error::BlockReason;

/// A tenant's identity inside one queue: push and query without hashing the key.
///
/// Get one with [`FairQueue::tenant`](crate::FairQueue::tenant), which pins the tenant (keeps its
/// slot, settings and counters even while it has nothing queued) until
/// [`FairQueue::release`](crate::FairQueue::release). A handle whose tenant has since been
/// forgotten is *stale*: calls with it are refused with
/// [`RejectReason::StaleHandle`](crate::RejectReason::StaleHandle) or return `None`/`false`,
/// never touch another tenant. A handle is only meaningful to the queue that made it.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
///
/// let mut q: FairQueue<&str, u32> = FairQueue::new();
/// let acme = q.tenant("acme");
/// q.try_push_to(acme, 1, fairshare::PushOptions::new()).unwrap();
/// assert_eq!(q.key(acme), Some(&"acme"));
/// assert_eq!(q.pop(), Some(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl TenantHandle {
    pub(crate) const fn from_parts(index: u32, generation: u32) -> Self {
        TenantHandle { index, generation }
    }
}

/// Lifetime counters of one tenant, kept while the tenant is known (see [`FairQueue::tenant`]
/// to keep them across idle periods).
///
/// [`FairQueue::tenant`]: crate::FairQueue::tenant
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<&str, u32> = FairQueue::new();
/// q.try_push("a", 1).unwrap();
/// q.try_push("a", 2).unwrap();
/// q.pop();
/// let c = q.tenant_counters(&"a").unwrap();
/// assert_eq!((c.pushed, c.dispatched, c.served_cost), (2, 1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TenantCounters {
    /// Items accepted into the queue.
    pub pushed: u64,
    /// Items refused (blocked, bad cost, capacity).
    pub rejected: u64,
    /// Items handed out by `pop` or `dispatch`.
    pub dispatched: u64,
    /// Cost handed out, corrected by the actual costs reported to `complete`.
    pub served_cost: u64,
}

/// Pinned by a handle (`FairQueue::tenant`).
pub(crate) const PINNED: u8 = 1;

/// State that a layer built on the queue keeps per tenant, inside the tenant's slot, so that
/// one lookup of the key finds both. The queue never reads it, except to keep the slot (and
/// so the state) while [`keeps_slot`](Attachment::keeps_slot) says so; a slot is forgotten
/// only once the tenant has nothing queued or in flight, no settings and an attachment that
/// lets it go. A fresh slot starts from `Default`.
///
/// The [`Scheduler`](crate::Scheduler) attaches each tenant's rate-limit state this way;
/// a plain [`FairQueue`](crate::FairQueue) attaches nothing (`()`).
///
/// # Examples
///
/// ```
/// use fairshare::queue::Attachment;
///
/// /// Remembers a tenant while it owes a callback.
/// #[derive(Debug, Default)]
/// struct Owed(bool);
///
/// impl Attachment for Owed {
///     fn keeps_slot(&self) -> bool {
///         self.0
///     }
/// }
/// assert!(!Owed::default().keeps_slot());
/// ```
pub trait Attachment: Default {
    /// Whether the tenant's slot must be kept although it is otherwise idle.
    fn keeps_slot(&self) -> bool;
}

impl Attachment for () {
    #[inline(always)]
    fn keeps_slot(&self) -> bool {
        false
    }
}

/// A tenant's slot. (Measured: the compiler's field order beats a hand-made cache-line
/// layout here; `#[repr(C, align(64))]` made push+pop 50% slower.)
#[derive(Debug)]
pub(crate) struct Tenant<A> {
    /// The flow in the home class.
    pub(crate) flow: Flow,
    /// The class whose flow is embedded (`HOME_UNSET`: the default class, still claimable).
    /// Work in one class, the common case, then never touches the side slab.
    pub(crate) home: u16,
    /// Cost queued over all classes.
    pub(crate) queued_cost: u64,
    /// Items queued over all classes.
    pub(crate) len: u32,
    pub(crate) in_flight: u32,
    /// In-flight limit (`u32::MAX`: none). A backlogged tenant at its limit is parked: its
    /// flows leave their rings until a completion frees a slot.
    pub(crate) max_in_flight: u32,
    pub(crate) weight: Option<NonZeroU32>,
    /// Bumped when the slot is freed, so stale handles are detected. A slot whose generation
    /// reaches `u32::MAX` is retired, never reused, so a generation never wraps and no live
    /// slot has generation `u32::MAX`.
    pub(crate) generation: u32,
    /// Flows with items queued: the tenant's quantum is split between them.
    pub(crate) active_flows: u16,
    pub(crate) flags: u8,
    pub(crate) counters: TenantCounters,
    /// Cost correction not yet applied, in deficit units: positive is debt (estimates were
    /// too low), repaid from later rounds; negative is credit, given back in later rounds and
    /// forfeited when the tenant has nothing queued. A tenant is remembered while it owes.
    pub(crate) carry: i64,
    /// First side flow (other classes), or `NIL`.
    pub(crate) extra: u32,
    /// Position in the over-share heap, or `NIL`.
    pub(crate) heap_pos: u32,
    pub(crate) blocked: Option<BlockReason>,
    /// The group's slot (`NIL`: in no group).
    pub(crate) group: u32,
    /// The layer above's state (see [`Attachment`]).
    pub(crate) attached: A,
}

impl<A: Attachment> Tenant<A> {
    pub(super) fn new(generation: u32) -> Self {
        Tenant {
            generation,
            flow: Flow::EMPTY,
            home: HOME_UNSET,
            len: 0,
            queued_cost: 0,
            extra: NIL,
            active_flows: 0,
            in_flight: 0,
            max_in_flight: u32::MAX,
            heap_pos: NIL,
            weight: None,
            blocked: None,
            group: NIL,
            flags: 0,
            counters: TenantCounters::default(),
            carry: 0,
            attached: A::default(),
        }
    }

    /// Whether nothing keeps this tenant's slot alive.
    #[inline(always)]
    pub(crate) fn is_idle(&self) -> bool {
        self.len == 0
            && self.in_flight == 0
            && self.flags == 0
            && self.weight.is_none()
            && self.blocked.is_none()
            && self.group == NIL
            && self.carry <= 0
            && !self.attached.keeps_slot()
    }
}

/// Key -> slot table plus the slot slab. The table holds each key beside its slot index, so
/// a lookup compares keys without touching any other memory (at a million tenants every extra
/// place touched is a cache miss). `keys` answers the reverse question (slot -> key) for
/// handles, iteration and removal; a slot is free exactly when its key there is `None`; free
/// slots are chained through their `next` field.
#[derive(Debug)]
pub(crate) struct Tenants<K, S, A> {
    pub(super) table: HashTable<(K, u32)>,
    pub(super) hasher: S,
    pub(super) keys: Vec<Option<K>>,
    pub(super) slots: Vec<Tenant<A>>,
    /// Free slot indexes, most recently freed last. After the slab shrinks it may hold
    /// indexes past the end, skipped when popped.
    pub(super) free: Vec<u32>,
    /// The generation a slot made past the current end starts at: above every generation a
    /// slot cut off by shrinking ever had, so no stale handle can name its successor.
    pub(super) next_generation: u32,
    /// Frees left before the next check whether the table can shrink.
    pub(super) shrink_countdown: u32,
    pub(super) live: u32,
    /// Flows in classes other than the default, and their free list.
    pub(super) extras: Vec<ExtraFlow>,
    pub(super) extras_free: u32,
}

impl<K, S, A: Attachment> Tenants<K, S, A> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Tenants {
            table: HashTable::new(),
            hasher,
            keys: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            shrink_countdown: 0,
            live: 0,
            extras: Vec::new(),
            extras_free: NIL,
        }
    }

    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    #[inline(always)]
    pub(crate) fn get(&self, idx: u32) -> &Tenant<A> {
        debug_assert!(
            self.keys[idx as usize].is_some(),
            "tenant slot {idx} is free"
        );
        &self.slots[idx as usize]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut Tenant<A> {
        debug_assert!(
            self.keys[idx as usize].is_some(),
            "tenant slot {idx} is free"
        );
        &mut self.slots[idx as usize]
    }

    /// Whether slot `idx` holds a tenant.
    #[inline]
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        self.keys.get(idx as usize).is_some_and(Option::is_some)
    }

    /// The key of live slot `idx`.
    #[inline]
    pub(crate) fn key(&self, idx: u32) -> &K {
        match &self.keys[idx as usize] {
            Some(k) => k,
            None => unreachable!("fairshare: tenant slot {idx} is free"),
        }
    }

    /// The live slot a handle names, if it is not stale. The generation alone decides: a
    /// freed slot's generation is one no handle was ever made with, and a retired slot's is
    /// `u32::MAX`, which no live slot has and which is refused here (so this reads one cache
    /// line, not two).
    #[inline(always)]
    pub(crate) fn resolve(&self, h: TenantHandle) -> Option<u32> {
        match self.slots.get(h.index as usize) {
            Some(t) if t.generation == h.generation && h.generation != u32::MAX => {
                debug_assert!(self.keys[h.index as usize].is_some());
                Some(h.index)
            }
            _ => None,
        }
    }

    #[inline(always)]
    pub(crate) fn handle(&self, idx: u32) -> TenantHandle {
        TenantHandle {
            index: idx,
            generation: self.slots[idx as usize].generation,
        }
    }

    /// Live slots in index order (deterministic; never hash order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &K, &Tenant<A>)> {
        self.keys
            .iter()
            .zip(&self.slots)
            .enumerate()
            .filter_map(|(i, (k, t))| k.as_ref().map(|k| (i as u32, k, t)))
    }

    /// The slots of tenants with items queued, in index order.
    pub(crate) fn backlogged(&self) -> Vec<u32> {
        self.iter()
            .filter(|(_, _, t)| t.len > 0)
            .map(|(i, _, _)| i)
            .collect()
    }

    /// Bytes held by the table, the keys and the slots (capacity, not length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<Option<K>>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.slots.capacity() * std::mem::size_of::<Tenant<A>>()
            + self.extras.capacity() * std::mem::size_of::<ExtraFlow>()
            + self.table.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
    }

    /// Bytes per known tenant: its slot, its key and its table entry (before load-factor
    /// slack).
    pub(crate) const fn slot_size() -> usize {
        std::mem::size_of::<Tenant<A>>()
            + std::mem::size_of::<Option<K>>()
            + std::mem::size_of::<(K, u32)>()
            + 1
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher, A: Attachment> Tenants<K, S, A> {
    #[inline(always)]
    pub(crate) fn find(&self, key: &K) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|&(_, i)| i)
    }

    /// The slot of `key`, creating a fresh tenant if it has none. Returns `None` only if the
    /// table holds 2^30 tenants.
    #[inline(always)]
    pub(crate) fn find_or_insert(&mut self, key: K) -> Option<u32> {
        let hash = self.hasher.hash_one(&key);
        if let Some(&(_, i)) = self.table.find(hash, |(k, _)| *k == key) {
            return Some(i);
        }
        self.insert_new(hash, key)
    }

    #[cold]
    pub(super) fn insert_new(&mut self, hash: u64, key: K) -> Option<u32> {
        // Everything that runs host code (the key's `Clone`, and its `Hash` when the table
        // grows) happens before the first change, so a panic there leaves the table as it
        // was: slots, keys and the free list stay aligned.
        let stored = key.clone();
        let hasher = &self.hasher;
        self.table.reserve(1, |(k, _)| hasher.hash_one(k));
        while self
            .free
            .last()
            .is_some_and(|&i| i as usize >= self.slots.len())
        {
            self.free.pop(); // cut off by shrinking
        }
        let idx = if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            *slot = Tenant::new(slot.generation);
            self.keys[idx as usize] = Some(stored);
            idx
        } else {
            // Below `GROUP`: flow ids tell slot indexes from side flows by the top bit and
            // from group flows by the next.
            let idx = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i < GROUP)?;
            self.slots.push(Tenant::new(self.next_generation));
            self.keys.push(Some(stored));
            idx
        };
        self.live += 1;
        // Room was reserved: no rehash, so no host code runs here.
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, idx), |(k, _)| hasher.hash_one(k));
        Some(idx)
    }

    /// Frees the slot if nothing keeps it alive. Returns whether it was freed.
    #[inline(always)]
    pub(crate) fn release_if_idle(&mut self, idx: u32) -> bool {
        if !self.get(idx).is_idle() {
            return false;
        }
        self.remove(idx)
    }

    #[cold]
    pub(super) fn remove(&mut self, idx: u32) -> bool {
        // Forgetting runs inside a pop, a completion or a purge that has already taken items
        // out to hand back: a host `Hash` that panics here must not unwind through them and
        // drop them. The tenant is kept instead (still consistent, forgotten on a later try).
        let key = self.key(idx);
        let hasher = &self.hasher;
        let Ok(hash) = std::panic::catch_unwind(AssertUnwindSafe(|| hasher.hash_one(key))) else {
            return false;
        };
        if let Ok(entry) = self.table.find_entry(hash, |(_, i)| *i == idx) {
            entry.remove();
        }
        self.keys[idx as usize] = None;
        // The side flows go with the tenant (any debt they carried is forgotten with it).
        let mut e = std::mem::replace(&mut self.slots[idx as usize].extra, NIL);
        while e != NIL {
            let next = self.extras[e as usize].chain;
            self.free_extra(e);
            e = next;
        }
        let slot = &mut self.slots[idx as usize];
        self.live -= 1;
        // Live generations are below `u32::MAX`; the bump makes every handle to this tenant
        // stale.
        slot.generation += 1;
        if slot.generation == u32::MAX {
            // Retired: reusing it would let a stale handle alias a new tenant. Costs one
            // slot per 2^32 - 1 reuses of the same index.
            return true;
        }
        self.free.push(idx);
        self.maybe_shrink();
        true
    }

    /// Gives memory back after a spike of tenants (amortised, with hysteresis): once no
    /// tenant is left, or every so many frees while fewer than a quarter of the slots are
    /// live, the free slots at the end of the slab are cut off and the table, the slab and
    /// the free list are shrunk to twice what is live. A steady churn of tenants never
    /// shrinks and regrows: shrinking waits until three quarters of the slots are free.
    #[inline]
    fn maybe_shrink(&mut self) {
        self.shrink_countdown = self.shrink_countdown.saturating_sub(1);
        let sparse = (self.live as usize) * 4 < self.slots.len();
        if self.slots.len() >= 64 && sparse && (self.live == 0 || self.shrink_countdown == 0) {
            self.shrink();
        }
    }

    #[cold]
    fn shrink(&mut self) {
        let mut end = self.slots.len();
        while end > 0 && self.keys[end - 1].is_none() {
            let generation = self.slots[end - 1].generation;
            if generation >= u32::MAX - 1 {
                break; // retired, or its successor would be: keep it
            }
            self.next_generation = self.next_generation.max(generation + 1);
            end -= 1;
        }
        self.slots.truncate(end);
        self.keys.truncate(end);
        let live = self.live as usize;
        self.free.retain(|&i| (i as usize) < end);
        self.slots.shrink_to(2 * live);
        self.keys.shrink_to(2 * live);
        self.free.shrink_to(2 * live);
        if self.table.capacity() > 4 * live.max(16) {
            let hasher = &self.hasher;
            self.table.shrink_to(2 * live, |(k, _)| hasher.hash_one(k));
        }
        // Check again after another half of what is left has been freed.
        self.shrink_countdown = u32::try_from(end / 2).unwrap_or(u32::MAX).max(32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Tenants<u32, std::hash::RandomState, ()>;

    #[test]
    fn a_freed_slot_is_reused_and_old_handles_go_stale() {
        let mut t = T::with_hasher(std::hash::RandomState::new());
        let a = t.find_or_insert(1).unwrap();
        let old = t.handle(a);
        assert_eq!(t.resolve(old), Some(a));
        assert!(t.release_if_idle(a));
        assert_eq!(t.resolve(old), None, "freed: stale");
        let b = t.find_or_insert(2).unwrap();
        assert_eq!(b, a, "the slot is reused");
        assert_eq!(
            t.resolve(old),
            None,
            "reused by another tenant: still stale"
        );
        assert_eq!(t.resolve(t.handle(b)), Some(b));
    }

    #[test]
    fn a_slot_whose_generation_runs_out_is_retired() {
        let mut t = T::with_hasher(std::hash::RandomState::new());
        let a = t.find_or_insert(1).unwrap();
        t.slots[a as usize].generation = u32::MAX - 1;
        let last = t.handle(a);
        assert!(t.release_if_idle(a));
        assert_eq!(t.slots[a as usize].generation, u32::MAX);
        assert_eq!(t.resolve(last), None);
        // Never handed out again, and no handle can name it.
        let b = t.find_or_insert(2).unwrap();
        assert_ne!(b, a);
        assert_eq!(t.resolve(TenantHandle::from_parts(a, u32::MAX)), None);
        assert_eq!(t.live(), 1);
    }
}
