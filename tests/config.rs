//! Serde configuration: round trips, field-named errors, reconfiguration that keeps every
//! item, and serialisable stats.
#![cfg(feature = "serde")]
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::collections::BTreeSet;

use fairshare::{
    BlockReason, Config, ConfigError, LimitsConfig, ManualClock, Nanos, PushOptions,
    QueueDelayConfig, RateConfig, RejectReason, Scheduler, SchedulerConfig, ShedPolicy, Stats,
    TenantConfig,
};

const FULL: &str = r#"{
  "quantum": 2,
  "default_weight": 1,
  "max_debt_rounds": 3,
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
    let mut pushed = BTreeSet::new();
    for i in 0..60u32 {
        let tenant = ["gold", "free", "acme"][i as usize % 3].to_string();
        let _ = s
            .try_push_with(tenant, i, PushOptions::new().cost(1 + i % 3))
            .unwrap();
        pushed.insert(i);
    }
    let d = s.dispatch().unwrap();
    // A much tighter configuration: caps below what is queued, acme blocked.
    let mut cfg: Config = serde_json::from_str(FULL).unwrap();
    cfg.capacity.max_items = Some(5);
    cfg.validate().unwrap().apply(&mut s);
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
    let mut seen = BTreeSet::from([d.item]);
    for (name, _) in [("gold", ()), ("free", ()), ("acme", ())] {
        seen.extend(s.purge(&name.to_string()));
    }
    assert_eq!(seen, pushed);
}

#[test]
fn stats_serialise_and_round_trip() {
    let mut s: Scheduler<String, u32, _> =
        Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
    let _ = s.try_push("a".into(), 1).unwrap();
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

/// Review 8: a deserialised value that skipped its constructor's clamps is clamped on use.
#[test]
fn deserialised_adaptive_limits_with_bad_bounds_stay_sane() {
    use fairshare::{AdaptiveLimit, Aimd, Gradient, Outcome};
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
