//! # Implementation details
//!
//! Per-tenant queries and settings by key: queued and in-flight counts, counters, weights.

use super::fair_queue::*;
use super::over_share::OverShare;
use super::tenants::Attachment;
use super::tenants::{TenantCounters, TenantHandle};
use crate::push::ClassId;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A> {
    /// The key of a handle's tenant, or `None` if the handle is stale.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u8> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert_eq!(q.key(h), Some(&"acme"));
    /// q.release(h);
    /// assert_eq!(q.key(h), None);
    /// ```
    pub fn key(&self, handle: TenantHandle) -> Option<&K> {
        self.tenants.resolve(handle).map(|i| self.tenants.key(i))
    }

    /// Re-ranks tenant `idx` in the over-share heap, if one is kept.
    #[inline(always)]
    pub(super) fn touch(&mut self, idx: u32) {
        if let Some(over) = &mut self.over {
            over.update(&mut self.tenants, idx, self.config.default_weight());
        }
    }

    /// Keeps (or stops keeping) the over-share heap that [`most_over_share`] reads.
    ///
    /// [`most_over_share`]: Self::most_over_share
    pub(crate) fn set_over_share_tracking(&mut self, on: bool) {
        match (on, self.over.is_some()) {
            (true, false) => {
                let mut over = OverShare::default();
                let dw = self.config.default_weight();
                for idx in self.tenants.backlogged() {
                    over.update(&mut self.tenants, idx, dw);
                }
                self.over = Some(over);
            }
            (false, true) => self.over = None,
            _ => {}
        }
    }

    /// The backlogged tenant with the largest queued cost per unit of weight.
    pub(crate) fn most_over_share(&self) -> Option<u32> {
        self.over.as_ref().and_then(OverShare::top)
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Items currently in flight (dispatched, not completed) for tenant `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.in_flight(&"a"), 0);
    /// ```
    pub fn in_flight(&self, key: &K) -> u32 {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).in_flight)
    }

    /// Number of items queued for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!((q.tenant_len(&"a"), q.tenant_len(&"b")), (1, 0));
    /// ```
    pub fn tenant_len(&self, key: &K) -> usize {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).len as usize)
    }

    /// Sum of the costs queued for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(9)).unwrap();
    /// assert_eq!(q.tenant_queued_cost(&"a"), 9);
    /// ```
    pub fn tenant_queued_cost(&self, key: &K) -> u64 {
        self.tenants
            .find(key)
            .map_or(0, |i| self.tenants.get(i).queued_cost)
    }

    /// The cost `key` still owes from cost corrections (actual costs above its estimates),
    /// rounded up; repaid from its later rounds (see [`complete`](Self::complete)). A tenant
    /// is remembered while it owes.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// q.complete(d.ticket, 25); // estimated 1
    /// assert_eq!(q.tenant_debt(&"a"), 24);
    /// assert_eq!(q.known_tenants(), 1);
    /// ```
    pub fn tenant_debt(&self, key: &K) -> u64 {
        self.tenants.find(key).map_or(0, |i| {
            let carry = self.tenants.get(i).carry.max(0) as u64;
            carry.div_ceil(1 << UNIT_SHIFT)
        })
    }

    /// The tenant's lifetime counters, or `None` if the queue holds no state for it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.tenant_counters(&"a").unwrap().pushed, 1);
    /// ```
    pub fn tenant_counters(&self, key: &K) -> Option<TenantCounters> {
        self.tenants.find(key).map(|i| self.tenants.counters(i))
    }

    /// Number of items `key` has queued in `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// assert_eq!(q.tenant_class_len(&"a", ClassId::DEFAULT), 1);
    /// assert_eq!(q.tenant_class_len(&"a", ClassId::new(1)), 0);
    /// ```
    pub fn tenant_class_len(&self, key: &K, class: ClassId) -> usize {
        let Ok(c) = u16::try_from(class.index()) else {
            return 0;
        };
        self.tenants
            .find(key)
            .and_then(|i| self.tenants.find_flow(i, c))
            .map_or(0, |fid| self.flow_len(fid) as usize)
    }

    /// Visits every known tenant in a deterministic order (not hash order) with its queued
    /// length and counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("a", 1).unwrap();
    /// q.try_push("b", 2).unwrap();
    /// let keys: Vec<&str> = q.tenants().map(|(k, _, _)| *k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn tenants(&self) -> impl Iterator<Item = (&K, usize, TenantCounters)> + '_ {
        self.tenants
            .iter()
            .map(|(i, k, t)| (k, t.len as usize, self.tenants.counters(i)))
    }

    /// The weight in force for `key` (its override, or the default).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(4).unwrap());
    /// assert_eq!((q.weight(&"gold").get(), q.weight(&"free").get()), (4, 1));
    /// ```
    pub fn weight(&self, key: &K) -> NonZeroU32 {
        self.tenants
            .find(key)
            .and_then(|i| self.tenants.get(i).weight)
            .unwrap_or(self.config.default_weight())
    }

    /// Overrides a tenant's weight. Takes effect from the tenant's next turn; queued items stay.
    ///
    /// # Panics
    ///
    /// If the queue already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(2).unwrap());
    /// for i in 0..4 { q.try_push("gold", i).unwrap(); q.try_push("free", 10 + i).unwrap(); }
    /// let first: Vec<u32> = (0..6).filter_map(|_| q.pop()).collect();
    /// assert_eq!(first, [0, 1, 10, 2, 3, 11]);
    /// ```
    #[track_caller]
    pub fn set_weight(&mut self, key: K, weight: NonZeroU32) {
        let idx = self
            .tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^30 tenants)");
        self.tenants.get_mut(idx).weight = Some(weight);
        self.touch(idx);
    }

    /// Removes a tenant's weight override; it gets the default weight again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_weight("gold", NonZeroU32::new(2).unwrap());
    /// q.clear_weight(&"gold");
    /// assert_eq!(q.weight(&"gold").get(), 1);
    /// assert_eq!(q.known_tenants(), 0);
    /// ```
    pub fn clear_weight(&mut self, key: &K) {
        if let Some(idx) = self.tenants.find(key) {
            self.tenants.get_mut(idx).weight = None;
            self.touch(idx);
            self.tenants.release_if_idle(idx);
        }
    }

    /// Changes the weight of every tenant without an override. Takes effect from each
    /// tenant's next turn.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.set_default_weight(NonZeroU32::new(5).unwrap());
    /// assert_eq!(q.weight(&"anyone").get(), 5);
    /// ```
    pub fn set_default_weight(&mut self, weight: NonZeroU32) {
        self.config = self.config.with_default_weight(weight);
        if self.over.is_some() {
            // Every ratio may have changed: rebuild the heap.
            self.set_over_share_tracking(false);
            self.set_over_share_tracking(true);
        }
    }
}
