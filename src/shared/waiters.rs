//! # Implementation details
//!
//! Who is waiting for work, and the rule for waking them. All of it lives inside the handle's
//! mutex, so a waiter that checks for work and then sleeps cannot miss a push (no lost
//! wake-ups), and every push of `n` items wakes at most `n` waiters (no thundering herd):
//! first threads asleep on the condition variable that no earlier push already notified, then
//! async tasks, oldest first.
//!
//! A thread that wakes for any reason (notified, timed out, spurious) tries to take work
//! before it decides anything, so a notification that lands on a thread that is already
//! timing out is never lost: that thread takes the item. An async waiter that was woken and
//! then dropped before it polled passes its wake-up on.

use std::collections::BTreeMap;
use std::task::Waker;

#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Threads asleep on the work condition variable.
    pub(crate) sleeping: usize,
    /// Notifications sent to sleeping threads and not yet consumed by a waking thread.
    pub(crate) notified: usize,
    /// Async waiters by id; ids only grow, so the map's order is oldest first and every
    /// operation is O(log waiters).
    tasks: BTreeMap<u64, Waker>,
    next_id: u64,
}

/// What the caller must do after [`Waiters::plan_wake`] (outside the bookkeeping, but still
/// under the lock): notify this many sleeping threads and wake these wakers.
#[derive(Debug, Default)]
pub(crate) struct WakePlan {
    pub(crate) threads: usize,
    pub(crate) tasks: Vec<Waker>,
}

impl Waiters {
    /// Plans the wake-ups for `n` new units of work.
    pub(crate) fn plan_wake(&mut self, n: usize) -> WakePlan {
        let mut plan = WakePlan::default();
        for _ in 0..n {
            if self.sleeping > self.notified {
                self.notified += 1;
                plan.threads += 1;
            } else if let Some((_, waker)) = self.tasks.pop_first() {
                plan.tasks.push(waker);
            } else {
                break;
            }
        }
        plan
    }

    /// A thread goes to sleep.
    pub(crate) fn sleep(&mut self) {
        self.sleeping += 1;
    }

    /// A thread woke up (for whatever reason).
    pub(crate) fn woke(&mut self) {
        self.sleeping -= 1;
        self.notified = self.notified.saturating_sub(1).min(self.sleeping);
    }

    /// Registers (or refreshes) an async waiter; returns its id.
    pub(crate) fn register(&mut self, id: Option<u64>, waker: &Waker) -> u64 {
        if let Some(id) = id {
            if let Some(known) = self.tasks.get_mut(&id) {
                if !known.will_wake(waker) {
                    *known = waker.clone();
                }
                return id;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tasks.insert(id, waker.clone());
        id
    }

    /// Removes an async waiter; returns `false` if it was already woken (and so may owe a
    /// wake-up to someone else).
    pub(crate) fn deregister(&mut self, id: u64) -> bool {
        self.tasks.remove(&id).is_some()
    }

    /// Every async waiter, for shutdown.
    pub(crate) fn take_all_tasks(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.tasks).into_values().collect()
    }

    #[cfg(test)]
    pub(crate) fn tasks_len(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag;
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }

    fn waker() -> Waker {
        Waker::from(Arc::new(Flag))
    }

    #[test]
    fn wakes_no_more_than_the_work() {
        let mut w = Waiters::default();
        w.sleep();
        w.sleep();
        w.register(None, &waker());
        let plan = w.plan_wake(1);
        assert_eq!((plan.threads, plan.tasks.len()), (1, 0));
        // a second unit goes to the other sleeper, not the same one again
        let plan = w.plan_wake(1);
        assert_eq!((plan.threads, plan.tasks.len()), (1, 0));
        // both threads are notified: the next unit goes to the task
        let plan = w.plan_wake(5);
        assert_eq!((plan.threads, plan.tasks.len()), (0, 1));
    }

    #[test]
    fn woken_threads_consume_notifications() {
        let mut w = Waiters::default();
        w.sleep();
        assert_eq!(w.plan_wake(1).threads, 1);
        w.woke();
        assert_eq!((w.sleeping, w.notified), (0, 0));
        w.sleep();
        assert_eq!(w.plan_wake(1).threads, 1);
    }

    #[test]
    fn register_is_idempotent_and_deregister_reports_wakes() {
        let mut w = Waiters::default();
        let id = w.register(None, &waker());
        assert_eq!(w.register(Some(id), &waker()), id);
        assert_eq!(w.tasks_len(), 1);
        assert_eq!(w.plan_wake(1).tasks.len(), 1);
        assert!(!w.deregister(id)); // it was woken
    }
}
