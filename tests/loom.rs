//! Model-checks the shared handle's waiting and wake-up logic with loom: every interleaving
//! of a few threads (up to loom's preemption bound) around one or two items.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom
//! ```
//!
//! Under `--cfg loom`, `crate::sync` swaps parking_lot for loom's primitives. loom does not
//! model time: a condition-variable wait ends only on a notification (see `src/sync.rs`), so
//! every wait below uses a timeout that never passes, and a lost wake-up shows up as a loom
//! deadlock report.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use fairshare::{
    PushOptions, RejectReason, SchedulerConfig, SharedScheduler,
    config::{Capacity, TenantLimits},
    shared::WaitError,
};
use loom::sync::Notify;
use loom::thread;

/// Never reached: a wait that depends on its timeout deadlocks under loom.
const LONG: Duration = Duration::from_secs(3600);

type Shared = SharedScheduler<u8, u8>;

/// `loom::model`: every interleaving, with no preemption bound unless `LOOM_MAX_PREEMPTIONS`
/// sets one (the models are small enough to explore exhaustively in about a second).
fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model(f);
}

/// Wakes [`block_on`] through a loom-modelled notification (`loom::future` needs loom's
/// `futures` feature, so this is the same idea written out).
struct NotifyWaker(Notify);

impl Wake for NotifyWaker {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let notify = Arc::new(NotifyWaker(Notify::new()));
    let waker = Waker::from(Arc::clone(&notify));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        notify.0.wait();
    }
}

#[test]
fn waiting_worker_always_gets_a_pushed_item() {
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let worker = {
            let h = h.clone();
            thread::spawn(move || {
                let job = h.dispatch_timeout(LONG)?;
                let item = job.item;
                job.lease.complete(1);
                Ok::<_, WaitError>(item)
            })
        };
        h.try_push(0, 7).unwrap();
        assert_eq!(worker.join().unwrap(), Ok(7));
        assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    });
}

#[test]
fn waiting_popper_always_gets_a_pushed_item() {
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let worker = {
            let h = h.clone();
            thread::spawn(move || h.pop_timeout(LONG))
        };
        let _ = h.try_push_batch([(1, 9, PushOptions::new())]);
        assert_eq!(worker.join().unwrap(), Ok(9));
    });
}

#[test]
fn two_waiters_one_item_then_close() {
    // Whoever gets the item closes the scheduler: the other must wake with Closed.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let spawn_worker = || {
            let h = h.clone();
            thread::spawn(move || match h.dispatch_timeout(LONG) {
                Ok(job) => {
                    let left = h.close();
                    assert!(left.is_empty());
                    Ok(job.item)
                }
                Err(e) => Err(e),
            })
        };
        let a = spawn_worker();
        let b = spawn_worker();
        h.try_push(0, 1).unwrap();
        let mut results = [a.join().unwrap(), b.join().unwrap()];
        results.sort_by_key(|r| r.is_err());
        assert_eq!(results, [Ok(1), Err(WaitError::Closed)]);
    });
}

#[test]
fn push_and_close_race_with_two_waiters() {
    // The push and the close race the waiters: the item comes back exactly once (from a
    // worker or from close), and every waiter returns.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let spawn_worker = || {
            let h = h.clone();
            thread::spawn(move || h.dispatch_timeout(LONG).map(|job| job.item))
        };
        let a = spawn_worker();
        let b = spawn_worker();
        h.try_push(0, 1).unwrap();
        let left = h.close();
        let results = [a.join().unwrap(), b.join().unwrap()];
        let mut got: Vec<u8> = results.iter().filter_map(|r| r.ok()).collect();
        got.extend(left);
        assert_eq!(got, [1], "{results:?}");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(1) | Err(WaitError::Closed)))
        );
    });
}

#[test]
fn lease_drop_races_dispatch_under_one_slot() {
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
        h.try_push(0, 1).unwrap();
        h.try_push(1, 2).unwrap();
        let held = h.try_dispatch().unwrap();
        assert_eq!(held.item, 1);
        let dropper = thread::spawn(move || drop(held));
        let worker = {
            let h = h.clone();
            thread::spawn(move || {
                let job = h.dispatch_timeout(LONG).unwrap();
                let in_flight = h.with_scheduler(|s| s.queue().total_in_flight());
                (job.item, in_flight)
            })
        };
        dropper.join().unwrap();
        let (item, in_flight) = worker.join().unwrap();
        assert_eq!(item, 2);
        assert_eq!(in_flight, 1, "the limit held: never two in flight");
        assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
        assert!(h.is_empty());
    });
}

#[test]
fn waiting_producer_gets_room_from_a_pop() {
    model(|| {
        let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(1));
        let h: Shared = SharedScheduler::new(config);
        h.try_push(0, 1).unwrap();
        let producer = {
            let h = h.clone();
            thread::spawn(move || h.push_timeout(1, 2, PushOptions::new(), LONG).map(|_| ()))
        };
        assert_eq!(h.pop_timeout(LONG), Ok(1));
        assert!(producer.join().unwrap().is_ok());
        assert_eq!(h.try_pop(), Some(2));
    });
}

