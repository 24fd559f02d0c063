//! Noisy-tenant detection embedded in a `Scheduler` (`SchedulerConfig::with_detector`), on
//! simulated time: a tenant ramping to 30% is reported within the stated bound with no call
//! from the host, its response applied and its own settings restored exactly once it calms
//! down (weight and limits, "no override" included); a 5% tenant never is; refusals feed the
//! refused stream; events and stats reach a `SharedScheduler` host; a config document turns
//! detection on; a reconfiguration that turns it off restores every response; and (property
//! test) nothing pushed is lost while responses come and go.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::num::NonZeroU32;
use std::time::Duration;

use fairshare::config::TenantLimits;
use fairshare::detect::{Action, Basis, DetectorConfig, NoisyEvent, Response};
use fairshare::{BlockReason, ManualClock, Nanos, Scheduler, SchedulerConfig, SharedScheduler};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// One op per microsecond.
const STEP: Duration = Duration::from_micros(1);
/// Two heavy tenants: 7 has its own weight and limits, 8 has the defaults.
const OWN: u64 = 7;
const PLAIN: u64 = 8;

fn own_limits() -> TenantLimits {
    TenantLimits::new()
        .with_max_items(500)
        .with_max_in_flight(9)
}

/// 8 sub-windows of 1 ms, exact recording, exit at 10% held 1 ms, nobody judged below 1,000
/// in the window (so the first tenants of a quiet start are not noisy).
fn detector(response: Response) -> DetectorConfig {
    DetectorConfig::new()
        .with_window(nz(8), Nanos::from_millis(1))
        .with_min_total(1_000)
        .with_sampling(None)
        .with_exit_after(Nanos::from_millis(1))
        .with_response(Some(response))
}

struct Run {
    s: Scheduler<u64, u64, ManualClock>,
    clock: ManualClock,
    ops: u64,
    background: u64,
    acc: [f64; 2],
}

impl Run {
    fn new(config: DetectorConfig) -> Self {
        let clock = ManualClock::new();
        let mut s = Scheduler::with_clock(
            SchedulerConfig::new().with_detector(Some(config)),
            clock.clone(),
        );
        s.set_weight(OWN, nz(8));
        s.set_limits(OWN, own_limits());
        Run {
            s,
            clock,
            ops: 0,
            background: 0,
            acc: [0.0; 2],
        }
    }

    /// One op: a push (each heavy tenant with probability `share`, else one of 10,000
    /// background tenants in turn) then a pop, one microsecond later than the last.
    fn op(&mut self, share: f64) {
        self.clock.advance(STEP);
        self.ops += 1;
        let mut key = None;
        for (i, tenant) in [OWN, PLAIN].into_iter().enumerate() {
            self.acc[i] += share;
            if key.is_none() && self.acc[i] >= 1.0 {
                self.acc[i] -= 1.0;
                key = Some(tenant);
            }
        }
        let key = key.unwrap_or_else(|| {
            self.background = (self.background + 1) % 10_000;
            1_000 + self.background
        });
        self.s.try_push(key, self.ops).unwrap();
        assert_eq!(self.s.pop(), Some(self.ops));
    }

    fn noisy(&self, key: u64) -> bool {
        self.s.detector().unwrap().is_noisy(&key)
    }
}

