//! # Implementation details
//!
//! Waker-based waiting for any async runtime: the [`Waiting`] future registers its task while
//! pending and passes a wake-up on if it is dropped after being woken.

use super::handle::*;
use super::lease::Job;
use crate::clock::Clock;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::task::{Context, Poll};

impl<K, T, C, S> SharedScheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
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

    pub(super) fn poll_take<R>(
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

    pub(super) fn cancel_wait(&self, id: u64) {
        let mut state = self.lock();
        if !state.waiters.deregister(id) && !state.scheduler.queue().is_empty() {
            // This waiter was woken for work it will never take: pass the wake-up on.
            let plan = state.waiters.plan_wake(1);
            self.apply(plan);
        }
    }
}

/// How a waiting future takes its result under the lock.
pub(super) type Take<K, T, C, S, R> =
    fn(&SharedScheduler<K, T, C, S>, &mut State<K, T, C, S>) -> Option<R>;

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
    pub(super) handle: &'a SharedScheduler<K, T, C, S>,
    pub(super) id: Option<u64>,
    pub(super) take: Take<K, T, C, S, R>,
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
