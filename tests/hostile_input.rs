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
