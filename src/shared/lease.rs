//! # Implementation details
//!
//! Dispatched work: a [`Job`] is the item with its [`Lease`], and the lease frees the
//! in-flight slot when completed or dropped, feeding the adaptive limit on the way.

use super::handle::*;
use crate::adaptive::Outcome;
use crate::clock::{Clock, Nanos, StdClock};
use crate::queue::{DefaultHashBuilder, Ticket};
use std::fmt;
use std::hash::{BuildHasher, Hash};

/// A dispatched item and its [`Lease`].
///
/// # Examples
///
/// ```
/// use fairshare::{SchedulerConfig, SharedScheduler};
/// let h: SharedScheduler<&str, String> = SharedScheduler::new(SchedulerConfig::new());
/// h.try_push("a", "job".to_string()).unwrap();
/// let job = h.try_dispatch().unwrap();
/// assert_eq!(job.item, "job");
/// job.lease.complete(1);
/// ```
#[non_exhaustive]
pub struct Job<K, T, C = StdClock, S = DefaultHashBuilder>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The item to run.
    pub item: T,
    /// Complete it (or drop it) when the work is done.
    pub lease: Lease<K, T, C, S>,
}

/// The in-flight slot of a dispatched item. [`complete`](Lease::complete) reports the actual
/// cost (correcting the tenant's share); dropping the lease, including while unwinding from a
/// panic, completes it at its estimated cost. Either way the slot is released exactly once.
///
/// # Examples
///
/// ```
/// use fairshare::{SchedulerConfig, SharedScheduler};
/// let h: SharedScheduler<&str, u8> =
///     SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
/// h.try_push("a", 1).unwrap();
/// h.try_push("a", 2).unwrap();
/// let job = h.try_dispatch().unwrap();
/// assert!(h.try_dispatch().is_none()); // the one slot is held by the lease
/// drop(job); // dropping releases it
/// assert!(h.try_dispatch().is_some());
/// ```
#[must_use = "dropping a lease completes the item at its estimated cost"]
pub struct Lease<K, T, C = StdClock, S = DefaultHashBuilder>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    pub(super) handle: SharedScheduler<K, T, C, S>,
    pub(super) ticket: Option<Ticket>,
    pub(super) dispatched_at: Nanos,
}

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    pub(super) fn finish(
        &self,
        ticket: Ticket,
        actual_cost: u32,
        dispatched_at: Nanos,
        outcome: Outcome,
    ) {
        let mut state = self.lock();
        state.scheduler.complete(ticket, actual_cost);
        let mut freed = 1;
        if let Some(mut adaptive) = state.adaptive.take() {
            let latency = state.scheduler.clock_now().saturating_since(dispatched_at);
            let before = state.scheduler.queue().in_flight_limit().unwrap_or(0);
            let limit = adaptive.on_sample(latency, outcome);
            state.scheduler.set_in_flight_limit(Some(limit));
            state.adaptive = Some(adaptive);
            freed += limit.saturating_sub(before) as usize;
        }
        let queued = state.scheduler.queue().len();
        let plan = state.waiters.plan_wake(freed.min(queued));
        self.apply(plan);
    }
}

impl<K, T, C, S> Lease<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The cost the item was pushed with.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push_with("a", 1, PushOptions::new().with_cost(6)).unwrap();
    /// assert_eq!(h.try_dispatch().unwrap().lease.cost(), 6);
    /// ```
    pub fn cost(&self) -> u32 {
        self.ticket.as_ref().map_or(0, Ticket::cost)
    }

    /// Completes the item successfully with its actual cost.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// h.try_dispatch().unwrap().lease.complete(3);
    /// assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    /// ```
    pub fn complete(self, actual_cost: u32) {
        self.complete_with(actual_cost, Outcome::Success);
    }

    /// Completes the item with its actual cost and how it went (a failure makes an adaptive
    /// limit back off).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::adaptive::Outcome;
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// h.try_dispatch().unwrap().lease.complete_with(1, Outcome::Failure);
    /// ```
    pub fn complete_with(mut self, actual_cost: u32, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.handle
                .finish(ticket, actual_cost, self.dispatched_at, outcome);
        }
    }
}

impl<K, T, C, S> Drop for Lease<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let cost = ticket.cost();
            self.handle
                .finish(ticket, cost, self.dispatched_at, Outcome::Dropped);
        }
    }
}

impl<K, T, C, S> fmt::Debug for Lease<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("ticket", &self.ticket)
            .field("dispatched_at", &self.dispatched_at)
            .finish_non_exhaustive()
    }
}

impl<K, T, C, S> fmt::Debug for Job<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}
