//! With the `metrics` feature, a flood over real HTTP; every counter the debugging recorder
//! saw matches the scheduler's own counters and what the clients saw. The only test in its
//! binary, so the global recorder it installs sees nothing else.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::Router;
use common::{API, BULK, Extract, SIGNIN, client, eventually, get, serve};
use fairshare::SchedulerConfig;
use fairshare::config::{Capacity, Quota, TenantLimits};
use fairshare::pressure::{PressureConfig, PressureLevel};
use fairshare_tower::FairLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

async fn quick() -> &'static str {
    tokio::time::sleep(Duration::from_millis(2)).await;
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_scheduler_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let quota = Quota::per_second(NonZeroU32::new(20).unwrap());
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(4))
        .with_tenant_limits(TenantLimits::new().with_quota(quota))
        .with_capacity(Capacity::new().with_max_items(150))
        .with_pressure(Some(PressureConfig::new().with_max_items(60)));
    let layer: FairLayer<String, Extract> = FairLayer::builder(config)
        .classes(common::classes(25))
        .shed_at(BULK, Some(PressureLevel::Elevated))
        .shed_at(API, None) // the flood's api requests meet its rate quota
        .shed_at(SIGNIN, None)
        .heavy_tenants(10, |k: &String| k.clone())
        .build(common::extract as Extract)
        .unwrap();
    let addr = serve(common::behind_fair(
        Router::new().fallback(quick),
        layer.clone(),
    ))
    .await;

    // One tenant over its quota on api, twenty orgs on bulk, sign-ins beside them.
    let c = client();
    let mut jobs = Vec::new();
    for i in 0..600 {
        let c = c.clone();
        let (path, tenant) = match i % 3 {
            0 => ("/api/x", "flood".to_owned()),
            1 => ("/bulk/x", format!("org-{}", i % 20)),
            _ => ("/signin", format!("user-{}", i % 50)),
        };
        jobs.push(tokio::spawn(
            async move { get(&c, addr, path, &tenant).await },
        ));
    }
    let mut by_status: HashMap<u16, u64> = HashMap::new();
    let mut pressure_503 = 0;
    for j in jobs {
        let a = j.await.unwrap();
        *by_status.entry(a.status).or_default() += 1;
        if a.status == 503 && a.body.contains("pressure") {
            pressure_503 += 1;
        }
    }
    assert!(eventually(Duration::from_secs(2), || layer.in_flight() == 0).await);
    layer.publish_heavy_tenants();
    let stats = layer.stats();
    println!(
        "client statuses {by_status:?}; scheduler {:?}",
        stats.admission
    );

    // Read the recorder: counters by (name, labels), gauges, histogram sample counts.
    let mut counters: HashMap<(String, Vec<(String, String)>), u64> = HashMap::new();
    let mut gauges: HashMap<(String, Vec<(String, String)>), f64> = HashMap::new();
    let mut samples: HashMap<(String, Vec<(String, String)>), usize> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let id = (key.name().to_owned(), labels);
        match value {
            DebugValue::Counter(v) => {
                counters.insert(id, v);
            }
            DebugValue::Gauge(v) => {
                gauges.insert(id, v.into_inner());
            }
            DebugValue::Histogram(v) => {
                samples.insert(id, v.len());
            }
        }
    }
    let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<_> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    };
    let counter = |name: &str, labels: &[(&str, &str)]| {
        counters
            .get(&(name.to_owned(), l(labels)))
            .copied()
            .unwrap_or(0)
    };
    let names = [(API, "api"), (SIGNIN, "signin"), (BULK, "bulk")];

    // Per class: admitted, dispatched, completed and the wait samples match the scheduler.
    let mut admitted = 0;
    for (id, name) in names {
        let class = &stats.classes[id.index()];
        let a = counter("fairshare_admitted_total", &[("class", name)]);
        assert_eq!(a, class.counters.pushed, "admitted {name}");
        let d = counter("fairshare_dispatched_total", &[("class", name)]);
        assert_eq!(d, class.counters.dispatched, "dispatched {name}");
        assert_eq!(
            counter("fairshare_completed_total", &[("class", name)]),
            d,
            "completed {name}"
        );
        let waits = samples
            .get(&("fairshare_wait_seconds".to_owned(), l(&[("class", name)])))
            .copied()
            .unwrap_or(0);
        assert_eq!(waits as u64, d, "wait samples {name}");
        admitted += a;
    }
    assert_eq!(admitted, stats.admission.admitted);
    assert_eq!(by_status.get(&200).copied().unwrap_or(0), admitted);

    // Refusals: the scheduler's reasons and the layer's pressure refusals, as the clients saw.
    let refused = |reason: &str| -> u64 {
        counters
            .iter()
            .filter(|((n, labels), _)| {
                n == "fairshare_refused_total"
                    && labels.iter().any(|(k, v)| k == "reason" && v == reason)
            })
            .map(|(_, v)| *v)
            .sum()
    };
    assert_eq!(refused("rate_limited"), stats.admission.rate_limited);
    assert_eq!(refused("capacity_full"), stats.admission.capacity_full);
    assert_eq!(refused("pressure"), pressure_503);
    assert_eq!(
        by_status.get(&429).copied().unwrap_or(0),
        stats.admission.rate_limited + stats.admission.tenant_full
    );
    assert_eq!(
        by_status.get(&503).copied().unwrap_or(0),
        stats.admission.capacity_full + pressure_503
    );
    assert!(
        stats.admission.rate_limited > 0,
        "the flood was never rate limited"
    );
    assert!(pressure_503 > 0, "bulk was never shed for pressure");
    // Pressure refusals are bulk's only.
    assert_eq!(
        counter(
            "fairshare_refused_total",
            &[("reason", "pressure"), ("class", "signin")]
        ),
        0
    );

    // Gauges: nothing left queued or in flight.
    assert_eq!(gauges[&("fairshare_queued".to_owned(), vec![])], 0.0);
    assert_eq!(gauges[&("fairshare_in_flight".to_owned(), vec![])], 0.0);

    // Heavy tenants: at most 10 tenant series out of 71 tenants, the flood the heaviest, with
    // its offered requests (200) as the guaranteed count.
    let heavy: Vec<_> = gauges
        .iter()
        .filter(|((n, _), _)| n == "fairshare_heavy_tenant_cost")
        .collect();
    assert!(!heavy.is_empty() && heavy.len() <= 10, "{heavy:?}");
    let flood_admitted = stats
        .tenants
        .iter()
        .find(|t| t.key == "flood")
        .map(|t| t.counters.pushed);
    let flood_series = gauges.get(&(
        "fairshare_heavy_tenant_cost".to_owned(),
        l(&[("tenant", "flood")]),
    ));
    println!("heavy tenants {heavy:?}; flood admitted {flood_admitted:?}");
    let flood_series = *flood_series.expect("the heaviest tenant has no series");
    assert!((150.0..=200.0).contains(&flood_series), "{flood_series}");
    assert!(heavy.iter().all(|(_, v)| **v <= flood_series), "{heavy:?}");
}
