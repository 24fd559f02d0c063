//! Graded pressure and adaptive concurrency limits: the pressure gauge rises at a band's
//! enter threshold and falls only below its exit threshold (and matches that rule on random
//! loads), the shared handle's pressure follows the queue, recovers when it empties and rises
//! while workers stall; AIMD and gradient limits stay within their bounds, back off on
//! failure or rising latency, grow when steady, and a grown limit wakes as many workers as it
//! frees. All time comes from a `ManualClock`.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::thread;
use std::time::Duration;

use fairshare::{
    ManualClock, Nanos, PushOptions, Scheduler, SchedulerConfig, SharedScheduler,
    adaptive::{AdaptiveLimit, Aimd, Gradient, Outcome},
    pressure::{Band, PressureConfig, PressureGauge, PressureLevel},
};
use proptest::{prelude::*, test_runner::FileFailurePersistence};

use common::threads::{LONG, SETTLE, recv_prompt, spawn_recv};

// ===== pressure =====

fn level_after(s: &mut Scheduler<u32, u32, ManualClock>, target: usize) -> PressureLevel {
    while s.queue().len() < target {
        let n = s.queue().len() as u32;
        s.try_push(n % 7, n).unwrap();
    }
    while s.queue().len() > target {
        assert!(s.pop().is_some());
    }
    s.pressure()
}

#[test]
fn pressure_rises_at_enter_and_falls_below_exit() {
    use PressureLevel::*;
    let config =
        SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(100)));
    let mut s: Scheduler<u32, u32, ManualClock> = Scheduler::with_clock(config, ManualClock::new());
    // Rising, one item at a time: each level exactly at its enter threshold.
    let rising = [
        (0, Normal),
        (49, Normal),
        (50, Elevated),
        (79, Elevated),
        (80, Shedding),
        (94, Shedding),
        (95, Critical),
        (100, Critical),
        (120, Critical),
    ];
    for (n, want) in rising {
        assert_eq!(level_after(&mut s, n), want, "rising to {n} items");
    }
    // Falling: a level holds down to its exit threshold and is left only below it.
    let falling = [
        (85, Critical),
        (84, Shedding),
        (79, Shedding), // below shedding's enter, above its exit: no flapping
        (70, Shedding),
        (69, Elevated),
        (40, Elevated),
        (39, Normal),
        (45, Normal), // above elevated's exit, below its enter
        (49, Normal),
    ];
    for (n, want) in falling {
        assert_eq!(level_after(&mut s, n), want, "at {n} items");
    }
    // Oscillating around a threshold does not flap.
    assert_eq!(level_after(&mut s, 80), Shedding);
    for _ in 0..5 {
        assert_eq!(level_after(&mut s, 78), Shedding);
        assert_eq!(level_after(&mut s, 81), Shedding);
    }
    // Jumps: several levels at once, both ways.
    assert_eq!(level_after(&mut s, 0), Normal);
    assert_eq!(level_after(&mut s, 99), Critical);
    assert_eq!(level_after(&mut s, 60), Elevated);
}

#[test]
fn shared_pressure_follows_the_queue() {
    use PressureLevel::*;
    let config =
        SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(100)));
    let h: SharedScheduler<u32, u32, ManualClock> =
        SharedScheduler::from_scheduler(Scheduler::with_clock(config, ManualClock::new()));
    let mut levels = Vec::new();
    let results = h.try_push_batch((0..95).map(|i| (i % 5, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));
    levels.push(h.pressure());
    // Down to 86: still critical (exit 850).
    let _ = h.pop_batch(9);
    levels.push(h.pressure());
    let _ = h.pop_batch(2); // 84
    levels.push(h.pressure());
    let _ = h.pop_batch(14); // 70
    levels.push(h.pressure());
    let _ = h.pop_batch(1); // 69
    levels.push(h.pressure());
    let left = h.close();
    assert_eq!(left.len(), 69);
    levels.push(h.pressure());
    assert_eq!(
        levels,
        [Critical, Critical, Shedding, Shedding, Elevated, Normal]
    );
    assert_eq!(h.with_scheduler(|s| s.pressure()), Normal);
}