/// Ramps both heavy tenants to 30% each, holds, then calms them to 1%. Returns the ops from
/// reaching 30% to each being reported (by the scheduler's own polls), and the events.
fn ramp_and_calm(response: Response) -> (Run, [u64; 2], Vec<NoisyEvent<u64>>) {
    let config = detector(response);
    let mut r = Run::new(config);
    let window_ops = config.window().as_u64() / 1_000;
    let ramp = window_ops / 2;
    for _ in 0..2 * window_ops {
        r.op(0.0);
    }
    for i in 0..ramp {
        r.op(0.3 * i as f64 / ramp as f64);
    }
    let reached = r.ops;
    let mut reported = [None; 2];
    while r.ops < reached + 4 * window_ops {
        r.op(0.3);
        for (i, key) in [OWN, PLAIN].into_iter().enumerate() {
            if reported[i].is_none() && r.noisy(key) {
                reported[i] = Some(r.ops - reached);
            }
        }
    }
    assert!(r.noisy(OWN) && r.noisy(PLAIN));
    let mut events = r.s.poll_noisy();
    // While noisy, the response is in force.
    match response {
        Response::DivideWeight { .. } => {
            assert_eq!(r.s.weight_override(&OWN), Some(nz(2)));
            assert_eq!(r.s.weight_override(&PLAIN), Some(nz(1)));
        }
        _ => {
            assert_eq!(r.s.limits(&OWN), tight());
            assert_eq!(r.s.limits(&PLAIN), tight());
        }
    }
    let stats = r.s.stats().detector.expect("detection is on");
    assert_eq!(stats.noisy.len(), 2);
    for _ in 0..3 * window_ops {
        r.op(0.01);
    }
    assert!(!r.noisy(OWN) && !r.noisy(PLAIN));
    events.extend(r.s.poll_noisy());
    let reported = reported.map(|o| o.expect("a heavy tenant was never reported"));
    (r, reported, events)
}

fn tight() -> TenantLimits {
    TenantLimits::new().with_max_items(50)
}

/// The stated bound, in ops: the detector's latency bound in cost (one op is one unit of
/// admitted cost) plus one poll interval (a quarter of a sub-window, 250 ops) plus the op
/// that polls.
fn bound(config: DetectorConfig) -> u64 {
    let window_ops = config.window().as_u64() / 1_000;
    config.latency_bound(0.3, window_ops) + config.sub_window().as_u64() / 4 / 1_000 + 1
}

