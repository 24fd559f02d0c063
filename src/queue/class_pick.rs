//! # Implementation details
//!
//! The level above tenants: which class the next dispatch serves (reservations, priorities,
//! virtual times), the per-class state, and the public class queries and settings.

use super::classes::{ClassCounters, ClassState, Classes, MAX_CLASSES};
use super::fair_queue::*;
use super::items::NIL;
use super::tenants::Attachment;
use crate::error::ConfigError;
use crate::push::ClassId;
use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash};

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A> {
    /// Whether the queue has one class (see `single_since`).
    #[inline(always)]
    pub(super) fn single(&self) -> bool {
        self.class_count == 1
    }

    /// Class `c`'s state (`c` below `class_count`; the mask only spares a bounds check).
    #[inline(always)]
    pub(super) fn ring(&self, c: usize) -> &ClassState {
        debug_assert!(c < self.class_count);
        &self.rings[c & (MAX_CLASSES - 1)]
    }

    #[inline(always)]
    pub(super) fn ring_mut(&mut self, c: usize) -> &mut ClassState {
        debug_assert!(c < self.class_count);
        &mut self.rings[c & (MAX_CLASSES - 1)]
    }

    /// The state of `class`, with the default class's totals filled in while it is the only
    /// one (see `single_since`).
    pub(super) fn ring_get(&self, class: ClassId) -> Option<ClassState> {
        match class.index() {
            0 if self.single() => Some(self.class0_state()),
            c if c < self.class_count() => Some(self.ring(c).clone()),
            _ => None,
        }
    }

    /// The default class's state while it is the only class.
    pub(super) fn class0_state(&self) -> ClassState {
        let (now, then, base) = (&self.counters, &self.single_since, &self.rings[0].counters);
        ClassState {
            items: u64::from(self.items.len()),
            queued_cost: self.queued_cost,
            in_flight: u32::try_from(self.in_flight).unwrap_or(u32::MAX),
            counters: ClassCounters {
                pushed: base.pushed + (now.pushed - then.pushed),
                dispatched: base.dispatched + (now.dispatched - then.dispatched),
                // Signed: corrections while single may bring the total below `then`.
                served_cost: (i128::from(base.served_cost) + i128::from(now.served_cost)
                    - i128::from(then.served_cost))
                .clamp(0, i128::from(u64::MAX)) as u64,
            },
            ..self.rings[0].clone()
        }
    }

    /// Number of classes.
    #[inline(always)]
    pub(super) fn class_count(&self) -> usize {
        self.class_count
    }

    /// Every class's state, in class order.
    pub(super) fn all_rings(&self) -> impl Iterator<Item = &ClassState> + '_ {
        self.rings[..self.class_count].iter()
    }

    /// Class `c` has work again: it may not bank the service it missed while idle, so its
    /// virtual time starts no earlier than the least of the classes that stayed busy.
    #[cold]
    pub(super) fn class_activated(&mut self, c: usize) {
        let floor = self
            .all_rings()
            .enumerate()
            .filter(|&(i, r)| i != c && r.ring_len > 0)
            .map(|(_, r)| r.vtime)
            .min()
            .unwrap_or(self.vclock);
        let r = self.ring_mut(c);
        r.vtime = r.vtime.max(floor);
    }

    /// The class the next dispatch (`track`) or pop serves, among classes with a flow on
    /// their ring; `None` if no class may be served. See [`ClassSpec`] for the rule.
    /// Returns the class and whether its service counts towards its virtual time.
    ///
    /// One pass over the classes, on settings cached by [`ClassState::resolve`].
    #[inline(always)]
    pub(super) fn pick_class(&self, track: bool) -> Option<(usize, bool)> {
        // Nothing is reserved without a global limit (`ClassState::resolve`), so the
        // reservation test needs no test of the limit.
        debug_assert!(self.max_in_flight != u64::MAX || self.all_rings().all(|r| r.reserved == 0));
        // The class furthest below its reservation: smallest in_flight / reserved, compared
        // as f·r' < f'·r (`NONE`: no class below its reservation).
        const NONE: usize = usize::MAX;
        let (mut under, mut uf, mut ur) = (NONE, 0u64, 1u64);
        // The highest priority, then the least served per weight: the least
        // `ClassState::pick_key` (`u64::MAX` is above every key).
        let (mut best, mut bkey) = (NONE, u64::MAX);
        for (c, ring) in self.rings[..self.class_count].iter().enumerate() {
            let f = u64::from(ring.in_flight);
            if ring.ring_len == 0 || (track && f >= ring.cap) {
                continue;
            }
            if track
                && f < ring.reserved
                && (under == NONE
                    || u128::from(f) * u128::from(ur) < u128::from(uf) * u128::from(ring.reserved))
            {
                (under, uf, ur) = (c, f, ring.reserved);
            }
            let key = ring.pick_key();
            if key < bkey {
                (best, bkey) = (c, key);
            }
        }
        if best == NONE {
            return None;
        }
        // Reservations first. Service is charged to a class's virtual time only while it
        // competes at the top priority: reserved service received while outranked would
        // otherwise count against it when the higher priority goes quiet.
        Some(if under == NONE {
            (best, true)
        } else {
            (under, self.ring(under).priority == self.ring(best).priority)
        })
    }

    /// Shifts every virtual time (and the clock) down by the least of them.
    #[cold]
    pub(super) fn renormalize_vtimes(&mut self) {
        // Idle classes are raised to where their next activation would put them at least, so
        // a long-idle class cannot pin the shift at zero.
        let least = self
            .all_rings()
            .filter(|r| r.ring_len > 0)
            .map(|r| r.vtime)
            .min()
            .unwrap_or(self.vclock)
            .min(self.vclock);
        // A backlogged class that cannot be served (held at its ceiling by work that never
        // completes) keeps at most 2^54 of lag - far more than any real backlog - so the
        // shift always brings the leader back below `VTIME_RENORM` and the pick key never
        // saturates.
        let top = self.all_rings().map(|r| r.vtime).max().unwrap_or(0);
        let least = least.max(top.saturating_sub(VTIME_RENORM / 2));
        for r in &mut self.rings[..self.class_count] {
            r.vtime = r.vtime.max(least) - least;
        }
        self.vclock = self.vclock.max(least) - least;
    }

    /// Re-resolves every class's settings (after a change of classes or of the global limit).
    pub(super) fn resolve_classes(&mut self) {
        let limit = self.max_in_flight;
        let specs = self.classes.specs();
        for (ring, spec) in self.rings.iter_mut().zip(specs) {
            ring.resolve(spec, limit);
        }
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Items tenant `idx` still has queued in `class`.
    #[inline]
    pub(crate) fn class_backlog(&self, idx: u32, class: u16) -> u32 {
        self.tenants
            .find_flow(idx, class)
            .map_or(0, |fid| self.flow_len(fid))
    }

    /// Whether the only class is at its ceiling or its own in-flight cap.
    #[cold]
    pub(super) fn class0_full(&self) -> bool {
        self.in_flight >= self.rings[0].cap
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Replaces the classes. Classes may be added, changed or reordered in place (work queued
    /// in class `i` stays in class `i`, under its new settings); a class may only be removed
    /// (by a shorter list) while it holds no queued or in-flight items. A removed class takes
    /// every tenant's state in it along (carried debt, per-tenant class rate state): a class
    /// added later at the same index starts fresh.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`] naming the first class that would be removed with work
    /// in it; nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, FairQueue};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// let two = Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap();
    /// q.set_classes(two).unwrap();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_class(q.classes().id("bulk").unwrap())).unwrap();
    /// assert!(q.set_classes(Classes::single()).is_err()); // "bulk" still holds an item
    /// ```
    pub fn set_classes(&mut self, classes: Classes) -> Result<(), ConfigError> {
        if let Some((c, _)) = self
            .all_rings()
            .enumerate()
            .skip(classes.len())
            .find(|(_, r)| r.items > 0 || r.in_flight > 0)
        {
            return Err(ConfigError::InvalidClass {
                class: self.classes.specs()[c].name().to_string(),
                field: "name",
                problem: "cannot remove a class that has work queued or in flight",
            });
        }
        let was_single = self.single();
        if was_single && classes.len() > 1 {
            // Resume the per-class bookkeeping skipped while everything was in one class.
            self.rings[0] = self.class0_state();
            let backlogged: Vec<u32> = self.tenants.iter().map(|(i, _, _)| i).collect();
            for idx in backlogged {
                let t = self.tenants.get_mut(idx);
                t.flow.len = t.len;
                t.active_flows = u16::from(t.len > 0);
            }
        } else if !was_single && classes.len() == 1 {
            self.single_since = self.counters;
        }
        if classes.len() < self.class_count() {
            // Clamped: a class list never holds more than `MAX_CLASSES`.
            let moved = self
                .tenants
                .drop_classes_from(u16::try_from(classes.len()).unwrap_or(u16::MAX));
            self.relink_moved_flows(&moved);
            self.groups.drop_classes_from(classes.len());
        }
        // States past the last class stay fresh, for a class added later.
        for ring in self.rings.iter_mut().skip(classes.len()) {
            *ring = ClassState::new();
        }
        self.class_count = classes.len();
        let spec = &classes.specs()[0];
        self.single_capped = spec.ceiling_percent() < 100 || spec.max_in_flight().is_some();
        self.classes = classes;
        self.resolve_classes();
        Ok(())
    }

    /// Fixes every reference to the default-class flows that `Tenants::drop_classes_from`
    /// moved from the side slab into their tenants' slots (`(slot, old id)` pairs): ring
    /// links (neighbours may have moved too), the default class's ring front and deadline
    /// entries.
    #[cold]
    pub(super) fn relink_moved_flows(&mut self, moved: &[(u32, u32)]) {
        if moved.is_empty() {
            return;
        }
        let new_id: std::collections::HashMap<u32, u32> =
            moved.iter().map(|&(idx, old)| (old, idx)).collect();
        let id = |fid: u32| new_id.get(&fid).copied().unwrap_or(fid);
        for &(idx, _) in moved {
            let f = self.tenants.flow_mut(idx);
            if f.in_ring() {
                (f.prev, f.next) = (id(f.prev), id(f.next));
            }
        }
        for &(idx, _) in moved {
            let f = *self.tenants.flow(idx);
            if f.in_ring() {
                // Neighbours on the class ring may be group flows; on an inner ring they
                // are flows.
                self.set_entry_next::<false, false>(f.prev, idx);
                self.set_entry_prev::<false, false>(f.next, idx);
            }
        }
        self.rings[0].front = id(self.rings[0].front);
        for front in self.groups.fronts_mut() {
            if *front != NIL {
                *front = id(*front);
            }
        }
        if self
            .deadlines
            .iter()
            .any(|Reverse(e)| new_id.contains_key(&e.flow))
        {
            let mut entries = std::mem::take(&mut self.deadlines).into_vec();
            for Reverse(e) in &mut entries {
                e.flow = id(e.flow);
            }
            self.deadlines = entries.into();
        }
    }

    /// The queue's classes.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.classes().len(), 1);
    /// ```
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Number of items queued in `class` (0 for an unknown class).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.class_len(ClassId::DEFAULT), 1);
    /// ```
    pub fn class_len(&self, class: ClassId) -> usize {
        self.ring_get(class).map_or(0, |r| r.items as usize)
    }

    /// Total estimated cost queued in `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(7)).unwrap();
    /// assert_eq!(q.class_queued_cost(ClassId::DEFAULT), 7);
    /// ```
    pub fn class_queued_cost(&self, class: ClassId) -> u64 {
        self.ring_get(class).map_or(0, |r| r.queued_cost)
    }

    /// Items of `class` dispatched and not yet completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(q.class_in_flight(ClassId::DEFAULT), 1);
    /// q.complete(d.ticket, 1);
    /// assert_eq!(q.class_in_flight(ClassId::DEFAULT), 0);
    /// ```
    pub fn class_in_flight(&self, class: ClassId) -> u32 {
        self.ring_get(class).map_or(0, |r| r.in_flight)
    }

    /// Lifetime counters of `class`, or `None` for an unknown class.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.class_counters(ClassId::DEFAULT).unwrap().pushed, 0);
    /// assert!(q.class_counters(ClassId::new(1)).is_none());
    /// ```
    pub fn class_counters(&self, class: ClassId) -> Option<ClassCounters> {
        self.ring_get(class).map(|r| r.counters)
    }
}
