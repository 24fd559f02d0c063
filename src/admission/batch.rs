//! # Implementation details
//!
//! Batch calls: many admissions, pops or dispatches at one clock read, each with exactly the
//! outcome of the single call it replaces. The pushes look up a chunk's tenants ahead of
//! admitting them, as the queue's batch push does (see `queue/batch.rs`).

use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::error::{RejectReason, Rejected};
use crate::push::PushOptions;
use crate::queue::batch::{CHUNK, Lookups};
use crate::queue::{Dispatch, Ticket};
use std::hash::{BuildHasher, Hash};

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Admits a batch of items, each for its tenant key with its [`PushOptions`], or refuses
    /// them; one result per item, in order.
    ///
    /// The clock is read once for the whole batch: every item is admitted at that instant
    /// (rate limits, deadlines and the queue-delay clock all see the same time). Otherwise
    /// each item goes through the checks of [`try_push_with`](Self::try_push_with), one after
    /// another in the batch's order (an item sees what the items before it admitted, evicted
    /// or charged), and the admitted items are queued in that order.
    ///
    /// # Errors
    ///
    /// Each refused item comes back inside its [`Rejected`] with the binding limit, as from
    /// [`try_push_with`](Self::try_push_with) at the batch's instant; see the list of checks
    /// on [`Scheduler`].
    ///
    /// # Performance
    ///
    /// One clock read per batch, one hash of each key. As
    /// [`FairQueue::try_push_batch`](crate::FairQueue::try_push_batch), the tenants of a
    /// chunk of items are looked up together before the first of them is admitted, so their
    /// cache misses overlap. Allocates the result vector, and a buffer of one chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// use fairshare::config::{Quota, TenantLimits};
    /// use std::num::NonZeroU32;
    ///
    /// let limits = TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(2).unwrap()));
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
    ///     SchedulerConfig::new().with_tenant_limits(limits),
    ///     ManualClock::new(),
    /// );
    /// let results = s.try_push_batch((0..3).map(|i| ("acme", i, PushOptions::new())));
    /// assert!(results[0].is_ok() && results[1].is_ok());
    /// let refused = results.into_iter().nth(2).unwrap().unwrap_err();
    /// assert!(matches!(refused.reason(), RejectReason::RateLimited { .. }));
    /// assert_eq!(refused.into_inner(), 2); // nothing is lost
    /// ```
    pub fn try_push_batch<I>(&mut self, items: I) -> Vec<Result<(), Rejected<T>>>
    where
        I: IntoIterator<Item = (K, T, PushOptions)>,
    {
        let now = self.now();
        let mut out = Vec::new();
        self.try_push_batch_at(items, now, |r| out.push(r));
        out
    }

    /// [`try_push_batch`](Self::try_push_batch) at `now` (from
    /// [`clock_now`](Self::clock_now)), handing each result to `out` in order.
    pub(crate) fn try_push_batch_at<I>(
        &mut self,
        items: I,
        now: Nanos,
        mut out: impl FnMut(Result<(), Rejected<T>>),
    ) where
        I: IntoIterator<Item = (K, T, PushOptions)>,
    {
        let mut items = items.into_iter();
        let mut chunk: Vec<(K, T, PushOptions)> =
            Vec::with_capacity(items.size_hint().0.clamp(1, CHUNK));
        let mut lookups = Lookups::new();
        loop {
            chunk.extend(items.by_ref().take(CHUNK));
            if chunk.is_empty() {
                return;
            }
            self.queue
                .look_up(chunk.iter().map(|(k, _, _)| k), &mut lookups);
            for (i, (key, item, opts)) in chunk.drain(..).enumerate() {
                out(self.push_looked_up(&lookups, i, key, item, opts, now));
            }
        }
    }

    /// Item `i` of a looked-up chunk, through exactly the steps of
    /// [`try_push_with_at`](Self::try_push_with_at): the sweep, the slot, the checks, the
    /// commit.
    #[inline(always)]
    fn push_looked_up(
        &mut self,
        lookups: &Lookups,
        i: usize,
        key: K,
        item: T,
        opts: PushOptions,
        now: Nanos,
    ) -> Result<(), Rejected<T>> {
        self.sweep_cooling(now);
        let Some(idx) = self.queue.looked_up_slot(lookups, i, key) else {
            let reason = RejectReason::QueueFull {
                capacity: u64::from(u32::MAX - 1),
            };
            self.count_refusal(reason);
            #[cfg(feature = "metrics")]
            crate::metrics::refused(&self.queue, reason, Some(opts.class()), 1);
            return Err(Rejected::new(item, reason));
        };
        match self.plan_slot(idx, opts, now) {
            Ok(plan) => {
                self.commit(plan, item);
                Ok(())
            }
            Err(reason) => Err(Rejected::new(item, reason)),
        }
    }

    /// Takes up to `max` items in fair order at one clock read, as that many calls of
    /// [`pop`](Self::pop) at that instant would (stopping at the first `None`). Items whose
    /// deadline passed by then, and items the queue-delay target sheds, are not returned;
    /// they wait in [`take_returned`](Self::take_returned).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<u32, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// for i in 0..5 {
    ///     s.try_push(i, i).unwrap();
    /// }
    /// assert_eq!(s.pop_batch(3), [0, 1, 2]);
    /// assert_eq!(s.pop_batch(9), [3, 4]);
    /// ```
    pub fn pop_batch(&mut self, max: usize) -> Vec<T> {
        let now = self.now();
        let mut out = Vec::with_capacity(max.min(self.queue.len()));
        self.next_batch_at(false, max, now, |item, _| out.push(item));
        out
    }

    /// Dispatches up to `max` items in fair order at one clock read, each tracked in flight
    /// until its ticket is passed to [`complete`](Self::complete), as that many calls of
    /// [`dispatch`](Self::dispatch) at that instant would (stopping at the first `None`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<u32, u32> = Scheduler::new(SchedulerConfig::new().with_max_in_flight(Some(2)));
    /// for i in 0..5 {
    ///     s.try_push(i, i).unwrap();
    /// }
    /// let batch = s.dispatch_batch(8);
    /// assert_eq!(batch.len(), 2); // the in-flight limit stops the batch
    /// for d in batch {
    ///     assert!(s.complete(d.ticket, 1));
    /// }
    /// ```
    pub fn dispatch_batch(&mut self, max: usize) -> Vec<Dispatch<T>> {
        let now = self.now();
        let mut out = Vec::with_capacity(max.min(self.queue.len()));
        self.next_batch_at(true, max, now, |item, ticket| {
            if let Some(ticket) = ticket {
                out.push(Dispatch { item, ticket });
            }
        });
        out
    }

    /// Up to `max` calls of [`next_at`](Self::next_at) at `now`, stopping at the first
    /// `None`, each item (with its ticket, with `track`) handed to `out`.
    pub(crate) fn next_batch_at(
        &mut self,
        track: bool,
        max: usize,
        now: Nanos,
        mut out: impl FnMut(T, Option<Ticket>),
    ) {
        for _ in 0..max {
            let Some((item, ticket)) = self.next_at(track, now) else {
                return;
            };
            out(item, ticket);
        }
    }
}
