//! Builds a scheduler from a JSON configuration, reconfigures it at runtime, and prints a stats snapshot as JSON.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::time::Duration;

use fairshare::{Config, ManualClock, PushOptions, Scheduler, SchedulerConfig};

const CONFIG: &str = r#"{
  "quantum": 1,
  "default_weight": 1,
  "tenant_defaults": { "rate": { "per_second": 50, "burst": 20 }, "max_items": 100 },
  "capacity": { "max_items": 1000 },
  "shed_policy": "evict_over_share",
  "queue_delay": { "target_ms": 50, "interval_ms": 500 },
  "max_in_flight": 8,
  "tenants": {
    "gold": { "weight": 4, "limits": { "rate": { "per_second": 500 }, "max_items": 1000 } },
    "acme": { "blocked": "abuse" }
  }
}"#;

fn main() {
    let config: Config = serde_json::from_str(CONFIG).expect("the example config parses");
    let valid = config.validate().expect("the example config is valid");
    let clock = ManualClock::new();
    let mut s: Scheduler<String, String, _> =
        Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    valid.apply(&mut s);

    for tenant in ["gold", "free", "acme"] {
        let (mut admitted, mut refused) = (0, 0);
        for i in 0..60 {
            match s.try_push_with(
                tenant.to_string(),
                format!("{tenant}-{i}"),
                PushOptions::new(),
            ) {
                Ok(_) => admitted += 1,
                Err(rejected) => {
                    refused += 1;
                    if refused == 1 {
                        println!("{tenant}: first refusal: {}", rejected.reason());
                    }
                }
            }
        }
        println!("{tenant}: admitted {admitted}, refused {refused}");
    }

    // Dispatch a few: gold (weight 4) gets four turns for each of free's.
    let order: Vec<String> = (0..10)
        .filter_map(|_| {
            let d = s.dispatch()?;
            let item = d.item;
            s.complete(d.ticket, 1);
            Some(item)
        })
        .collect();
    println!("first ten dispatched: {order:?}");

    // Runtime reconfiguration keeps every queued item.
    let before = s.queue().len();
    let mut tighter = config.clone();
    tighter.capacity.max_items = Some(10);
    tighter.validate().expect("still valid").apply(&mut s);
    println!(
        "reconfigured capacity to 10 items: {} queued before, {} after (nothing dropped)",
        before,
        s.queue().len()
    );

    // A bad value is refused with the field named.
    let mut bad = config.clone();
    bad.tenant_defaults.rate = Some(fairshare::RateConfig {
        per_second: 10,
        burst: Some(0),
    });
    println!("invalid config: {}", bad.validate().unwrap_err());
    let typo = serde_json::from_str::<Config>(r#"{ "quantm": 1 }"#).unwrap_err();
    println!("typo in a field name: {typo}");

    clock.advance(Duration::from_millis(100));
    let stats = s.stats();
    println!(
        "stats snapshot:\n{}",
        serde_json::to_string_pretty(&stats).expect("stats serialise")
    );
}
