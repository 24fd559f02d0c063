//! Serde configuration: round trips, field-named errors, reconfiguration that keeps every
//! item, and serialisable stats.
#![cfg(feature = "serde")]
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use common::{Ledger, Way};

use fairshare::{
    BlockReason, ClassId, ClassSpec, Classes, ConfigError, ManualClock, Nanos, PushOptions,
    RejectReason, Scheduler, SchedulerConfig,
    config::{
        ClassConfig, Config, LimitsConfig, QueueDelayConfig, Quota, RateConfig, ShedPolicy,
        TenantConfig,
    },
    stats::Stats,
};

const FULL: &str = r#"{
  "quantum": 2,
  "default_weight": 1,
  "max_credit_rounds": 3,
  "tenant_defaults": { "rate": { "per_second": 50, "burst": 20 }, "max_items": 100, "max_cost": 500, "max_in_flight": 4 },
  "capacity": { "max_items": 1000, "max_cost": 5000 },
  "shed_policy": "evict_over_share",
  "queue_delay": { "target_ms": 50, "interval_ms": 500 },
  "max_in_flight": 8,
  "tenants": {
    "gold": { "weight": 4, "limits": { "rate": { "per_second": 500 } } },
    "acme": { "blocked": "abuse" }
  }
}"#;

/// A sign-in reservation setup: a reserved sign-in class, the API, and bulk work under a
/// ceiling.
const CLASSES: &str = r#"{
  "max_in_flight": 10,
  "classes": [
    { "name": "api", "weight": 3, "tenant_rate": { "per_second": 100, "burst": 50 } },
    { "name": "signin", "reserved_percent": 20, "priority": 1 },
    { "name": "bulk", "ceiling_percent": 40, "max_in_flight": 3 }
  ],
  "tenant_detail": true
}"#;

#[test]
fn json_round_trip_is_lossless() {
    let cfg: Config = serde_json::from_str(FULL).unwrap();
    let again: Config = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(cfg, again);
    assert_eq!(cfg.shed_policy, ShedPolicy::EvictOverShare);
    assert_eq!(cfg.tenants["acme"].blocked, Some(BlockReason::Abuse));
    let valid = cfg.validate().unwrap();
    assert_eq!(valid.scheduler.queue().quantum().get(), 2);
    assert_eq!(valid.scheduler.tenant_limits().max_in_flight(), Some(4));
    assert_eq!(valid.scheduler.capacity().max_cost(), Some(5000));
    assert_eq!(valid.tenants.len(), 2);
}

#[test]
fn empty_document_gives_the_defaults() {
    let cfg: Config = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.validate().unwrap().scheduler, SchedulerConfig::new());
}

