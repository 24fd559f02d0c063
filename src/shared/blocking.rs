//! # Implementation details
//!
//! Blocking waits for worker and producer threads, with timeouts measured in real time.

use super::handle::*;
use super::lease::Job;
use crate::clock::Clock;
use crate::error::{RejectReason, Rejected};
use crate::push::PushOptions;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Admits `item`, waiting up to `timeout` while the refusal is one that time or workers
    /// can lift (a full queue or tenant cap, a rate limit); any other refusal comes back at
    /// once.
    ///
    /// # Errors
    ///
    /// The item comes back with the last binding limit when the timeout passes, with a
    /// refusal no wait can lift, or with [`RejectReason::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, RejectReason, SchedulerConfig, SharedScheduler};
    /// use fairshare::config::Capacity;
    /// use std::time::Duration;
    /// let cfg = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(1));
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(cfg);
    /// h.try_push("a", 1).unwrap();
    /// let err = h.push_timeout("b", 2, PushOptions::new(), Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(err.reason(), RejectReason::CapacityFull { .. }));
    /// ```
    #[allow(clippy::disallowed_methods)] // blocking waits measure their timeout in real time
    pub fn push_timeout(
        &self,
        key: K,
        item: T,
        opts: PushOptions,
        timeout: Duration,
    ) -> Result<(), Rejected<T>> {
        // A timeout too large to represent (Duration::MAX, say) means no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        let mut item = item;
        loop {
            let rejected = match self.push_locked(&mut state, key.clone(), item, opts) {
                Ok(()) => return Ok(()),
                Err(rejected) => rejected,
            };
            let until = match rejected.reason() {
                RejectReason::CapacityFull { .. }
                | RejectReason::TenantFull { .. }
                | RejectReason::GroupFull { .. } => deadline,
                RejectReason::RateLimited { retry_at }
                | RejectReason::GroupRateLimited { retry_at } => {
                    let wait = retry_at.saturating_since(state.scheduler.clock_now());
                    let retry = Instant::now().checked_add(Duration::from(wait));
                    match (deadline, retry) {
                        (Some(d), Some(r)) => Some(d.min(r)),
                        (d, r) => d.or(r),
                    }
                }
                _ => return Err(rejected),
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(rejected);
            }
            item = rejected.into_inner();
            state.producers_waiting += 1;
            let (guard, _) = self.inner.room.wait_until(state, until);
            state = guard;
            state.producers_waiting -= 1;
        }
    }

    /// Waits up to `timeout` for an item, without tracking it in flight.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] or, once closed and empty, [`WaitError::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{SchedulerConfig, SharedScheduler};
    /// use fairshare::shared::WaitError;
    /// use std::time::Duration;
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// assert_eq!(h.pop_timeout(Duration::from_millis(1)), Err(WaitError::Timeout));
    /// ```
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, WaitError> {
        self.wait_for(timeout, |this, state| this.pop_locked(state))
    }

    /// Waits up to `timeout` for an item to dispatch (work queued, and a free in-flight slot).
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] or, once closed and empty, [`WaitError::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{SchedulerConfig, SharedScheduler};
    /// use std::time::Duration;
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push("a", 7).unwrap();
    /// let job = h.dispatch_timeout(Duration::from_secs(1)).unwrap();
    /// assert_eq!(job.item, 7);
    /// ```
    pub fn dispatch_timeout(&self, timeout: Duration) -> Result<Job<K, T, C, S>, WaitError> {
        self.wait_for(timeout, |this, state| this.dispatch_locked(state))
    }

    #[allow(clippy::disallowed_methods)] // blocking waits measure their timeout in real time
    pub(super) fn wait_for<R>(
        &self,
        timeout: Duration,
        mut take: impl FnMut(&Self, &mut State<K, T, C, S>) -> Option<R>,
    ) -> Result<R, WaitError> {
        // A timeout too large to represent (Duration::MAX, say) means no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        let mut spun = false;
        loop {
            if let Some(out) = take(self, &mut state) {
                return Ok(out);
            }
            if state.closed && state.scheduler.queue().is_empty() {
                return Err(WaitError::Closed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(WaitError::Timeout);
            }
            #[cfg(not(loom))]
            if !spun {
                // Work often arrives within microseconds: look again a few times with
                // exponential backoff (spin, then yield) before paying for a sleep and a
                // wake-up, as crossbeam's channels do. Only a free lock is taken, so the
                // producers are never held up by the looking.
                spun = true;
                drop(state);
                let backoff = crossbeam::utils::Backoff::new();
                while !backoff.is_completed() && deadline.is_none_or(|d| Instant::now() < d) {
                    backoff.snooze();
                    if let Some(mut st) = self.inner.state.try_lock() {
                        if let Some(out) = take(self, &mut st) {
                            return Ok(out);
                        }
                    }
                }
                state = self.lock();
                continue;
            }
            #[cfg(loom)]
            let _ = &mut spun;
            state.waiters.sleep();
            let (guard, _) = self.inner.work.wait_until(state, deadline);
            state = guard;
            state.waiters.woke();
        }
    }
}
