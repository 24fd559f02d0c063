//! # Implementation details
//!
//! Groups of tenants through the shared handle: each call runs the scheduler's under the
//! lock and wakes the waiters afterwards (see [`SharedScheduler::with_scheduler`]).

use super::handle::*;
use crate::clock::Clock;
use crate::config::TenantLimits;
use crate::error::BlockReason;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Puts tenant `key` in group `group`; see [`Scheduler::set_group`](crate::Scheduler::set_group).
    ///
    /// # Panics
    ///
    /// If the tenant table holds `2^30` tenants or the group table `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.set_group("alice", "acme");
    /// assert_eq!(h.with_scheduler(|s| s.queue().group_members(&"acme")), 1);
    /// ```
    #[track_caller]
    pub fn set_group(&self, key: K, group: K) {
        self.with_scheduler(|s| s.set_group(key, group));
    }

    /// Takes tenant `key` out of its group; see [`Scheduler::clear_group`](crate::Scheduler::clear_group).
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(!h.clear_group(&"alice"));
    /// ```
    pub fn clear_group(&self, key: &K) -> bool {
        self.with_scheduler(|s| s.clear_group(key))
    }

    /// Sets group `group`'s weight; see [`Scheduler::set_group_weight`](crate::Scheduler::set_group_weight).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.set_group_weight("acme", std::num::NonZeroU32::new(4).unwrap());
    /// ```
    #[track_caller]
    pub fn set_group_weight(&self, group: K, weight: NonZeroU32) {
        self.with_scheduler(|s| s.set_group_weight(group, weight));
    }

    /// Sets group `group`'s limits; see [`Scheduler::set_group_limits`](crate::Scheduler::set_group_limits).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::TenantLimits;
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.set_group_limits("acme", TenantLimits::new().with_max_in_flight(4));
    /// ```
    #[track_caller]
    pub fn set_group_limits(&self, group: K, limits: TenantLimits) {
        self.with_scheduler(|s| s.set_group_limits(group, limits));
    }

    /// Blocks group `group`; see [`Scheduler::block_group`](crate::Scheduler::block_group).
    ///
    /// # Panics
    ///
    /// If the group table holds `2^30` groups.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::BlockReason;
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.set_group("alice", "acme");
    /// h.block_group("acme", BlockReason::Abuse);
    /// assert!(h.try_push("alice", 1).is_err());
    /// ```
    #[track_caller]
    pub fn block_group(&self, group: K, reason: BlockReason) {
        self.with_scheduler(|s| s.block_group(group, reason));
    }

    /// Lifts group `group`'s block; see [`Scheduler::unblock_group`](crate::Scheduler::unblock_group).
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(h.unblock_group(&"acme"), None);
    /// ```
    pub fn unblock_group(&self, group: &K) -> Option<BlockReason> {
        self.with_scheduler(|s| s.unblock_group(group))
    }

    /// Removes and returns what group `group`'s members have queued; see
    /// [`Scheduler::purge_group`](crate::Scheduler::purge_group).
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.set_group("alice", "acme");
    /// h.try_push("alice", 7).unwrap();
    /// assert_eq!(h.purge_group(&"acme"), [7]);
    /// ```
    pub fn purge_group(&self, group: &K) -> Vec<T> {
        self.with_scheduler(|s| s.purge_group(group))
    }
}
