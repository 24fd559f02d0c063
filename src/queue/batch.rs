//! # Implementation details
//!
//! Batch calls: many pushes, pops or dispatches in one call, each with exactly the outcome of
//! the single call it replaces.
//!
//! A push by key at a million tenants waits for two cache misses before it can do anything:
//! the table's bucket for the key, then the tenant's slot. One push after another, each waits
//! out its own misses. A batch push is split into phases over a chunk of [`CHUNK`] items:
//!
//! 1. hash every key and find its slot index in the table (independent loads the CPU keeps in
//!    flight together),
//! 2. read every found slot's generation (independent loads again, which bring the slots in),
//! 3. push the items in order, each one exactly as [`FairQueue::push_slot`] does.
//!
//! Phase 3 trusts an index from phase 1 only while the slot's generation is the one phase 2
//! read: a slot freed in between (a refused push letting a fresh tenant go, an eviction, the
//! scheduler's sweep of recovered tenants) has a new generation, and the key is then looked up
//! again, as the single call would. A key phase 1 did not find is looked up (and inserted) in
//! phase 3, so a batch that names a new tenant twice creates it once.

use super::fair_queue::*;
use super::items::NIL;
use super::tenants::{Attachment, TenantHandle};
use crate::error::Rejected;
use crate::push::PushOptions;
use std::hash::{BuildHasher, Hash};

/// Items whose lookups run ahead of their pushes. Enough to keep the CPU's misses in flight
/// (it holds a few dozen); small enough that the chunk's keys and slots stay in L1.
pub(crate) const CHUNK: usize = 32;

/// The lookups of one chunk, made by [`FairQueue::look_up`]: each key's hash and the slot it
/// had then (index `NIL`: not found).
#[derive(Debug)]
pub(crate) struct Lookups {
    hashes: [u64; CHUNK],
    slots: [TenantHandle; CHUNK],
}

impl Lookups {
    pub(crate) const fn new() -> Self {
        Lookups {
            hashes: [0; CHUNK],
            slots: [TenantHandle::from_parts(NIL, 0); CHUNK],
        }
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Phases 1 and 2 for up to [`CHUNK`] keys: hashes them, finds their slots and reads each
    /// found slot's generation. Changes nothing.
    #[inline(always)]
    pub(crate) fn look_up<'k>(&self, keys: impl Iterator<Item = &'k K>, out: &mut Lookups)
    where
        K: 'k,
    {
        let tenants = &self.tenants;
        let mut n = 0;
        for (i, key) in keys.take(CHUNK).enumerate() {
            let hash = tenants.hasher.hash_one(key);
            out.hashes[i] = hash;
            out.slots[i].index = tenants.find_hashed(hash, key).unwrap_or(NIL);
            n = i + 1;
        }
        let mut touched = 0;
        for h in &mut out.slots[..n] {
            if h.index != NIL {
                let t = &tenants.slots[h.index as usize];
                h.generation = t.generation;
                // The node the push will link the item behind: loaded now, its line is in
                // the cache when the push writes it. (A store that misses holds up every
                // store behind it; a load that misses holds up nothing.)
                if t.flow.tail != NIL {
                    touched ^= self.items.next(t.flow.tail);
                }
            }
        }
        // Keeps the loads above, whose values nothing else uses.
        std::hint::black_box(touched);
    }

    /// Phase 3's slot for item `i` of the chunk, whose key is `key`: the slot phase 1 found
    /// if it still holds the same tenant, otherwise the key's slot now, made if it has none
    /// (`None` only when the table holds 2^31 tenants), exactly as
    /// [`slot_of`](Self::slot_of) answers.
    #[inline(always)]
    pub(crate) fn looked_up_slot(&mut self, lookups: &Lookups, i: usize, key: K) -> Option<u32> {
        let h = lookups.slots[i];
        if h.index != NIL && self.tenants.slots[h.index as usize].generation == h.generation {
            debug_assert!(self.tenants.key(h.index) == &key);
            return Some(h.index);
        }
        let hash = lookups.hashes[i];
        if let Some(idx) = self.tenants.find_hashed(hash, &key) {
            return Some(idx);
        }
        self.tenants.insert_new(hash, key)
    }

