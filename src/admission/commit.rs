//! # Implementation details
//!
//! Committing a checked push (the rate state, evictions to make room, cooling) and the
//! public pushes and reservation that run checks then commit.

use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::error::{RejectReason, Rejected};
use crate::push::PushOptions;
use crate::queue::TenantHandle;
use crate::rate::gcra::Tat;
use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Cooling {
    pub(super) until: Nanos,
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// A checked admission, not yet committed: nothing is charged until
/// [`commit`](Permit::commit), and dropping the permit leaves no trace.
///
/// # Examples
///
/// ```
/// let mut s: fairshare::Scheduler<&str, String> =
///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
/// let permit = s.try_reserve("acme", fairshare::PushOptions::new().with_cost(3)).unwrap();
/// // ... build the (expensive) item only now that it will be admitted ...
/// permit.commit("report".to_string());
/// assert_eq!(s.queue().tenant_queued_cost(&"acme"), 3);
/// ```
#[derive(Debug)]
#[must_use = "dropping a permit releases the reservation"]
pub struct Permit<'a, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    pub(super) scheduler: &'a mut Scheduler<K, T, C, S>,
    pub(super) plan: Option<Plan>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) idx: u32,
    pub(super) class: u16,
    pub(super) cost: u32,
    pub(super) now: Nanos,
    pub(super) deadline: Option<Nanos>,
    /// The tenant's new TAT, if it has a rate limit (`rated`). Not an `Option`: a 16-byte
    /// `Option<Tat>` would double the plan's TAT words, and every reservation copies the plan.
    pub(super) new_tat: Tat,
    pub(super) rated: bool,
    /// Whether the class has a per-tenant quota, whose new TAT waits in
    /// [`Scheduler::staged_class_tat`].
    pub(super) class_rated: bool,
    /// Whether the tenant's group has a quota, whose new TAT waits in
    /// [`Scheduler::staged_group_tat`].
    pub(super) group_rated: bool,
    pub(super) evict_from: Option<u32>,
    /// The tenant's in-flight cap under the limits in force.
    pub(super) max_in_flight: u32,
}

impl<K, T, C, S> Permit<'_, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Queues `item` under this reservation. Cannot fail.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let p = s.try_reserve("a", fairshare::PushOptions::new()).unwrap();
    /// p.commit(7);
    /// assert_eq!(s.pop(), Some(7));
    /// ```
    pub fn commit(mut self, item: T) {
        let plan = self
            .plan
            .take()
            .expect("fairshare: permit holds its plan until used");
        self.scheduler.commit(plan, item)
    }

    /// The reserved cost.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut s: fairshare::Scheduler<&str, u32> =
    /// #     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let p = s.try_reserve("a", fairshare::PushOptions::new().with_cost(4)).unwrap();
    /// assert_eq!(p.cost(), 4);
    /// ```
    pub fn cost(&self) -> u32 {
        self.plan.map_or(0, |p| p.cost)
    }
}

