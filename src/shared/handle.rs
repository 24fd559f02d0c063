//! [`SharedScheduler`]: the thread-safe, cloneable handle.

use super::lease::{Job, Lease};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::AssertUnwindSafe;

use super::waiters::{Waiters, WakePlan};
use crate::adaptive::AdaptiveLimit;
use crate::admission::Scheduler;
use crate::clock::{Clock, Nanos, StdClock};
use crate::config::SchedulerConfig;
use crate::error::{RejectReason, Rejected};
use crate::pressure::PressureLevel;
use crate::push::PushOptions;
use crate::queue::{DefaultHashBuilder, TenantHandle};
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
    pub(super) inner: Arc<Inner<K, T, C, S>>,
}

pub(super) struct Inner<K, T, C, S> {
    pub(super) state: Mutex<State<K, T, C, S>>,
    /// Workers wait here for work.
    pub(super) work: Condvar,
    /// Producers wait here for room.
    pub(super) room: Condvar,
}

pub(super) struct State<K, T, C, S> {
    pub(super) scheduler: Scheduler<K, T, C, S>,
    pub(super) closed: bool,
    /// Items a `close` took out but could not hand back (a task's waker panicked while it
    /// woke the waiters); the next `close` hands them back first.
    pub(super) held: Vec<T>,
    pub(super) waiters: Waiters,
    pub(super) producers_waiting: usize,
    pub(super) adaptive: Option<AdaptiveLimit>,
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
                    held: Vec::new(),
                    waiters: Waiters::default(),
                    producers_waiting: 0,
                    adaptive: None,
                }),
                work: Condvar::new(),
                room: Condvar::new(),
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State<K, T, C, S>> {
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
    pub(super) fn apply(&self, plan: WakePlan) {
        for _ in 0..plan.threads {
            self.inner.work.notify_one();
        }
        if let Err(panic) = wake_all(plan.tasks) {
            std::panic::resume_unwind(panic);
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
    /// `purge` or `set_limits`). Waiters are woken afterwards: `f` may have added items or
    /// changed what can be dispatched.
    ///
    /// # Panics
    ///
    /// If `f` panics, the waiters are woken for what it did before, and the panic goes on.
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
        // A panic in `f` still wakes the waiters below (for what `f` did before it panicked),
        // then goes on.
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut state.scheduler)));
        let after = state.scheduler.queue().len();
        // `f` may have changed what can be dispatched (a limit, a block, the classes), so any
        // queued item may now go through, and removed items or raised limits may make room for
        // a waiting producer. A woken waiter that finds nothing waits again.
        if after > 0 {
            let plan = state.waiters.plan_wake(after);
            self.apply(plan);
        }
        if state.producers_waiting > 0 {
            self.inner.room.notify_all();
        }
        match out {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
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

    pub(super) fn push_locked(
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

    pub(super) fn pop_locked(&self, state: &mut State<K, T, C, S>) -> Option<T> {
        let before = state.scheduler.queue().len();
        let item = state.scheduler.pop();
        // Expired or shed items leave too: wake producers for every item that left.
        self.made_room(state, before - state.scheduler.queue().len());
        item
    }

    /// Producers wait for different things (global room, their tenant's room, a rate
    /// limit), so one freed slot may serve a producer behind another: wake them all and let
    /// each re-check. Workers, who all wait for the same thing, are woken one per item.
    pub(super) fn made_room(&self, state: &State<K, T, C, S>, n: usize) {
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

    pub(super) fn dispatch_locked(&self, state: &mut State<K, T, C, S>) -> Option<Job<K, T, C, S>> {
        let before = state.scheduler.queue().len();
        let now = state.scheduler.clock_now();
        let job = self.dispatch_at(state, now);
        self.made_room(state, before - state.scheduler.queue().len());
        job
    }

    /// Dispatches one item at `now` (read once per batch); the caller wakes producers.
    pub(super) fn dispatch_at(
        &self,
        state: &mut State<K, T, C, S>,
        now: Nanos,
    ) -> Option<Job<K, T, C, S>> {
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

    /// Hands back every item that left the queue without being dispatched (evicted, expired
    /// or shed), each with its reason; see [`Scheduler::take_returned`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig, SharedScheduler};
    /// let clock = ManualClock::new();
    /// let h = SharedScheduler::from_scheduler(Scheduler::<&str, u8, _>::with_clock(
    ///     SchedulerConfig::new(),
    ///     clock.clone(),
    /// ));
    /// h.try_push_with("a", 1, PushOptions::new().with_deadline(Nanos::from_secs(1))).unwrap();
    /// clock.set(Nanos::from_secs(1));
    /// let returned = h.take_returned();
    /// assert_eq!(returned[0].reason(), RejectReason::DeadlineExpired { deadline: Nanos::from_secs(1) });
    /// ```
    pub fn take_returned(&self) -> Vec<Rejected<T>> {
        let mut state = self.lock();
        let before = state.scheduler.queue().len();
        let out = state.scheduler.take_returned();
        self.made_room(&state, before - state.scheduler.queue().len());
        out
    }

    /// Closes the scheduler: later pushes are refused with [`RejectReason::Closed`], every
    /// waiting worker and producer wakes (workers get [`WaitError::Closed`]), and every
    /// queued item is handed back. Items in flight stay leased and complete as usual; items
    /// evicted, shed or expired earlier can still be taken with
    /// [`take_returned`](Self::take_returned).
    ///
    /// # Panics
    ///
    /// If a waiting task's [`Waker`](std::task::Waker) panics, every other waiter is still
    /// woken and the panic goes on; the items stay in the handle, and the next `close` hands
    /// them back.
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
        let mut items = std::mem::take(&mut state.held);
        items.extend(state.scheduler.drain_all());
        let tasks = state.waiters.take_all_tasks();
        self.inner.work.notify_all();
        self.inner.room.notify_all();
        drop(state);
        if let Err(panic) = wake_all(tasks) {
            // Every waiter was woken; keep the items for the next `close`, then let the
            // panic go on.
            self.lock().held = items;
            std::panic::resume_unwind(panic);
        }
        items
    }

    /// The scheduler clock's time now (never earlier than any time the scheduler saw), for
    /// a host that turns a refusal's retry time into a delay. Takes the lock, wakes nobody.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Nanos, Scheduler, SchedulerConfig, SharedScheduler};
    /// let clock = ManualClock::new();
    /// let h = SharedScheduler::from_scheduler(Scheduler::<u8, u8, _>::with_clock(
    ///     SchedulerConfig::new(),
    ///     clock.clone(),
    /// ));
    /// clock.set(Nanos::from_secs(3));
    /// assert_eq!(h.now(), Nanos::from_secs(3));
    /// ```
    pub fn now(&self) -> Nanos {
        self.lock().scheduler.clock_now()
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
    /// (measured on the scheduler's clock from dispatch to completion) and [`Outcome`](crate::adaptive::Outcome) feed it.
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
}

// ===== impl Lease =====

// ===== futures =====

/// Wakes every task, even if some waker panics; the first panic is returned once all are
/// woken, so no waiter misses its wake-up because another's waker failed.
pub(super) fn wake_all(
    tasks: impl IntoIterator<Item = std::task::Waker>,
) -> std::thread::Result<()> {
    let mut first = Ok(());
    for waker in tasks {
        let woke = std::panic::catch_unwind(AssertUnwindSafe(|| waker.wake()));
        if first.is_ok() {
            first = woke;
        }
    }
    first
}
