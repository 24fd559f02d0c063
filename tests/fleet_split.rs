#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Tests of `fleet::QuotaSplit`: with the crate's own limiter on every node, the fleet never
//! admits more than the stated bound, and nearly all of the total when every node is busy.

use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::fleet::QuotaSplit;
use fairshare::{
    ManualClock, Nanos, Quota, RejectReason, Scheduler, SchedulerConfig, TenantLimits,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

#[track_caller]
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a non-zero test value")
}

/// One node's rate limiter: the crate's own admission check with the node's quota (the one
/// place this file uses the `Scheduler` API). Offers a unit-cost job at `at` nanoseconds:
/// `Ok` if admitted, else `Err` with the earliest time a retry can pass, if any.
fn node_limiter(quota: Quota) -> impl FnMut(u64) -> Result<(), Option<u64>> {
    let clock = ManualClock::new();
    let limits = TenantLimits::new().with_quota(quota);
    let mut s: Scheduler<u8, (), _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(limits),
        clock.clone(),
    );
    move |at| {
        clock.set(Nanos::new(at));
        let outcome = match s.try_push(0, ()) {
            Ok(_) => Ok(()),
            Err(refused) => match refused.reason() {
                RejectReason::RateLimited { retry_at } => Err(Some(retry_at.as_u64())),
                _ => Err(None),
            },
        };
        // Keep the queue empty, so only the rate limit decides.
        while s.pop().is_some() {}
        outcome
    }
}

/// Admission times of the whole fleet when `offers` (time in ns, node) are offered in order.
fn fleet_admissions(split: &QuotaSplit, offers: &[(u64, u32)]) -> Vec<u64> {
    let mut nodes: Vec<_> = (0..split.healthy().get())
        .map(|_| node_limiter(split.per_node()))
        .collect();
    offers
        .iter()
        .filter(|&&(at, node)| nodes[node as usize](at).is_ok())
        .map(|&(at, _)| at)
        .collect()
}

/// The most admissions in any closed window of `window` ns, over sorted admission times.
fn max_in_window(times: &[u64], window: u64) -> u64 {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] > window {
            lo += 1;
        }
        best = best.max((hi - lo + 1) as u64);
    }
    best
}

proptest! {
    #![proptest_config(proptest_config(48))]

    /// However requests are spread over the nodes, over any window the fleet admits at most
    /// what the fleet-wide quota allows plus the burst rounding, `max_admitted`.
    #[test]
    fn fleet_never_exceeds_the_total_plus_burst_slack(
        rate in 1..=2000u32,
        burst in 1..=200u32,
        healthy in 1..=8u32,
        gaps in prop::collection::vec((0..5_000_000u64, 0..8u32, 1..=6usize), 1..300),
        windows_ms in prop::collection::vec(1..=3000u64, 1..6),
    ) {
        let total = Quota::per_second(nz(rate)).allow_burst(nz(burst));
        let split = QuotaSplit::new(total, nz(healthy));
        // Bursts of offers at random times, on random nodes.
        let mut offers = Vec::new();
        let mut at = 0u64;
        for (gap, node, repeat) in gaps {
            at += gap;
            for _ in 0..repeat {
                offers.push((at, node % healthy));
            }
        }
        let admitted = fleet_admissions(&split, &offers);
        let interval = total.replenish_interval().as_nanos() as u64;
        for ms in windows_ms {
            let window = Duration::from_millis(ms);
            let most = max_in_window(&admitted, window.as_nanos() as u64);
            let bound = split.max_admitted(window);
            // The bound written out: the nodes' bursts plus one unit per interval.
            let bursts = u64::from(healthy) * u64::from(burst.div_ceil(healthy));
            prop_assert_eq!(bound, bursts + window.as_nanos() as u64 / interval);
            prop_assert!(bursts < u64::from(burst) + u64::from(healthy));
            prop_assert!(most <= bound, "{most} admitted in {ms} ms, bound {bound}");
        }
    }

    /// With every node always offered work (a refused job is offered again as soon as the
    /// node's limiter says a retry can pass), the fleet admits at least the total's rate less
    /// one unit per node over the run: a fraction of at least `1 − healthy·interval/T`.
    #[test]
    fn busy_fleet_admits_nearly_the_total(
        rate in 10..=2000u32,
        burst in 1..=100u32,
        healthy in 1..=8u32,
    ) {
        let total = Quota::per_second(nz(rate)).allow_burst(nz(burst));
        let split = QuotaSplit::new(total, nz(healthy));
        let interval = total.replenish_interval().as_nanos() as u64;
        let run = 2_000_000_000u64; // two seconds
        let mut nodes: Vec<_> = (0..healthy).map(|_| node_limiter(split.per_node())).collect();
        let mut next = vec![0u64; healthy as usize];
        let mut admitted = 0u64;
        while let Some((node, &at)) =
            next.iter().enumerate().filter(|&(_, &at)| at <= run).min_by_key(|&(_, &at)| at)
        {
            match nodes[node](at) {
                Ok(()) => admitted += 1,
                Err(Some(retry_at)) => {
                    prop_assert!(retry_at > at, "a refusal names a later retry time");
                    next[node] = retry_at;
                }
                Err(None) => prop_assert!(false, "refused for a reason other than the rate"),
            }
        }
        let allowance = run / interval;
        prop_assert!(
            admitted + u64::from(healthy) >= allowance,
            "admitted {admitted}, total rate allows {allowance} (+ burst)"
        );
        prop_assert!(admitted <= split.max_admitted(Duration::from_nanos(run)));
        let eps = f64::from(healthy) * interval as f64 / run as f64;
        prop_assert!(admitted as f64 >= allowance as f64 * (1.0 - eps));
    }
}

#[test]
fn split_arithmetic() {
    let total = Quota::per_second(nz(1000)).allow_burst(nz(100));
    let one = QuotaSplit::new(total, nz(1));
    assert_eq!(one.per_node(), total);
    assert_eq!(one.fleet_burst(), 100);
    let three = QuotaSplit::new(total, nz(3)).per_node();
    assert_eq!(three.replenish_interval(), Duration::from_millis(3));
    assert_eq!(three.burst().get(), 34);
    // More nodes than burst: each node still admits one.
    let many = QuotaSplit::new(total, nz(1000));
    assert_eq!(many.per_node().burst().get(), 1);
    assert_eq!(many.fleet_burst(), 1000);
    // A slow total over many nodes saturates the interval instead of overflowing.
    let slow = Quota::with_period(Duration::from_secs(1 << 40)).expect("a non-zero period");
    let split = QuotaSplit::new(slow, NonZeroU32::MAX).per_node();
    assert_eq!(split.replenish_interval(), Duration::from_nanos(u64::MAX));
    assert_eq!(
        QuotaSplit::new(slow, nz(2)).max_admitted(Duration::MAX),
        2 + (Duration::MAX.as_nanos() / slow.replenish_interval().as_nanos()) as u64
    );
}
