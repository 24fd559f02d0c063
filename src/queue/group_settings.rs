//! # Implementation details
//!
//! Groups by key: membership, the group's weight, in-flight limit and block, purging a group,
//! and the queries on a group's totals. The round robin they feed is in `groups`.

use super::fair_queue::*;
use super::items::NIL;
use super::tenants::Attachment;
use crate::error::BlockReason;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// The slot of group `key`, made if it has none.
    #[track_caller]
    fn group_slot(&mut self, key: K) -> u32 {
        self.groups
            .find_or_insert(&self.tenants.hasher, key)
            .expect("fairshare: the group table is full (2^30 groups)")
    }

    /// The slot of tenant `key`, made if it has none.
    #[track_caller]
    fn tenant_slot(&mut self, key: K) -> u32 {
        self.tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^30 tenants)")
    }

    /// Puts tenant `key` in group `group` (leaving the group it was in), with its queued and
    /// in-flight work. From then on the group's members share the group's turn: see
    /// [`FairQueue`]'s `# Fairness`. A member is remembered while it is in a group.
    ///
    /// # Panics
    ///
    /// If the tenant table holds `2^30` tenants or the group table `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// assert_eq!(q.group(&"alice"), Some(&"acme"));
    /// ```
    #[track_caller]
    pub fn set_group(&mut self, key: K, group: K) {
        let g = self.group_slot(group);
        let idx = self.tenant_slot(key);
        self.move_to_group(idx, g);
    }

    /// Takes tenant `key` out of its group; returns whether it was in one. Its work stays
    /// queued, served as an ungrouped tenant's.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// assert!(q.clear_group(&"alice"));
    /// assert_eq!(q.group(&"alice"), None);
    /// assert_eq!(q.known_groups(), 0); // acme had nothing else to keep it
    /// ```
    pub fn clear_group(&mut self, key: &K) -> bool {
        let Some(idx) = self.tenants.find(key) else {
            return false;
        };
        if self.tenants.get(idx).group == NIL {
            return false;
        }
        self.move_to_group(idx, NIL);
        self.tenants.release_if_idle(idx);
        true
    }

    /// The group tenant `key` is in, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.group(&"alice"), None);
    /// ```
    pub fn group(&self, key: &K) -> Option<&K> {
        let idx = self.tenants.find(key)?;
        match self.tenants.get(idx).group {
            NIL => None,
            g => Some(self.groups.key(g)),
        }
    }

    /// Sets group `group`'s weight: its share of the capacity against other groups and
    /// ungrouped tenants (default: the queue's default weight).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group_weight("acme", NonZeroU32::new(3).unwrap());
    /// assert_eq!(q.group_weight(&"acme").get(), 3);
    /// ```
    #[track_caller]
    pub fn set_group_weight(&mut self, group: K, weight: NonZeroU32) {
        let g = self.group_slot(group);
        self.groups.get_mut(g).weight = Some(weight);
    }

    /// Resets group `group`'s weight to the queue's default weight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group_weight("acme", NonZeroU32::new(3).unwrap());
    /// q.clear_group_weight(&"acme");
    /// assert_eq!(q.group_weight(&"acme").get(), 1);
    /// ```
    pub fn clear_group_weight(&mut self, group: &K) {
        if let Some(g) = self.groups.find(&self.tenants.hasher, group) {
            self.groups.get_mut(g).weight = None;
            self.groups.release_if_idle(&self.tenants.hasher, g);
        }
    }

    /// Group `group`'s weight.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.group_weight(&"acme").get(), 1);
    /// ```
    pub fn group_weight(&self, group: &K) -> NonZeroU32 {
        self.groups
            .find(&self.tenants.hasher, group)
            .and_then(|g| self.groups.get(g).weight)
            .unwrap_or(self.config.default_weight())
    }

    /// Limits the items group `group`'s members may have in flight together (`None`: no
    /// limit). At its limit the group's work waits, blocking nobody else, until a member
    /// completes an item.
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group_in_flight_limit("acme", Some(1));
    /// q.set_group("alice", "acme");
    /// q.set_group("bob", "acme");
    /// q.try_push("alice", 1).unwrap();
    /// q.try_push("bob", 2).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert!(q.dispatch().is_none()); // acme is at its limit
    /// q.complete(d.ticket, 1);
    /// assert!(q.dispatch().is_some());
    /// ```
    #[track_caller]
    pub fn set_group_in_flight_limit(&mut self, group: K, limit: Option<u32>) {
        let g = self.group_slot(group);
        self.groups.get_mut(g).max_in_flight = limit.unwrap_or(u32::MAX);
        self.relink_group(g);
        self.groups.release_if_idle(&self.tenants.hasher, g);
    }

    /// Group `group`'s in-flight limit, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group_in_flight_limit("acme", Some(4));
    /// assert_eq!(q.group_in_flight_limit(&"acme"), Some(4));
    /// ```
    pub fn group_in_flight_limit(&self, group: &K) -> Option<u32> {
        let g = self.groups.find(&self.tenants.hasher, group)?;
        Some(self.groups.get(g).max_in_flight).filter(|&m| m != u32::MAX)
    }

    /// Refuses every later push of group `group`'s members with
    /// [`RejectReason::Blocked`](crate::RejectReason::Blocked) (after a block of the tenant
    /// itself, before any other refusal). What they have queued stays; see
    /// [`purge_group`](Self::purge_group).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, FairQueue, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.block_group("acme", BlockReason::Abuse);
    /// let err = q.try_push("alice", 1).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::Blocked { reason: BlockReason::Abuse });
    /// ```
    #[track_caller]
    pub fn block_group(&mut self, group: K, reason: BlockReason) {
        let g = self.group_slot(group);
        self.groups.set_reason(g, Some(reason));
    }

    /// Lifts group `group`'s block; returns the reason it had.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::BlockReason;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.block_group("acme", BlockReason::Abuse);
    /// assert_eq!(q.unblock_group(&"acme"), Some(BlockReason::Abuse));
    /// ```
    pub fn unblock_group(&mut self, group: &K) -> Option<BlockReason> {
        let g = self.groups.find(&self.tenants.hasher, group)?;
        let reason = self.groups.set_reason(g, None);
        self.groups.release_if_idle(&self.tenants.hasher, g);
        reason
    }

    /// Group `group`'s block, if it is blocked.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.group_blocked(&"acme"), None);
    /// ```
    pub fn group_blocked(&self, group: &K) -> Option<BlockReason> {
        let g = self.groups.find(&self.tenants.hasher, group)?;
        self.groups.reason(g)
    }

    /// The key of tenant `idx`'s group, if it is in one.
    pub(crate) fn group_key_of_slot(&self, idx: u32) -> Option<&K> {
        match self.tenants.get(idx).group {
            NIL => None,
            g => Some(self.groups.key(g)),
        }
    }

    /// The items and cost tenant `idx`'s group has queued, if it is in one (read from the
    /// group's slot: no lookup by key).
    pub(crate) fn group_totals_of_slot(&self, idx: u32) -> Option<(u64, u64)> {
        match self.tenants.get(idx).group {
            NIL => None,
            g => {
                let group = self.groups.get(g);
                Some((u64::from(group.len), group.queued_cost))
            }
        }
    }

    /// The keys of group `group`'s members, in slot order.
    pub(crate) fn member_keys(&self, group: &K) -> Vec<K> {
        self.member_slots(group)
            .into_iter()
            .map(|idx| self.tenants.key(idx).clone())
            .collect()
    }

    /// The members of group `group`, in slot order.
    pub(crate) fn member_slots(&self, group: &K) -> Vec<u32> {
        let Some(g) = self.groups.find(&self.tenants.hasher, group) else {
            return Vec::new();
        };
        self.tenants
            .iter()
            .filter(|(_, _, t)| t.group == g)
            .map(|(i, _, _)| i)
            .collect()
    }

    /// Removes and returns every item group `group`'s members have queued (member by member,
    /// each in FIFO order); the members stay in the group. O(known tenants).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.set_group("bob", "acme");
    /// q.try_push("alice", 1).unwrap();
    /// q.try_push("bob", 2).unwrap();
    /// q.try_push("carol", 3).unwrap();
    /// assert_eq!(q.purge_group(&"acme"), [1, 2]);
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn purge_group(&mut self, group: &K) -> Vec<T> {
        let mut out = Vec::new();
        for idx in self.member_slots(group) {
            out.extend(self.purge_slot(idx).0);
        }
        out
    }

    /// Items group `group`'s members have queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.try_push("alice", 1).unwrap();
    /// assert_eq!(q.group_len(&"acme"), 1);
    /// ```
    pub fn group_len(&self, group: &K) -> usize {
        self.groups
            .find(&self.tenants.hasher, group)
            .map_or(0, |g| self.groups.get(g).len as usize)
    }

    /// Cost group `group`'s members have queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.try_push_with("alice", 1, fairshare::PushOptions::new().with_cost(5)).unwrap();
    /// assert_eq!(q.group_queued_cost(&"acme"), 5);
    /// ```
    pub fn group_queued_cost(&self, group: &K) -> u64 {
        self.groups
            .find(&self.tenants.hasher, group)
            .map_or(0, |g| self.groups.get(g).queued_cost)
    }

    /// Items group `group`'s members have in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.try_push("alice", 1).unwrap();
    /// let _d = q.dispatch().unwrap();
    /// assert_eq!(q.group_in_flight(&"acme"), 1);
    /// ```
    pub fn group_in_flight(&self, group: &K) -> u32 {
        self.groups
            .find(&self.tenants.hasher, group)
            .map_or(0, |g| self.groups.get(g).in_flight)
    }

    /// Tenants in group `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// q.set_group("bob", "acme");
    /// assert_eq!(q.group_members(&"acme"), 2);
    /// ```
    pub fn group_members(&self, group: &K) -> usize {
        self.groups
            .find(&self.tenants.hasher, group)
            .map_or(0, |g| self.groups.members(g) as usize)
    }

    /// Groups the queue remembers: those with members or settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_group("alice", "acme");
    /// assert_eq!(q.known_groups(), 1);
    /// ```
    pub fn known_groups(&self) -> usize {
        self.groups.len()
    }
}