fn kinds(events: &[NoisyEvent<u64>], key: u64) -> Vec<(&'static str, Option<Action>)> {
    events
        .iter()
        .filter(|e| *e.key() == key)
        .map(|e| match e {
            NoisyEvent::Became { action, .. } => ("became", *action),
            NoisyEvent::Cleared { action, .. } => ("cleared", *action),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn ramping_tenant_is_reported_in_bound_and_its_weight_restored_exactly() {
    let response = Response::DivideWeight { divisor: nz(4) };
    let (r, took, events) = ramp_and_calm(response);
    let bound = bound(detector(response));
    println!("divide weight: reported after {took:?} ops, bound {bound}");
    assert!(took.iter().all(|&t| t <= bound), "{took:?} > {bound}");
    assert_eq!(
        kinds(&events, OWN),
        [
            ("became", Some(Action::SetWeight { weight: nz(2) })),
            ("cleared", Some(Action::SetWeight { weight: nz(8) })),
        ]
    );
    assert_eq!(
        kinds(&events, PLAIN),
        [
            ("became", Some(Action::SetWeight { weight: nz(1) })),
            ("cleared", Some(Action::ClearWeight)),
        ]
    );
    assert_eq!(events.len(), 4, "{events:?}");
    // Restored exactly: 7's own weight and limits, 8 back to no override at all.
    assert_eq!(r.s.weight_override(&OWN), Some(nz(8)));
    assert_eq!(r.s.limits_override(&OWN), Some(own_limits()));
    assert_eq!(r.s.weight_override(&PLAIN), None);
    assert_eq!(r.s.limits_override(&PLAIN), None);
    assert_eq!(
        r.s.queue().known_tenants(),
        1,
        "only 7's own settings keep a slot"
    );
}

#[test]
fn ramping_tenant_is_clamped_and_its_limits_restored_exactly() {
    let response = Response::ClampLimits { limits: tight() };
    let (r, took, events) = ramp_and_calm(response);
    let bound = bound(detector(response));
    println!("clamp limits: reported after {took:?} ops, bound {bound}");
    assert!(took.iter().all(|&t| t <= bound), "{took:?} > {bound}");
    let set = Some(Action::SetLimits { limits: tight() });
    assert_eq!(
        kinds(&events, OWN),
        [
            ("became", set),
            (
                "cleared",
                Some(Action::SetLimits {
                    limits: own_limits()
                })
            ),
        ]
    );
    assert_eq!(
        kinds(&events, PLAIN),
        [("became", set), ("cleared", Some(Action::ClearLimits))]
    );
    assert_eq!(r.s.limits_override(&OWN), Some(own_limits()));
    assert_eq!(r.s.weight_override(&OWN), Some(nz(8)));
    assert_eq!(r.s.limits_override(&PLAIN), None);
    assert_eq!(r.s.weight_override(&PLAIN), None);
    // The in-flight cap follows the limits: 7's own cap of 9 is back, 8 has none.
    assert_eq!(r.s.limits(&PLAIN), TenantLimits::UNLIMITED);
}

#[test]
fn an_operators_change_while_noisy_is_kept() {
    let config = detector(Response::DivideWeight { divisor: nz(4) });
    let mut r = Run::new(config);
    let window_ops = config.window().as_u64() / 1_000;
    while !r.noisy(OWN) {
        r.op(0.3);
        assert!(r.ops < 2 * window_ops, "never reported");
    }
    assert_eq!(r.s.weight_override(&OWN), Some(nz(2)));
    r.s.set_weight(OWN, nz(5)); // an operator steps in
    for _ in 0..3 * window_ops {
        r.op(0.01);
    }
    let events = r.s.poll_noisy();
    let cleared = kinds(&events, OWN).pop().unwrap();
    assert_eq!(cleared, ("cleared", None), "{events:?}");
    assert_eq!(r.s.weight_override(&OWN), Some(nz(5)));
}

#[test]
fn steady_five_percent_tenant_is_never_reported() {
    const STEADY: u64 = 5;
    // Default settings (enter 20%, sampling on) with 1 ms sub-windows: one op per 100 ns
    // (so the sampler's stride is about 10) for 20 windows.
    let config = DetectorConfig::new()
        .with_window(nz(8), Nanos::from_millis(1))
        .with_min_total(1_000);
    let clock = ManualClock::new();
    let mut s: Scheduler<u64, u64, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_detector(Some(config)),
        clock.clone(),
    );
    let ops = 20 * config.window().as_u64() / 100;
    for op in 0..ops {
        clock.advance(Duration::from_nanos(100));
        let key = if op % 20 == 0 {
            STEADY
        } else {
            1_000 + op % 10_000
        };
        s.try_push(key, op).unwrap();
        assert_eq!(s.pop(), Some(op));
    }
    assert!(s.poll_noisy().is_empty());
    let stats = s.stats().detector.unwrap();
    assert!(stats.noisy.is_empty());
    assert!(stats.strides[0] > 1, "the run was sampled");
    assert!(stats.admitted > 0 && stats.served > 0);
}

#[test]
fn refusals_feed_the_refused_stream() {
    let config = DetectorConfig::new()
        .with_basis(Basis::Refused)
        .with_sampling(None)
        .with_min_total(10);
    let clock = ManualClock::new();
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_detector(Some(config)),
        clock.clone(),
    );
    s.block("flood", BlockReason::Abuse);
    for i in 0..20 {
        assert_eq!(s.try_push("flood", i).unwrap_err().into_inner(), i);
        if i % 4 == 0 {
            s.try_push("calm", i).unwrap();
        }
    }
    let events = s.poll_noisy();
    assert!(
        matches!(
            &events[..],
            [NoisyEvent::Became {
                key: "flood",
                action: None,
                ..
            }]
        ),
        "{events:?}"
    );
    let stats = s.stats().detector.unwrap();
    assert_eq!((stats.refused, stats.admitted), (20, 5));
}

#[test]
fn events_and_stats_reach_a_shared_scheduler_host() {
    let clock = ManualClock::new();
    let config = SchedulerConfig::new()
        .with_detector(Some(detector(Response::DivideWeight { divisor: nz(2) })));
    let h = SharedScheduler::from_scheduler(Scheduler::<u64, u64, _>::with_clock(
        config,
        clock.clone(),
    ));
    h.with_scheduler(|s| s.set_weight(OWN, nz(6)));
    for i in 0..4_000u64 {
        clock.advance(STEP);
        let key = if i % 3 == 0 { OWN } else { 100 + i % 50 };
        h.try_push(key, i).unwrap();
        assert_eq!(h.try_pop(), Some(i));
    }
    assert!(h.is_noisy(&OWN));
    let stats = h.detector_stats().unwrap();
    assert_eq!(stats.noisy[0].key, OWN);
    let events = h.poll_noisy();
    assert!(
        matches!(
            &events[..],
            [NoisyEvent::Became { key: OWN, action: Some(Action::SetWeight { weight }), .. }]
                if weight.get() == 3
        ),
        "{events:?}"
    );
    assert_eq!(h.with_scheduler(|s| s.weight_override(&OWN)), Some(nz(3)));
    assert!(h.poll_noisy().is_empty(), "events are handed over once");
}

#[test]
fn reconfiguring_detection_off_restores_every_response() {
    let clock = ManualClock::new();
    let quick = detector(Response::ClampLimits { limits: tight() }).with_min_total(0);
    let on = SchedulerConfig::new().with_detector(Some(quick));
    let mut s: Scheduler<u64, u64, _> = Scheduler::with_clock(on, clock.clone());
    s.try_push(PLAIN, 0).unwrap();
    let events = s.poll_noisy();
    assert_eq!(
        events[0].action(),
        Some(Action::SetLimits { limits: tight() })
    );
    assert_eq!(s.limits(&PLAIN), tight());
    s.reconfigure(on); // the same detector: nothing changes
    assert!(s.poll_noisy().is_empty());
    s.reconfigure(SchedulerConfig::new());
    assert!(s.detector().is_none() && s.stats().detector.is_none());
    let events = s.poll_noisy();
    assert!(
        matches!(
            &events[..],
            [NoisyEvent::Cleared {
                key: PLAIN,
                action: Some(Action::ClearLimits),
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(s.limits_override(&PLAIN), None);
    assert_eq!(s.pop(), Some(0));
}

#[cfg(feature = "serde")]
#[test]
fn a_config_document_turns_detection_on() {
    use fairshare::config::Config;
    let doc = r#"{
        "tenants": { "gold": { "weight": 4 } },
        "detector": {
            "enter_share": 0.3,
            "exit_share": 0.1,
            "sub_window": 1000000,
            "response": { "clamp_limits": { "max_items": 3 } }
        }
    }"#;
    let cfg: Config = serde_json::from_str(doc).unwrap();
    let valid = cfg.validate().unwrap();
    let d = valid
        .scheduler
        .detector()
        .expect("the document turns detection on");
    assert_eq!(
        (d.enter_share(), d.sub_window()),
        (0.3, Nanos::from_millis(1))
    );
    let clamp = TenantLimits::new().with_max_items(3);
    assert_eq!(d.response(), Some(Response::ClampLimits { limits: clamp }));
    let mut s: Scheduler<String, u32, _> = valid.build(ManualClock::new());
    s.try_push("gold".into(), 1).unwrap();
    let events = s.poll_noisy();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].action(),
        Some(Action::SetLimits { limits: clamp })
    );
    assert_eq!(s.limits(&"gold".to_string()), clamp);

    // The detector config round-trips, its response in the file's form.
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains(r#""response":{"clamp_limits":{"#), "{json}");
    assert_eq!(serde_json::from_str::<DetectorConfig>(&json).unwrap(), d);

    // Bad settings name their field; unknown ones are refused.
    let bad: Config = serde_json::from_str(r#"{ "detector": { "exit_share": 0.5 } }"#).unwrap();
    let err = bad.validate().unwrap_err();
    assert!(err.to_string().contains("detector.exit_share"), "{err}");
    let err =
        serde_json::from_str::<Config>(r#"{ "detector": { "response": { "divide_weight": 0 } } }"#)
            .unwrap_err();
    assert!(
        err.to_string().contains("detector.response.divide_weight"),
        "{err}"
    );
    assert!(serde_json::from_str::<Config>(r#"{ "detector": { "enter_shar": 0.5 } }"#).is_err());
    // Off when absent.
    let off: Config = serde_json::from_str("{}").unwrap();
    assert!(off.validate().unwrap().scheduler.detector().is_none());
}

#[test]
#[should_panic(expected = "detector config: `exit_share`")]
fn a_bad_detector_config_panics_at_the_builder() {
    let _ = SchedulerConfig::new().with_detector(Some(DetectorConfig::new().with_shares(0.2, 0.3)));
}

// ===== nothing is lost while responses come and go =====

#[derive(Debug, Clone)]
enum Op {
    Push { tenant: u64, cost: u32 },
    Pop,
    Advance(u64),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6u64, 1..4u32).prop_map(|(tenant, cost)| Op::Push { tenant, cost }),
        // Tenant 0 is often heavy.
        4 => (1..4u32).prop_map(|cost| Op::Push { tenant: 0, cost }),
        4 => Just(Op::Pop),
        2 => (0..400_000u64).prop_map(Op::Advance),
        1 => Just(Op::Poll),
    ]
}

/// Every pushed item comes back exactly once: refused, popped, handed back or left queued
/// (then drained by popping), while the clamp response refuses and restores.
fn conserve(response: Response, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = DetectorConfig::new()
        .with_window(nz(4), Nanos::from_micros(250))
        .with_exit_after(Nanos::from_micros(100))
        .with_sampling(None)
        .with_response(Some(response));
    let clock = ManualClock::new();
    let mut s: Scheduler<u64, u64, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_detector(Some(config)),
        clock.clone(),
    );
    s.set_limits(1, TenantLimits::new().with_max_items(4));
    let (mut next, mut seen) = (0u64, Vec::new());
    for op in ops {
        match op {
            Op::Push { tenant, cost } => {
                next += 1;
                let opts = fairshare::PushOptions::new().with_cost(cost);
                if let Err(e) = s.try_push_with(tenant, next, opts) {
                    seen.push(e.into_inner());
                }
            }
            Op::Pop => seen.extend(s.pop()),
            Op::Advance(ns) => clock.advance(Duration::from_nanos(ns)),
            Op::Poll => {
                s.poll_noisy();
            }
        }
    }
    seen.extend(s.take_returned().into_iter().map(|r| r.into_inner()));
    while let Some(item) = s.pop() {
        seen.push(item);
    }
    seen.sort_unstable();
    prop_assert_eq!(seen, (1..=next).collect::<Vec<_>>());
    // Once detection is turned off, every tenant has its own settings again.
    s.reconfigure(SchedulerConfig::new());
    prop_assert_eq!(
        s.limits_override(&1),
        Some(TenantLimits::new().with_max_items(4))
    );
    for t in [0, 2, 3, 4, 5] {
        prop_assert_eq!(s.limits_override(&t), None);
        prop_assert_eq!(s.weight_override(&t), None);
    }
    Ok(())
}

#[test]
fn nothing_is_lost_while_responses_come_and_go() {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 32,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    });
    let responses = prop_oneof![
        Just(Response::ClampLimits {
            limits: TenantLimits::new().with_max_items(1),
        }),
        Just(Response::DivideWeight { divisor: nz(3) }),
    ];
    let cases = (responses, proptest::collection::vec(op(), 1..400));
    if let Err(e) = runner.run(&cases, |(response, ops)| conserve(response, ops)) {
        panic!("{e}");
    }
}
