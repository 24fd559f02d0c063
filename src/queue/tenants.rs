//! # Implementation details
//!
//! The tenant table: a slab of tenant slots indexed by `u32`, each holding its tenant's key,
//! and a `hashbrown::HashTable<u32>` of slot indexes. A lookup compares the key in the slot it
//! is about to use anyway, so the key is stored once and a table entry costs 5 bytes. A slot is
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
/// Blocked: the reason is in [`Tenants::rare`]. Keeps the slot, as a pin does.
pub(crate) const BLOCKED: u8 = 2;
/// Has an entry in [`Tenants::rare`] (a block or refusals). Does not keep the slot.
pub(crate) const RARE: u8 = 4;
/// The flags that keep a slot although it is otherwise idle.
const KEEPS: u8 = PINNED | BLOCKED;

/// What few tenants have, kept beside the table rather than in every slot: a block, and a
/// count of refusals.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rare {
    pub(crate) blocked: Option<BlockReason>,
    pub(crate) rejected: u64,
}

/// The lifetime counters every push and dispatch writes, in the slot. (Refusals are counted
/// in [`Rare`].)
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SlotCounters {
    pub(crate) pushed: u64,
    pub(crate) dispatched: u64,
    pub(crate) served_cost: u64,
}

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
pub(crate) struct Tenant<K, A> {
    /// The tenant's key. A freed slot keeps its last key until the slot is reused or cut off
    /// by shrinking (no `K` can be made to replace it); `live` says which it is.
    pub(crate) key: K,
    /// Whether the slot holds a tenant (false: on the free list, or retired).
    pub(crate) live: bool,
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
    /// [`PINNED`], [`BLOCKED`], [`RARE`].
    pub(crate) flags: u8,
    pub(crate) counters: SlotCounters,
    /// Cost correction not yet applied, in deficit units: positive is debt (estimates were
    /// too low), repaid from later rounds; negative is credit, given back in later rounds and
    /// forfeited when the tenant has nothing queued. A tenant is remembered while it owes.
    pub(crate) carry: i64,
    /// First side flow (other classes), or `NIL`.
    pub(crate) extra: u32,
    /// The group's slot (`NIL`: in no group).
    pub(crate) group: u32,
    /// The layer above's state (see [`Attachment`]).
    pub(crate) attached: A,
}

impl<K, A: Attachment> Tenant<K, A> {
    pub(super) fn new(key: K, generation: u32) -> Self {
        Tenant {
            key,
            live: true,
            generation,
            flow: Flow::EMPTY,
            home: HOME_UNSET,
            len: 0,
            queued_cost: 0,
            extra: NIL,
            active_flows: 0,
            in_flight: 0,
            max_in_flight: u32::MAX,
            weight: None,
            group: NIL,
            flags: 0,
            counters: SlotCounters::default(),
            carry: 0,
            attached: A::default(),
        }
    }

    /// Whether nothing keeps this tenant's slot alive.
    #[inline(always)]
    pub(crate) fn is_idle(&self) -> bool {
        self.len == 0
            && self.in_flight == 0
            && self.flags & KEEPS == 0
            && self.weight.is_none()
            && self.group == NIL
            && self.carry <= 0
            && !self.attached.keeps_slot()
    }

    /// Whether the tenant is blocked (its reason: [`Tenants::blocked`]).
    #[inline(always)]
    pub(crate) fn is_blocked(&self) -> bool {
        self.flags & BLOCKED != 0
    }
}

/// Key -> slot table plus the slot slab. The table holds slot indexes only: a lookup compares
/// the key inside the slot, whose line the caller touches next anyway (at a million tenants
/// every extra place touched is a cache miss, and a table of 4-byte entries misses less than
/// one of keys). The slot's key answers the reverse question (slot -> key) for handles,
/// iteration and removal.
#[derive(Debug)]
pub(crate) struct Tenants<K, S, A> {
    pub(super) table: HashTable<u32>,
    pub(super) hasher: S,
    pub(super) slots: Vec<Tenant<K, A>>,
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
    /// The [`Rare`] state of the slots flagged [`RARE`], by slot.
    pub(super) rare: hashbrown::HashMap<u32, Rare, foldhash::fast::FixedState>,
}

