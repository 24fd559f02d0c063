//! # Implementation details
//!
//! The hand-off between the scheduler and one request's future, a one-shot cell under a
//! small mutex:
//!
//! ```text
//! Waiting(waker) --grant--> Granted(slot) --take--> Taken
//!       |                                         ^
//!       +--refuse--> Refused(reason) --take-------+
//!       +--cancel--> Cancelled          (a later grant is handed back to be freed)
//! ```
//!
//! The scheduler holds a [`Token`] (the queued item); the request's future holds the same
//! [`Slot`] through a [`Waiter`]. Whoever dispatches the token grants it an
//! [`InFlight`]; if the future was dropped first, the grant comes back as
//! [`Grant::Cancelled`] and the dispatcher frees the slot at once. A future dropped after the
//! grant but before taking it frees the slot itself. A token the scheduler drops without
//! dispatching or refusing it (an operator purged its tenant, say) refuses its request as
//! closed, so no future waits for ever. Every path hands the slot on exactly once.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::core_glue::{Clock, Core, InFlight, RejectReason, StdClock};

enum State<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    Waiting(Option<Waker>),
    Granted(InFlight<K, C>),
    Refused(RejectReason),
    Cancelled,
    Taken,
}

/// The shared cell of one request.
pub(crate) struct Slot<K, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    state: Mutex<State<K, C>>,
}

/// A request waiting in the layer's scheduler: the item type of its queue, seen only
/// through [`FairLayer::with_scheduler`](crate::FairLayer::with_scheduler). It is opaque: a
/// token that leaves the scheduler other than by dispatch (purged, say) answers its request
/// as refused, so no request waits for ever.
///
/// # Examples
///
/// ```
/// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
/// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
/// let purged: Vec<fairshare_tower::Token<String>> = layer.with_scheduler(|s| s.purge(&"t".to_owned()));
/// assert!(purged.is_empty());
/// ```
pub struct Token<K, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    slot: Option<Arc<Slot<K, C>>>,
}

/// What became of a grant.
pub(crate) enum Grant<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// The request took it (or will, when its task runs).
    Delivered,
    /// The request is gone; free this slot.
    Cancelled(InFlight<K, C>),
}

impl<K, C> Slot<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// A fresh cell: the token to queue and the slot the request's future keeps.
    pub(crate) fn new_pair() -> (Token<K, C>, Arc<Slot<K, C>>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Waiting(None)),
        });
        (
            Token {
                slot: Some(Arc::clone(&slot)),
            },
            slot,
        )
    }

    /// Takes the outcome if there is one (the slot, or the refusal); registers `cx`'s waker
    /// otherwise.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<InFlight<K, C>, RejectReason>> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            _ => Poll::Ready(Self::take(&mut state)),
        }
    }

    /// Takes the outcome if there is one, without registering anything.
    pub(crate) fn try_take(&self) -> Option<Result<InFlight<K, C>, RejectReason>> {
        let mut state = self.state.lock();
        match &*state {
            State::Waiting(_) => None,
            _ => Some(Self::take(&mut state)),
        }
    }

    fn take(state: &mut State<K, C>) -> Result<InFlight<K, C>, RejectReason> {
        match std::mem::replace(state, State::Taken) {
            State::Granted(flight) => Ok(flight),
            State::Refused(reason) => Err(reason),
            // Taken twice or after a cancel: a programming error inside this crate; answer
            // as closed rather than panic in a host's request path.
            other => {
                *state = other;
                Err(RejectReason::Closed)
            }
        }
    }

    /// The request is gone. A slot already granted and not taken is freed (and handed on)
    /// here; a later grant comes back to the dispatcher.
    pub(crate) fn cancel(&self) {
        let granted = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, State::Cancelled) {
                State::Granted(flight) => Some(flight),
                State::Taken => {
                    *state = State::Taken;
                    None
                }
                _ => None,
            }
        };
        // Dropping the slot (outside the cell's lock) frees it and pumps.
        drop(granted);
    }
}

impl<K, C> Token<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// Hands the dispatched slot to the request. `core` is where the slot is handed on when
    /// the request releases it.
    pub(crate) fn grant(mut self, mut flight: InFlight<K, C>, core: &Core<K, C>) -> Grant<K, C> {
        let Some(slot) = self.slot.take() else {
            return Grant::Cancelled(flight);
        };
        let mut state = slot.state.lock();
        match &mut *state {
            State::Waiting(waker) => {
                let waker = waker.take();
                flight.attach(core);
                *state = State::Granted(flight);
                drop(state);
                if let Some(w) = waker {
                    w.wake();
                }
                Grant::Delivered
            }
            _ => Grant::Cancelled(flight),
        }
    }

    /// Refuses the request (evicted, shed, expired, or dropped by the scheduler).
    pub(crate) fn refuse(mut self, reason: RejectReason) {
        if let Some(slot) = self.slot.take() {
            slot.refuse(reason);
        }
    }
}

impl<K, C> Slot<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn refuse(&self, reason: RejectReason) {
        let mut state = self.state.lock();
        if let State::Waiting(waker) = &mut *state {
            let waker = waker.take();
            *state = State::Refused(reason);
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<K, C> Drop for Token<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn drop(&mut self) {
        // Neither granted nor refused: the scheduler let go of it (purge, retain, close).
        if let Some(slot) = self.slot.take() {
            slot.refuse(RejectReason::Closed);
        }
    }
}

/// The request future's end of a [`Slot`]: cancels on drop unless the outcome was taken.
pub(crate) struct Waiter<K, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    slot: Option<Arc<Slot<K, C>>>,
}

impl<K, C> Waiter<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    pub(crate) fn new(slot: Arc<Slot<K, C>>) -> Self {
        Waiter { slot: Some(slot) }
    }

    /// The outcome, once there is one; then this waiter is spent.
    pub(crate) fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<InFlight<K, C>, RejectReason>> {
        let Some(slot) = &self.slot else {
            return Poll::Ready(Err(RejectReason::Closed));
        };
        let out = std::task::ready!(slot.poll_take(cx));
        self.slot = None;
        Poll::Ready(out)
    }

    /// The outcome if there is one already.
    pub(crate) fn try_take(&mut self) -> Option<Result<InFlight<K, C>, RejectReason>> {
        let out = self.slot.as_ref()?.try_take()?;
        self.slot = None;
        Some(out)
    }
}

impl<K, C> Drop for Waiter<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.cancel();
        }
    }
}

impl<K, C> fmt::Debug for Token<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

impl<K, C> fmt::Debug for Waiter<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("pending", &self.slot.is_some())
            .finish()
    }
}
