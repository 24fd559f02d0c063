//! Blocking waits on `SharedScheduler`: `push_timeout` waits for room (global or the
//! tenant's) and returns at once on refusals no wait can lift, room and work reach the thread
//! that can use them, one push wakes one waiter, waits time out, and every way of freeing room
//! or work (purge, a push or completion inside `with_scheduler`, raised limits) wakes the
//! waiters it should. "Wait forever" is a timeout too, not a panic.
//!
//! Tests that need a thread already asleep give it a short head start; the assertions hold
//! whether or not the head start was long enough.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::SeqCst},
    mpsc,
};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{
    Limit, PushOptions, RejectReason, SchedulerConfig, SharedScheduler,
    config::{Capacity, TenantLimits},
    shared::WaitError,
};

use common::threads::{LONG, PROMPT, SETTLE, Shared, recv_prompt, spawn_recv};

// ===== producers waiting for room =====

#[test]
fn push_timeout_waits_for_room() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(1));
    let h: Shared<u32> = SharedScheduler::new(config);
    h.try_push(0, 1).unwrap();

    // Room made by a pop.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(1, 2, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    assert!(
        rx.try_recv().is_err(),
        "the queue is full: the producer waits"
    );
    assert_eq!(h.try_pop(), Some(1));
    assert!(recv_prompt(&rx, "producer after a pop").is_ok());

    // Room made by a dispatch (the lease does not hold room in the queue).
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(2, 3, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    let job = h.dispatch_timeout(PROMPT).unwrap();
    assert_eq!(job.item, 2);
    assert!(recv_prompt(&rx, "producer after a dispatch").is_ok());

    // Room made by a batch pop, for several producers at once.
    let rxs: Vec<_> = (0..3u32)
        .map(|p| {
            let h = h.clone();
            spawn_recv(move || {
                h.push_timeout(p, 10 + p, PushOptions::new(), LONG)
                    .map(|_| ())
            })
        })
        .collect();
    thread::sleep(SETTLE);
    let mut taken = h.pop_batch(1);
    for _ in 0..3 {
        // Each pop makes room for one producer.
        let until = Instant::now() + PROMPT;
        loop {
            if let Some(x) = h.try_pop() {
                taken.push(x);
                break;
            }
            assert!(
                Instant::now() < until,
                "a producer should have filled the room"
            );
            thread::yield_now();
        }
    }
    for rx in &rxs {
        assert!(recv_prompt(rx, "producers after pops").is_ok());
    }
    taken.sort_unstable();
    assert_eq!(taken, [3, 10, 11, 12]);

    // A producer that times out gets its item back with the binding limit.
    let started = Instant::now();
    h.try_push(0, 1).unwrap();
    let err = h
        .push_timeout(1, 7, PushOptions::new(), Duration::from_millis(30))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        err.into_parts(),
        (
            7,
            RejectReason::CapacityFull {
                limit: Limit::Items(1)
            }
        )
    );
    drop(job);
}

#[test]
fn push_timeout_waits_for_tenant_room() {
    let config = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_items(1));
    let h: Shared<u32> = SharedScheduler::new(config);
    h.try_push(0, 1).unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.push_timeout(0, 2, PushOptions::new(), LONG).map(|_| ()))
    };
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err());
    // Another tenant is not affected.
    h.try_push(1, 3).unwrap();
    let job = h.try_dispatch().unwrap();
    assert_eq!(job.item, 1);
    assert!(recv_prompt(&rx, "producer after its tenant's pop").is_ok());
    let mut left = h.close();
    left.sort_unstable();
    assert_eq!(left, [2, 3]);
}

#[test]
fn push_timeout_returns_at_once_on_refusals_no_wait_can_lift() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.block("bad", fairshare::BlockReason::Abuse));
    let started = Instant::now();
    let err = h
        .push_timeout("bad", 1, PushOptions::new(), LONG)
        .unwrap_err();
    assert!(matches!(err.reason(), RejectReason::Blocked { .. }));
    let err = h
        .push_timeout("good", 2, PushOptions::new().with_cost(0), LONG)
        .unwrap_err();
    assert_eq!(err.into_parts(), (2, RejectReason::ZeroCost));
    assert!(
        started.elapsed() < PROMPT,
        "no waiting for a refusal time cannot lift"
    );
}