impl<K, T, C, S> Drop for Permit<'_, K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if let Some(plan) = self.plan.take() {
            // Nothing was charged; forget a tenant that only the reservation created.
            self.scheduler.queue.forget_if_idle(plan.idx);
        }
    }
}

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Forgets up to a few tenants whose rate limit has fully recovered.
    ///
    /// Only the peek is inline: on most calls nobody is due, and the sweep's loop kept out of
    /// line leaves the admission check fewer live values (a shorter prologue).
    #[inline(always)]
    pub(super) fn sweep_cooling(&mut self, now: Nanos) {
        if matches!(self.cooling.peek(), Some(Reverse(c)) if c.until <= now) {
            self.sweep_due(now);
        }
    }

    /// [`sweep_cooling`](Self::sweep_cooling) once the soonest entry is due.
    #[cold]
    #[inline(never)]
    pub(super) fn sweep_due(&mut self, now: Nanos) {
        for _ in 0..4 {
            match self.cooling.peek() {
                Some(Reverse(c)) if c.until <= now => {}
                _ => return,
            }
            let Some(Reverse(c)) = self.cooling.pop() else {
                return;
            };
            let handle = TenantHandle::from_parts(c.index, c.generation);
            let Some(idx) = self.queue.resolve(handle) else {
                continue;
            };
            let until = self.latest_tat(idx);
            if until.after(now) {
                let until = until.saturated();
                self.cooling.push(Reverse(Cooling { until, ..c }));
            } else {
                // Every rate state is a fresh one's again: nothing to remember.
                self.forget_class_tats(idx);
                self.queue.attached_mut(idx).set_cooling(false);
                self.queue.forget_if_idle(idx);
            }
        }
    }

    /// The TAT of tenant `idx`'s per-tenant quota in `class` (a fresh tenant's: zero).
    pub(super) fn class_tat(&self, idx: u32, class: u16) -> Tat {
        self.class_tats
            .get(&(idx, class))
            .copied()
            .unwrap_or(Tat::ZERO)
    }

    /// The latest TAT of any rate state of tenant `idx`.
    fn latest_tat(&self, idx: u32) -> Tat {
        self.class_tats
            .range((idx, 0)..=(idx, u16::MAX))
            .map(|(_, &tat)| tat)
            .fold(self.queue.attached(idx).tat, Tat::max)
    }

    /// Drops tenant `idx`'s class rate states.
    fn forget_class_tats(&mut self, idx: u32) {
        if !self.class_tats.is_empty() {
            let keys: Vec<_> = self
                .class_tats
                .range((idx, 0)..=(idx, u16::MAX))
                .map(|(&k, _)| k)
                .collect();
            for k in keys {
                self.class_tats.remove(&k);
            }
        }
    }

    /// Commits a checked push: evictions to make room, the rate state, the link into the
    /// queue. Inlined into each push so that the plan stays in registers.
    #[inline(always)]
    pub(super) fn commit(&mut self, plan: Plan, item: T) {
        if let Some(v) = plan.evict_from {
            loop {
                let (items, cost) = self.shortfall(u64::from(plan.cost));
                if items == 0 && cost == 0 {
                    break;
                }
                let (victim, _) = self.queue.evict_head(v);
                self.outbox
                    .push(Rejected::new(victim, RejectReason::Evicted));
                self.counters.evicted += 1;
                #[cfg(feature = "metrics")]
                crate::metrics::refused(&self.queue, RejectReason::Evicted, None, 1);
                if self.config.tenant_detail() {
                    self.detail_mut(v).admission.evicted += 1;
                }
            }
            self.queue.forget_if_idle(v);
        }
        // One borrow of the slot for the common case (the tenant's own rate state): a
        // changed in-flight cap, a class rate state and the start of cooling are rare and
        // out of line.
        let cap_changed = self.queue.slot(plan.idx).max_in_flight != plan.max_in_flight;
        let mut cool_until = None;
        if plan.rated {
            let tat = plan.new_tat;
            let a = self.queue.attached_mut(plan.idx);
            a.tat = tat;
            if tat.after(plan.now) && !a.cooling() {
                cool_until = Some(tat.saturated());
            }
        }
        if cap_changed {
            self.queue
                .set_slot_in_flight_limit(plan.idx, plan.max_in_flight);
        }
        if plan.class_rated {
            let new_tat = plan.rated.then_some(plan.new_tat);
            self.commit_class_tat(plan.idx, plan.class, new_tat, plan.now);
        } else if let Some(until) = cool_until {
            self.start_cooling(plan.idx, until);
        }
        if plan.group_rated {
            self.commit_group_tat(plan.idx);
        }
        self.queue.link(
            plan.idx,
            plan.class,
            item,
            plan.cost,
            plan.now,
            plan.deadline,
        );
        self.counters.admitted += 1;
        #[cfg(feature = "metrics")]
        crate::metrics::admitted(&self.queue, plan.class);
        if self.config.tenant_detail() {
            self.detail_mut(plan.idx).admission.admitted += 1;
        }
        self.observe_pressure(plan.now);
        self.detect_admitted(plan.idx, plan.cost, plan.now);
    }

    /// Stores the new TAT of a class's per-tenant quota and starts cooling if some rate
    /// state of the tenant now differs from a fresh one's.
    #[cold]
    #[inline(never)]
    pub(super) fn commit_class_tat(
        &mut self,
        idx: u32,
        class: u16,
        new_tat: Option<Tat>,
        now: Nanos,
    ) {
        let tat = self.staged_class_tat;
        self.class_tats.insert((idx, class), tat);
        // Remembered until every rate state of the tenant equals a fresh one's.
        let until = new_tat.map_or(tat, |t| t.max(tat));
        if until.after(now) && !self.queue.attached(idx).cooling() {
            self.start_cooling(idx, until.saturated());
        }
    }

    /// Marks tenant `idx` as cooling until `until`: it is remembered (not forgotten when
    /// idle) until its rate state equals a fresh one's. Once per cooling period.
    #[cold]
    #[inline(never)]
    pub(super) fn start_cooling(&mut self, idx: u32, until: Nanos) {
        let handle = self.queue.slot_handle(idx);
        self.queue.attached_mut(idx).set_cooling(true);
        self.cooling.push(Reverse(Cooling {
            until,
            index: handle.index,
            generation: handle.generation,
        }));
    }

    /// Admits `item` for `key` with the default [`PushOptions`] (cost 1, the default class,
    /// no deadline), or refuses it.
    ///
    /// # Errors
    ///
    /// See [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.try_push("a", 1).unwrap();
    /// assert_eq!(s.pop(), Some(1));
    /// ```
    #[inline]
    pub fn try_push(&mut self, key: K, item: T) -> Result<(), Rejected<T>> {
        self.try_push_with(key, item, PushOptions::new())
    }

    /// Admits `item` for `key` with its cost, class and deadline, or refuses it. Items evicted
    /// to make room for it (by [`ShedPolicy::EvictOverShare`](crate::config::ShedPolicy::EvictOverShare)) come back through
    /// [`take_returned`](Self::take_returned).
    ///
    /// # Errors
    ///
    /// The item comes back inside [`Rejected`] with the binding limit; see the list of checks
    /// on [`Scheduler`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, RejectReason, Limit, Scheduler};
    /// use fairshare::config::{Capacity, SchedulerConfig};
    /// let cfg = SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(10));
    /// let mut s: Scheduler<&str, &str> = Scheduler::new(cfg);
    /// s.try_push_with("a", "big", PushOptions::new().with_cost(8)).unwrap();
    /// let err = s.try_push_with("b", "more", PushOptions::new().with_cost(3)).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::CapacityFull { limit: Limit::Cost(10) });
    /// ```
    #[inline]
    pub fn try_push_with(&mut self, key: K, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let now = self.now();
        self.try_push_with_at(key, item, opts, now)
    }

    /// Admits `item` for the tenant behind `handle` (from [`tenant`](Self::tenant)), without
    /// hashing its key.
    ///
    /// # Errors
    ///
    /// As [`try_push_with`](Self::try_push_with), after [`RejectReason::StaleHandle`] if the
    /// handle's tenant was forgotten.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// let acme = s.tenant("acme");
    /// s.try_push_to(acme, 1, PushOptions::new().with_cost(2)).unwrap();
    /// assert_eq!(s.queue().tenant_queued_cost(&"acme"), 2);
    /// s.pop();
    /// s.release(acme);
    /// let err = s.try_push_to(acme, 2, PushOptions::new()).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::StaleHandle);
    /// ```
    pub fn try_push_to(
        &mut self,
        handle: TenantHandle,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let now = self.now();
        self.sweep_cooling(now);
        let Some(idx) = self.queue.resolve(handle) else {
            self.count_refusal(RejectReason::StaleHandle);
            #[cfg(feature = "metrics")]
            crate::metrics::refused(
                &self.queue,
                RejectReason::StaleHandle,
                Some(opts.class()),
                1,
            );
            return self.queue.reject(item, RejectReason::StaleHandle);
        };
        match self.plan_slot(idx, opts, now) {
            Ok(plan) => {
                self.commit(plan, item);
                Ok(())
            }
            Err(reason) => Err(Rejected::new(item, reason)),
        }
    }

    /// Checks an item of `opts` for `key` and reserves its admission; nothing is charged until
    /// [`Permit::commit`].
    ///
    /// # Errors
    ///
    /// The binding limit, as for [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("x", BlockReason::Billing);
    /// let err = s.try_reserve("x", PushOptions::new()).unwrap_err();
    /// assert_eq!(err, RejectReason::Blocked { reason: BlockReason::Billing });
    /// ```
    pub fn try_reserve(
        &mut self,
        key: K,
        opts: PushOptions,
    ) -> Result<Permit<'_, K, T, C, S>, RejectReason> {
        let now = self.now();
        let plan = self.plan(key, opts, now)?;
        Ok(Permit {
            scheduler: self,
            plan: Some(plan),
        })
    }

    /// Pushes at a time read once (by [`try_push_with`](Self::try_push_with), or once for a
    /// whole batch by the shared handle's batch calls); `now` must come from
    /// [`clock_now`](Self::clock_now). One function with the checks and the commit inlined,
    /// so the plan never goes through memory; kept out of line so each caller shares it.
    #[inline(never)]
    pub(crate) fn try_push_with_at(
        &mut self,
        key: K,
        item: T,
        opts: PushOptions,
        now: Nanos,
    ) -> Result<(), Rejected<T>> {
        match self.plan(key, opts, now) {
            Ok(plan) => {
                self.commit(plan, item);
                Ok(())
            }
            Err(reason) => Err(Rejected::new(item, reason)),
        }
    }
}
