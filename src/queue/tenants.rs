//! # Implementation details
//!
//! The tenant table: a slab of tenant slots indexed by `u32`, and a
//! `hashbrown::HashTable<(K, u32)>` from key to slot (the key beside the index, so a lookup
//! compares keys inside the table's bucket), plus a dense slot -> key array. A slot is
//! live while its tenant has queued or in-flight work or custom settings (a weight override, a
//! block, a pinned handle); the moment none is left the slot is freed, its generation bumped
//! (so stale [`TenantHandle`]s are detected) and its index reused. Order never depends on the
//! hash: the table only answers "which slot", never "in which order".

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

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

/// One FIFO of a tenant inside one class, with its place on that class's DRR ring.
///
/// One flow per tenant is embedded in its slot: the flow of its *home* class
/// ([`Tenant::home`]). Flows in other classes live in [`Tenants`]' side slab, chained from the
/// slot, and are freed with it. A *flow id* is the tenant's slot index for the embedded flow,
/// and [`EXTRA`] `|` the side-slab index otherwise, so the id alone says where a flow lives.
/// With one class the home class is always the default class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flow {
    /// DRR deficit: positive = may be served now; carried debt while idle is <= 0.
    pub(crate) deficit: i64,
    /// FIFO of item nodes.
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: u32,
    /// Ring links (valid while on the ring).
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Flow {
    const EMPTY: Flow = Flow {
        deficit: 0,
        head: NIL,
        tail: NIL,
        len: 0,
        prev: NIL,
        next: NIL,
    };

    /// Whether the flow is on its class's DRR ring.
    #[inline(always)]
    pub(crate) fn in_ring(&self) -> bool {
        self.next != NIL
    }
}

/// Flow ids with this bit set name a flow in the side slab.
pub(crate) const EXTRA: u32 = 1 << 31;

/// A flow outside the tenant's home class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtraFlow {
    pub(crate) flow: Flow,
    pub(crate) tenant: u32,
    pub(crate) class: u16,
    /// The tenant's next side flow, or the next free entry, or `NIL`.
    pub(crate) chain: u32,
}

/// `Tenant::home` of a slot whose embedded flow no class has claimed yet: it counts as the
/// default class's until a push to another class claims it (see [`Tenants::flow_or_insert`]).
pub(crate) const HOME_UNSET: u16 = u16::MAX;

/// A tenant's slot. (Measured: the compiler's field order beats a hand-made cache-line
/// layout here; `#[repr(C, align(64))]` made push+pop 50% slower.)
#[derive(Debug)]
pub(crate) struct Tenant<A> {
    /// The flow in the home class (its `next` also chains free slots).
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
    /// First side flow (other classes), or `NIL`.
    pub(crate) extra: u32,
    /// Position in the over-share heap, or `NIL`.
    pub(crate) heap_pos: u32,
    pub(crate) blocked: Option<BlockReason>,
    /// The layer above's state (see [`Attachment`]).
    pub(crate) attached: A,
}

impl<A: Attachment> Tenant<A> {
    fn new(generation: u32) -> Self {
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
            flags: 0,
            counters: TenantCounters::default(),
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
    table: HashTable<(K, u32)>,
    hasher: S,
    keys: Vec<Option<K>>,
    slots: Vec<Tenant<A>>,
    free: u32,
    live: u32,
    /// Flows in classes other than the default, and their free list.
    extras: Vec<ExtraFlow>,
    extras_free: u32,
}

impl<K, S, A: Attachment> Tenants<K, S, A> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Tenants {
            table: HashTable::new(),
            hasher,
            keys: Vec::new(),
            slots: Vec::new(),
            free: NIL,
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

    /// Flow `fid` (see [`Flow`]).
    #[inline(always)]
    pub(crate) fn flow(&self, fid: u32) -> &Flow {
        if fid & EXTRA == 0 {
            &self.slots[fid as usize].flow
        } else {
            &self.extras[(fid & !EXTRA) as usize].flow
        }
    }

    #[inline(always)]
    pub(crate) fn flow_mut(&mut self, fid: u32) -> &mut Flow {
        if fid & EXTRA == 0 {
            &mut self.slots[fid as usize].flow
        } else {
            &mut self.extras[(fid & !EXTRA) as usize].flow
        }
    }

