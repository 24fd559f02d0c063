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
            self.class_push_back::<false, false>(c, gf | GROUP);
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
                self.class_unlink::<false, false>(c, gf | GROUP);
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
            self.class_push_back::<false, false>(c, gf | GROUP);
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
    /// Kept out of line: the class ring's loop stays as small as it was for queues without
    /// groups.
    #[inline(never)]
    pub(super) fn group_turn(&mut self, c: usize, gf: u32, respect_limits: bool) -> GroupTurn<T> {
        let g = self.groups.group_of_flow(gf);
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        if self.groups.flow(gf).deficit <= 0 {
            self.rotate_group(c, gf);
            return GroupTurn::Rotated;
        }
        let group = self.groups.get(g);
        if respect_limits && group.in_flight >= group.max_in_flight {
            // At its limit: park the group flow (off the ring) so it blocks nobody; a
            // member's completion brings it back.
            self.class_unlink::<false, false>(c, gf | GROUP);
            return GroupTurn::Parked;
        }
        let mut rotations = 0u32;
        loop {
            let front = self.groups.flow(gf).front;
            let embedded = front & EXTRA == 0;
            let idx = if embedded {
                front
            } else {
                self.tenants.flow_owner(front).0
            };
            let (t, extra) = self.tenants.tenant_and_flow::<false>(idx, front);
            if respect_limits && t.in_flight >= t.max_in_flight {
                self.ring_unlink::<false>(c, front);
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
                    self.take_head::<false, true>(c, idx, front)
                } else {
                    self.take_head::<false, false>(c, idx, front)
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
            self.rotate_group(c, gf);
        }
    }

    /// Grants group flow `gf`, at the front of class `c`'s ring, its next round (repaying
    /// the group's debt or giving back its credit) and moves the front past it.
    #[inline(always)]
    fn rotate_group(&mut self, c: usize, gf: u32) {
        let g = self.groups.group_of_flow(gf);
        let q = self.group_quantum(g);
        let cap = q.saturating_mul(i64::from(self.config.max_credit_rounds()));
        let granted = grant(&mut self.groups.get_mut(g).carry, q, cap);
        let flow = self.groups.flow_mut(gf);
        flow.deficit = flow.deficit.saturating_add(granted);
        let next = flow.next;
        self.ring_mut(c).front = next;
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
}
