//! # Implementation details
//!
//! Operators' calls: refunds, purge and retain, tenant handles, blocks, weights and
//! per-tenant limits, classes and the global in-flight limit, and reconfiguration.

use super::codel::CoDel;
use super::rules::Rules;
use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::config::{SchedulerConfig, ShedPolicy, TenantLimits};
use crate::error::BlockReason;
use crate::pressure::PressureGauge;
use crate::push::ClassId;
use crate::queue::{ClassCosts, Classes, NIL, TenantHandle};
use crate::rate::gcra;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Replaces the classes (see [`FairQueue::set_classes`](crate::FairQueue::set_classes)): work queued in a class stays
    /// there under the new settings. Each class's `tenant_quota` applies to pushes from now on;
    /// a removed class's per-tenant rate state goes with it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`](crate::ConfigError::InvalidClass) if a class that would
    /// be removed still holds queued or in-flight work; nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, PushOptions, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new().with_max_in_flight(Some(10)));
    /// s.set_classes(Classes::new([
    ///     ClassSpec::new("signin").with_reserved_percent(20),
    ///     ClassSpec::new("api"),
    /// ]).unwrap()).unwrap();
    /// let signin = s.classes().id("signin").unwrap();
    /// s.try_push_with("alice", 1, PushOptions::new().with_class(signin)).unwrap();
    /// let job = s.dispatch().unwrap();
    /// assert_eq!(job.ticket.class(), signin);
    /// s.complete(job.ticket, 1);
    /// ```
    pub fn set_classes(&mut self, classes: Classes) -> Result<(), crate::ConfigError> {
        self.queue.set_classes(classes)?;
        self.plain_classes = plain_classes(self.queue.classes());
        // A class added later at a removed class's index starts with fresh rate states.
        let count = self.queue.classes().len();
        self.class_tats
            .retain(|&(_, class), _| usize::from(class) < count);
        Ok(())
    }

    /// The classes work can be pushed to.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.classes().len(), 1);
    /// ```
    pub fn classes(&self) -> &Classes {
        self.queue.classes()
    }

    /// Changes the global in-flight limit at runtime (an adaptive concurrency limit drives
    /// this). Nothing in flight is revoked.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<u32, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_in_flight_limit(Some(4));
    /// assert_eq!(s.queue().in_flight_limit(), Some(4));
    /// ```
    pub fn set_in_flight_limit(&mut self, limit: Option<u32>) {
        self.config = self.config.with_max_in_flight(limit);
        self.queue.set_in_flight_limit(limit);
    }

    /// Applies a new configuration at runtime. Every queued and in-flight item stays where it
    /// is; new limits apply from the next push, a new quantum or default weight from each
    /// tenant's next turn, a new in-flight limit from the next dispatch. Per-tenant overrides
    /// (weights, limits, blocks) are kept. A changed detector config
    /// ([`SchedulerConfig::with_detector`]) ends every response in force (restoring the
    /// tenants' own settings, each reported as a [`NoisyEvent::Cleared`](crate::detect::NoisyEvent::Cleared)
    /// by [`poll_noisy`](Self::poll_noisy)) and starts detection afresh; the same config keeps
    /// the detector's state.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::config::Capacity;
    /// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new());
    /// for i in 0..3 { s.try_push("a", i).unwrap(); }
    /// s.reconfigure(SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2)));
    /// assert_eq!(s.queue().len(), 3); // nothing queued is dropped
    /// assert!(s.try_push("b", 9).is_err()); // but the new cap holds for newcomers
    /// ```
    pub fn reconfigure(&mut self, config: SchedulerConfig) {
        let old = self.config;
        self.config = config;
        self.default_rules = Rules::new(config.tenant_limits(), config.capacity());
        if old.capacity() != config.capacity() {
            for rules in &mut self.overrides {
                *rules = Rules::new(rules.limits, config.capacity());
            }
        }
        self.queue.set_queue_config(config.queue());
        self.queue
            .set_over_share_tracking(config.shed_policy() == ShedPolicy::EvictOverShare);
        self.queue.set_in_flight_limit(config.max_in_flight());
        if old.queue_delay() != config.queue_delay() {
            self.codel = config.queue_delay().map(CoDel::new);
        }
        if old.pressure() != config.pressure() {
            self.gauge = config.pressure().map(PressureGauge::new);
        }
        if old.detector() != config.detector() {
            self.replace_detection(config.detector());
        }
        if old.tenant_detail() != config.tenant_detail() {
            // Off frees the side table; on starts every tenant from zero.
            self.details = Vec::new();
        }
        if old.tenant_limits().max_in_flight() != config.tenant_limits().max_in_flight() {
            let default = config.tenant_limits().max_in_flight().unwrap_or(u32::MAX);
            let with_defaults: Vec<u32> = self
                .queue
                .slots()
                .filter(|(_, _, t)| t.attached.limits() == NIL)
                .map(|(i, _, _)| i)
                .collect();
            for idx in with_defaults {
                self.queue.set_slot_in_flight_limit(idx, default);
            }
        }
    }

    /// Removes every queued item regardless of in-flight limits, tenant by tenant (each in
    /// FIFO order, class by class), for shutdown.
    pub(crate) fn drain_all(&mut self) -> Vec<T> {
        let backlogged: Vec<u32> = self
            .queue
            .slots()
            .filter(|(_, _, t)| t.len > 0)
            .map(|(i, _, _)| i)
            .collect();
        let mut out = Vec::with_capacity(self.queue.len());
        for idx in backlogged {
            out.extend(self.queue.purge_slot(idx).0);
            self.queue.forget_if_idle(idx);
        }
        out
    }

    /// Gives `cost` back to `key`'s rate limit, for admitted work the host cancelled after
    /// dispatch. (Items removed by [`purge`](Self::purge) and [`retain`](Self::retain) are
    /// refunded automatically.)
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig, ManualClock};
    /// use fairshare::config::{Quota, TenantLimits};
    /// use std::num::NonZeroU32;
    /// let limits = TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// let mut s: Scheduler<&str, u32, _> =
    ///     Scheduler::with_clock(SchedulerConfig::new().with_tenant_limits(limits), ManualClock::new());
    /// s.try_push("a", 1).unwrap();
    /// assert!(s.try_push("a", 2).is_err());
    /// s.pop();
    /// s.refund(&"a", 1); // the job was cancelled before it ran
    /// assert!(s.try_push("a", 2).is_ok());
    /// ```
    pub fn refund(&mut self, key: &K, cost: u32) {
        let now = self.now();
        if let Some(idx) = self.queue.find_slot(key) {
            self.refund_slot(idx, u64::from(cost), now);
        }
    }

    pub(super) fn refund_slot(&mut self, idx: u32, cost: u64, now: Nanos) {
        let quota = self
            .rules_of(self.queue.attached(idx).limits())
            .limits
            .quota();
        if let Some(quota) = quota {
            let a = self.queue.attached_mut(idx);
            a.tat = gcra::refund(&quota, a.tat, now, cost);
        }
    }

    /// Refunds `cost` to tenant `idx`'s per-tenant quota in `class`, if the class has one.
    pub(super) fn refund_class_slot(&mut self, idx: u32, class: u16, cost: u64, now: Nanos) {
        let quota = self
            .queue
            .classes()
            .get(ClassId::new(class))
            .and_then(|spec| spec.tenant_quota());
        if let Some(quota) = quota {
            if let Some(tat) = self.class_tats.get_mut(&(idx, class)) {
                *tat = gcra::refund(&quota, *tat, now, cost);
            }
        }
    }

    /// Refunds removed cost to the tenant's own quota and to each class's per-tenant quota.
    pub(super) fn refund_costs(&mut self, idx: u32, costs: &ClassCosts, now: Nanos) {
        self.refund_slot(idx, costs.total, now);
        for &(class, cost) in &costs.by_class {
            self.refund_class_slot(idx, class, cost, now);
        }
    }

    /// As [`refund`](Self::refund), for work pushed to `class`: refunds `cost` to the
    /// tenant's own quota and to the class's per-tenant quota.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, ManualClock, PushOptions, Scheduler, SchedulerConfig};
    /// use fairshare::config::Quota;
    /// use std::num::NonZeroU32;
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    /// let one = Quota::per_second(NonZeroU32::new(1).unwrap());
    /// s.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("export").with_tenant_quota(Some(one))]).unwrap()).unwrap();
    /// let export = s.classes().id("export").unwrap();
    /// s.try_push_with("a", 1, PushOptions::new().with_class(export)).unwrap();
    /// assert!(s.try_push_with("a", 2, PushOptions::new().with_class(export)).is_err());
    /// s.pop();
    /// s.refund_class(&"a", export, 1); // cancelled before it ran
    /// assert!(s.try_push_with("a", 2, PushOptions::new().with_class(export)).is_ok());
    /// ```
    pub fn refund_class(&mut self, key: &K, class: ClassId, cost: u32) {
        let now = self.now();
        if let Some(idx) = self.queue.find_slot(key) {
            self.refund_slot(idx, u64::from(cost), now);
            if let Ok(c) = u16::try_from(class.index()) {
                self.refund_class_slot(idx, c, u64::from(cost), now);
            }
        }
    }

    /// Removes every queued item of `key`, hands them back in FIFO order (class by class with
    /// several classes), and refunds their cost to the tenant's rate limit and to each class's
    /// per-tenant quota.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// for i in 0..3 { s.try_push("flood", i).unwrap(); }
    /// s.block("flood", BlockReason::Abuse);
    /// assert_eq!(s.purge(&"flood"), [0, 1, 2]);
    /// ```
    pub fn purge(&mut self, key: &K) -> Vec<T> {
        let now = self.now();
        let Some(idx) = self.queue.find_slot(key) else {
            return Vec::new();
        };
        let (out, costs) = self.queue.purge_slot(idx);
        self.refund_costs(idx, &costs, now);
        self.queue.forget_if_idle(idx);
        out
    }

    /// Keeps the items of `key` for which `keep` returns `true`; hands back the others in
    /// FIFO order (class by class with several classes) and refunds their cost to the tenant's
    /// rate limit and to each class's per-tenant quota.
    ///
    /// # Panics
    ///
    /// If `keep` panics, the panic propagates and nothing is changed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// for i in 0..4 { s.try_push("a", i).unwrap(); }
    /// assert_eq!(s.retain(&"a", |i| i % 2 == 0), [1, 3]);
    /// ```
    pub fn retain(&mut self, key: &K, keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let now = self.now();
        let Some(idx) = self.queue.find_slot(key) else {
            return Vec::new();
        };
        let (out, costs) = self.queue.retain_slot(idx, keep);
        self.refund_costs(idx, &costs, now);
        self.queue.forget_if_idle(idx);
        out
    }

    /// Pins `key` so the scheduler keeps its state and counters while it is idle (see
    /// [`FairQueue::tenant`](crate::FairQueue::tenant)); undo with [`release`](Self::release).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let h = s.tenant("acme");
    /// s.try_push("acme", 1).unwrap();
    /// s.pop();
    /// assert_eq!(s.queue().tenant_counters(&"acme").unwrap().dispatched, 1);
    /// assert!(s.release(h));
    /// ```
    #[track_caller]
    pub fn tenant(&mut self, key: K) -> TenantHandle {
        self.queue.tenant(key)
    }

    /// Unpins a tenant pinned by [`tenant`](Self::tenant); see [`FairQueue::release`](crate::FairQueue::release).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// let h = s.tenant("acme");
    /// assert!(s.release(h));
    /// assert_eq!(s.queue().known_tenants(), 0);
    /// ```
    pub fn release(&mut self, handle: TenantHandle) -> bool {
        self.queue.release(handle)
    }

    /// Blocks `key`: later pushes are refused with the reason (see [`FairQueue::block`](crate::FairQueue::block)).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("a", BlockReason::Abuse);
    /// assert!(s.try_push("a", 1).is_err());
    /// ```
    #[track_caller]
    pub fn block(&mut self, key: K, reason: BlockReason) {
        self.queue.block(key, reason);
    }

    /// Lifts a block; returns the reason it had.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.block("a", BlockReason::Abuse);
    /// assert_eq!(s.unblock(&"a"), Some(BlockReason::Abuse));
    /// ```
    pub fn unblock(&mut self, key: &K) -> Option<BlockReason> {
        self.queue.unblock(key)
    }

    /// Overrides a tenant's weight (see [`FairQueue::set_weight`](crate::FairQueue::set_weight)).
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_weight("gold", NonZeroU32::new(3).unwrap());
    /// assert_eq!(s.queue().weight(&"gold").get(), 3);
    /// ```
    #[track_caller]
    pub fn set_weight(&mut self, key: K, weight: NonZeroU32) {
        self.queue.set_weight(key, weight);
    }

    /// Removes a tenant's weight override.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_weight("gold", NonZeroU32::new(3).unwrap());
    /// s.clear_weight(&"gold");
    /// assert_eq!(s.queue().weight(&"gold").get(), 1);
    /// ```
    pub fn clear_weight(&mut self, key: &K) {
        self.queue.clear_weight(key);
    }

    /// Gives `key` its own limits, replacing the defaults as a whole; takes effect on its next
    /// push. Queued items stay.
    ///
    /// # Panics
    ///
    /// If the scheduler already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{RejectReason, Scheduler, SchedulerConfig, Limit};
    /// use fairshare::config::TenantLimits;
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_limits("trial", TenantLimits::new().with_max_items(1));
    /// s.try_push("trial", 1).unwrap();
    /// let err = s.try_push("trial", 2).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::TenantFull { limit: Limit::Items(1) });
    /// ```
    #[track_caller]
    pub fn set_limits(&mut self, key: K, limits: TenantLimits) {
        let idx = self
            .queue
            .slot_of(key)
            .expect("fairshare: the tenant table is full (2^31 tenants)");
        self.queue
            .set_slot_in_flight_limit(idx, limits.max_in_flight().unwrap_or(u32::MAX));
        let rules = Rules::new(limits, self.config.capacity());
        let current = self.queue.attached(idx).limits();
        if current != NIL {
            self.overrides[current as usize] = rules;
            return;
        }
        let slot = match self.free_overrides.pop() {
            Some(slot) => {
                self.overrides[slot as usize] = rules;
                slot
            }
            None => {
                self.overrides.push(rules);
                (self.overrides.len() - 1) as u32
            }
        };
        self.queue.attached_mut(idx).set_limits(slot);
    }

    /// Removes `key`'s own limits; it gets the defaults again.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::config::TenantLimits;
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_limits("a", TenantLimits::new().with_max_items(1));
    /// s.clear_limits(&"a");
    /// assert_eq!(s.limits(&"a"), TenantLimits::UNLIMITED);
    /// ```
    pub fn clear_limits(&mut self, key: &K) {
        let Some(idx) = self.queue.find_slot(key) else {
            return;
        };
        let default_in_flight = self
            .config
            .tenant_limits()
            .max_in_flight()
            .unwrap_or(u32::MAX);
        self.queue.set_slot_in_flight_limit(idx, default_in_flight);
        let a = self.queue.attached_mut(idx);
        if a.limits() != NIL {
            self.free_overrides.push(a.limits());
            a.set_limits(NIL);
            self.queue.forget_if_idle(idx);
        }
    }

    /// The limits in force for `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::config::TenantLimits;
    /// let s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// assert_eq!(s.limits(&"anyone"), TenantLimits::UNLIMITED);
    /// ```
    pub fn limits(&self, key: &K) -> TenantLimits {
        let idx = self
            .queue
            .find_slot(key)
            .map_or(NIL, |i| self.queue.attached(i).limits());
        self.rules_of(idx).limits
    }
}
