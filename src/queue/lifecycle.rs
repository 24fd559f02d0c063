//! # Implementation details
//!
//! Operators' calls on a tenant's queued work: block and unblock, purge, retain by predicate,
//! eviction of a head item for shedding, and draining the whole queue.

use super::fair_queue::*;
use super::flows::EXTRA;
use super::items::NIL;
use super::tenants::Attachment;
use crate::error::BlockReason;
use std::hash::{BuildHasher, Hash};

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
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

    /// Unlinks every item of flow `fid` whose position (among its live items) `remove`
    /// selects, appending them to `out` in FIFO order; frees tombstones on the way. Keeps the
    /// flow, tenant, ring and totals consistent. Returns the removed cost.
    pub(super) fn remove_where(
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
    pub(super) fn flows_in_class_order(&self, idx: u32) -> Vec<u32> {
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

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Blocks a tenant: every later push is refused with [`RejectReason::Blocked`](crate::RejectReason::Blocked) carrying
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
            .expect("fairshare: the tenant table is full (2^30 tenants)");
        self.tenants.set_blocked(idx, Some(reason));
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
        let reason = self.tenants.set_blocked(idx, None);
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
        self.tenants.find(key).and_then(|i| self.tenants.blocked(i))
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
    /// Dropping the iterator early removes (and drops) the items it did not yield, as std's
    /// `Drain` does.
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
    pub fn drain(&mut self) -> Drain<'_, K, T, S, A> {
        // Tenants parked at their in-flight limit rejoin the ring: draining serves everyone.
        // (A later pop parks them again when they reach the front.)
        for idx in self.tenants.backlogged() {
            self.relink_parked(idx);
        }
        for g in self.groups.slots() {
            self.relink_group_all(g);
        }
        Drain { queue: self }
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
pub struct Drain<'a, K, T, S, A = ()>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
    A: Attachment,
{
    queue: &'a mut FairQueue<K, T, S, A>,
}

impl<K, T, S, A: Attachment> Drop for Drain<'_, K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

impl<K, T, S, A: Attachment> Iterator for Drain<'_, K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let p = self.queue.pop_inner(false, false)?;
        self.queue.counters.removed += 1;
        self.queue.tenants.release_if_idle(p.tenant);
        Some(p.item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.queue.len(), Some(self.queue.len()))
    }
}
