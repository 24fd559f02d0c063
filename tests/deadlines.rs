//! Deadlines: an item whose deadline has passed is never dispatched and comes back exactly
//! once through `take_returned` (found by a pop or by `take_returned` itself, with no pop),
//! and the deadline index follows the backlog, not the throughput.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use fairshare::{
    ManualClock, Nanos, PushOptions, RejectReason, Rejected, Scheduler, SchedulerConfig,
};

use common::scheduler::{Sched, admitted, ms, sched};

// ===== deadlines =====

#[test]
fn an_expired_item_is_never_dispatched_and_comes_back_once() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    admitted(&mut s, |s| {
        s.try_push_with(
            "a",
            1,
            PushOptions::new().with_deadline(Nanos::from_secs(1)),
        )
    });
    admitted(&mut s, |s| s.try_push("a", 2));
    admitted(&mut s, |s| {
        s.try_push_with(
            "b",
            3,
            PushOptions::new().with_deadline(Nanos::from_secs(5)),
        )
    });
    admitted(&mut s, |s| {
        s.try_push_with(
            "b",
            4,
            PushOptions::new().with_deadline(Nanos::from_secs(1)),
        )
    });
    // At the deadline exactly the item is expired.
    clock.set(Nanos::from_secs(1));
    let mut served = Vec::new();
    while let Some(d) = s.dispatch() {
        assert!(s.complete(d.ticket, 1));
        served.push(d.item);
    }
    served.sort_unstable();
    assert_eq!(served, [2, 3]);
    assert_eq!(s.pop(), None);

    let expired: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    let deadline = RejectReason::DeadlineExpired {
        deadline: Nanos::from_secs(1),
    };
    assert_eq!(expired.len(), 2);
    assert!(
        expired.contains(&(1, deadline)) && expired.contains(&(4, deadline)),
        "{expired:?}"
    );
    assert!(!deadline.is_retryable());
    assert!(s.take_returned().is_empty(), "returned only once");
    assert_eq!(s.counters().expired, 2);
    // Item 3 was dispatched before its deadline; it never comes back as expired.
    clock.set(Nanos::from_secs(10));
    assert!(s.take_returned().is_empty());
    assert!(s.queue().is_empty());
}

#[test]
fn take_returned_collects_expired_items_without_any_pop() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    for i in 0..3 {
        admitted(&mut s, |s| {
            s.try_push_with(
                "a",
                i,
                PushOptions::new().with_deadline(ms(10 * u64::from(i + 1))),
            )
        });
    }
    clock.set(ms(20));
    let ids: Vec<u32> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_inner)
        .collect();
    assert_eq!(ids, [0, 1]);
    assert_eq!(s.queue().len(), 1);
    assert_eq!(s.pending_returns(), 0);
    assert_eq!(s.pop(), Some(2));
}

#[test]
fn expired_items_found_by_pop_wait_in_pending_returns() {
    let (mut s, clock): (Sched, _) = sched(SchedulerConfig::new());
    admitted(&mut s, |s| {
        s.try_push_with("a", 1, PushOptions::new().with_deadline(ms(5)))
    });
    admitted(&mut s, |s| s.try_push("a", 2));
    clock.set(ms(5));
    assert_eq!(s.pop(), Some(2));
    assert_eq!(s.pending_returns(), 1);
    assert_eq!(s.queue().len(), 0);
    let back = s.take_returned();
    assert_eq!(back.len(), 1);
    assert_eq!(s.pending_returns(), 0);
    assert_eq!(back.into_iter().next().map(Rejected::into_inner), Some(1));
}

/// Deadline entries of items that left early no longer pile up.
#[test]
fn deadline_heap_follows_the_backlog_not_the_throughput() {
    let clock = ManualClock::new();
    let mut s: Scheduler<u32, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock);
    let far = Nanos::from_secs(3600);
    for i in 0..100_000 {
        s.try_push_with(i % 7, i, PushOptions::new().with_deadline(far))
            .unwrap();
        assert_eq!(s.pop(), Some(i));
    }
    assert!(s.queue().is_empty());
    // 100,000 stale entries would be over 3 MB; compaction keeps the heap near the backlog.
    assert!(
        s.queue().heap_bytes() < 64 * 1024,
        "{} bytes",
        s.queue().heap_bytes()
    );
}