#[test]
fn close_wakes_a_waiting_producer() {
    model(|| {
        let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(1));
        let h: Shared = SharedScheduler::new(config);
        h.try_push(0, 1).unwrap();
        let producer = {
            let h = h.clone();
            thread::spawn(move || {
                h.push_timeout(1, 2, PushOptions::new(), LONG)
                    .map(|_| ())
                    .map_err(|r| r.into_parts())
            })
        };
        assert_eq!(h.close(), [1]);
        assert_eq!(producer.join().unwrap(), Err((2, RejectReason::Closed)));
    });
}

#[test]
fn async_waiter_always_gets_a_pushed_item() {
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let task = {
            let h = h.clone();
            thread::spawn(move || block_on(h.dispatch_async()).map(|j| j.item))
        };
        h.try_push(0, 3).unwrap();
        assert_eq!(task.join().unwrap(), Ok(3));
    });
}

#[test]
fn close_resolves_an_async_waiter() {
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let task = {
            let h = h.clone();
            thread::spawn(move || block_on(h.pop_async()))
        };
        assert!(h.close().is_empty());
        assert_eq!(task.join().unwrap(), Err(WaitError::Closed));
    });
}

#[test]
fn thread_and_task_waiters_share_two_items() {
    // A thread and an async task wait; two items arrive from one batch: each gets one.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let thread_waiter = {
            let h = h.clone();
            thread::spawn(move || h.pop_timeout(LONG))
        };
        let task_waiter = {
            let h = h.clone();
            thread::spawn(move || block_on(h.pop_async()))
        };
        let results = h.try_push_batch([(0, 1, PushOptions::new()), (1, 2, PushOptions::new())]);
        assert!(results.iter().all(Result::is_ok));
        let mut got = [
            thread_waiter.join().unwrap().unwrap(),
            task_waiter.join().unwrap().unwrap(),
        ];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn two_pushes_reach_two_waiters() {
    // Two separate pushes (two wake plans) while two threads wait: each gets one item. This
    // exercises the count of notified-but-not-yet-awake threads between the pushes.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let spawn_worker = || {
            let h = h.clone();
            thread::spawn(move || h.pop_timeout(LONG))
        };
        let a = spawn_worker();
        let b = spawn_worker();
        h.try_push(0, 1).unwrap();
        h.try_push(1, 2).unwrap();
        let mut got = [a.join().unwrap().unwrap(), b.join().unwrap().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn dropped_woken_task_passes_its_wake_up_to_a_thread() {
    // A task registers, a push may wake it (if the thread is not asleep yet), and the task is
    // dropped without polling again: the waiting thread must still get the item.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let thread_waiter = {
            let h = h.clone();
            thread::spawn(move || h.pop_timeout(LONG))
        };
        let pusher = {
            let h = h.clone();
            thread::spawn(move || {
                h.try_push(0, 5).unwrap();
            })
        };
        {
            let mut fut = pin!(h.pop_async());
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                // The push came first and the task took the item: hand it back for the thread.
                assert_eq!(out, Ok(5));
                h.try_push(0, 5).unwrap();
            }
        } // dropped here, maybe woken, never polled again
        pusher.join().unwrap();
        assert_eq!(thread_waiter.join().unwrap(), Ok(5));
    });
}

#[test]
fn dropped_woken_task_passes_its_wake_up_to_another_task() {
    // Two tasks wait (in either order); one push wakes the older one. If that is the task on
    // this thread, it is dropped without polling again: the other task must get the item.
    model(|| {
        let h: Shared = SharedScheduler::new(SchedulerConfig::new());
        let other = {
            let h = h.clone();
            thread::spawn(move || block_on(h.pop_async()))
        };
        let pusher = {
            let h = h.clone();
            thread::spawn(move || {
                h.try_push(0, 5).unwrap();
            })
        };
        {
            let mut fut = pin!(h.pop_async());
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                assert_eq!(out, Ok(5));
                h.try_push(0, 5).unwrap();
            }
        }
        pusher.join().unwrap();
        assert_eq!(other.join().unwrap(), Ok(5));
    });
}

#[test]
fn completion_wakes_a_worker_behind_a_tenant_cap_while_another_tenant_pushes() {
    // Tenant 0 is at its in-flight cap with an item queued; a worker waits. Its lease
    // completes while tenant 1 pushes: the worker and the test between them take both items.
    model(|| {
        let config =
            SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_in_flight(1));
        let h: Shared = SharedScheduler::new(config);
        h.try_push(0, 1).unwrap();
        h.try_push(0, 2).unwrap();
        let held = h.try_dispatch().unwrap();
        assert_eq!(held.item, 1);
        let worker = {
            let h = h.clone();
            thread::spawn(move || h.dispatch_timeout(LONG).map(|j| j.item))
        };
        let completer = thread::spawn(move || held.lease.complete(1));
        h.try_push(1, 3).unwrap();
        completer.join().unwrap();
        let first = worker.join().unwrap().unwrap();
        let second = h.try_dispatch().map(|j| j.item);
        let mut got = [Some(first), second];
        got.sort_unstable();
        assert_eq!(got, [Some(2), Some(3)]);
        assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    });
}
