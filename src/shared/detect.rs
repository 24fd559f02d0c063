//! [`SharedScheduler`]'s noisy-tenant detection calls: the [`Scheduler`](crate::Scheduler)'s,
//! each under one short lock.

use std::hash::{BuildHasher, Hash};

use super::handle::SharedScheduler;
use crate::clock::Clock;
use crate::detect::{DetectorStats, NoisyEvent};

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Polls the noisy-tenant detector now and returns the changes to the noisy set since the
    /// last call; see [`Scheduler::poll_noisy`](crate::Scheduler::poll_noisy). Waiters are
    /// woken afterwards, as a restored response may let queued work through.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Scheduler, SchedulerConfig, SharedScheduler};
    /// use fairshare::detect::{DetectorConfig, NoisyEvent};
    ///
    /// let config = SchedulerConfig::new().with_detector(Some(DetectorConfig::new()));
    /// let h = SharedScheduler::from_scheduler(Scheduler::<&str, u32, _>::with_clock(
    ///     config,
    ///     ManualClock::new(),
    /// ));
    /// h.try_push("acme", 1).unwrap();
    /// let events = h.poll_noisy();
    /// assert!(matches!(&events[..], [NoisyEvent::Became { key: "acme", .. }]));
    /// assert!(h.is_noisy(&"acme"));
    /// ```
    pub fn poll_noisy(&self) -> Vec<NoisyEvent<K>> {
        self.with_scheduler(|s| s.poll_noisy())
    }

    /// Whether `key` is in the noisy set as of the detector's last poll (`false` with
    /// detection off).
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(!h.is_noisy(&"acme"));
    /// ```
    pub fn is_noisy(&self, key: &K) -> bool {
        let state = self.lock();
        state.scheduler.detector().is_some_and(|d| d.is_noisy(key))
    }

    /// The detector's snapshot now (as in [`Stats::detector`](crate::stats::Stats::detector)),
    /// or `None` with detection off.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{SchedulerConfig, SharedScheduler};
    /// use fairshare::detect::DetectorConfig;
    /// let on = SchedulerConfig::new().with_detector(Some(DetectorConfig::new()));
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(on);
    /// h.try_push("acme", 1).unwrap();
    /// assert_eq!(h.detector_stats().unwrap().admitted, 1);
    /// ```
    pub fn detector_stats(&self) -> Option<DetectorStats<K>> {
        let mut state = self.lock();
        let now = state.scheduler.clock_now();
        state.scheduler.detector().map(|d| d.stats(now))
    }
}
