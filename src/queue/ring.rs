//! # Implementation details
//!
//! The deficit round robin inside one class: the ring of backlogged flows, each flow's
//! deficit and quantum, taking a flow's head item, and the bookkeeping when items leave.

use super::fair_queue::*;
use super::flows::{EXTRA, Flow};
use super::group_table::GROUP;
use super::groups::is_group_entry;
use super::items::{NIL, Taken};
use super::tenants::Attachment;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A> {
    /// Flow `fid`. With `EMB` the caller knows `fid` is embedded in its tenant's slot (always
    /// so with one class), which the compiler then sees; otherwise the id says where it
    /// lives. The DRR helpers below take `ONE` (the queue has one class, so every flow is
    /// embedded) and, for the flow they serve, `EMB`: `true` only on fast paths that
    /// checked, `false` everywhere else (correct for any flow).
    #[inline(always)]
    pub(super) fn flow_in<const EMB: bool>(&self, fid: u32) -> &Flow {
        if EMB {
            &self.tenants.get(fid).flow
        } else {
            self.tenants.flow(fid)
        }
    }

    #[inline(always)]
    pub(super) fn flow_in_mut<const EMB: bool>(&mut self, fid: u32) -> &mut Flow {
        if EMB {
            &mut self.tenants.get_mut(fid).flow
        } else {
            self.tenants.flow_mut(fid)
        }
    }

    /// The quantum of each flow of tenant `idx`: its `quantum × weight`, split evenly between
    /// its backlogged flows so that spreading work over classes gains nothing.
    #[inline(always)]
    pub(super) fn quantum_of_flow(&self, idx: u32) -> i64 {
        let t = self.tenants.get(idx);
        self.split_quantum(
            t.weight.unwrap_or(self.config.default_weight()),
            t.active_flows,
        )
    }

    /// `quantum × weight` in deficit units, split between `flows` backlogged flows.
    #[inline(always)]
    pub(super) fn split_quantum(&self, weight: NonZeroU32, flows: u16) -> i64 {
        split_quantum(self.config.quantum(), weight, flows)
    }

    /// Appends flow `fid` behind every backlogged flow of its class `c`: on the class's ring,
    /// or on its group's inner ring if its tenant is in a group.
    /// Without groups, no ring holds a group flow: the links are the flows' own (`FLOWS`).
    #[inline(always)]
    pub(super) fn ring_push_back<const ONE: bool>(&mut self, c: usize, fid: u32) {
        if ONE || self.groups.is_empty() {
            self.class_push_back::<ONE, true>(c, fid);
        } else {
            self.ring_push_back_grouped(c, fid);
        }
    }

    /// Takes flow `fid` off its ring (its class's, or its group's inner ring).
    #[inline(always)]
    pub(super) fn ring_unlink<const ONE: bool>(&mut self, c: usize, fid: u32) {
        if ONE || self.groups.is_empty() {
            self.class_unlink::<ONE, true>(c, fid);
        } else {
            self.ring_unlink_grouped(c, fid);
        }
    }

    #[inline(never)]
    fn ring_push_back_grouped(&mut self, c: usize, fid: u32) {
        match self.tenants.get(self.tenants.flow_owner(fid).0).group {
            NIL => self.class_push_back::<false, false>(c, fid),
            g => self.group_push_back(c, g, fid),
        }
    }

    #[inline(never)]
    fn ring_unlink_grouped(&mut self, c: usize, fid: u32) {
        match self.tenants.get(self.tenants.flow_owner(fid).0).group {
            NIL => self.class_unlink::<false, false>(c, fid),
            g => self.group_unlink(c, g, fid),
        }
    }

    /// The ring links `(prev, next)` of entry `id` of a class ring: a flow, or a group flow.
    /// `FLOWS`: the ring holds only flows (no groups), so `id` is a flow and nothing asks.
    /// `ONE`, as for `pop_class`, implies `FLOWS`.
    #[inline(always)]
    pub(super) fn entry_links<const ONE: bool, const FLOWS: bool>(&self, id: u32) -> (u32, u32) {
        if !FLOWS && is_group_entry(id) {
            let g = self.groups.flow(id & !GROUP);
            (g.prev, g.next)
        } else {
            let f = self.flow_in::<ONE>(id);
            (f.prev, f.next)
        }
    }

    #[inline(always)]
    pub(super) fn set_entry_prev<const ONE: bool, const FLOWS: bool>(
        &mut self,
        id: u32,
        prev: u32,
    ) {
        if !FLOWS && is_group_entry(id) {
            self.groups.flow_mut(id & !GROUP).prev = prev;
        } else {
            self.flow_in_mut::<ONE>(id).prev = prev;
        }
    }

    #[inline(always)]
    pub(super) fn set_entry_next<const ONE: bool, const FLOWS: bool>(
        &mut self,
        id: u32,
        next: u32,
    ) {
        if !FLOWS && is_group_entry(id) {
            self.groups.flow_mut(id & !GROUP).next = next;
        } else {
            self.flow_in_mut::<ONE>(id).next = next;
        }
    }

    /// Appends entry `id` (a flow, or [`GROUP`] `|` a group flow) to class `c`'s ring (for
    /// `ONE` and `FLOWS`, see [`entry_links`](Self::entry_links)).
    #[inline(always)]
    pub(super) fn class_push_back<const ONE: bool, const FLOWS: bool>(
        &mut self,
        c: usize,
        id: u32,
    ) {
        let front = self.ring(c).front;
        if front == NIL {
            self.set_entry_prev::<ONE, FLOWS>(id, id);
            self.set_entry_next::<ONE, FLOWS>(id, id);
            self.ring_mut(c).front = id;
            if !ONE && !self.single() {
                self.class_activated(c);
            }
        } else {
            let tail = self.entry_links::<ONE, FLOWS>(front).0;
            self.set_entry_prev::<ONE, FLOWS>(id, tail);
            self.set_entry_next::<ONE, FLOWS>(id, front);
            self.set_entry_next::<ONE, FLOWS>(tail, id);
            self.set_entry_prev::<ONE, FLOWS>(front, id);
        }
        self.ring_mut(c).ring_len += 1;
    }

    /// Takes entry `id` off class `c`'s ring.
    #[inline(always)]
    pub(super) fn class_unlink<const ONE: bool, const FLOWS: bool>(&mut self, c: usize, id: u32) {
        if self.ring(c).ring_len == 1 {
            self.ring_mut(c).front = NIL;
        } else {
            let (prev, next) = self.entry_links::<ONE, FLOWS>(id);
            if self.ring(c).front == id {
                self.ring_mut(c).front = next;
            }
            self.set_entry_next::<ONE, FLOWS>(prev, next);
            self.set_entry_prev::<ONE, FLOWS>(next, prev);
        }
        self.ring_mut(c).ring_len -= 1;
        self.set_entry_prev::<ONE, FLOWS>(id, NIL);
        self.set_entry_next::<ONE, FLOWS>(id, NIL);
    }

    /// Every backlogged flow of class `c` has had a turn without being able to afford its
    /// head item: grant all of them the smallest number of whole rounds after which one of
    /// them can, exactly as that many empty rounds would (each round's grant repaying debt or
    /// giving back credit as [`grant`] does). O(backlogged flows of the class); only reached
    /// when items cost more than the flows' quanta, or while flows repay debt.
    #[cold]
    pub(super) fn skip_dead_rounds(&mut self, c: usize) {
        let ring = self.ring(c);
        self.skip_dead_rounds_in(ring.front, ring.ring_len);
    }

    /// [`skip_dead_rounds`](Self::skip_dead_rounds) on the ring of `len` entries from
    /// `front`: a class's ring (whose entries may be group flows) or a group's inner ring.
    #[cold]
    pub(super) fn skip_dead_rounds_in(&mut self, front: u32, len: u32) {
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        let mut rounds = i64::MAX;
        let mut id = front;
        for _ in 0..len {
            let (deficit, carry, q) = self.entry_account(id);
            let need = if deficit > 0 {
                0
            } else {
                rounds_to_afford(deficit, carry, q, q.saturating_mul(credit_rounds))
            };
            rounds = rounds.min(need);
            id = self.entry_links::<false, false>(id).1;
        }
        if rounds == 0 || rounds == i64::MAX {
            return;
        }
        for _ in 0..len {
            let (_, _, q) = self.entry_account(id);
            let cap = q.saturating_mul(credit_rounds);
            if is_group_entry(id) {
                let gf = id & !GROUP;
                let g = self.groups.group_of_flow(gf);
                let grant = rounds_of_grants(&mut self.groups.get_mut(g).carry, rounds, q, cap);
                let f = self.groups.flow_mut(gf);
                f.deficit = f.deficit.saturating_add(grant);
                id = f.next;
            } else {
                let idx = self.tenants.flow_owner(id).0;
                let t = self.tenants.get_mut(idx);
                let grant = rounds_of_grants(&mut t.carry, rounds, q, cap);
                let f = self.tenants.flow_mut(id);
                f.deficit = f.deficit.saturating_add(grant);
                id = f.next;
            }
        }
    }

    /// The deficit, the carry and the quantum of ring entry `id`.
    fn entry_account(&self, id: u32) -> (i64, i64, i64) {
        if is_group_entry(id) {
            let gf = id & !GROUP;
            let g = self.groups.group_of_flow(gf);
            (
                self.groups.flow(gf).deficit,
                self.groups.get(g).carry,
                self.group_quantum(g),
            )
        } else {
            let idx = self.tenants.flow_owner(id).0;
            (
                self.tenants.flow(id).deficit,
                self.tenants.get(idx).carry,
                self.quantum_of_flow(idx),
            )
        }
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Restores "the head node is live, or the list is empty" for flow `fid` of class `c`
    /// by freeing the tombstones at its head.
    #[inline(always)]
    pub(super) fn skip_tombstones<const EMB: bool>(&mut self, fid: u32) {
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
    pub(super) fn after_removal<const ONE: bool, const EMB: bool>(
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
            let (emptied, group) = (t.len == 0, t.group);
            if !ONE && group != NIL {
                self.group_removed(group, n, cost);
            }
            let t = self.tenants.get_mut(idx);
            let in_ring = t.flow.in_ring();
            if emptied {
                // Leftover credit is forfeited (classic DRR), and so is credit from cost
                // correction: none is banked while idle. Debt is carried.
                t.flow.deficit = t.flow.deficit.min(0);
                t.carry = t.carry.max(0);
                self.active_tenants -= 1;
                if in_ring {
                    self.ring_unlink::<ONE>(0, fid);
                }
            }
            self.touch(idx);
            return;
        }
        let g = self.tenants.get(idx).group;
        if g != NIL {
            self.group_removed(g, n, cost);
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
            t.carry = t.carry.max(0);
        }
        let ring = self.ring_mut(c);
        ring.items -= u64::from(n);
        ring.queued_cost -= cost;
        if emptied && in_ring {
            self.ring_unlink::<ONE>(c, fid);
        }
        self.touch(idx);
    }

    /// Items queued in flow `fid` (see the note on `single_since`).
    #[inline]
    pub(super) fn flow_len(&self, fid: u32) -> u32 {
        if self.single() && fid & EXTRA == 0 {
            self.tenants.get(fid).len
        } else {
            self.tenants.flow(fid).len
        }
    }

    /// Takes the head item of backlogged flow `fid` (tenant `idx`, class `c`). Leaves the
    /// deficit to the caller and does not free the tenant slot.
    #[inline(always)]
    pub(super) fn take_head<const ONE: bool, const EMB: bool>(
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

    /// Brings tenant `idx`'s parked flows (backlogged, off their rings) back if the tenant is
    /// below its in-flight limit.
    pub(super) fn unpark(&mut self, idx: u32) {
        let t = self.tenants.get(idx);
        if t.len == 0 || t.in_flight >= t.max_in_flight {
            return;
        }
        self.relink_parked(idx);
    }

    /// Puts tenant `idx`'s backlogged flows that are off their rings back on them.
    pub(super) fn relink_parked(&mut self, idx: u32) {
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
}

/// What `rounds` successive [`grant`]s of quantum `q` add up to, taken out of `carry`: each
/// repays at most `q` of debt or gives back at most `credit_cap` of credit.
fn rounds_of_grants(carry: &mut i64, rounds: i64, q: i64, credit_cap: i64) -> i64 {
    let total = i128::from(rounds) * i128::from(q);
    let pay = i128::from(*carry).clamp(-(i128::from(rounds) * i128::from(credit_cap)), total);
    *carry = (i128::from(*carry) - pay) as i64;
    (total - pay).clamp(0, i128::from(i64::MAX)) as i64
}

/// The fewest rounds (at least 1) after which a flow with `deficit <= 0` can afford an item:
/// the least `r` with `deficit + rounds_of_grants(carry, r) > 0`, by bisection (the grants
/// only grow with `r`).
fn rounds_to_afford(deficit: i64, carry: i64, q: i64, credit_cap: i64) -> i64 {
    let need = 1 - i128::from(deficit);
    let granted = |r: i64| {
        let mut c = carry;
        i128::from(rounds_of_grants(&mut c, r, q, credit_cap))
    };
    // Debt is repaid first: enough rounds for the debt and the deficit always suffice.
    let debt = i128::from(carry.max(0));
    let mut hi =
        ((need + debt + i128::from(q) - 1) / i128::from(q)).min(i128::from(i64::MAX)) as i64;
    let mut lo = 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if granted(mid) >= need {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}