/// The documented rule, written independently: the level rises to the highest level whose
/// enter threshold the load reaches; otherwise it stays at the highest level at or below the
/// current one whose exit threshold the load still reaches (`Normal` at worst), never below
/// the entered level.
fn reference_level(bands: [(u32, u32); 3], current: usize, load: u32) -> usize {
    let enter = |l: usize| bands[l - 1].0;
    let exit = |l: usize| bands[l - 1].1.min(bands[l - 1].0);
    let entered = (1..=3).rev().find(|&l| load >= enter(l)).unwrap_or(0);
    if entered >= current {
        return entered;
    }
    let stay = (1..=current).rev().find(|&l| load >= exit(l)).unwrap_or(0);
    stay.max(entered)
}

fn level_index(l: PressureLevel) -> usize {
    match l {
        PressureLevel::Normal => 0,
        PressureLevel::Elevated => 1,
        PressureLevel::Shedding => 2,
        PressureLevel::Critical => 3,
    }
}

fn small_config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

fn load_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..1_200,
        1 => Just(u32::MAX),
        1 => prop::sample::select(vec![399, 400, 499, 500, 699, 700, 799, 800, 849, 850, 949, 950]),
    ]
}

proptest! {
    #![proptest_config(small_config())]

    #[test]
    fn pressure_gauge_matches_the_documented_rule(
        custom in any::<bool>(),
        raw in prop::array::uniform3((0u32..1_200, 0u32..1_200)),
        loads in prop::collection::vec(load_strategy(), 1..60),
    ) {
        let bands = if custom {
            raw
        } else {
            [(500, 400), (800, 700), (950, 850)]
        };
        let config = PressureConfig::new().with_bands(
            Band::new(bands[0].0, bands[0].1),
            Band::new(bands[1].0, bands[1].1),
            Band::new(bands[2].0, bands[2].1),
        );
        let mut gauge = PressureGauge::new(config);
        let mut level = 0;
        for load in loads {
            let got = gauge.update(load);
            prop_assert_eq!(got, gauge.level());
            let want = reference_level(bands, level, load);
            prop_assert_eq!(level_index(got), want, "load {} from level {}", load, level);
            if !custom {
                // Default bands are ordered, so the level only reflects thresholds reached.
                if level_index(got) > level {
                    prop_assert!(load >= bands[level_index(got) - 1].0);
                }
                if level_index(got) > 0 {
                    prop_assert!(load >= bands[level_index(got) - 1].1);
                }
            }
            level = want;
        }
    }

    #[test]
    fn adaptive_limits_stay_within_bounds(
        min in 0u32..40,
        max in 0u32..200,
        initial in 0u32..300,
        threshold_ms in 0u64..100,
        backoff in 0u32..1_500,
        samples in prop::collection::vec((0u64..300_000_000, 0u8..3), 0..200),
    ) {
        let aimd = Aimd::new(min, max, Nanos::from_millis(threshold_ms)).with_backoff_permille(backoff);
        let (lo, hi) = aimd.bounds();
        prop_assert_eq!(lo, min.max(1));
        prop_assert_eq!(hi, max.max(lo));
        let mut a = AdaptiveLimit::aimd(aimd, initial);
        let grad = Gradient::new(min, max);
        prop_assert_eq!(grad.bounds(), (lo, hi));
        let mut g = AdaptiveLimit::gradient(grad, initial);
        prop_assert!((lo..=hi).contains(&a.current()));
        prop_assert!((lo..=hi).contains(&g.current()));
        for (latency, outcome) in samples {
            let outcome = match outcome {
                0 => Outcome::Success,
                1 => Outcome::Failure,
                _ => Outcome::Dropped,
            };
            let latency = Nanos::new(latency);
            let before = a.current();
            let after = a.on_sample(latency, outcome);
            prop_assert_eq!(after, a.current());
            prop_assert!((lo..=hi).contains(&after), "aimd {} outside [{}, {}]", after, lo, hi);
            match outcome {
                Outcome::Dropped => prop_assert_eq!(after, before, "a dropped lease is no signal"),
                Outcome::Failure => prop_assert!(after <= before, "failure never grows"),
                _ if latency > Nanos::from_millis(threshold_ms) => {
                    prop_assert!(after <= before, "slow never grows")
                }
                _ => prop_assert!(after == before || after == before + 1, "fast grows by at most one"),
            }
            let before = g.current();
            let after = g.on_sample(latency, outcome);
            prop_assert!((lo..=hi).contains(&after), "gradient {} outside [{}, {}]", after, lo, hi);
            if outcome == Outcome::Dropped {
                prop_assert_eq!(after, before);
            }
        }
    }
}

