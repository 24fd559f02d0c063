//! Hostile but legal input: extreme quotas, costs and host code that misbehaves. Each test
//! states the contract it holds the crate to, and fails on the behaviour it guards against.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::config::{Quota, TenantLimits};
use fairshare::{ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig};

fn limited(quota: Quota) -> (Scheduler<&'static str, u32, ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let config = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_quota(quota));
    (Scheduler::with_clock(config, clock.clone()), clock)
}

fn cost(c: u32) -> PushOptions {
    PushOptions::new().with_cost(c)
}

/// One unit per hour with a burst of ten million: `interval × burst` is about 2^65 ns. The
/// burst passes at one instant, then exactly one unit per hour; nothing more.
#[test]
fn a_rate_window_beyond_u64_admits_exactly_the_burst() {
    let quota = Quota::per_hour(NonZeroU32::new(1).unwrap())
        .allow_burst(NonZeroU32::new(10_000_000).unwrap());
    let (mut s, clock) = limited(quota);
    for i in 0..10 {
        s.try_push_with("acme", i, cost(1_000_000))
            .expect("the burst passes");
    }
    let err = s.try_push("acme", 10).unwrap_err();
    assert_eq!(
        err.reason(),
        RejectReason::RateLimited {
            retry_at: Nanos::from_secs(3600)
        },
        "ten million units are the whole burst"
    );
    clock.advance(Duration::from_secs(3599));
    assert!(s.try_push("acme", 11).is_err(), "not before the hour");
    clock.advance(Duration::from_secs(1));
    s.try_push("acme", 12).expect("one unit an hour later");
    assert!(s.try_push("acme", 13).is_err(), "and only one");
}

/// The largest quota there is: one unit per `Duration::MAX`, a burst of `u32::MAX`. The
/// burst passes once; afterwards nothing within the clock's range.
#[test]
fn the_most_extreme_quota_admits_its_burst_once() {
    let quota = Quota::with_period(Duration::MAX)
        .unwrap()
        .allow_burst(NonZeroU32::MAX);
    let (mut s, clock) = limited(quota);
    s.try_push_with("acme", 0, cost(u32::MAX))
        .expect("a full burst passes");
    for at in [
        Nanos::ZERO,
        Nanos::from_secs(1),
        Nanos::new(u64::MAX / 2),
        Nanos::MAX,
    ] {
        clock.set(at);
        let err = s.try_push("acme", 1).unwrap_err();
        assert!(
            matches!(err.reason(), RejectReason::RateLimited { .. }),
            "at {at:?}: {:?}",
            err.reason()
        );
    }
}

// ===== host code that panics =====

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use fairshare::{FairQueue, SharedScheduler};

thread_local! {
    static CLONE_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// A tenant key whose `Clone` panics while `CLONE_PANICS` is set.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fragile(u32);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if CLONE_PANICS.with(Cell::get) {
            panic!("host key clone panics");
        }
        Fragile(self.0)
    }
}

/// The queue makes a new tenant's slot without cloning its key (the key is stored once, in
/// the slot), so a key whose `Clone` panics can still be pushed: nothing panics, nothing is
/// lost, and every tenant is listed with its own key and count.
#[test]
fn a_new_tenant_is_made_without_cloning_its_key() {
    let mut q: FairQueue<Fragile, u32> = FairQueue::new();
    q.try_push(Fragile(1), 10).unwrap();
    q.try_push(Fragile(1), 11).unwrap();
    q.pop(); // tenant 1 keeps a slot; the tenants below take fresh ones
    CLONE_PANICS.with(|p| p.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| {
        q.try_push(Fragile(7), 70).unwrap();
        q.try_push(Fragile(8), 80).unwrap();
    }));
    CLONE_PANICS.with(|p| p.set(false));
    assert!(r.is_ok(), "no key was cloned to make a slot");
    assert_eq!(q.len(), 3);
    for k in 2..6 {
        q.try_push(Fragile(k), k * 10).unwrap();
    }
    let listed: Vec<(u32, usize)> = q.tenants().map(|(k, n, _)| (k.0, n)).collect();
    assert_eq!(
        listed,
        [(1, 1), (7, 1), (8, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
    );
    let mut served: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
    served.sort_unstable();
    assert_eq!(served, [11, 20, 30, 40, 50, 70, 80]);
    assert_eq!(q.known_tenants(), 0);
}

/// A `with_scheduler` closure that pushes and then panics still wakes the sleeping worker
/// for the work it queued, long before the worker's timeout.
#[test]
fn a_panicking_with_scheduler_closure_wakes_the_workers() {
    let h: SharedScheduler<&str, u32> = SharedScheduler::new(SchedulerConfig::new());
    let worker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let got = h.pop_timeout(Duration::from_secs(30));
            (got, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100)); // let the worker go to sleep
    let r = catch_unwind(AssertUnwindSafe(|| {
        h.with_scheduler(|s| {
            s.try_push("a", 7).unwrap();
            panic!("host code panics after pushing");
        })
    }));
    assert!(r.is_err());
    let (got, waited) = worker.join().unwrap();
    assert_eq!(got, Ok(7));
    assert!(
        waited < Duration::from_secs(10),
        "woken, not timed out: {waited:?}"
    );
}

/// Counts wake-ups; panics on its first if told to.
struct TestWaker {
    panics: bool,
    woken: AtomicBool,
}

impl Wake for TestWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.panics {
            panic!("host waker panics");
        }
    }
}

/// A task's `Waker` that panics while `close` wakes the waiters: every other waiter is still
/// woken, and no queued item is lost (a second `close` hands them back).
#[test]
fn a_panicking_waker_during_close_loses_no_item() {
    let h: SharedScheduler<&str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    let wakers: Vec<Arc<TestWaker>> = [true, false]
        .map(|panics| {
            Arc::new(TestWaker {
                panics,
                woken: AtomicBool::new(false),
            })
        })
        .into();
    h.try_push("a", 1).unwrap();
    let _busy = h.try_dispatch().unwrap(); // the one slot is taken: waiters must wait
    h.try_push("a", 2).unwrap();
    h.try_push("b", 3).unwrap();
    let mut futures: Vec<_> = wakers
        .iter()
        .map(|_| Box::pin(h.dispatch_async()))
        .collect();
    for (fut, w) in futures.iter_mut().zip(&wakers) {
        let waker = Waker::from(Arc::clone(w));
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    let first = catch_unwind(AssertUnwindSafe(|| h.close()));
    assert!(first.is_err(), "the waker's panic goes on");
    assert!(
        wakers.iter().all(|w| w.woken.load(Ordering::SeqCst)),
        "every waiter woken"
    );
    let mut items = h.close();
    items.sort_unstable();
    assert_eq!(
        items,
        [2, 3],
        "the second close hands back what the first could not"
    );
    for fut in &mut futures {
        let waker = Waker::from(Arc::new(TestWaker {
            panics: false,
            woken: AtomicBool::new(false),
        }));
        assert!(matches!(
            fut.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(Err(_))
        ));
    }
}
