//! # Implementation details
//!
//! Groups of tenants in the scheduler: membership, weight, block and purge go to the queue;
//! a group's limits (a rate quota, caps on what its members queue together, an in-flight
//! limit) are checked here, after the tenant's own checks, for members only (an ungrouped
//! tenant never reaches this file).

use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::config::TenantLimits;
use crate::error::{BlockReason, Limit, RejectReason};
use crate::rate::gcra::{Gcra, Tat};
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

/// A group's limits as the check reads them, and its rate state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupAdmission {
    limits: TenantLimits,
    rate: Option<Gcra>,
    tat: Tat,
}

impl GroupAdmission {
    /// The largest cost the group's limits can ever admit, if they bound it.
    pub(super) fn never_above(&self) -> Option<u64> {
        let burst = self.limits.quota().map(|q| u64::from(q.burst().get()));
        match (burst, self.limits.max_cost()) {
            (Some(b), Some(c)) => Some(b.min(c)),
            (b, c) => b.or(c),
        }
    }
}

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The limits of tenant `idx`'s group, if it is in a group that has limits.
    pub(super) fn group_rules(&self, idx: u32) -> Option<GroupAdmission> {
        if self.group_admission.is_empty() {
            return None;
        }
        let key = self.queue.group_key_of_slot(idx)?;
        self.group_admission.get(key).copied()
    }

    /// The group checks of an item of `cost` from member `idx`: the group's rate, then its
    /// caps. Returns whether the group has a quota (see
    /// [`stage_group_tat`](Self::stage_group_tat)).
    pub(super) fn check_group(
        &self,
        idx: u32,
        group: GroupAdmission,
        cost: u32,
        now: Nanos,
    ) -> Result<bool, RejectReason> {
        let new_tat = match group.rate {
            Some(rate) => Some(
                rate.check(group.tat, now, cost)
                    .map_err(|retry_at| RejectReason::GroupRateLimited { retry_at })?,
            ),
            None => None,
        };
        let Some((len, queued_cost)) = self.queue.group_totals_of_slot(idx) else {
            return Ok(false);
        };
        if let Some(max) = group.limits.max_cost() {
            if queued_cost.saturating_add(u64::from(cost)) > max {
                return Err(RejectReason::GroupFull {
                    limit: Limit::Cost(max),
                });
            }
        }
        if let Some(max) = group.limits.max_items() {
            if len >= u64::from(max) {
                return Err(RejectReason::GroupFull {
                    limit: Limit::Items(u64::from(max)),
                });
            }
        }
        Ok(new_tat.is_some())
    }

    /// Stages the new TAT of tenant `idx`'s group's quota for an item of `cost` at `now` that
    /// [`check_group`](Self::check_group) passed, for the commit; returns `true`.
    #[cold]
    pub(super) fn stage_group_tat(&mut self, idx: u32, cost: u32, now: Nanos) -> bool {
        let group = self.group_rules(idx);
        if let Some((rate, tat)) = group.and_then(|g| Some((g.rate?, g.tat))) {
            if let Ok(tat) = rate.check(tat, now, cost) {
                self.staged_group_tat = tat;
            }
        }
        true
    }

    /// Stores the new TAT of tenant `idx`'s group's quota that the committed plan decided.
    pub(super) fn commit_group_tat(&mut self, idx: u32) {
        let tat = self.staged_group_tat;
        if let Some(key) = self.queue.group_key_of_slot(idx) {
            if let Some(group) = self.group_admission.get_mut(key) {
                group.tat = tat;
            }
        }
    }

    /// Puts tenant `key` in group `group`: the group's members share its turn (see
    /// [`FairQueue`](crate::FairQueue)'s `# Fairness`) and its limits. Work already queued
    /// moves with the tenant.
    ///
    /// # Panics
    ///
    /// If the tenant table holds `2^30` tenants or the group table `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_group("alice", "acme");
    /// assert_eq!(s.queue().group(&"alice"), Some(&"acme"));
    /// ```
    #[track_caller]
    pub fn set_group(&mut self, key: K, group: K) {
        self.queue.set_group(key, group);
    }

    /// Takes tenant `key` out of its group; returns whether it was in one.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_group("alice", "acme");
    /// assert!(s.clear_group(&"alice"));
    /// ```
    pub fn clear_group(&mut self, key: &K) -> bool {
        self.queue.clear_group(key)
    }

    /// Sets group `group`'s weight (its share against other groups and ungrouped tenants).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_group_weight("acme", NonZeroU32::new(2).unwrap());
    /// assert_eq!(s.queue().group_weight(&"acme").get(), 2);
    /// ```
    #[track_caller]
    pub fn set_group_weight(&mut self, group: K, weight: NonZeroU32) {
        self.queue.set_group_weight(group, weight);
    }

    /// Limits group `group`'s members together: `limits`' quota is the group's rate, its
    /// caps bound what the members queue together, its in-flight limit what they run
    /// together. Refusals: [`RejectReason::GroupRateLimited`] and
    /// [`RejectReason::GroupFull`], checked after the tenant's own rate and caps and the
    /// room; a cost above the group's burst or cost cap is
    /// [`TooLarge`](RejectReason::TooLarge). Replaces the group's limits (its rate state is
    /// kept); [`TenantLimits::UNLIMITED`] removes them.
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::TenantLimits;
    /// use fairshare::{RejectReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_group("alice", "acme");
    /// s.set_group("bob", "acme");
    /// s.set_group_limits("acme", TenantLimits::new().with_max_items(1));
    /// s.try_push("alice", 1).unwrap();
    /// let err = s.try_push("bob", 2).unwrap_err();
    /// assert!(matches!(err.reason(), RejectReason::GroupFull { .. }));
    /// ```
    #[track_caller]
    pub fn set_group_limits(&mut self, group: K, limits: TenantLimits) {
        self.queue
            .set_group_in_flight_limit(group.clone(), limits.max_in_flight());
        if limits == TenantLimits::UNLIMITED {
            self.group_admission.remove(&group);
            return;
        }
        let rate = limits.quota().map(|q| Gcra::new(&q));
        let tat = self
            .group_admission
            .get(&group)
            .map_or(Tat::ZERO, |g| g.tat);
        self.group_admission
            .insert(group, GroupAdmission { limits, rate, tat });
    }

    /// Group `group`'s limits ([`TenantLimits::UNLIMITED`] if it has none).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::TenantLimits;
    /// let s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.group_limits(&"acme"), TenantLimits::UNLIMITED);
    /// ```
    pub fn group_limits(&self, group: &K) -> TenantLimits {
        self.group_admission
            .get(group)
            .map_or(TenantLimits::UNLIMITED, |g| g.limits)
    }

    /// Refuses every later push of group `group`'s members with
    /// [`RejectReason::Blocked`] (right after a block of the tenant itself). What they have
    /// queued stays; see [`purge_group`](Self::purge_group).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, RejectReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// s.set_group("alice", "acme");
    /// s.block_group("acme", BlockReason::Abuse);
    /// let err = s.try_push("alice", 1).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::Blocked { reason: BlockReason::Abuse });
    /// ```
    #[track_caller]
    pub fn block_group(&mut self, group: K, reason: BlockReason) {
        self.queue.block_group(group, reason);
    }

    /// Lifts group `group`'s block; returns the reason it had.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::BlockReason;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.block_group("acme", BlockReason::Abuse);
    /// assert_eq!(s.unblock_group(&"acme"), Some(BlockReason::Abuse));
    /// ```
    pub fn unblock_group(&mut self, group: &K) -> Option<BlockReason> {
        self.queue.unblock_group(group)
    }

    /// Removes and returns every item group `group`'s members have queued, member by member
    /// as [`purge`](Self::purge) does for one tenant (their rate charges refunded likewise).
    /// O(known tenants).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.set_group("alice", "acme");
    /// s.try_push("alice", 1).unwrap();
    /// s.try_push("carol", 2).unwrap();
    /// assert_eq!(s.purge_group(&"acme"), [1]);
    /// assert_eq!(s.queue().len(), 1);
    /// ```
    pub fn purge_group(&mut self, group: &K) -> Vec<T> {
        let mut out = Vec::new();
        for key in self.queue.member_keys(group) {
            out.extend(self.purge(&key));
        }
        out
    }
}
