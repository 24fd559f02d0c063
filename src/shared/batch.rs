//! # Implementation details
//!
//! Batch calls: many pushes, pops or dispatches under one lock and one clock read, through
//! the scheduler's own batch calls.

use super::handle::*;
use super::lease::{Job, Lease};
use crate::clock::Clock;
use crate::error::{RejectReason, Rejected};
use crate::push::PushOptions;
use std::hash::{BuildHasher, Hash};

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Admits a batch under one lock; one result per item, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<u32, u32> = SharedScheduler::new(SchedulerConfig::new());
    /// let results = h.try_push_batch((0..4).map(|i| (i % 2, i, PushOptions::new())));
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// assert_eq!(h.len(), 4);
    /// ```
    pub fn try_push_batch<I>(&self, items: I) -> Vec<Result<(), Rejected<T>>>
    where
        I: IntoIterator<Item = (K, T, PushOptions)>,
    {
        let items = items.into_iter();
        let mut out = Vec::with_capacity(items.size_hint().0);
        let mut state = self.lock();
        if state.closed {
            out.extend(items.map(|(_, item, _)| Err(Rejected::new(item, RejectReason::Closed))));
            return out;
        }
        // One clock read for the whole batch: the batch is admitted at one instant.
        let now = state.scheduler.clock_now();
        let mut admitted = 0;
        state.scheduler.try_push_batch_at(items, now, |result| {
            admitted += usize::from(result.is_ok());
            out.push(result);
        });
        let plan = state.waiters.plan_wake(admitted);
        self.apply(plan);
        out
    }

    /// Takes up to `max` items under one lock, without tracking them in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u32, u32> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// for i in 0..5 { h.try_push(i, i).unwrap(); }
    /// assert_eq!(h.pop_batch(3), [0, 1, 2]);
    /// ```
    pub fn pop_batch(&self, max: usize) -> Vec<T> {
        let mut state = self.lock();
        let before = state.scheduler.queue().len();
        let out = state.scheduler.pop_batch(max);
        self.made_room(&state, before - state.scheduler.queue().len());
        out
    }

    /// Dispatches up to `max` items with their leases under one lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u32, u32> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// for i in 0..5 { h.try_push(i, i).unwrap(); }
    /// let jobs = h.dispatch_batch(2);
    /// assert_eq!(jobs.len(), 2);
    /// ```
    pub fn dispatch_batch(&self, max: usize) -> Vec<Job<K, T, C, S>> {
        let mut state = self.lock();
        let before = state.scheduler.queue().len();
        let mut out = Vec::with_capacity(max.min(before));
        // One clock read for the whole batch, which is also every lease's dispatch time.
        let now = state.scheduler.clock_now();
        state
            .scheduler
            .next_batch_at(true, max, now, |item, ticket| {
                out.push(Job {
                    item,
                    lease: Lease {
                        handle: self.clone(),
                        ticket,
                        dispatched_at: now,
                    },
                });
            });
        self.made_room(&state, before - state.scheduler.queue().len());
        out
    }
}
