//! # Implementation details
//!
//! Item deadlines: a min-heap of pending deadlines whose entries of items gone since are
//! skipped, and the hand-back of expired items.

use super::fair_queue::*;
use super::items::NIL;
use super::tenants::Attachment;
use crate::clock::Nanos;
use crate::error::{RejectReason, Rejected};
use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash};

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
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

    /// When the oldest item among the flows served next (one per class) was queued.
    pub(crate) fn front_enqueued(&self) -> Option<Nanos> {
        self.all_rings()
            .filter(|r| r.front != NIL)
            .map(|r| self.tenants.flow(self.front_flow(r.front)).head)
            .filter(|&head| head != NIL)
            .map(|head| self.items.enqueued(head))
            .min()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct DeadlineEntry {
    pub(super) at: Nanos,
    pub(super) node: u32,
    /// The node's allocation count and the item's enqueue time: together they tell this
    /// item from any later occupant of the node.
    pub(super) generation: u32,
    /// The flow the item was queued in (it cannot be freed while the item is live).
    pub(super) flow: u32,
    pub(super) enqueued: Nanos,
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Takes every queued item whose deadline ([`PushOptions::with_deadline`](crate::PushOptions::with_deadline)) is at or before
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
