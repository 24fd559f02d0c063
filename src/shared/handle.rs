//! [`SharedScheduler`]: the thread-safe, cloneable handle.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::waiters::{Waiters, WakePlan};
use crate::adaptive::{AdaptiveLimit, Outcome};
use crate::admission::{Scheduler, SchedulerConfig};
use crate::clock::{Clock, Nanos, StdClock};
use crate::error::{RejectReason, Rejected};
use crate::pressure::PressureLevel;
use crate::push::PushOptions;
use crate::queue::{DefaultHashBuilder, TenantHandle, Ticket};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Why a wait for work ended without work.
///
/// # Examples
///
/// ```
/// assert_eq!(fairshare::shared::WaitError::Timeout.to_string(), "timed out waiting for work");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed with no work.
    #[error("timed out waiting for work")]
    Timeout,
    /// The scheduler was closed and holds no more work.
    #[error("scheduler is closed")]
    Closed,
}

/// A cloneable, `Send + Sync` handle to one [`Scheduler`], for many producer and worker
/// threads or async tasks.
///
/// Every call takes one short lock; batch calls take it once per batch. Workers wait with
/// [`dispatch_timeout`](Self::dispatch_timeout) (threads) or
/// [`dispatch_async`](Self::dispatch_async) (any async runtime: the future uses only
/// [`std::task::Waker`]), and every dispatched item comes with a [`Lease`] that returns its
/// in-flight slot when completed or dropped, also during a panic. Producers can wait for room
/// with [`push_timeout`](Self::push_timeout) and read [`pressure`](Self::pressure) to push
/// back on their own clients. [`close`](Self::close) refuses new work, wakes every waiter and
/// hands back everything still queued.
///
/// The handle owns no thread, timer or runtime. The only real time it reads is for the
/// timeouts of the blocking calls; scheduling decisions use the scheduler's [`Clock`].
///
/// # Examples
///
/// ```
/// use fairshare::{SchedulerConfig, SharedScheduler};
/// use std::time::Duration;
///
/// let handle: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
/// let worker = {
///     let handle = handle.clone();
///     std::thread::spawn(move || {
///         let job = handle.dispatch_timeout(Duration::from_secs(10)).unwrap();
///         let item = job.item;
///         job.lease.complete(1);
///         item
///     })
/// };
/// handle.try_push("acme", 42).unwrap();
/// assert_eq!(worker.join().unwrap(), 42);
/// ```
pub struct SharedScheduler<K, T, C = StdClock, S = DefaultHashBuilder> {
    inner: Arc<Inner<K, T, C, S>>,
}

struct Inner<K, T, C, S> {
    state: Mutex<State<K, T, C, S>>,
    /// Workers wait here for work.
    work: Condvar,
    /// Producers wait here for room.
    room: Condvar,
}

struct State<K, T, C, S> {
    scheduler: Scheduler<K, T, C, S>,
    closed: bool,
    waiters: Waiters,
    producers_waiting: usize,
    adaptive: Option<AdaptiveLimit>,
}

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
    handle: SharedScheduler<K, T, C, S>,
    ticket: Option<Ticket>,
    dispatched_at: Nanos,
}

// ===== impl SharedScheduler =====

impl<K, T, C, S> Clone for SharedScheduler<K, T, C, S> {
    fn clone(&self) -> Self {
        SharedScheduler {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T, C, S> fmt::Debug for SharedScheduler<K, T, C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedScheduler").finish_non_exhaustive()
    }
}

impl<K, T> SharedScheduler<K, T> {
    /// A handle to a new scheduler on the real clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u64, String> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(h.is_empty());
    /// ```
    pub fn new(config: SchedulerConfig) -> Self {
        Self::from_scheduler(Scheduler::new(config))
    }
}

impl<K, T, C, S> SharedScheduler<K, T, C, S> {
    /// A handle to an existing scheduler (any clock, any hasher).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Scheduler, SchedulerConfig, SharedScheduler};
    /// let s: Scheduler<u64, u8, _> = Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    /// let h = SharedScheduler::from_scheduler(s);
    /// assert!(h.is_empty());
    /// ```
    pub fn from_scheduler(scheduler: Scheduler<K, T, C, S>) -> Self {
        SharedScheduler {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    scheduler,
                    closed: false,
                    waiters: Waiters::default(),
                    producers_waiting: 0,
                    adaptive: None,
                }),
                work: Condvar::new(),
                room: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, T, C, S>> {
        self.inner.state.lock()
    }