    /// Queues a batch of items, each for its tenant key with its [`PushOptions`]; one result
    /// per item, in order.
    ///
    /// Each item is refused or queued exactly as [`try_push_with`](Self::try_push_with)
    /// would, one after another in the batch's order (an item sees the pushes of the items
    /// before it), and the accepted items are queued in that order.
    ///
    /// # Errors
    ///
    /// Each refused item comes back inside its [`Rejected`], for the reasons and in the order
    /// of [`try_push_with`](Self::try_push_with).
    ///
    /// # Performance
    ///
    /// One hash of each key, as the single call. The batch is taken in chunks of 32 items:
    /// the chunk's keys are all looked up, then their tenants' slots read, before the first
    /// of them is pushed, so the cache misses of many tenants overlap instead of being
    /// waited out one push at a time (the gain shows with many tenants, once the tenant table
    /// is out of the cache). Allocates the result vector, and a buffer of one chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{FairQueue, PushOptions, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// let results = q.try_push_batch([
    ///     ("acme", 1, PushOptions::new()),
    ///     ("globex", 2, PushOptions::new().with_cost(0)),
    ///     ("acme", 3, PushOptions::new().with_cost(5)),
    /// ]);
    /// assert!(results[0].is_ok() && results[2].is_ok());
    /// let refused = results.into_iter().nth(1).unwrap().unwrap_err();
    /// assert_eq!(refused.reason(), RejectReason::ZeroCost);
    /// assert_eq!(refused.into_inner(), 2); // nothing is lost
    /// assert_eq!(q.tenant_queued_cost(&"acme"), 6);
    /// ```
    pub fn try_push_batch<I>(&mut self, items: I) -> Vec<Result<(), Rejected<T>>>
    where
        I: IntoIterator<Item = (K, T, PushOptions)>,
    {
        let mut items = items.into_iter();
        let mut out = Vec::with_capacity(items.size_hint().0);
        let mut chunk: Vec<(K, T, PushOptions)> =
            Vec::with_capacity(items.size_hint().0.clamp(1, CHUNK));
        let mut lookups = Lookups::new();
        loop {
            chunk.extend(items.by_ref().take(CHUNK));
            if chunk.is_empty() {
                return out;
            }
            self.look_up(chunk.iter().map(|(k, _, _)| k), &mut lookups);
            for (i, (key, item, opts)) in chunk.drain(..).enumerate() {
                out.push(match self.looked_up_slot(&lookups, i, key) {
                    Some(idx) => self.push_slot(idx, item, opts),
                    None => self.reject(item, full()),
                });
            }
        }
    }

    /// Takes up to `max` items in fair order, as that many calls of [`pop`](Self::pop) would
    /// (stopping at the first `None`).
    ///
    /// # Performance
    ///
    /// O(1) amortised per item, as [`pop`](Self::pop); allocates the result vector.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("a", 2).unwrap();
    /// q.try_push("b", 3).unwrap();
    /// assert_eq!(q.pop_batch(2), [1, 3]);
    /// assert_eq!(q.pop_batch(5), [2]);
    /// assert!(q.pop_batch(5).is_empty());
    /// ```
    pub fn pop_batch(&mut self, max: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(max.min(self.len()));
        while out.len() < max {
            let Some(p) = self.pop_inner(true, false) else {
                break;
            };
            self.finish_pop(p.tenant, p.class, p.cost, false);
            out.push(p.item);
        }
        out
    }

    /// Dispatches up to `max` items in fair order, each tracked in flight until its
    /// [`Ticket`] is passed to [`complete`](Self::complete), as that many calls of
    /// [`dispatch`](Self::dispatch) would (stopping at the first `None`, when nothing is
    /// queued or the in-flight limits are reached).
    ///
    /// # Performance
    ///
    /// O(1) amortised per item, as [`dispatch`](Self::dispatch); allocates the result vector.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_in_flight_limit(Some(2));
    /// for i in 0..3 {
    ///     q.try_push("a", i).unwrap();
    /// }
    /// let batch = q.dispatch_batch(10);
    /// assert_eq!(batch.len(), 2); // the in-flight limit stops the batch
    /// for d in batch {
    ///     q.complete(d.ticket, 1);
    /// }
    /// assert_eq!(q.dispatch_batch(10).len(), 1);
    /// ```
    pub fn dispatch_batch(&mut self, max: usize) -> Vec<Dispatch<T>> {
        let mut out = Vec::with_capacity(max.min(self.len()));
        while out.len() < max {
            let Some(p) = self.pop_inner(true, true) else {
                break;
            };
            // A tracked pop always has a ticket (as in `dispatch`).
            let Some(ticket) = self.finish_pop(p.tenant, p.class, p.cost, true) else {
                break;
            };
            out.push(Dispatch {
                item: p.item,
                ticket,
            });
        }
        out
    }
}
