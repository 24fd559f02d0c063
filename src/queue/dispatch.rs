//! # Implementation details
//!
//! Taking items out in fair order: `pop`, `dispatch` and the in-flight accounting of
//! `complete`, with the post-hoc cost correction.

use super::fair_queue::*;
use super::flows::EXTRA;
use super::group_table::GROUP;
use super::groups::{GroupTurn, is_group_entry};
use super::items::NIL;
use super::tenants::Attachment;
use crate::push::ClassId;
use std::hash::{BuildHasher, Hash};

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// The next item in fair order, for a dispatch (`track`) or an untracked pop; with
    /// `respect_limits` false (draining), in-flight limits neither stop it nor park anyone.
    /// Counts nothing and frees no tenant slot: [`finish_pop`](Self::finish_pop) does.
    #[inline(always)]
    pub(crate) fn pop_inner(&mut self, respect_limits: bool, track: bool) -> Option<Popped<T>> {
        if respect_limits && self.in_flight >= self.max_in_flight {
            return None;
        }
        if self.single() {
            if track && respect_limits && self.single_capped && self.class0_full() {
                return None;
            }
            if !self.groups.is_empty() {
                return self.pop_class::<false>(0, respect_limits);
            }
            return self.pop_class::<true>(0, respect_limits);
        }
        self.pop_classes(respect_limits, track)
    }

    /// The next item when there are several classes: choose the class, then its DRR step.
    #[inline]
    pub(super) fn pop_classes(&mut self, respect_limits: bool, track: bool) -> Option<Popped<T>> {
        loop {
            let (c, charge) = self.pick_class(track && respect_limits)?;
            let popped = self.pop_class::<false>(c, respect_limits);
            if let Some(p) = popped {
                if charge {
                    let ring = self.ring_mut(c);
                    let start = ring.vtime;
                    ring.vtime += u64::from(p.cost) * ring.vstep;
                    let high = ring.vtime > VTIME_RENORM;
                    self.vclock = start;
                    if high {
                        self.renormalize_vtimes();
                    }
                }
                return Some(p);
            }
            // Every flow of class `c` belonged to a tenant at its in-flight limit and is
            // parked now: choose again.
        }
    }

    /// The DRR step inside class `c` (`ONE`: the queue's only class, `c` = 0, and no groups, so
    /// every flow is embedded in its slot and every ring entry is a flow).
    #[inline(always)]
    pub(super) fn pop_class<const ONE: bool>(
        &mut self,
        c: usize,
        respect_limits: bool,
    ) -> Option<Popped<T>> {
        let mut rotations = 0u32;
        let (default_weight, quantum) = (self.config.default_weight(), self.config.quantum());
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        loop {
            let front = self.ring(c).front;
            if front == NIL {
                return None;
            }
            if !ONE && is_group_entry(front) {
                match self.group_turn(c, front & !GROUP, respect_limits) {
                    GroupTurn::Served(p) => return Some(p),
                    GroupTurn::Parked => continue,
                    GroupTurn::Rotated => {
                        rotations += 1;
                        if rotations >= self.ring(c).ring_len {
                            self.skip_dead_rounds(c);
                            rotations = 0;
                        }
                        continue;
                    }
                }
            }
            let idx = if ONE || front & EXTRA == 0 {
                front
            } else {
                self.tenants.flow_owner(front).0
            };
            let (t, extra) = self.tenants.tenant_and_flow::<ONE>(idx, front);
            if respect_limits && t.in_flight >= t.max_in_flight {
                // At its in-flight limit: park the flow (off the ring) so it blocks nobody; a
                // completion brings it back.
                self.ring_unlink::<ONE>(c, front);
                continue;
            }
            let (weight, split) = (t.weight.unwrap_or(default_weight), t.active_flows);
            let f = match extra {
                Some(f) => f,
                None => &mut t.flow,
            };
            if f.deficit > 0 {
                // Charge before taking: a flow the item empties keeps only its debt.
                let cost = self.items.cost(f.head);
                f.deficit = f.deficit.saturating_sub(units(i64::from(cost)));
                // A flow in its tenant's slot (always, with one class) is served without
                // asking its id where it lives at every step.
                let (item, taken) = if ONE || front & EXTRA == 0 {
                    self.take_head::<ONE, true>(c, idx, front)
                } else {
                    self.take_head::<ONE, false>(c, idx, front)
                };
                return Some(Popped {
                    item,
                    tenant: idx,
                    class: c as u16,
                    cost,
                    enqueued: taken.enqueued,
                });
            }
            let q = split_quantum(quantum, weight, split);
            let g = grant(&mut t.carry, q, q.saturating_mul(credit_rounds));
            f.deficit = f.deficit.saturating_add(g);
            let next = f.next;
            // Rotate: the front goes to the back of the ring.
            self.ring_mut(c).front = next;
            rotations += 1;
            if rotations >= self.ring(c).ring_len {
                self.skip_dead_rounds(c);
                rotations = 0;
            }
        }
    }

    /// Counts a popped item as dispatched; with `track`, marks it in flight and returns its
    /// ticket, otherwise frees the tenant slot if nothing else keeps it.
    #[inline(always)]
    pub(crate) fn finish_pop(
        &mut self,
        idx: u32,
        class: u16,
        cost: u32,
        track: bool,
    ) -> Option<Ticket> {
        let t = self.tenants.get_mut(idx);
        t.counters.dispatched += 1;
        t.counters.served_cost = t.counters.served_cost.saturating_add(u64::from(cost));
        if track {
            t.in_flight += 1;
            if t.group != NIL {
                let g = t.group;
                self.groups.get_mut(g).in_flight += 1;
            }
        }
        self.counters.dispatched += 1;
        self.counters.served_cost = self.counters.served_cost.saturating_add(u64::from(cost));
        if !self.single() {
            // One class's totals while it is the only one are the queue's (`single_since`).
            let ring = self.ring_mut(usize::from(class));
            ring.counters.dispatched += 1;
            ring.counters.served_cost = ring.counters.served_cost.saturating_add(u64::from(cost));
            if track {
                ring.in_flight += 1;
            }
        }
        if track {
            self.in_flight += 1;
            Some(Ticket {
                tenant: self.tenants.handle(idx),
                cost,
                class: ClassId::new(class),
            })
        } else {
            self.tenants.release_if_idle(idx);
            None
        }
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Takes the next item in fair order, or `None` if nothing is queued.
    ///
    /// Work-conserving: returns an item whenever a queued item may be dispatched (its tenant
    /// is below its in-flight limit and the global limit is not reached). The item is not
    /// tracked as in flight; use [`dispatch`](Self::dispatch) to report actual costs.
    ///
    /// # Performance
    ///
    /// O(1) amortised while items cost at most about `quantum × weight`. When every backlogged
    /// tenant's head item costs more than it can afford, the empty rounds are skipped in one
    /// pass over the backlogged tenants (never over idle ones), so a pop costs at most two
    /// rotations of the ring; set the quantum near the typical item cost to stay O(1).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("a", 2).unwrap();
    /// q.try_push("b", 3).unwrap();
    /// let order: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    /// assert_eq!(order, [1, 3, 2]);
    /// ```
    #[inline(always)]
    pub fn pop(&mut self) -> Option<T> {
        let p = self.pop_inner(true, false)?;
        self.finish_pop(p.tenant, p.class, p.cost, false);
        Some(p.item)
    }

    /// Takes the next item in fair order and tracks it as in flight until its [`Ticket`] is
    /// passed to [`complete`](Self::complete).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!((d.item, q.in_flight(&"a")), (1, 1));
    /// q.complete(d.ticket, 1);
    /// ```
    #[inline(always)]
    pub fn dispatch(&mut self) -> Option<Dispatch<T>> {
        let p = self.pop_inner(true, true)?;
        let ticket = self.finish_pop(p.tenant, p.class, p.cost, true)?;
        Some(Dispatch {
            item: p.item,
            ticket,
        })
    }

    /// Records that an item of tenant `idx` in `class` cost `delta` more than its estimate
    /// (less, if negative): the difference joins the tenant's carry, repaid or given back in
    /// its later rounds, and corrects the served-cost counts of the tenant, the queue and the
    /// class.
    #[inline(never)]
    pub(super) fn correct_cost(&mut self, idx: u32, class: u16, delta: i64) {
        let t = self.tenants.get_mut(idx);
        t.carry = t.carry.saturating_add(units(delta));
        if t.group != NIL {
            let g = t.group;
            self.group_correct_cost(g, delta);
        }
        let t = self.tenants.get_mut(idx);
        if t.len == 0 && t.carry < 0 {
            // Nothing queued: credit first cancels what its flows still owe from items
            // charged at their (too high) estimates, and the rest is forfeited, so none is
            // banked idle.
            self.cancel_debt_with_credit(idx);
        }
        let correct = |served: u64| {
            if delta >= 0 {
                served.saturating_add(delta.unsigned_abs())
            } else {
                served.saturating_sub(delta.unsigned_abs())
            }
        };
        let t = self.tenants.get_mut(idx);
        t.counters.served_cost = correct(t.counters.served_cost);
        self.counters.served_cost = correct(self.counters.served_cost);
        if !self.single() && usize::from(class) < self.class_count() {
            let ring = self.ring_mut(usize::from(class));
            ring.counters.served_cost = correct(ring.counters.served_cost);
        }
    }

    /// Spends tenant `idx`'s credit on the negative deficits of its (idle) flows, up to zero,
    /// and forfeits what is left.
    #[cold]
    fn cancel_debt_with_credit(&mut self, idx: u32) {
        let flows: Vec<u32> = self.tenants.flows_of(idx).collect();
        for fid in flows {
            let credit = -self.tenants.get(idx).carry;
            if credit <= 0 {
                break;
            }
            let f = self.tenants.flow_mut(fid);
            let used = credit.min(-f.deficit.min(0));
            f.deficit += used;
            self.tenants.get_mut(idx).carry += used;
        }
        let t = self.tenants.get_mut(idx);
        t.carry = t.carry.max(0);
    }

    /// Reports that a dispatched item finished, with what it actually cost (0 counts as 1, the
    /// least an item can cost). The tenant's future share is corrected by
    /// `actual_cost - estimate`, never forgiven: debt is repaid from its later rounds, at most
    /// its whole quantum a round, and credit comes back in later rounds (not the current one),
    /// never while it has nothing queued; see the `# Fairness` section of [`FairQueue`] for the
    /// bound this gives in actual costs. Returns `false` (and changes nothing) if the ticket's
    /// tenant is no longer known. A ticket belongs to the queue that issued it: passing it to
    /// another queue is a programming error that may credit an unrelated tenant there.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(10)).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert!(q.complete(d.ticket, 4));
    /// assert_eq!(q.tenant_counters(&"a"), None); // forgotten: nothing left to remember
    /// ```
    #[inline]
    pub fn complete(&mut self, ticket: Ticket, actual_cost: u32) -> bool {
        let Some(idx) = self.tenants.resolve(ticket.tenant) else {
            return false;
        };
        let class = ticket.class.index() as u16;
        // The flow lives as long as its tenant, and a tenant with work in flight lives.
        if self.tenants.find_flow(idx, class).is_none() {
            return false;
        }
        if self.tenants.get(idx).in_flight == 0 {
            return false;
        }
        // An actual cost of 0 counts as 1, the least an item can cost: a tenant whose work
        // "costs nothing" still takes its turn.
        let delta = i64::from(actual_cost.max(1)) - i64::from(ticket.cost);
        if delta != 0 {
            // An exact estimate (the common case) changes no share and no count.
            self.correct_cost(idx, class, delta);
        }
        let t = self.tenants.get_mut(idx);
        t.in_flight -= 1;
        // Only a tenant that was at its limit can have parked flows.
        let was_full = t.in_flight + 1 == t.max_in_flight;
        if t.group != NIL {
            let g = t.group;
            self.group_completed(g);
        }
        self.in_flight -= 1;
        if !self.single() && usize::from(class) < self.class_count() {
            let ring = self.ring_mut(usize::from(class));
            ring.in_flight = ring.in_flight.saturating_sub(1);
        }
        if was_full {
            self.unpark(idx);
        }
        self.tenants.release_if_idle(idx);
        true
    }
}