// ===== adaptive limits =====

#[test]
fn aimd_backs_off_on_failure_and_slowness_and_grows_after_a_limits_worth() {
    let threshold = Nanos::from_millis(100);
    let fast = Nanos::from_millis(10);
    let slow = Nanos::from_millis(101);
    let mut l = AdaptiveLimit::aimd(Aimd::new(1, 10, threshold), 4);
    assert_eq!(l.current(), 4);
    for _ in 0..3 {
        assert_eq!(l.on_sample(fast, Outcome::Success), 4);
    }
    assert_eq!(
        l.on_sample(fast, Outcome::Success),
        5,
        "4 fast successes at limit 4"
    );
    assert_eq!(
        l.on_sample(threshold, Outcome::Success),
        5,
        "at the threshold is fast"
    );
    assert_eq!(l.on_sample(fast, Outcome::Failure), 4, "5 * 0.9 = 4.5 → 4");
    assert_eq!(
        l.on_sample(slow, Outcome::Success),
        3,
        "too slow backs off too"
    );
    assert_eq!(l.on_sample(slow, Outcome::Dropped), 3, "dropped: no signal");
    // A back-off resets the success count: a limit's worth is counted afresh.
    assert_eq!(l.on_sample(fast, Outcome::Success), 3);
    assert_eq!(l.on_sample(fast, Outcome::Failure), 2);
    assert_eq!(l.on_sample(fast, Outcome::Success), 2);
    assert_eq!(l.on_sample(fast, Outcome::Success), 3);
    // Never below min, never above max.
    for _ in 0..20 {
        l.on_sample(fast, Outcome::Failure);
    }
    assert_eq!(l.current(), 1);
    for _ in 0..200 {
        l.on_sample(fast, Outcome::Success);
    }
    assert_eq!(l.current(), 10);
    // A custom back-off.
    let mut half = AdaptiveLimit::aimd(Aimd::new(1, 64, threshold).with_backoff_permille(500), 8);
    assert_eq!(half.on_sample(fast, Outcome::Failure), 4);
}

#[test]
fn gradient_shrinks_on_rising_latency_and_grows_when_steady() {
    let mut g = AdaptiveLimit::gradient(Gradient::new(1, 100), 20);
    let steady = Nanos::from_millis(10);
    for _ in 0..50 {
        g.on_sample(steady, Outcome::Success);
    }
    let grown = g.current();
    assert!(grown > 20, "steady latency grows the limit ({grown})");
    // A latency jump far above the long-term average shrinks the limit at once, sample by
    // sample, while the long-term average still remembers the old latency.
    let mut prev = grown;
    for i in 0..5 {
        let now = g.on_sample(Nanos::from_millis(200), Outcome::Success);
        assert!(now < prev, "slow sample {i}: {now} !< {prev}");
        prev = now;
    }
    // Once the long-term average has adapted to the new latency, it grows again: the
    // gradient tracks change, not absolute latency.
    for _ in 0..100 {
        g.on_sample(Nanos::from_millis(200), Outcome::Success);
    }
    assert!(g.current() > prev, "{} after adapting", g.current());
    // A failure halves the gradient: never grows.
    let before = g.current();
    g.on_sample(Nanos::from_millis(200), Outcome::Failure);
    assert!(g.current() <= before);
}

type Clocked = SharedScheduler<u32, u32, ManualClock>;

fn clocked(config: SchedulerConfig) -> (Clocked, ManualClock) {
    let clock = ManualClock::new();
    let h = SharedScheduler::from_scheduler(Scheduler::with_clock(config, clock.clone()));
    (h, clock)
}