/// The first incident: one tenant floods a full queue, producers of other tenants wait for
/// room, and an operator purges the flood through `with_scheduler`. The room the purge
/// makes must reach the waiting producer.
#[test]
fn push_timeout_wakes_when_operator_purges() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2));
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(config);
    h.try_push("flood", 1).unwrap();
    h.try_push("flood", 2).unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("victim", 3, PushOptions::new(), LONG)
                .map(|_| ())
        })
    };
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err(), "queue full: the producer waits");
    let purged = h.with_scheduler(|s| {
        s.block("flood", fairshare::BlockReason::Abuse);
        s.purge(&"flood")
    });
    assert_eq!(purged, [1, 2]);
    assert!(
        recv_prompt(&rx, "producer after the operator purged the flood").is_ok(),
        "the purge made room"
    );
    assert_eq!(h.try_pop(), Some(3));
}

/// Two producers wait for different reasons: one for its tenant's cap, one for global room.
/// A pop of a third tenant's item frees global room only; it must reach the producer that
/// can use it, not be spent on the one that cannot.
#[test]
fn room_reaches_the_producer_that_can_use_it() {
    let config = SchedulerConfig::new().with_capacity(Capacity::new().with_max_items(2));
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(config);
    h.with_scheduler(|s| s.set_limits("capped", TenantLimits::new().with_max_items(1)));
    h.try_push("other", 1).unwrap();
    h.try_push("capped", 2).unwrap();

    // Waits for its tenant's cap (checked before the global capacity).
    let capped = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("capped", 3, PushOptions::new(), LONG)
                .map(|_| ())
                .map_err(|r| r.into_parts())
        })
    };
    thread::sleep(SETTLE);
    // Waits for global room.
    let newcomer = {
        let h = h.clone();
        spawn_recv(move || {
            h.push_timeout("new", 4, PushOptions::new(), LONG)
                .map(|_| ())
                .map_err(|r| r.into_parts())
        })
    };
    thread::sleep(SETTLE);
    assert!(capped.try_recv().is_err() && newcomer.try_recv().is_err());

    // DRR serves "other" first: global room, but "capped" is still at its cap.
    assert_eq!(h.try_pop(), Some(1));
    assert!(
        recv_prompt(&newcomer, "producer waiting for global room").is_ok(),
        "the freed room must reach the producer that can use it"
    );
    assert!(capped.try_recv().is_err(), "capped's tenant is still full");
    assert_eq!(h.try_pop(), Some(2));
    assert!(recv_prompt(&capped, "producer waiting for its tenant's cap").is_ok());
}

// ===== workers waiting for work =====

#[test]
fn one_push_wakes_one_waiter() {
    const N: usize = 6;
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let returned = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..N)
        .map(|_| {
            let (h, returned, tx) = (h.clone(), Arc::clone(&returned), tx.clone());
            thread::spawn(move || {
                let out = h.dispatch_timeout(LONG).map(|j| j.item);
                returned.fetch_add(1, SeqCst);
                let _ = tx.send(out);
            })
        })
        .collect();
    thread::sleep(SETTLE);
    h.try_push(0, 42).unwrap();
    assert_eq!(recv_prompt(&rx, "one waiter takes the item"), Ok(42));
    thread::sleep(SETTLE);
    assert_eq!(returned.load(SeqCst), 1, "the others keep waiting");

    // Two more items: two more waiters return, no more.
    let _ = h.try_push_batch([(1, 43, PushOptions::new()), (2, 44, PushOptions::new())]);
    let mut two = [
        recv_prompt(&rx, "batch wake 1").unwrap(),
        recv_prompt(&rx, "batch wake 2").unwrap(),
    ];
    two.sort_unstable();
    assert_eq!(two, [43, 44]);
    thread::sleep(SETTLE);
    assert_eq!(returned.load(SeqCst), 3);

    assert!(h.close().is_empty());
    let rest: Vec<_> = (0..N - 3).map(|_| recv_prompt(&rx, "close")).collect();
    assert!(
        rest.iter().all(|r| *r == Err(WaitError::Closed)),
        "{rest:?}"
    );
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(returned.load(SeqCst), N);
}