#[test]
fn unknown_and_mistyped_fields_are_named_by_serde() {
    let err = serde_json::from_str::<Config>(r#"{ "quantm": 1 }"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `quantm`"), "{err}");
    let err =
        serde_json::from_str::<Config>(r#"{ "tenants": { "a": { "wieght": 2 } } }"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `wieght`"), "{err}");
    let err =
        serde_json::from_str::<Config>(r#"{ "shed_policy": "drop_everything" }"#).unwrap_err();
    assert!(err.to_string().contains("drop_everything"), "{err}");
}

/// A way to break one field of a valid config.
type Breaker = Box<dyn Fn(&mut Config)>;

fn field_of(cfg: &Config) -> String {
    match cfg.validate().unwrap_err() {
        ConfigError::Invalid { field, .. } => field.to_string(),
        ConfigError::InvalidTenant { tenant, field, .. } => format!("tenants.{tenant}.{field}"),
        ConfigError::InvalidClass { class, field, .. } => format!("classes.{class}.{field}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn values_that_can_never_work_name_their_field() {
    let base: Config = serde_json::from_str(FULL).unwrap();
    let cases: Vec<(&str, Breaker)> = vec![
        ("quantum", Box::new(|c| c.quantum = 0)),
        ("default_weight", Box::new(|c| c.default_weight = 0)),
        (
            "tenant_defaults.rate.per_second",
            Box::new(|c| {
                c.tenant_defaults.rate = Some(RateConfig {
                    per_second: 0,
                    burst: None,
                })
            }),
        ),
        (
            "tenant_defaults.rate.burst",
            Box::new(|c| {
                c.tenant_defaults.rate = Some(RateConfig {
                    per_second: 1,
                    burst: Some(0),
                })
            }),
        ),
        (
            "tenant_defaults.max_items",
            Box::new(|c| c.tenant_defaults.max_items = Some(0)),
        ),
        (
            "tenant_defaults.max_cost",
            Box::new(|c| c.tenant_defaults.max_cost = Some(0)),
        ),
        (
            "tenant_defaults.max_in_flight",
            Box::new(|c| c.tenant_defaults.max_in_flight = Some(0)),
        ),
        (
            "capacity.max_items",
            Box::new(|c| c.capacity.max_items = Some(0)),
        ),
        (
            "capacity.max_cost",
            Box::new(|c| c.capacity.max_cost = Some(0)),
        ),
        (
            "queue_delay.target_ms",
            Box::new(|c| {
                c.queue_delay = Some(QueueDelayConfig {
                    target_ms: 0,
                    interval_ms: 1,
                })
            }),
        ),
        (
            "queue_delay.interval_ms",
            Box::new(|c| {
                c.queue_delay = Some(QueueDelayConfig {
                    target_ms: 1,
                    interval_ms: 0,
                })
            }),
        ),
        ("max_in_flight", Box::new(|c| c.max_in_flight = Some(0))),
        (
            "tenants.gold.weight",
            Box::new(|c| c.tenants.get_mut("gold").unwrap().weight = Some(0)),
        ),
        (
            "tenants.gold.limits.max_items",
            Box::new(|c| {
                c.tenants.get_mut("gold").unwrap().limits = Some(LimitsConfig {
                    max_items: Some(0),
                    ..LimitsConfig::default()
                })
            }),
        ),
    ];
    for (field, breaks) in cases {
        let mut cfg = base.clone();
        breaks(&mut cfg);
        assert_eq!(field_of(&cfg), field);
        // The message says how to fix it.
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains(field) && msg.contains("must be"), "{msg}");
    }
}

#[test]
fn reconfiguration_keeps_every_queued_and_in_flight_item() {
    let clock = ManualClock::new();
    let mut s: Scheduler<String, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock);
    let mut ledger = Ledger::new();
    for i in 0..60u32 {
        let tenant = ["gold", "free", "acme"][i as usize % 3].to_string();
        ledger.pushed(i);
        s.try_push_with(tenant, i, PushOptions::new().with_cost(1 + i % 3))
            .unwrap();
    }
    let d = s.dispatch().unwrap();
    // A much tighter configuration: caps below what is queued, acme blocked.
    let mut cfg: Config = serde_json::from_str(FULL).unwrap();
    cfg.capacity.max_items = Some(5);
    cfg.validate().unwrap().apply(&mut s).unwrap();
    assert_eq!(s.queue().len(), 59, "reconfiguration dropped nothing");
    assert_eq!(s.queue().total_in_flight(), 1);
    assert!(s.complete(d.ticket, 1));
    // The new settings hold for newcomers.
    let err = s.try_push("acme".to_string(), 100).unwrap_err();
    assert_eq!(
        err.reason(),
        RejectReason::Blocked {
            reason: BlockReason::Abuse
        }
    );
    assert_eq!(s.queue().weight(&"gold".to_string()).get(), 4);
    // Every item is still there to come back.
    ledger.back(d.item, Way::Dispatched);
    for (name, _) in [("gold", ()), ("free", ()), ("acme", ())] {
        ledger.back_all(s.purge(&name.to_string()), Way::Purged);
    }
    ledger.assert_all_back();
}

#[test]
fn stats_serialise_and_round_trip() {
    let mut s: Scheduler<String, u32, _> =
        Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    s.try_push("a".into(), 1).unwrap();
    s.block("b".into(), BlockReason::Billing);
    let _ = s.try_push("b".into(), 2).unwrap_err();
    s.pop();
    let stats = s.stats();
    let json = serde_json::to_string(&stats).unwrap();
    let back: Stats<String> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stats);
    assert_eq!(back.admission.blocked, 1);
    assert_eq!(back.wait.count, 1);
    assert!(json.contains("\"pressure\":\"normal\""), "{json}");
}

#[test]
fn tenant_config_defaults_mean_no_override() {
    let t: TenantConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(t, TenantConfig::default());
}

/// A deserialised value that skipped its constructor's clamps is clamped on use.
#[test]
fn deserialised_adaptive_limits_with_bad_bounds_stay_sane() {
    use fairshare::adaptive::{AdaptiveLimit, Aimd, Gradient, Outcome};
    let aimd: Aimd = serde_json::from_str(
        r#"{ "min": 5, "max": 1, "latency_threshold": 1000, "backoff_permille": 5000 }"#,
    )
    .unwrap();
    let mut l = AdaptiveLimit::aimd(aimd, 3);
    assert_eq!(l.current(), 5);
    assert_eq!(l.on_sample(Nanos::new(1), Outcome::Failure), 5);
    let gradient: Gradient =
        serde_json::from_str(r#"{ "min": 0, "max": 10, "tolerance": -1.0, "smoothing": 7.0 }"#)
            .unwrap();
    let mut g = AdaptiveLimit::gradient(gradient, 4);
    for _ in 0..100 {
        let v = g.on_sample(Nanos::from_millis(5), Outcome::Success);
        assert!((1..=10).contains(&v));
    }
}

#[test]
fn classes_round_trip_and_validate_into_class_specs() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let again: Config = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(cfg, again);
    assert_eq!(cfg.classes.len(), 3);
    assert_eq!(
        cfg.classes[2],
        ClassConfig {
            ceiling_percent: 40,
            max_in_flight: Some(3),
            ..ClassConfig::new("bulk")
        }
    );
    let valid = cfg.validate().unwrap();
    assert!(valid.scheduler.tenant_detail());
    let expected = Classes::new([
        ClassSpec::new("api")
            .with_weight(NonZeroU32::new(3).unwrap())
            .with_tenant_quota(Some(
                Quota::per_second(NonZeroU32::new(100).unwrap())
                    .allow_burst(NonZeroU32::new(50).unwrap()),
            )),
        ClassSpec::new("signin")
            .with_reserved_percent(20)
            .with_priority(1),
        ClassSpec::new("bulk")
            .with_ceiling_percent(40)
            .with_max_in_flight(Some(3)),
    ])
    .unwrap();
    assert_eq!(valid.classes, expected);
}

#[test]
fn a_file_without_classes_has_the_default_class() {
    let valid = Config::default().validate().unwrap();
    assert_eq!(valid.classes, Classes::single());
    assert!(!valid.scheduler.tenant_detail());
}

#[test]
fn unknown_and_missing_class_fields_are_named_by_serde() {
    let err = serde_json::from_str::<Config>(r#"{ "classes": [{ "name": "a", "reserved": 5 }] }"#)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `reserved`"),
        "{err}"
    );
    let err = serde_json::from_str::<Config>(r#"{ "classes": [{ "weight": 2 }] }"#).unwrap_err();
    assert!(err.to_string().contains("missing field `name`"), "{err}");
    let err = serde_json::from_str::<Config>(
        r#"{ "classes": [{ "name": "a", "tenant_rate": { "per_secnd": 1 } }] }"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `per_secnd`"),
        "{err}"
    );
}

#[test]
fn invalid_classes_name_their_field() {
    let base: Config = serde_json::from_str(CLASSES).unwrap();
    let rate = |per_second, burst| Some(RateConfig { per_second, burst });
    let cases: Vec<(&str, Breaker)> = vec![
        ("classes.api.weight", Box::new(|c| c.classes[0].weight = 0)),
        (
            "classes.signin.reserved_percent",
            Box::new(|c| c.classes[1].reserved_percent = 101),
        ),
        (
            "classes.signin.reserved_percent",
            Box::new(|c| c.classes[1].reserved_percent = 300),
        ),
        (
            "classes.bulk.ceiling_percent",
            Box::new(|c| c.classes[2].ceiling_percent = 0),
        ),
        (
            "classes.bulk.ceiling_percent",
            Box::new(|c| c.classes[2].ceiling_percent = 101),
        ),
        (
            "classes.signin.priority",
            Box::new(|c| c.classes[1].priority = 256),
        ),
        (
            "classes.bulk.max_in_flight",
            Box::new(|c| c.classes[2].max_in_flight = Some(0)),
        ),
        (
            "classes.api.tenant_rate.per_second",
            Box::new(move |c| c.classes[0].tenant_rate = rate(0, None)),
        ),
        (
            "classes.api.tenant_rate.burst",
            Box::new(move |c| c.classes[0].tenant_rate = rate(5, Some(0))),
        ),
        // A ceiling below the class's own reservation.
        (
            "classes.bulk.ceiling_percent",
            Box::new(|c| c.classes[2].reserved_percent = 50),
        ),
        // Reservations and ceilings are shares of the global in-flight limit.
        (
            "classes.signin.reserved_percent",
            Box::new(|c| c.max_in_flight = None),
        ),
        (
            "classes.bulk.ceiling_percent",
            Box::new(|c| {
                c.max_in_flight = None;
                c.classes[1].reserved_percent = 0;
            }),
        ),
    ];
    for (field, breaks) in cases {
        let mut cfg = base.clone();
        breaks(&mut cfg);
        assert_eq!(field_of(&cfg), field);
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains(field) && msg.contains("must"), "{msg}");
    }
}

#[test]
fn reservations_above_one_hundred_percent_and_duplicate_names_are_refused() {
    let mut cfg: Config = serde_json::from_str(CLASSES).unwrap();
    cfg.classes[0].reserved_percent = 50;
    cfg.classes[2].reserved_percent = 40; // 50 + 20 + 40
    assert_eq!(field_of(&cfg), "classes.bulk.reserved_percent");
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(msg.contains("more than 100 percent"), "{msg}");
    // Exactly 100 is fine.
    cfg.classes[0].reserved_percent = 40;
    assert!(cfg.validate().is_ok());

    let mut dup: Config = serde_json::from_str(CLASSES).unwrap();
    dup.classes[2].name = "api".into();
    assert_eq!(field_of(&dup), "classes.api.name");

    let mut unnamed: Config = serde_json::from_str(CLASSES).unwrap();
    unnamed.classes[1].name.clear();
    assert_eq!(field_of(&unnamed), "classes.name");
}

/// Pushes `n` items into each class of `s` for two tenants; returns the items.
fn fill(s: &mut Scheduler<String, u32, ManualClock>, n: u32) -> BTreeSet<u32> {
    let mut pushed = BTreeSet::new();
    let ids: Vec<ClassId> = s.classes().iter().map(|(id, _)| id).collect();
    for (c, &class) in ids.iter().enumerate() {
        for i in 0..n {
            let item = c as u32 * 1000 + i;
            let tenant = ["t1", "t2"][i as usize % 2].to_string();
            s.try_push_with(tenant, item, PushOptions::new().with_class(class))
                .unwrap();
            pushed.insert(item);
        }
    }
    pushed
}

/// Everything still in `s`, queued or handed back.
fn take_all(s: &mut Scheduler<String, u32, ManualClock>) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for t in ["t1", "t2"] {
        out.extend(s.purge(&t.to_string()));
    }
    out
}

#[test]
fn build_pushes_into_classes_by_name() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let mut s: Scheduler<String, u32, _> = cfg.validate().unwrap().build(ManualClock::new());
    assert_eq!(s.config().max_in_flight(), Some(10));
    let signin = s.classes().id("signin").unwrap();
    let bulk = s.classes().id("bulk").unwrap();
    for i in 0..6 {
        s.try_push_with("t".to_string(), i, PushOptions::new().with_class(bulk))
            .unwrap();
    }
    s.try_push_with("u".to_string(), 100, PushOptions::new().with_class(signin))
        .unwrap();
    // Sign-in has priority; bulk stops at its own cap of 3 (below its 40% ceiling of 4).
    let running: Vec<_> = std::iter::from_fn(|| s.dispatch()).collect();
    assert_eq!(running[0].item, 100);
    assert_eq!(running.len(), 4);
    assert_eq!(s.queue().class_in_flight(bulk), 3);
}