#[test]
fn adaptive_limit_follows_completion_latency_on_a_manual_clock() {
    let (h, clock) = clocked(SchedulerConfig::new());
    let limit = |h: &Clocked| h.with_scheduler(|s| s.queue().in_flight_limit());
    h.set_adaptive_limit(Some(AdaptiveLimit::aimd(
        Aimd::new(1, 16, Nanos::from_millis(50)),
        8,
    )));
    assert_eq!(limit(&h), Some(8));
    let results = h.try_push_batch((0..200).map(|i| (i % 4, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));

    // Slow completions shrink the limit.
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(51));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(7));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(100));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6), "7 * 0.9 = 6.3 → 6");

    // The limit binds dispatch.
    let jobs = h.dispatch_batch(100);
    assert_eq!(jobs.len(), 6);
    assert!(h.try_dispatch().is_none());
    // Six fast successes (a limit's worth) grow it by one.
    clock.advance(Duration::from_millis(10));
    for job in jobs {
        job.lease.complete(1);
    }
    assert_eq!(limit(&h), Some(7));

    // A failure backs off even when fast; a dropped lease is no signal even when slow.
    let job = h.try_dispatch().unwrap();
    job.lease.complete_with(1, Outcome::Failure);
    assert_eq!(limit(&h), Some(6));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_secs(10));
    drop(job);
    assert_eq!(limit(&h), Some(6));
    // Latency is measured from dispatch, not from push.
    clock.advance(Duration::from_secs(10));
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_millis(1));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6), "fast since its dispatch: no back-off");

    // Turning the adaptive limit off leaves the limit where it is and stops adapting.
    h.set_adaptive_limit(None);
    let job = h.try_dispatch().unwrap();
    clock.advance(Duration::from_secs(1));
    job.lease.complete(1);
    assert_eq!(limit(&h), Some(6));
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn adaptive_growth_wakes_as_many_workers_as_it_frees() {
    let (h, clock) = clocked(SchedulerConfig::new());
    h.set_adaptive_limit(Some(AdaptiveLimit::aimd(
        Aimd::new(1, 16, Nanos::from_millis(50)),
        2,
    )));
    let results = h.try_push_batch((0..10).map(|i| (i, i, PushOptions::new())));
    assert!(results.iter().all(Result::is_ok));
    let j1 = h.try_dispatch().unwrap();
    let j2 = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none());
    clock.advance(Duration::from_millis(1));
    j1.lease.complete(1); // one fast success of two needed
    let j3 = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none());

    let rxs: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            // The job (and its lease) comes back to the test, so a worker's own
            // completion cannot be what frees the other worker's slot.
            spawn_recv(move || h.dispatch_timeout(LONG))
        })
        .collect();
    thread::sleep(SETTLE);
    // The second fast success grows the limit to 3: one slot freed by the completion and
    // one by the growth, so both sleeping workers get an item.
    j2.lease.complete(1);
    assert_eq!(h.with_scheduler(|s| s.queue().in_flight_limit()), Some(3));
    let jobs: Vec<_> = rxs
        .iter()
        .map(|rx| recv_prompt(rx, "worker woken by growth").expect("an item"))
        .collect();
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 3);
    drop((j3, jobs));
}

/// The delay signal falls back when nothing waits any more.
#[test]
fn pressure_recovers_when_the_queue_empties() {
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new().with_pressure(Some(
        PressureConfig::new().with_target_delay(Nanos::from_millis(100)),
    ));
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(cfg, clock.clone());
    s.try_push("a", 1).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.pressure(), PressureLevel::Critical); // one item waited 10x the target
    s.pop();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(s.pressure(), PressureLevel::Normal);
}

/// Stalled workers show up as growing delay even with no dispatch at all.
#[test]
fn pressure_rises_while_workers_stall() {
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new().with_pressure(Some(
        PressureConfig::new().with_target_delay(Nanos::from_millis(100)),
    ));
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(cfg, clock.clone());
    s.try_push("a", 1).unwrap();
    assert_eq!(s.pressure(), PressureLevel::Normal);
    clock.advance(Duration::from_millis(90));
    assert_eq!(s.pressure(), PressureLevel::Shedding); // 900 per mille
}
