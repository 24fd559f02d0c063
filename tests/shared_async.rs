//! Waker-based futures on `SharedScheduler`: `dispatch_async` / `pop_async` resolve after a
//! push from another thread, a stream of items can be awaited on one task, one push wakes one
//! task, dropping a woken future passes its wake-up on (and dropping an unwoken one keeps
//! wake-ups for others), close resolves pending futures with `Closed`, and an async dispatch
//! waits for a free in-flight slot.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::SeqCst},
};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{PushOptions, SchedulerConfig, SharedScheduler, shared::WaitError};

use common::threads::{PROMPT, SETTLE, Shared, block_on, recv_prompt, spawn_recv};

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    (counter, waker)
}

fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

// ===== async =====

#[test]
fn async_dispatch_and_pop_resolve_after_a_push_from_another_thread() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let dispatcher = {
        let h = h.clone();
        spawn_recv(move || {
            block_on(async {
                let job = h.dispatch_async().await?;
                let item = job.item;
                job.lease.complete(2);
                Ok::<_, WaitError>(item)
            })
        })
    };
    let popper = {
        let h = h.clone();
        spawn_recv(move || block_on(h.pop_async()))
    };
    thread::sleep(SETTLE);
    let pusher = {
        let h = h.clone();
        thread::spawn(move || {
            h.try_push(1, 10).unwrap();
            h.try_push(2, 20).unwrap();
        })
    };
    pusher.join().unwrap();
    let mut got = [
        recv_prompt(&dispatcher, "dispatch_async").unwrap(),
        recv_prompt(&popper, "pop_async").unwrap(),
    ];
    got.sort_unstable();
    assert_eq!(got, [10, 20]);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn async_stream_of_items_on_one_task() {
    // One task awaits many items in turn while another thread pushes them.
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(2)));
    let n = 500u32;
    let consumer = {
        let h = h.clone();
        spawn_recv(move || {
            block_on(async {
                let mut got = Vec::new();
                while let Ok(job) = h.dispatch_async().await {
                    got.push(job.item);
                }
                got
            })
        })
    };
    for i in 0..n {
        h.try_push(0, i).unwrap();
        if i % 64 == 0 {
            thread::yield_now();
        }
    }
    let until = Instant::now() + PROMPT;
    while !h.is_empty() && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(h.close().is_empty());
    let got = recv_prompt(&consumer, "async consumer");
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "one tenant: FIFO");
}

#[test]
fn dropping_a_woken_future_passes_the_wake_up_on() {
    for use_pop in [false, true] {
        let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
        let (c1, w1) = counting_waker();
        let (c2, w2) = counting_waker();
        let mut f1: Pin<Box<dyn Future<Output = Result<u32, WaitError>> + '_>> = if use_pop {
            Box::pin(h.pop_async())
        } else {
            Box::pin(async { h.dispatch_async().await.map(|j| j.item) })
        };
        let mut f2: Pin<Box<dyn Future<Output = Result<u32, WaitError>> + '_>> = if use_pop {
            Box::pin(h.pop_async())
        } else {
            Box::pin(async { h.dispatch_async().await.map(|j| j.item) })
        };
        assert!(poll_once(f1.as_mut(), &w1).is_pending());
        assert!(poll_once(f2.as_mut(), &w2).is_pending());

        h.try_push(0, 5).unwrap();
        assert_eq!(
            (c1.0.load(SeqCst), c2.0.load(SeqCst)),
            (1, 0),
            "one item, one wake"
        );
        drop(f1); // woken, never polled again
        assert_eq!(
            c2.0.load(SeqCst),
            1,
            "the wake-up passed to the other waiter"
        );
        assert_eq!(poll_once(f2.as_mut(), &w2), Poll::Ready(Ok(5)));
    }
}

