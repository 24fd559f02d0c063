//! Builds a scheduler from a JSON configuration (with classes of work), reconfigures it at
//! runtime, and prints a stats snapshot as JSON.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::time::Duration;

use fairshare::{ManualClock, PushOptions, Scheduler, config::Config};

const CONFIG: &str = r#"{
  "quantum": 1,
  "default_weight": 1,
  "tenant_defaults": { "rate": { "per_second": 50, "burst": 20 }, "max_items": 100 },
  "capacity": { "max_items": 1000 },
  "shed_policy": "evict_over_share",
  "queue_delay": { "target_ms": 50, "interval_ms": 500 },
  "max_in_flight": 8,
  "classes": [
    { "name": "api", "weight": 2 },
    { "name": "signin", "reserved_percent": 25 },
    { "name": "bulk", "ceiling_percent": 50, "tenant_rate": { "per_second": 5, "burst": 5 } }
  ],
  "tenant_detail": true,
  "tenants": {
    "gold": { "weight": 4, "limits": { "rate": { "per_second": 500 }, "max_items": 1000 } },
    "acme": { "blocked": "abuse" }
  }
}"#;

fn main() {
    let config: Config = serde_json::from_str(CONFIG).expect("the example config parses");
    let valid = config.validate().expect("the example config is valid");
    let clock = ManualClock::new();
    let mut s: Scheduler<String, String, _> = valid.build(clock.clone());

    // Work is pushed into a class by name (the first class, "api", takes pushes that name none).
    let class = |name: &str| s.classes().id(name).expect("the config names this class");
    let (api, signin, bulk) = (class("api"), class("signin"), class("bulk"));
    for (tenant, class, kind) in [
        ("gold", api, "api"),
        ("free", api, "api"),
        ("free", bulk, "bulk"),
        ("acme", api, "api"),
        ("alice", signin, "signin"),
    ] {
        let (mut admitted, mut refused) = (0, 0);
        for i in 0..10 {
            match s.try_push_with(
                tenant.to_string(),
                format!("{tenant}-{kind}-{i}"),
                PushOptions::new().with_class(class),
            ) {
                Ok(_) => admitted += 1,
                Err(rejected) => {
                    refused += 1;
                    if refused == 1 {
                        println!("{tenant} ({kind}): first refusal: {}", rejected.reason());
                    }
                }
            }
        }
        println!("{tenant} ({kind}): admitted {admitted}, refused {refused}");
    }

    // Fill the 8 worker slots 30 ms later: signin gets its reserved 2 first, bulk holds at most
    // its ceiling of 4, and inside "api" gold (weight 4) gets four turns for each of free's.
    clock.advance(Duration::from_millis(30));
    let running: Vec<_> = std::iter::from_fn(|| s.dispatch()).collect();
    let names: Vec<&str> = running.iter().map(|d| d.item.as_str()).collect();
    println!("dispatched into 8 slots: {names:?}");
    for d in running {
        s.complete(d.ticket, 1);
    }

    // Runtime reconfiguration keeps every queued item.
    let before = s.queue().len();
    let mut tighter = config.clone();
    tighter.capacity.max_items = Some(10);
    tighter.classes[1].reserved_percent = 50;
    tighter
        .validate()
        .expect("still valid")
        .apply(&mut s)
        .expect("no class is removed");
    println!(
        "reconfigured capacity to 10 items and signin's reservation to 50%: {} queued before, {} after (nothing dropped)",
        before,
        s.queue().len()
    );

    // Removing a class that still holds work is refused, and nothing changes.
    let mut fewer = config.clone();
    fewer.classes.truncate(2);
    let refused = fewer.validate().expect("valid on its own").apply(&mut s);
    println!(
        "dropping the bulk class while it holds work: {}",
        refused.unwrap_err()
    );

    // A bad value is refused with the field named.
    let mut bad = config.clone();
    bad.tenant_defaults.rate = Some(fairshare::config::RateConfig {
        per_second: 10,
        burst: Some(0),
    });
    println!("invalid config: {}", bad.validate().unwrap_err());
    let mut greedy = config.clone();
    greedy.classes[2].reserved_percent = 80;
    greedy.classes[2].ceiling_percent = 80;
    println!("invalid classes: {}", greedy.validate().unwrap_err());
    let typo = serde_json::from_str::<Config>(r#"{ "quantm": 1 }"#).unwrap_err();
    println!("typo in a field name: {typo}");

    clock.advance(Duration::from_millis(100));
    let stats = s.stats();
    println!(
        "stats snapshot:\n{}",
        serde_json::to_string_pretty(&stats).expect("stats serialise")
    );
}