#[test]
fn reconfiguring_classes_keeps_every_queued_and_in_flight_item() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let mut s: Scheduler<String, u32, _> = cfg.validate().unwrap().build(ManualClock::new());
    let pushed = fill(&mut s, 12);
    let running: Vec<_> = std::iter::from_fn(|| s.dispatch()).take(5).collect();
    let lens: Vec<usize> = s
        .classes()
        .iter()
        .map(|(id, _)| s.queue().class_len(id))
        .collect();

    // New settings for every class, a fourth class, and a tighter global limit.
    let mut next = cfg.clone();
    next.max_in_flight = Some(4);
    next.classes[0].weight = 1;
    next.classes[1].reserved_percent = 50;
    next.classes[2].ceiling_percent = 75;
    next.classes.push(ClassConfig::new("batch"));
    next.validate().unwrap().apply(&mut s).unwrap();

    assert_eq!(s.classes().len(), 4);
    assert_eq!(s.config().max_in_flight(), Some(4));
    let after: Vec<usize> = s
        .classes()
        .iter()
        .take(3)
        .map(|(id, _)| s.queue().class_len(id))
        .collect();
    assert_eq!(after, lens, "every item stays in its class");
    assert_eq!(
        s.queue().total_in_flight(),
        5,
        "nothing in flight is revoked"
    );
    let mut ledger = Ledger::new();
    for &item in &pushed {
        ledger.pushed(item);
    }
    for d in running {
        assert!(s.complete(d.ticket, 1));
        ledger.back(d.item, Way::Dispatched);
    }
    for t in ["t1", "t2"] {
        ledger.back_all(s.purge(&t.to_string()), Way::Purged);
    }
    ledger.assert_all_back();
}