#[test]
fn dropping_a_future_that_was_not_woken_keeps_wake_ups_for_others() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let (c1, w1) = counting_waker();
    let (c2, w2) = counting_waker();
    let mut f1 = Box::pin(h.dispatch_async());
    let mut f2 = Box::pin(h.dispatch_async());
    assert!(poll_once(f1.as_mut(), &w1).is_pending());
    assert!(poll_once(f2.as_mut(), &w2).is_pending());
    drop(f1);
    assert_eq!(c2.0.load(SeqCst), 0, "no work: nothing to pass on");
    h.try_push(0, 6).unwrap();
    assert_eq!(
        c1.0.load(SeqCst),
        0,
        "the dropped future is no longer a waiter"
    );
    assert_eq!(c2.0.load(SeqCst), 1);
    match poll_once(f2.as_mut(), &w2) {
        Poll::Ready(Ok(job)) => assert_eq!(job.item, 6),
        other => panic!("expected the item, got {other:?}"),
    }
}

#[test]
fn one_push_wakes_one_task() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let wakers: Vec<_> = (0..5).map(|_| counting_waker()).collect();
    let mut futs: Vec<_> = (0..5).map(|_| Box::pin(h.pop_async())).collect();
    for (f, (_, w)) in futs.iter_mut().zip(&wakers) {
        assert!(poll_once(f.as_mut(), w).is_pending());
    }
    // Re-polling a pending future does not register it twice.
    assert!(poll_once(futs[0].as_mut(), &wakers[0].1).is_pending());
    let woken = || {
        wakers
            .iter()
            .map(|(c, _)| c.0.load(SeqCst))
            .collect::<Vec<_>>()
    };

    h.try_push(0, 1).unwrap();
    assert_eq!(woken(), [1, 0, 0, 0, 0], "oldest waiter first, only one");
    let _ = h.try_push_batch([(0, 2, PushOptions::new()), (0, 3, PushOptions::new())]);
    assert_eq!(woken(), [1, 1, 1, 0, 0], "two items, two more");
    for (i, f) in futs.iter_mut().take(3).enumerate() {
        assert_eq!(
            poll_once(f.as_mut(), &wakers[i].1),
            Poll::Ready(Ok(i as u32 + 1))
        );
    }
    let left = h.close();
    assert!(left.is_empty());
    assert_eq!(woken(), [1, 1, 1, 1, 1], "close wakes everyone left");
    for (i, f) in futs.iter_mut().enumerate().skip(3) {
        assert_eq!(
            poll_once(f.as_mut(), &wakers[i].1),
            Poll::Ready(Err(WaitError::Closed))
        );
    }
}

#[test]
fn close_resolves_pending_futures_with_closed() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let h = h.clone();
            spawn_recv(move || {
                if i % 2 == 0 {
                    block_on(h.dispatch_async()).map(|j| j.item)
                } else {
                    block_on(h.pop_async())
                }
            })
        })
        .collect();
    thread::sleep(SETTLE);
    assert!(h.close().is_empty());
    for rx in &tasks {
        assert_eq!(
            recv_prompt(rx, "future after close"),
            Err(WaitError::Closed)
        );
    }
    // A future made after close resolves at once.
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(
        pin!(h.pop_async()).poll(&mut cx),
        Poll::Ready(Err(WaitError::Closed))
    );
}

#[test]
fn async_dispatch_waits_for_a_free_slot() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push(0, 1).unwrap();
    h.try_push(1, 2).unwrap();
    let held = h.try_dispatch().unwrap();
    let (c, w) = counting_waker();
    let mut fut = Box::pin(h.dispatch_async());
    assert!(
        poll_once(fut.as_mut(), &w).is_pending(),
        "the one slot is held"
    );
    held.lease.complete(1);
    assert_eq!(c.0.load(SeqCst), 1, "completion wakes the task");
    match poll_once(fut.as_mut(), &w) {
        Poll::Ready(Ok(job)) => assert_eq!(job.item, 2),
        other => panic!("{other:?}"),
    }
}
