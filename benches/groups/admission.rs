//! Admission: the rate-limit check against governor's keyed limiter, and the full
//! admit + push + pop + complete path against `SegQueue` push+pop.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::{
    ManualClock, PushOptions, Scheduler, SchedulerConfig, StdClock,
    config::{Quota, TenantLimits},
};

const TENANTS: [u64; 2] = [1_000, 1_000_000];

/// A quota no bench loop can exhaust: every check passes, as the admission-check target assumes.
fn generous() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap())
}

fn limited<C: fairshare::Clock>(n: u64, clock: C) -> Scheduler<u64, u64, C> {
    let limits = TenantLimits::new()
        .with_quota(generous())
        .with_max_items(1_000);
    let mut s = Scheduler::with_clock(SchedulerConfig::new().with_tenant_limits(limits), clock);
    // One queued item per tenant, so every tenant's state exists, as governor's keys do.
    for k in 0..n {
        s.try_push(k, k).unwrap();
    }
    s
}

/// The admission check with the rate limit passing, keys cycling over `n` known tenants.
pub(crate) fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission_check");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in TENANTS {
        // Baseline: governor's keyed limiter (its default clock and state store).
        let mut gov = None;
        g.bench_with_input(BenchmarkId::new("governor_check_key", n), &n, |b, &n| {
            let lim = gov.get_or_insert_with(|| {
                let q = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
                    .allow_burst(NonZeroU32::new(1_000_000).unwrap());
                let lim = governor::RateLimiter::keyed(q);
                for k in 0..n {
                    lim.check_key(&k).unwrap();
                }
                lim
            });
            let mut k = 0u64;
            b.iter(|| {
                k = if k + 1 == n { 0 } else { k + 1 };
                black_box(lim.check_key(black_box(&k)).is_ok())
            });
        });
        drop(gov);

        // Yardstick: a bare keyed GCRA (see `crate::reference`), time passed in.
        let mut bare = None;
        g.bench_with_input(BenchmarkId::new("reference_gcra", n), &n, |b, &n| {
            let lim = bare.get_or_insert_with(|| {
                // 1e9 per second: one unit per ns, a burst of 1e6.
                let mut lim = crate::reference::ReferenceGcra::new(1, 1_000_000);
                for k in 0..n {
                    assert!(lim.check(k, 0));
                }
                lim
            });
            // Time advances 1 ns per check, so every check passes however long it runs.
            let (mut k, mut now) = (0u64, 1_000_000_000u64);
            b.iter(|| {
                k = if k + 1 == n { 0 } else { k + 1 };
                now += 1;
                black_box(lim.check(black_box(k), now))
            });
        });
        if let Some(lim) = bare.take() {
            assert_eq!(lim.keys() as u64, n);
        }

        // Ours: the whole pipeline (block, cost, never-admissible, GCRA, tenant caps,
        // capacity) via try_reserve; dropping the permit charges nothing. Time passed in by
        // the host (ManualClock), as the crate intends, then each real clock.
        reserve(&mut g, "fairshare_reserve", n, ManualClock::new);
        reserve(&mut g, "fairshare_reserve_stdclock", n, StdClock::new);
        #[cfg(feature = "quanta")]
        reserve(
            &mut g,
            "fairshare_reserve_tscclock",
            n,
            fairshare::clock::TscClock::new,
        );
        #[cfg(feature = "quanta")]
        {
            // The host's upkeep thread publishes the time every millisecond.
            let _upkeep = quanta::Upkeep::new(Duration::from_millis(1))
                .start()
                .unwrap();
            reserve(
                &mut g,
                "fairshare_reserve_recentclock",
                n,
                fairshare::clock::RecentClock::new,
            );
        }
    }
    g.finish();
}

/// `try_reserve` and drop with keys cycling over `n` known tenants, on the clock `clock` makes.
fn reserve<C: fairshare::Clock>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: u64,
    clock: impl Fn() -> C,
) {
    let mut s = None;
    g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
        let s = s.get_or_insert_with(|| limited(n, clock()));
        let mut k = 0u64;
        b.iter(|| {
            k = if k + 1 == n { 0 } else { k + 1 };
            black_box(s.try_reserve(black_box(k), PushOptions::new()).is_ok())
        });
    });
}

/// Admit (rate limit + caps) + push + dispatch + complete, 1k tenants, beside SegQueue
/// push+pop holding the same number of items.
pub(crate) fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("admit_push_pop_complete");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let n = 1_000u64;
    crate::segqueue_push_pop(&mut g, BenchmarkId::new("segqueue", n), n, n);
    g.bench_function(BenchmarkId::new("fairshare", n), |b| {
        let mut s = limited(n, ManualClock::new());
        b.iter(|| {
            let d = s.dispatch().unwrap();
            let k = d.item;
            s.complete(d.ticket, 1);
            s.try_push(black_box(k), k).unwrap();
            // No capacity is configured: nothing is evicted, nothing waits to be taken.
            debug_assert_eq!(s.pending_returns(), 0);
        });
    });
    g.finish();
}