    /// The side entry of tenant `idx` for `class`, if any.
    #[inline(always)]
    fn find_extra(&self, idx: u32, class: u16) -> Option<u32> {
        let mut e = self.slots[idx as usize].extra;
        while e != NIL {
            let x = &self.extras[e as usize];
            if x.class == class {
                return Some(e);
            }
            e = x.chain;
        }
        None
    }

    #[cold]
    fn insert_extra(&mut self, idx: u32, class: u16) -> u32 {
        let entry = ExtraFlow {
            flow: Flow::EMPTY,
            tenant: idx,
            class,
            chain: self.slots[idx as usize].extra,
        };
        let e = if self.extras_free != NIL {
            let e = self.extras_free;
            self.extras_free = self.extras[e as usize].chain;
            self.extras[e as usize] = entry;
            e
        } else {
            self.extras.push(entry);
            (self.extras.len() - 1) as u32
        };
        self.slots[idx as usize].extra = e;
        e
    }

    /// Tenant `idx` and its flow `fid` at once: `None` when the flow is the embedded one
    /// (`fid == idx`: use `tenant.flow`), so hot paths index the slab once. With `ONE` (the
    /// queue has one class, whose flows are all embedded) the test folds away.
    #[inline(always)]
    pub(crate) fn tenant_and_flow<const ONE: bool>(
        &mut self,
        idx: u32,
        fid: u32,
    ) -> (&mut Tenant<A>, Option<&mut Flow>) {
        let t = &mut self.slots[idx as usize];
        if ONE || fid & EXTRA == 0 {
            debug_assert_eq!(fid, idx);
            (t, None)
        } else {
            (t, Some(&mut self.extras[(fid & !EXTRA) as usize].flow))
        }
    }

    /// The class whose flow is embedded in slot `idx`.
    #[inline(always)]
    pub(crate) fn home(&self, idx: u32) -> u16 {
        match self.slots[idx as usize].home {
            HOME_UNSET => 0,
            c => c,
        }
    }

    /// The tenant slot and class of flow `fid`.
    #[inline(always)]
    pub(crate) fn flow_owner(&self, fid: u32) -> (u32, u16) {
        if fid & EXTRA == 0 {
            (fid, self.home(fid))
        } else {
            let e = &self.extras[(fid & !EXTRA) as usize];
            (e.tenant, e.class)
        }
    }

    /// Tenant `idx`'s flow in `class`, if it has one.
    #[inline(always)]
    pub(crate) fn find_flow(&self, idx: u32, class: u16) -> Option<u32> {
        if self.home(idx) == class {
            return Some(idx);
        }
        self.find_extra(idx, class).map(|e| e | EXTRA)
    }

    /// Tenant `idx`'s flow in `class`, made if it has none. The first class to ask for a
    /// flow of a slot whose embedded flow is unclaimed and pristine (nothing queued, no
    /// carried debt, and nothing in flight that a completion would charge to it) claims it,
    /// unless it already has a side flow with state.
    #[inline(always)]
    pub(crate) fn flow_or_insert(&mut self, idx: u32, class: u16) -> u32 {
        let t = &self.slots[idx as usize];
        if t.home == class || (class == 0 && t.home == HOME_UNSET) {
            return idx;
        }
        self.flow_or_insert_slow(idx, class)
    }

    #[inline(never)]
    fn flow_or_insert_slow(&mut self, idx: u32, class: u16) -> u32 {
        let existing = self.find_extra(idx, class);
        let t = &self.slots[idx as usize];
        let f = &t.flow;
        let pristine = |f: &Flow| f.len == 0 && f.deficit == 0 && !f.in_ring();
        if t.home == HOME_UNSET
            && t.in_flight == 0
            && pristine(f)
            && existing.is_none_or(|e| pristine(&self.extras[e as usize].flow))
        {
            self.slots[idx as usize].home = class;
            return idx;
        }
        match existing {
            Some(e) => e | EXTRA,
            None => self.insert_extra(idx, class) | EXTRA,
        }
    }

