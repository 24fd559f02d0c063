//! Scheduler builders and refusal checks for the admission tests: a `Scheduler` on a
//! `ManualClock` from per-tenant quotas and limits, pushes that must be admitted, refused or
//! evict, draining pops, and millisecond shorthands.

use std::hash::Hash;

use fairshare::{
    ManualClock, Nanos, PushOptions, RejectReason, Rejected, Scheduler, SchedulerConfig,
    config::{Quota, TenantLimits},
};

use super::*;

pub(crate) type Sched<K = &'static str> = Scheduler<K, u32, ManualClock>;

/// `rate` units per second with a burst of `burst`.
pub(crate) fn quota(rate: u32, burst: u32) -> Quota {
    Quota::per_second(nz(rate)).allow_burst(nz(burst))
}

pub(crate) fn limits_with_quota(rate: u32, burst: u32) -> TenantLimits {
    TenantLimits::new().with_quota(quota(rate, burst))
}

pub(crate) fn sched<K: std::hash::Hash + Eq + Clone>(
    config: SchedulerConfig,
) -> (Scheduler<K, u32, ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (Scheduler::with_clock(config, clock.clone()), clock)
}

pub(crate) fn cost(c: u32) -> PushOptions {
    PushOptions::new().with_cost(c)
}

/// Runs one push on `s`, asserting the item was admitted and nothing was evicted to make room
/// for it.
#[track_caller]
pub(crate) fn admitted<K, T>(
    s: &mut Scheduler<K, T, ManualClock>,
    push: impl FnOnce(&mut Scheduler<K, T, ManualClock>) -> Result<(), Rejected<T>>,
) where
    K: Hash + Eq + Clone,
{
    let evicted_before = s.counters().evicted;
    match push(s) {
        Ok(()) => assert_eq!(s.counters().evicted, evicted_before, "unexpected evictions"),
        Err(e) => panic!("expected admission, got refusal: {}", e.reason()),
    }
}

/// Unwraps a refusal: the reason and the item handed back.
#[track_caller]
pub(crate) fn refused<T>(r: Result<(), Rejected<T>>) -> (T, RejectReason) {
    match r {
        Ok(()) => panic!("expected a refusal, the item was admitted"),
        Err(e) => e.into_parts(),
    }
}

/// Runs one push on `s`, asserting the item was admitted, and returns the items evicted to
/// make room for it (handed back by `take_returned`), with their reasons.
#[track_caller]
pub(crate) fn evicted<K, T>(
    s: &mut Scheduler<K, T, ManualClock>,
    push: impl FnOnce(&mut Scheduler<K, T, ManualClock>) -> Result<(), Rejected<T>>,
) -> Vec<(T, RejectReason)>
where
    K: Hash + Eq + Clone,
{
    assert_eq!(
        s.pending_returns(),
        0,
        "items handed back before the push were not taken"
    );
    let evicted_before = s.counters().evicted;
    if let Err(e) = push(s) {
        panic!("expected admission, got refusal: {}", e.reason());
    }
    let out: Vec<_> = s
        .take_returned()
        .into_iter()
        .map(Rejected::into_parts)
        .collect();
    assert!(
        out.iter().all(|(_, r)| *r == RejectReason::Evicted),
        "only evictions come back from a push: {:?}",
        out.iter().map(|(_, r)| r).collect::<Vec<_>>()
    );
    assert_eq!(
        s.counters().evicted - evicted_before,
        out.len() as u64,
        "every eviction comes back"
    );
    out
}

pub(crate) fn pop_all<K: std::hash::Hash + Eq + Clone>(
    s: &mut Scheduler<K, u32, ManualClock>,
) -> Vec<u32> {
    std::iter::from_fn(|| s.pop()).collect()
}

pub(crate) fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}