impl<K, S, A: Attachment> Tenants<K, S, A> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Tenants {
            table: HashTable::new(),
            hasher,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            shrink_countdown: 0,
            live: 0,
            extras: Vec::new(),
            extras_free: NIL,
            rare: hashbrown::HashMap::default(),
        }
    }

    /// Why live slot `idx` is blocked, if it is.
    #[inline]
    pub(crate) fn blocked(&self, idx: u32) -> Option<BlockReason> {
        if !self.get(idx).is_blocked() {
            return None;
        }
        self.rare.get(&idx).and_then(|r| r.blocked)
    }

    /// Blocks live slot `idx` (`Some`) or lifts its block (`None`). Returns the reason it had.
    pub(crate) fn set_blocked(
        &mut self,
        idx: u32,
        reason: Option<BlockReason>,
    ) -> Option<BlockReason> {
        let old = self.blocked(idx);
        if reason.is_none() && old.is_none() {
            return None;
        }
        let t = self.get_mut(idx);
        match reason {
            Some(_) => t.flags |= BLOCKED | RARE,
            None => t.flags &= !BLOCKED,
        }
        self.rare.entry(idx).or_default().blocked = reason;
        old
    }

    /// Counts a refusal of live slot `idx`.
    #[cold]
    pub(crate) fn count_rejected(&mut self, idx: u32) {
        self.get_mut(idx).flags |= RARE;
        self.rare.entry(idx).or_default().rejected += 1;
    }

    /// The lifetime counters of live slot `idx`.
    pub(crate) fn counters(&self, idx: u32) -> TenantCounters {
        let t = self.get(idx);
        let rejected = if t.flags & RARE == 0 {
            0
        } else {
            self.rare.get(&idx).map_or(0, |r| r.rejected)
        };
        TenantCounters {
            pushed: t.counters.pushed,
            rejected,
            dispatched: t.counters.dispatched,
            served_cost: t.counters.served_cost,
        }
    }

    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    #[inline(always)]
    pub(crate) fn get(&self, idx: u32) -> &Tenant<K, A> {
        let t = &self.slots[idx as usize];
        debug_assert!(t.live, "tenant slot {idx} is free");
        t
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut Tenant<K, A> {
        let t = &mut self.slots[idx as usize];
        debug_assert!(t.live, "tenant slot {idx} is free");
        t
    }

    /// Whether slot `idx` holds a tenant.
    #[inline]
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        self.slots.get(idx as usize).is_some_and(|t| t.live)
    }

    /// The key of live slot `idx`.
    #[inline]
    pub(crate) fn key(&self, idx: u32) -> &K {
        let t = &self.slots[idx as usize];
        assert!(t.live, "fairshare: tenant slot {idx} is free");
        &t.key
    }

    /// The live slot a handle names, if it is not stale. The generation alone decides: a
    /// freed slot's generation is one no handle was ever made with, and a retired slot's is
    /// `u32::MAX`, which no live slot has and which is refused here (so this reads one cache
    /// line, not two).
    #[inline(always)]
    pub(crate) fn resolve(&self, h: TenantHandle) -> Option<u32> {
        match self.slots.get(h.index as usize) {
            Some(t) if t.generation == h.generation && h.generation != u32::MAX => {
                debug_assert!(t.live);
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
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &K, &Tenant<K, A>)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, t)| t.live)
            .map(|(i, t)| (i as u32, &t.key, t))
    }

    /// The slots of tenants with items queued, in index order.
    pub(crate) fn backlogged(&self) -> Vec<u32> {
        self.iter()
            .filter(|(_, _, t)| t.len > 0)
            .map(|(i, _, _)| i)
            .collect()
    }

    /// Bytes held by the table and the slots (capacity, not length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.free.capacity() * std::mem::size_of::<u32>()
            + self.slots.capacity() * std::mem::size_of::<Tenant<K, A>>()
            + self.extras.capacity() * std::mem::size_of::<ExtraFlow>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.rare.capacity() * (std::mem::size_of::<(u32, Rare)>() + 1)
    }

    /// Bytes per known tenant: its slot (its key included) and its table entry (before
    /// load-factor slack).
    pub(crate) const fn slot_size() -> usize {
        std::mem::size_of::<Tenant<K, A>>() + std::mem::size_of::<u32>() + 1
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher, A: Attachment> Tenants<K, S, A> {
    #[inline(always)]
    pub(crate) fn find(&self, key: &K) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(key), key)
    }

    /// The slot of `key`, whose hash is `hash`.
    #[inline(always)]
    pub(crate) fn find_hashed(&self, hash: u64, key: &K) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i as usize].key == *key)
            .copied()
    }

    /// The slot of `key`, creating a fresh tenant if it has none. Returns `None` only if the
    /// table holds 2^30 tenants.
    #[inline(always)]
    pub(crate) fn find_or_insert(&mut self, key: K) -> Option<u32> {
        let hash = self.hasher.hash_one(&key);
        if let Some(i) = self.find_hashed(hash, &key) {
            return Some(i);
        }
        self.insert_new(hash, key)
    }

    #[cold]
    pub(super) fn insert_new(&mut self, hash: u64, key: K) -> Option<u32> {
        // Everything that runs host code (the keys' `Hash` when the table grows) happens
        // before the first change, so a panic there leaves the table as it was: slots and
        // the free list stay aligned.
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.table
            .reserve(1, |&i| hasher.hash_one(&slots[i as usize].key));
        while self
            .free
            .last()
            .is_some_and(|&i| i as usize >= self.slots.len())
        {
            self.free.pop(); // cut off by shrinking
        }
        let idx = if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            *slot = Tenant::new(key, slot.generation);
            idx
        } else {
            // Below `GROUP`: flow ids tell slot indexes from side flows by the top bit and
            // from group flows by the next.
            let idx = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i < GROUP)?;
            self.slots.push(Tenant::new(key, self.next_generation));
            idx
        };
        self.live += 1;
        // Room was reserved: no rehash, so no host code runs here.
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.table
            .insert_unique(hash, idx, |&i| hasher.hash_one(&slots[i as usize].key));
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
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        let slot = &mut self.slots[idx as usize];
        slot.live = false;
        if slot.flags & RARE != 0 {
            slot.flags = 0;
            self.rare.remove(&idx);
        }
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
        while end > 0 && !self.slots[end - 1].live {
            let generation = self.slots[end - 1].generation;
            if generation >= u32::MAX - 1 {
                break; // retired, or its successor would be: keep it
            }
            self.next_generation = self.next_generation.max(generation + 1);
            end -= 1;
        }
        self.slots.truncate(end);
        let live = self.live as usize;
        self.free.retain(|&i| (i as usize) < end);
        self.slots.shrink_to(2 * live);
        self.free.shrink_to(2 * live);
        if self.table.capacity() > 4 * live.max(16) {
            // Only live slots are named, and none was cut off.
            let (hasher, slots) = (&self.hasher, &self.slots);
            self.table
                .shrink_to(2 * live, |&i| hasher.hash_one(&slots[i as usize].key));
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
    fn a_block_and_refusals_go_with_the_slot_and_never_reach_its_next_tenant() {
        let mut t = T::with_hasher(std::hash::RandomState::new());
        let a = t.find_or_insert(1).unwrap();
        t.set_blocked(a, Some(BlockReason::Abuse));
        t.count_rejected(a);
        t.count_rejected(a);
        assert_eq!(t.blocked(a), Some(BlockReason::Abuse));
        assert_eq!(t.counters(a).rejected, 2);
        assert!(!t.release_if_idle(a), "a block keeps the slot");
        assert_eq!(t.set_blocked(a, None), Some(BlockReason::Abuse));
        assert_eq!(
            t.counters(a).rejected,
            2,
            "lifting the block keeps the count"
        );
        assert!(t.release_if_idle(a), "refusals alone do not keep the slot");
        assert!(t.rare.is_empty(), "the side entry went with the slot");
        let b = t.find_or_insert(2).unwrap();
        assert_eq!(b, a, "the slot is reused");
        assert_eq!((t.blocked(b), t.counters(b).rejected), (None, 0));
        // Lifting a block that is not there makes no side entry.
        assert_eq!(t.set_blocked(b, None), None);
        assert!(t.rare.is_empty());
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