    /// Number of queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u64, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(h.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().scheduler.queue().len()
    }

    /// Whether nothing is queued.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u64, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(h.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u64, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert!(!h.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Wakes `plan`'s waiters. Called with the lock held, so no waiter can slip between the
    /// check and the sleep.
    fn apply(&self, plan: WakePlan) {
        for _ in 0..plan.threads {
            self.inner.work.notify_one();
        }
        for waker in plan.tasks {
            waker.wake();
        }
    }
}

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Runs `f` on the scheduler under the lock (queries, operator actions such as `block`,
    /// `purge` or `set_limits`). Waiters are woken for any items `f` added.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push("flood", 1).unwrap();
    /// let purged = h.with_scheduler(|s| {
    ///     s.block("flood", BlockReason::Abuse);
    ///     s.purge(&"flood")
    /// });
    /// assert_eq!(purged, [1]);
    /// ```
    pub fn with_scheduler<R>(&self, f: impl FnOnce(&mut Scheduler<K, T, C, S>) -> R) -> R {
        let mut state = self.lock();
        let (len, version) = (state.scheduler.queue().len(), state.scheduler.version());
        let out = f(&mut state.scheduler);
        let (after, changed) = (
            state.scheduler.queue().len(),
            state.scheduler.version() != version,
        );
        // New items wake that many workers; a changed limit may let any queued item through.
        let wake = if changed {
            after
        } else {
            after.saturating_sub(len)
        };
        if wake > 0 {
            let plan = state.waiters.plan_wake(wake);
            self.apply(plan);
        }
        // Removed items or changed limits may make room for any waiting producer.
        if (after < len || changed) && state.producers_waiting > 0 {
            self.inner.room.notify_all();
        }
        out
    }

    /// Admits `item` for `key` with the default [`PushOptions`]; see
    /// [`Scheduler::try_push_with`].
    ///
    /// # Errors
    ///
    /// The item comes back with the binding limit, or with [`RejectReason::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// assert_eq!(h.len(), 1);
    /// ```
    pub fn try_push(&self, key: K, item: T) -> Result<(), Rejected<T>> {
        self.try_push_with(key, item, PushOptions::new())
    }

    /// Admits `item` for `key` with its cost, class and deadline; see
    /// [`Scheduler::try_push_with`].
    ///
    /// # Errors
    ///
    /// The item comes back with the binding limit, or with [`RejectReason::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push_with("a", 1, PushOptions::new().with_cost(4)).unwrap();
    /// assert_eq!(h.with_scheduler(|s| s.queue().queued_cost()), 4);
    /// ```
    pub fn try_push_with(&self, key: K, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let mut state = self.lock();
        self.push_locked(&mut state, key, item, opts)
    }

    /// Admits `item` for the tenant behind `handle` (from [`tenant`](Self::tenant)); see
    /// [`Scheduler::try_push_to`].
    ///
    /// # Errors
    ///
    /// The item comes back with the binding limit, with [`RejectReason::StaleHandle`], or with
    /// [`RejectReason::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// let acme = h.tenant("acme");
    /// h.try_push_to(acme, 1, PushOptions::new()).unwrap();
    /// assert_eq!(h.try_pop(), Some(1));
    /// ```
    pub fn try_push_to(
        &self,
        handle: TenantHandle,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Rejected::new(item, RejectReason::Closed));
        }
        state.scheduler.try_push_to(handle, item, opts)?;
        let plan = state.waiters.plan_wake(1);
        self.apply(plan);
        Ok(())
    }

    /// Pins tenant `key` and returns its handle; see [`Scheduler::tenant`].
    ///
    /// # Panics
    ///
    /// As [`Scheduler::tenant`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(h.tenant("acme"), h.tenant("acme"));
    /// ```
    #[track_caller]
    pub fn tenant(&self, key: K) -> TenantHandle {
        self.lock().scheduler.tenant(key)
    }

    /// Unpins a tenant pinned by [`tenant`](Self::tenant); see [`Scheduler::release`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// let acme = h.tenant("acme");
    /// assert!(h.release(acme));
    /// assert!(!h.release(acme)); // already forgotten
    /// ```
    pub fn release(&self, handle: TenantHandle) -> bool {
        self.lock().scheduler.release(handle)
    }

    fn push_locked(
        &self,
        state: &mut State<K, T, C, S>,
        key: K,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        if state.closed {
            return Err(Rejected::new(item, RejectReason::Closed));
        }
        state.scheduler.try_push_with(key, item, opts)?;
        let plan = state.waiters.plan_wake(1);
        self.apply(plan);
        Ok(())
    }

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
        // One clock read for the whole batch: the batch is admitted at one instant.
        let now = state.scheduler.clock_now();
        let mut admitted = 0;
        for (key, item, opts) in items {
            let result = if state.closed {
                Err(Rejected::new(item, RejectReason::Closed))
            } else {
                state.scheduler.try_push_with_at(key, item, opts, now)
            };
            admitted += usize::from(result.is_ok());
            out.push(result);
        }
        let plan = state.waiters.plan_wake(admitted);
        self.apply(plan);
        out
    }

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
                RejectReason::CapacityFull { .. } | RejectReason::TenantFull { .. } => deadline,
                RejectReason::RateLimited { retry_at } => {
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

    /// Takes the next item, if one may be dispatched now, without tracking it in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// assert_eq!(h.try_pop(), Some(1));
    /// ```
    pub fn try_pop(&self) -> Option<T> {
        let mut state = self.lock();
        self.pop_locked(&mut state)
    }

    fn pop_locked(&self, state: &mut State<K, T, C, S>) -> Option<T> {
        let before = state.scheduler.queue().len();
        let item = state.scheduler.pop();
        // Expired or shed items leave too: wake producers for every item that left.
        self.made_room(state, before - state.scheduler.queue().len());
        item
    }

    /// Producers wait for different things (global room, their tenant's room, a rate
    /// limit), so one freed slot may serve a producer behind another: wake them all and let
    /// each re-check. Workers, who all wait for the same thing, are woken one per item.
    fn made_room(&self, state: &State<K, T, C, S>, n: usize) {
        if n > 0 && state.producers_waiting > 0 {
            self.inner.room.notify_all();
        }
    }

    /// Dispatches the next item with its [`Lease`], if one may be dispatched now.
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<&str, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// let job = h.try_dispatch().unwrap();
    /// job.lease.complete(1);
    /// ```
    pub fn try_dispatch(&self) -> Option<Job<K, T, C, S>> {
        let mut state = self.lock();
        self.dispatch_locked(&mut state)
    }

    fn dispatch_locked(&self, state: &mut State<K, T, C, S>) -> Option<Job<K, T, C, S>> {
        let before = state.scheduler.queue().len();
        let now = state.scheduler.clock_now();
        let job = self.dispatch_at(state, now);
        self.made_room(state, before - state.scheduler.queue().len());
        job
    }

    /// Dispatches one item at `now` (read once per batch); the caller wakes producers.
    fn dispatch_at(&self, state: &mut State<K, T, C, S>, now: Nanos) -> Option<Job<K, T, C, S>> {
        let (item, ticket) = state.scheduler.next_at(true, now)?;
        Some(Job {
            item,
            lease: Lease {
                handle: self.clone(),
                ticket,
                dispatched_at: now,
            },
        })
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
        let mut out = Vec::with_capacity(max.min(before));
        let now = state.scheduler.clock_now();
        while out.len() < max {
            match state.scheduler.next_at(false, now) {
                Some((item, _)) => out.push(item),
                None => break,
            }
        }
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
        let mut out = Vec::new();
        let now = state.scheduler.clock_now();
        while out.len() < max {
            match self.dispatch_at(&mut state, now) {
                Some(job) => out.push(job),
                None => break,
            }
        }
        self.made_room(&state, before - state.scheduler.queue().len());
        out
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
    fn wait_for<R>(
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

    /// A future that resolves to the next item to dispatch, for any async runtime.
    ///
    /// # Errors
    ///
    /// The future resolves to [`WaitError::Closed`] once the scheduler is closed and empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{SchedulerConfig, SharedScheduler};
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    ///
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// let mut fut = pin!(h.dispatch_async());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(fut.as_mut().poll(&mut cx).is_pending());
    /// h.try_push("a", 9).unwrap(); // wakes the future's task
    /// match fut.as_mut().poll(&mut cx) {
    ///     Poll::Ready(Ok(job)) => assert_eq!(job.item, 9),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn dispatch_async(&self) -> Dispatching<'_, K, T, C, S> {
        Waiting {
            handle: self,
            id: None,
            take: |h, state| h.dispatch_locked(state),
        }
    }

    /// A future that resolves to the next item, without tracking it in flight.
    ///
    /// # Errors
    ///
    /// The future resolves to [`WaitError::Closed`] once the scheduler is closed and empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{SchedulerConfig, SharedScheduler};
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    ///
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push("a", 3).unwrap();
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert_eq!(pin!(h.pop_async()).poll(&mut cx), Poll::Ready(Ok(3)));
    /// ```
    pub fn pop_async(&self) -> Popping<'_, K, T, C, S> {
        Waiting {
            handle: self,
            id: None,
            take: |h, state| h.pop_locked(state),
        }
    }

    fn poll_take<R>(
        &self,
        id: &mut Option<u64>,
        cx: &mut Context<'_>,
        take: impl FnOnce(&Self, &mut State<K, T, C, S>) -> Option<R>,
    ) -> Poll<Result<R, WaitError>> {
        let mut state = self.lock();
        if let Some(out) = take(self, &mut state) {
            if let Some(id) = id.take() {
                state.waiters.deregister(id);
            }
            return Poll::Ready(Ok(out));
        }
        if state.closed && state.scheduler.queue().is_empty() {
            if let Some(id) = id.take() {
                state.waiters.deregister(id);
            }
            return Poll::Ready(Err(WaitError::Closed));
        }
        *id = Some(state.waiters.register(*id, cx.waker()));
        Poll::Pending
    }

    fn cancel_wait(&self, id: u64) {
        let mut state = self.lock();
        if !state.waiters.deregister(id) && !state.scheduler.queue().is_empty() {
            // This waiter was woken for work it will never take: pass the wake-up on.
            let plan = state.waiters.plan_wake(1);
            self.apply(plan);
        }
    }

    /// Closes the scheduler: later pushes are refused with [`RejectReason::Closed`], every
    /// waiting worker and producer wakes (workers get [`WaitError::Closed`]), and every
    /// queued item is handed back. Items in flight stay leased and complete as usual; items
    /// shed or expired earlier can still be taken with [`Scheduler::take_returned`] through
    /// [`with_scheduler`](Self::with_scheduler).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{RejectReason, SchedulerConfig, SharedScheduler};
    /// let h: SharedScheduler<&str, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.try_push("a", 1).unwrap();
    /// h.try_push("b", 2).unwrap();
    /// let mut left = h.close();
    /// left.sort();
    /// assert_eq!(left, [1, 2]);
    /// assert_eq!(h.try_push("a", 3).unwrap_err().reason(), RejectReason::Closed);
    /// ```
    pub fn close(&self) -> Vec<T> {
        let mut state = self.lock();
        state.closed = true;
        let items = state.scheduler.drain_all();
        let tasks = state.waiters.take_all_tasks();
        self.inner.work.notify_all();
        self.inner.room.notify_all();
        drop(state);
        for waker in tasks {
            waker.wake();
        }
        items
    }

    /// The scheduler's pressure level; see [`Scheduler::pressure`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h: fairshare::SharedScheduler<u8, u8> =
    ///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(h.pressure(), fairshare::pressure::PressureLevel::Normal);
    /// ```
    pub fn pressure(&self) -> PressureLevel {
        self.lock().scheduler.pressure()
    }

    /// Lets `limit` drive the global in-flight limit from now on: every completion's latency
    /// (measured on the scheduler's clock from dispatch to completion) and [`Outcome`] feed it.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Nanos, SchedulerConfig, SharedScheduler};
    /// use fairshare::adaptive::{AdaptiveLimit, Aimd};
    /// let h: SharedScheduler<u8, u8> = SharedScheduler::new(SchedulerConfig::new());
    /// h.set_adaptive_limit(Some(AdaptiveLimit::aimd(Aimd::new(1, 64, Nanos::from_millis(50)), 8)));
    /// assert_eq!(h.with_scheduler(|s| s.queue().in_flight_limit()), Some(8));
    /// ```
    pub fn set_adaptive_limit(&self, limit: Option<AdaptiveLimit>) {
        let mut state = self.lock();
        if let Some(l) = &limit {
            state.scheduler.set_in_flight_limit(Some(l.current()));
        }
        state.adaptive = limit;
        let queued = state.scheduler.queue().len();
        let plan = state.waiters.plan_wake(queued);
        self.apply(plan);
    }

    fn finish(&self, ticket: Ticket, actual_cost: u32, dispatched_at: Nanos, outcome: Outcome) {
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

// ===== impl Lease =====

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

// ===== futures =====

/// How a waiting future takes its result under the lock.
type Take<K, T, C, S, R> = fn(&SharedScheduler<K, T, C, S>, &mut State<K, T, C, S>) -> Option<R>;

/// A future that waits for the next item: [`Dispatching`] (with a lease) or [`Popping`].
/// It registers its task's [`Waker`](std::task::Waker) while pending, and if it is dropped
/// after being woken but before taking the item, it passes the wake-up on.
///
/// # Examples
///
/// ```
/// let h: fairshare::SharedScheduler<u8, u8> =
///     fairshare::SharedScheduler::new(fairshare::SchedulerConfig::new());
/// let _fut: fairshare::shared::Popping<'_, u8, u8, _, _> = h.pop_async();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Waiting<'a, K, T, C, S, R>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    handle: &'a SharedScheduler<K, T, C, S>,
    id: Option<u64>,
    take: Take<K, T, C, S, R>,
}

/// Future returned by [`SharedScheduler::dispatch_async`].
pub type Dispatching<'a, K, T, C, S> = Waiting<'a, K, T, C, S, Job<K, T, C, S>>;

/// Future returned by [`SharedScheduler::pop_async`].
pub type Popping<'a, K, T, C, S> = Waiting<'a, K, T, C, S, T>;

impl<K, T, C, S, R> Future for Waiting<'_, K, T, C, S, R>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    type Output = Result<R, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.handle.poll_take(&mut this.id, cx, this.take)
    }
}

impl<K, T, C, S, R> Drop for Waiting<'_, K, T, C, S, R>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.handle.cancel_wait(id);
        }
    }
}

impl<K, T, C, S, R> fmt::Debug for Waiting<'_, K, T, C, S, R>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting").field("id", &self.id).finish()
    }
}
