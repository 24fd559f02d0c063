//! # Implementation details
//!
//! Groups of tenants, the upper level of a two-level deficit round robin. A group in a class
//! is one entry of that class's ring (a *group flow*), granted `quantum × group weight` a
//! round like a tenant; its turn serves its members' flows by their own round robin on the
//! group flow's inner ring, charging each item to the member's deficit and to the group's.
//! So a group's share does not grow with its number of keys, and its members share it by
//! their weights. Tenants outside any group are entries of the class ring as before.

use super::fair_queue::*;
use super::flows::EXTRA;
use super::group_table::GROUP;
use super::items::NIL;
use super::tenants::Attachment;
use crate::error::BlockReason;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

/// Whether ring entry `id` is a group flow (not a tenant's flow).
#[inline(always)]
pub(crate) fn is_group_entry(id: u32) -> bool {
    id & (EXTRA | GROUP) == GROUP
}

/// What a group's turn at the front of its class's ring did.
pub(super) enum GroupTurn<T> {
    /// Served one of its members' items.
    Served(Popped<T>),
    /// Could not afford an item: granted its quantum and went to the back.
    Rotated,
    /// Left the ring (at its in-flight limit, or every member parked at theirs).
    Parked,
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A> {
    /// Group `g`'s quantum in each class it has work in: `quantum × weight`, split evenly
    /// between its backlogged classes so that spreading work over classes gains nothing.
    pub(super) fn group_quantum(&self, g: u32) -> i64 {
        let group = self.groups.get(g);
        self.split_quantum(
            group.weight.unwrap_or(self.config.default_weight()),
            group.active_flows,
        )
    }

    /// Appends flow `fid` of a member of group `g` to the group's inner ring in class `c`;
    /// the group's first backlogged flow there puts the group flow on the class ring with a
    /// fresh grant (a debt it carries is kept).
    pub(super) fn group_push_back(&mut self, c: usize, g: u32, fid: u32) {
        let gf = self.groups.flow_or_insert(g, c as u16);
        let front = self.groups.flow(gf).front;
        if front == NIL {
            let f = self.tenants.flow_mut(fid);
            (f.prev, f.next) = (fid, fid);
            self.groups.flow_mut(gf).front = fid;
        } else {
            let tail = self.tenants.flow(front).prev;
            let f = self.tenants.flow_mut(fid);
            (f.prev, f.next) = (tail, front);
            self.tenants.flow_mut(tail).next = fid;
            self.tenants.flow_mut(front).prev = fid;
        }
        self.groups.flow_mut(gf).len += 1;
        if self.groups.flow(gf).len == 1 {
            self.groups.get_mut(g).active_flows += 1;
            let q = self.group_quantum(g);
            let cap = q.saturating_mul(i64::from(self.config.max_credit_rounds()));
            let granted = grant(&mut self.groups.get_mut(g).carry, q, cap);
            let flow = self.groups.flow_mut(gf);
            flow.deficit = flow.deficit.min(0).saturating_add(granted);
            self.class_push_back::<false>(c, gf | GROUP);
        }
    }

    /// Takes flow `fid` of a member of group `g` off the group's inner ring in class `c`;
    /// the group flow leaves the class ring with its last flow (keeping only its debt).
    pub(super) fn group_unlink(&mut self, c: usize, g: u32, fid: u32) {
        let Some(gf) = self.groups.find_flow(g, c) else {
            unreachable!("fairshare: a member's flow is on a ring its group has not got")
        };
        let flow = *self.groups.flow(gf);
        if flow.len == 1 {
            self.groups.flow_mut(gf).front = NIL;
        } else {
            let (prev, next) = {
                let f = self.tenants.flow(fid);
                (f.prev, f.next)
            };
            if flow.front == fid {
                self.groups.flow_mut(gf).front = next;
            }
            self.tenants.flow_mut(prev).next = next;
            self.tenants.flow_mut(next).prev = prev;
        }
        let f = self.tenants.flow_mut(fid);
        (f.prev, f.next) = (NIL, NIL);
        let flow = self.groups.flow_mut(gf);
        flow.len -= 1;
        if flow.len == 0 {
            flow.deficit = flow.deficit.min(0);
            let on_ring = flow.in_ring();
            self.groups.get_mut(g).active_flows -= 1;
            if on_ring {
                self.class_unlink::<false>(c, gf | GROUP);
            }
        }
    }

    /// `n` items of total cost `cost` left a member of group `g`.
    #[inline]
    pub(super) fn group_removed(&mut self, g: u32, n: u32, cost: u64) {
        let group = self.groups.get_mut(g);
        group.len -= n;
        group.queued_cost -= cost;
        if group.len == 0 {
            // As for a tenant: no credit is banked while the group has nothing queued.
            group.carry = group.carry.max(0);
        }
    }

    /// A member of group `g` completed an item.
    pub(super) fn group_completed(&mut self, g: u32) {
        let group = self.groups.get_mut(g);
        group.in_flight -= 1;
        if group.in_flight + 1 == group.max_in_flight {
            self.relink_group(g);
        }
    }

    /// Puts group `g`'s backlogged group flows that are off their rings back on them, if the
    /// group is below its in-flight limit.
    pub(super) fn relink_group(&mut self, g: u32) {
        let group = self.groups.get(g);
        if group.in_flight >= group.max_in_flight {
            return;
        }
        let parked: Vec<(usize, u32)> = self
            .groups
            .flows_of(g)
            .into_iter()
            .filter(|&(_, gf)| self.groups.flow(gf).len > 0 && !self.groups.flow(gf).in_ring())
            .collect();
        for (c, gf) in parked {
            self.class_push_back::<false>(c, gf | GROUP);
        }
    }

    /// Every backlogged group flow of group `g` back on its ring, whatever its in-flight
    /// limit (a drain serves everyone).
    pub(super) fn relink_group_all(&mut self, g: u32) {
        let max = std::mem::replace(&mut self.groups.get_mut(g).max_in_flight, u32::MAX);
        self.relink_group(g);
        self.groups.get_mut(g).max_in_flight = max;
    }

    /// The flow a class ring's entry `id` serves next: the entry itself, or the front of a
    /// group flow's inner ring.
    pub(super) fn front_flow(&self, id: u32) -> u32 {
        if is_group_entry(id) {
            self.groups.flow(id & !GROUP).front
        } else {
            id
        }
    }

    /// An item of a member of group `g` cost `delta` more than its estimate: the group's
    /// grants are corrected too, so a group gains nothing from its members' estimates.
    pub(super) fn group_correct_cost(&mut self, g: u32, delta: i64) {
        let group = self.groups.get_mut(g);
        group.carry = group.carry.saturating_add(units(delta));
        if group.len > 0 || group.carry >= 0 {
            return;
        }
        // Nothing queued: credit first cancels the overdraft its group flows still carry,
        // and the rest is forfeited.
        for (_, gf) in self.groups.flows_of(g) {
            let credit = -self.groups.get(g).carry;
            let flow = self.groups.flow_mut(gf);
            let used = credit.min(-flow.deficit.min(0));
            flow.deficit += used;
            self.groups.get_mut(g).carry += used;
        }
        let group = self.groups.get_mut(g);
        group.carry = group.carry.max(0);
    }

    /// The block on tenant `idx`'s group, if it has a blocked group.
    #[inline]
    pub(crate) fn slot_group_blocked(&self, idx: u32) -> Option<BlockReason> {
        match self.tenants.get(idx).group {
            NIL => None,
            g => self.groups.reason(g),
        }
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// The turn of group flow `gf` at the front of class `c`'s ring: serve a member's item
    /// if the group can afford one, else grant it a round and rotate it to the back.
    ///
    /// `ONE`: the queue has one class (every member flow is embedded in its slot), as for
    /// `pop_class`. Kept out of line: the class ring's loop stays as small as it was for
    /// queues without groups.
    #[inline(never)]
    pub(super) fn group_turn<const ONE: bool>(
        &mut self,
        c: usize,
        gf: u32,
        respect_limits: bool,
    ) -> GroupTurn<T> {
        let g = self.groups.group_of_flow(gf);
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        if self.groups.flow(gf).deficit <= 0 {
            let q = self.group_quantum(g);
            let granted = grant(
                &mut self.groups.get_mut(g).carry,
                q,
                q.saturating_mul(credit_rounds),
            );
            let flow = self.groups.flow_mut(gf);
            flow.deficit = flow.deficit.saturating_add(granted);
            let next = flow.next;
            self.ring_mut(c).front = next;
            return GroupTurn::Rotated;
        }
        let group = self.groups.get(g);
        if respect_limits && group.in_flight >= group.max_in_flight {
            // At its limit: park the group flow (off the ring) so it blocks nobody; a
            // member's completion brings it back.
            self.class_unlink::<false>(c, gf | GROUP);
            return GroupTurn::Parked;
        }
        let mut rotations = 0u32;
        loop {
            let front = self.groups.flow(gf).front;
            let embedded = ONE || front & EXTRA == 0;
            let idx = if embedded {
                front
            } else {
                self.tenants.flow_owner(front).0
            };
            let (t, extra) = self.tenants.tenant_and_flow::<ONE>(idx, front);
            if respect_limits && t.in_flight >= t.max_in_flight {
                self.ring_unlink::<ONE>(c, front);
                if self.groups.flow(gf).len == 0 {
                    return GroupTurn::Parked;
                }
                continue;
            }
            let weight = t.weight.unwrap_or(self.config.default_weight());
            let split = t.active_flows;
            let f = match extra {
                Some(f) => f,
                None => &mut t.flow,
            };
            if f.deficit > 0 {
                let cost = self.items.cost(f.head);
                let charge = units(i64::from(cost));
                f.deficit = f.deficit.saturating_sub(charge);
                let flow = self.groups.flow_mut(gf);
                flow.deficit = flow.deficit.saturating_sub(charge);
                let (item, taken) = if embedded {
                    self.take_head::<ONE, true>(c, idx, front)
                } else {
                    self.take_head::<ONE, false>(c, idx, front)
                };
                self.end_turns(c, gf, idx, front);
                return GroupTurn::Served(Popped {
                    item,
                    tenant: idx,
                    class: c as u16,
                    cost,
                    enqueued: taken.enqueued,
                });
            }
            let q = split_quantum(self.config.quantum(), weight, split);
            let granted = grant(&mut t.carry, q, q.saturating_mul(credit_rounds));
            f.deficit = f.deficit.saturating_add(granted);
            let next = f.next;
            self.groups.flow_mut(gf).front = next;
            rotations += 1;
            let flow = *self.groups.flow(gf);
            if rotations >= flow.len {
                self.skip_dead_rounds_in(flow.front, flow.len);
                rotations = 0;
            }
        }
    }

    /// After member flow `fid` (tenant `idx`) of group flow `gf` was served: if that spent
    /// the member's deficit, grant its next round and move it to the back of the inner ring
    /// now, and likewise the group on class `c`'s ring. The order and the grants are those of
    /// a grant when each comes round again; granting now, while both are in cache, saves the
    /// next turn a step and a cache miss on each level.
    #[inline(always)]
    fn end_turns(&mut self, c: usize, gf: u32, idx: u32, fid: u32) {
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        let f = *self.tenants.flow(fid);
        if f.in_ring() && f.deficit <= 0 && self.groups.flow(gf).front == fid {
            let q = self.quantum_of_flow(idx);
            let granted = grant(
                &mut self.tenants.get_mut(idx).carry,
                q,
                q.saturating_mul(credit_rounds),
            );
            let f = self.tenants.flow_mut(fid);
            f.deficit = f.deficit.saturating_add(granted);
            self.groups.flow_mut(gf).front = f.next;
        }
        let flow = *self.groups.flow(gf);
        if flow.in_ring() && flow.deficit <= 0 && self.ring(c).front == gf | GROUP {
            let g = self.groups.group_of_flow(gf);
            let q = self.group_quantum(g);
            let granted = grant(
                &mut self.groups.get_mut(g).carry,
                q,
                q.saturating_mul(credit_rounds),
            );
            let flow = self.groups.flow_mut(gf);
            flow.deficit = flow.deficit.saturating_add(granted);
            let next = flow.next;
            self.ring_mut(c).front = next;
        }
    }

    /// Moves tenant `idx` into group `g` (`NIL`: out of its group), with its queued and
    /// in-flight work and its place in the rings.
    pub(super) fn move_to_group(&mut self, idx: u32, g: u32) {
        let old = self.tenants.get(idx).group;
        if old == g {
            return;
        }
        let on_rings: Vec<(usize, u32)> = self
            .tenants
            .flows_of(idx)
            .filter(|&fid| self.tenants.flow(fid).in_ring())
            .map(|fid| (usize::from(self.tenants.flow_owner(fid).1), fid))
            .collect();
        for &(c, fid) in &on_rings {
            self.ring_unlink::<false>(c, fid);
        }
        let t = self.tenants.get(idx);
        let (len, cost, in_flight) = (t.len, t.queued_cost, t.in_flight);
        if old != NIL {
            self.groups.add_members(old, -1);
            let group = self.groups.get_mut(old);
            group.len -= len;
            group.queued_cost -= cost;
            group.in_flight -= in_flight;
            self.relink_group(old);
            self.groups.release_if_idle(&self.tenants.hasher, old);
        }
        self.tenants.get_mut(idx).group = g;
        if g != NIL {
            self.groups.add_members(g, 1);
            let group = self.groups.get_mut(g);
            group.len += len;
            group.queued_cost += cost;
            group.in_flight += in_flight;
        }
        for (c, fid) in on_rings {
            self.ring_push_back::<false>(c, fid);
        }
    }

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