#[test]
fn removing_a_class_with_work_is_refused_and_changes_nothing() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let mut s: Scheduler<String, u32, _> = cfg.validate().unwrap().build(ManualClock::new());
    let pushed = fill(&mut s, 4);
    let mut fewer = cfg.clone();
    fewer.classes.truncate(2);
    fewer.max_in_flight = Some(2);
    fewer.tenants.insert(
        "t1".into(),
        TenantConfig {
            blocked: Some(BlockReason::Abuse),
            ..Default::default()
        },
    );
    let err = fewer.validate().unwrap().apply(&mut s).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidClass { class, field: "name", .. } if class == "bulk"),
        "{err}"
    );
    // Nothing changed: the classes, the global limit, the tenants.
    assert_eq!(s.classes().len(), 3);
    assert_eq!(s.config().max_in_flight(), Some(10));
    assert!(s.try_push("t1".to_string(), 9999).is_ok());
    let mut all = pushed;
    all.insert(9999);
    assert_eq!(take_all(&mut s), all);

    // Once bulk is empty it may go.
    fewer.validate().unwrap().apply(&mut s).unwrap();
    assert_eq!(s.classes().len(), 2);
    assert_eq!(s.classes().id("bulk"), None);
}

#[test]
fn applying_the_same_classes_again_changes_nothing() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let valid = cfg.validate().unwrap();
    let mut s: Scheduler<String, u32, _> = valid.build(ManualClock::new());
    let pushed = fill(&mut s, 3);
    valid.apply(&mut s).unwrap();
    assert_eq!(*s.classes(), valid.classes);
    assert_eq!(take_all(&mut s), pushed);
}