#[test]
fn waiters_time_out_without_work() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let started = Instant::now();
    assert_eq!(
        h.dispatch_timeout(Duration::from_millis(20))
            .map(|j| j.item),
        Err(WaitError::Timeout)
    );
    assert_eq!(
        h.pop_timeout(Duration::from_millis(20)),
        Err(WaitError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(h.pop_timeout(Duration::ZERO), Err(WaitError::Timeout));
    h.try_push(0, 1).unwrap();
    assert_eq!(
        h.pop_timeout(Duration::ZERO),
        Ok(1),
        "work queued: no wait needed"
    );
}

#[test]
fn with_scheduler_push_wakes_a_waiting_worker() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new());
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.pop_timeout(LONG))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.try_push(3, 33).map(|_| ()).unwrap());
    assert_eq!(recv_prompt(&rx, "worker after with_scheduler push"), Ok(33));
}

/// An operator raises a tenant's in-flight cap through `with_scheduler` (its rustdoc names
/// `set_limits` as a use): a worker asleep while that tenant's queued items were blocked by
/// the old cap must be woken to take them.
#[test]
fn raising_a_tenant_in_flight_cap_wakes_waiting_workers() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.with_scheduler(|s| s.set_limits("a", TenantLimits::new().with_max_in_flight(1)));
    h.try_push("a", 1).unwrap();
    h.try_push("a", 2).unwrap();
    let held = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none(), "a is at its cap");
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.set_limits("a", TenantLimits::new().with_max_in_flight(2)));
    assert_eq!(
        recv_prompt(&rx, "worker after the tenant's cap was raised"),
        Ok(2)
    );
    drop(held);
}

/// The same for the global in-flight limit, raised through `with_scheduler`.
#[test]
fn raising_the_global_in_flight_limit_wakes_waiting_workers() {
    let h: Shared<u32> = SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push(0, 1).unwrap();
    h.try_push(1, 2).unwrap();
    let held = h.try_dispatch().unwrap();
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.with_scheduler(|s| s.set_in_flight_limit(Some(2)));
    assert_eq!(
        recv_prompt(&rx, "worker after the global limit was raised"),
        Ok(2)
    );
    drop(held);
}

/// Completing through `with_scheduler` frees a slot and wakes a waiting worker.
#[test]
fn completion_inside_with_scheduler_wakes_a_waiting_worker() {
    let h: SharedScheduler<&'static str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(1)));
    h.try_push("a", 1).unwrap();
    let d = h.with_scheduler(|s| s.dispatch()).unwrap();
    h.try_push("b", 2).unwrap();
    let worker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let job = h.dispatch_timeout(Duration::from_secs(20)).unwrap();
            let item = job.item;
            job.lease.complete(1);
            (item, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(h.with_scheduler(|s| s.complete(d.ticket, 1)));
    let (item, waited) = worker.join().unwrap();
    assert_eq!(item, 2);
    assert!(waited < Duration::from_secs(10), "worker slept {waited:?}");
}

/// "Wait forever" is a timeout too, not a panic.
#[test]
fn huge_timeouts_do_not_panic() {
    let h: SharedScheduler<&'static str, u32> = SharedScheduler::new(SchedulerConfig::new());
    h.push_timeout("a", 1, PushOptions::new(), Duration::MAX)
        .unwrap();
    h.try_push("a", 2).unwrap();
    assert_eq!(h.pop_timeout(Duration::MAX), Ok(1));
    let job = h.dispatch_timeout(Duration::MAX).unwrap();
    assert_eq!(job.item, 2);
    job.lease.complete(1);
    // A waiter with no deadline is still woken by a push.
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || h.pop_timeout(Duration::MAX))
    };
    std::thread::sleep(Duration::from_millis(50));
    h.try_push("b", 3).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(3));
}
