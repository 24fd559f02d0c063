//! Noisy-tenant detection: the detector's record call per admitted item, beside the admission
//! check it would ride on (`Scheduler::try_reserve` + drop of the permit, 1k tenants), and the
//! detector embedded in the scheduler (`SchedulerConfig::with_detector`) off and on, in one
//! group so the ratios come from one run.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::detect::{Detector, DetectorConfig};
use fairshare::{
    ManualClock, Nanos, PushOptions, Scheduler, SchedulerConfig,
    config::{Quota, TenantLimits},
};

const TENANTS: u64 = 1_000;
/// Simulated time between two admissions: a million admissions per second.
const STEP_NS: u64 = 1_000;

/// As `admission::limited`: a quota every check passes, one queued item per tenant.
fn scheduler(n: u64) -> Scheduler<u64, u64, ManualClock> {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000).unwrap());
    let limits = TenantLimits::new().with_quota(quota).with_max_items(1_000);
    let mut s = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_limits(limits),
        ManualClock::new(),
    );
    for k in 0..n {
        s.try_push(k, k).unwrap();
    }
    s
}

/// A detector warmed up over a few sub-windows of the same traffic, so the sampler's stride
/// is the one this rate settles at.
fn detector(config: DetectorConfig, n: u64) -> (Detector<u64>, u64) {
    let mut d = Detector::new(config).unwrap();
    let mut now = 0u64;
    let warm = 4 * config.sub_window().as_u64() / STEP_NS;
    for i in 0..warm {
        now += STEP_NS;
        d.record_admitted(&(i % n), 1, Nanos::new(now));
    }
    (d, now)
}

/// The admission check alone, the detector's record alone (sampled, the default, and exact),
/// and the two together.
pub(crate) fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let n = TENANTS;
    // Default windows (8 x 1 s), short enough to warm up quickly at 1M admissions per second.
    let sampled = DetectorConfig::new();
    let exact = DetectorConfig::new()
        .with_sampling(None)
        .with_window(NonZeroU32::new(8).unwrap(), Nanos::from_millis(10));

    let mut s = None;
    g.bench_with_input(BenchmarkId::new("fairshare_reserve", n), &n, |b, &n| {
        let s = s.get_or_insert_with(|| scheduler(n));
        let mut k = 0u64;
        b.iter(|| {
            k = if k + 1 == n { 0 } else { k + 1 };
            black_box(s.try_reserve(black_box(k), PushOptions::new()).is_ok())
        });
    });
    drop(s);

    for (name, config) in [
        ("detect_record_sampled", sampled),
        ("detect_record_exact", exact),
    ] {
        let mut d = None;
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
            let (d, now) = d.get_or_insert_with(|| detector(config, n));
            let mut k = 0u64;
            b.iter(|| {
                k = if k + 1 == n { 0 } else { k + 1 };
                *now += STEP_NS;
                d.record_admitted(black_box(&k), 1, Nanos::new(*now));
            });
        });
        if let Some((d, now)) = d.take() {
            // Every record landed: the window holds about a window's worth of admissions.
            let total = d.stats(Nanos::new(now)).admitted;
            assert!(total > 0, "{name}: nothing recorded");
        }
    }

    let mut both = None;
    g.bench_with_input(
        BenchmarkId::new("fairshare_reserve_and_record", n),
        &n,
        |b, &n| {
            let (s, (d, now)) = both.get_or_insert_with(|| (scheduler(n), detector(sampled, n)));
            let mut k = 0u64;
            b.iter(|| {
                k = if k + 1 == n { 0 } else { k + 1 };
                *now += STEP_NS;
                let admitted = s.try_reserve(black_box(k), PushOptions::new()).is_ok();
                if admitted {
                    d.record_admitted(&k, 1, Nanos::new(*now));
                }
                black_box(admitted)
            });
        },
    );
    embedded(&mut g, n);
    g.finish();
}

/// `Scheduler` with detection embedded: the default detector (sampled, 8 x 1 s windows, so at
/// a million admissions per second the sampler keeps about one unit in a thousand once its
/// first sub-window has passed in the warm-up), judging from 1,000 units, no response.
fn detecting() -> DetectorConfig {
    DetectorConfig::new().with_min_total(1_000)
}

/// The admission check of `admission::check` (`try_reserve`, 1k tenants) with detection off
/// and on, and the committing path (`try_reserve` + commit + pop, which records the
/// admission and the dispatch and polls on the scheduler's clock) off and on; the clock
/// advances 1 µs per op on every side.
fn embedded(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: u64) {
    for (name, detector) in [("off", None), ("on", Some(detecting()))] {
        let build = || {
            let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
                .allow_burst(NonZeroU32::new(1_000_000).unwrap());
            let limits = TenantLimits::new().with_quota(quota).with_max_items(1_000);
            let config = SchedulerConfig::new()
                .with_tenant_limits(limits)
                .with_detector(detector);
            let clock = ManualClock::new();
            let mut s: Scheduler<u64, u64, _> = Scheduler::with_clock(config, clock.clone());
            for k in 0..n {
                s.try_push(k, k).unwrap();
            }
            (s, clock)
        };
        let mut state = None;
        g.bench_with_input(
            BenchmarkId::new(format!("reserve_detect_{name}"), n),
            &n,
            |b, &n| {
                let (s, clock) = state.get_or_insert_with(build);
                let mut k = 0u64;
                b.iter(|| {
                    k = if k + 1 == n { 0 } else { k + 1 };
                    clock.advance(Duration::from_nanos(STEP_NS));
                    black_box(s.try_reserve(black_box(k), PushOptions::new()).is_ok())
                });
            },
        );
        let mut state = None;
        g.bench_with_input(
            BenchmarkId::new(format!("reserve_commit_pop_detect_{name}"), n),
            &n,
            |b, &n| {
                let (s, clock) = state.get_or_insert_with(build);
                let mut k = 0u64;
                b.iter(|| {
                    k = if k + 1 == n { 0 } else { k + 1 };
                    clock.advance(Duration::from_nanos(STEP_NS));
                    if let Ok(p) = s.try_reserve(black_box(k), PushOptions::new()) {
                        p.commit(k);
                    }
                    black_box(s.pop())
                });
            },
        );
        if let Some((s, _)) = state.take() {
            assert_eq!(s.stats().detector.is_some(), detector.is_some());
        }
    }
}