#[test]
fn stats_with_classes_and_tenant_detail_serialise_to_json() {
    let cfg: Config = serde_json::from_str(CLASSES).unwrap();
    let clock = ManualClock::new();
    let mut s: Scheduler<String, u32, _> = cfg.validate().unwrap().build(clock.clone());
    let _ = fill(&mut s, 4);
    s.block("acme".into(), BlockReason::Abuse);
    let _ = s.try_push("acme".into(), 0).unwrap_err();
    clock.advance(std::time::Duration::from_millis(3));
    let d = s.dispatch().unwrap();
    let stats = s.stats();
    let json = serde_json::to_string(&stats).unwrap();
    let back: Stats<String> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stats);
    assert_eq!(back.classes.len(), 3);
    assert_eq!(back.classes[1].name, "signin");
    let acme = back.tenants.iter().find(|t| t.key == "acme").unwrap();
    assert_eq!(acme.admission.unwrap().blocked, 1);
    let served = back
        .tenants
        .iter()
        .find(|t| t.wait.is_some_and(|w| w.count == 1));
    assert!(served.is_some(), "{json}");
    assert!(json.contains("\"classes\":[{\"name\":\"api\""), "{json}");
    assert!(
        json.contains("\"admission\":{\"admitted\":0,\"blocked\":1"),
        "{json}"
    );
    s.complete(d.ticket, 1);
}

/// The configuration the README shows is valid, and builds a scheduler with its classes.
#[test]
fn readme_config_is_valid() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("With the `serde` feature")
        .expect("the README's config section");
    let block = &readme[start..];
    let json_start = block.find("```json\n").expect("a JSON example") + "```json\n".len();
    let json = &block[json_start..json_start + block[json_start..].find("```").unwrap()];
    let cfg: Config = serde_json::from_str(json).unwrap();
    let s: Scheduler<String, u32, _> = cfg.validate().unwrap().build(ManualClock::new());
    let names: Vec<&str> = s.classes().iter().map(|(_, c)| c.name()).collect();
    assert_eq!(names, ["api", "signin", "bulk"]);
    assert!(s.config().tenant_detail());
}