    /// Every flow of tenant `idx`: the embedded one first, then the side entries (newest
    /// first; a side entry of the home class, left from before the home was claimed, is always
    /// empty).
    pub(crate) fn flows_of(&self, idx: u32) -> impl Iterator<Item = u32> + '_ {
        let mut e = self.slots[idx as usize].extra;
        std::iter::once(idx).chain(std::iter::from_fn(move || {
            if e == NIL {
                return None;
            }
            let fid = e | EXTRA;
            e = self.extras[e as usize].chain;
            Some(fid)
        }))
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
    /// table holds 2^31 tenants.
    #[inline(always)]
    pub(crate) fn find_or_insert(&mut self, key: K) -> Option<u32> {
        let hash = self.hasher.hash_one(&key);
        if let Some(&(_, i)) = self.table.find(hash, |(k, _)| *k == key) {
            return Some(i);
        }
        self.insert_new(hash, key)
    }

    #[cold]
    fn insert_new(&mut self, hash: u64, key: K) -> Option<u32> {
        let idx = if self.free != NIL {
            let idx = self.free;
            let slot = &mut self.slots[idx as usize];
            self.free = slot.flow.next;
            *slot = Tenant::new(slot.generation);
            self.keys[idx as usize] = Some(key.clone());
            idx
        } else {
            // Below `EXTRA`: flow ids tell slot indexes from side flows by the top bit.
            let idx = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i < EXTRA)?;
            self.slots.push(Tenant::new(0));
            self.keys.push(Some(key.clone()));
            idx
        };
        self.live += 1;
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, idx), |(k, _)| hasher.hash_one(k));
        Some(idx)
    }

    /// Frees every tenant's side entries of classes `classes` and above: the classes a
    /// shorter class list removed. Their flows are empty (a class with work cannot be
    /// removed), so only carried debt goes, which a class added later at
    /// the same index must not inherit. An embedded flow of a removed class is cleared and
    /// the tenant's default-class flow moved into the slot: returned as `(slot, old flow id)`
    /// pairs, for the caller to fix the ring and deadline entries that name the old id.
    /// O(tenants + side entries); only on a change of classes.
    pub(crate) fn drop_classes_from(&mut self, classes: u16) -> Vec<(u32, u32)> {
        let mut moved = Vec::new();
        for idx in 0..self.slots.len() {
            if self.keys[idx].is_none() {
                continue;
            }
            let home = self.slots[idx].home;
            if home != HOME_UNSET && home >= classes {
                let t = &mut self.slots[idx];
                debug_assert!(t.flow.len == 0 && !t.flow.in_ring());
                t.flow = Flow::EMPTY;
                t.home = HOME_UNSET;
                if let Some(e) = self.find_extra(idx as u32, 0) {
                    let flow = std::mem::replace(&mut self.extras[e as usize].flow, Flow::EMPTY);
                    self.slots[idx].flow = flow;
                    moved.push((idx as u32, e | EXTRA));
                }
            }
            // Walk the chain through the link that points at each entry, unlinking as we go.
            let mut link = self.slots[idx].extra;
            let mut prev = NIL;
            while link != NIL {
                let entry = self.extras[link as usize];
                if entry.class >= classes {
                    debug_assert!(entry.flow.len == 0 && !entry.flow.in_ring());
                    if prev == NIL {
                        self.slots[idx].extra = entry.chain;
                    } else {
                        self.extras[prev as usize].chain = entry.chain;
                    }
                    self.free_extra(link);
                } else {
                    prev = link;
                }
                link = entry.chain;
            }
        }
        moved
    }

    /// Puts side entry `e`, already unlinked from its tenant's chain, on the free list.
    fn free_extra(&mut self, e: u32) {
        self.extras[e as usize].chain = self.extras_free;
        self.extras_free = e;
    }

    /// Frees the slot if nothing keeps it alive. Returns whether it was freed.
    #[inline(always)]
    pub(crate) fn release_if_idle(&mut self, idx: u32) -> bool {
        if !self.get(idx).is_idle() {
            return false;
        }
        self.remove(idx);
        true
    }

    #[cold]
    fn remove(&mut self, idx: u32) {
        let hash = self.hasher.hash_one(self.key(idx));
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
            return;
        }
        slot.flow.next = self.free;
        self.free = idx;
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
