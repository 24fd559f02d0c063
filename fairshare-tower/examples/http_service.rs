//! An axum API server behind `FairLayer`: sign-in keeps its reserved share while api and bulk shed in grades, tenants are rate limited, and `/metrics` serves Prometheus text.
//!
//! The second incident, replayed: at peak, sign-in requests were isolated on a small pool that
//! starved. Here sign-in is reserved 25% of the in-flight slots (and may borrow the rest when
//! idle), is never shed for pressure, while bulk sheds from elevated pressure and api from
//! shedding pressure, each refusal a 503 with `Retry-After`; a tenant over its rate quota gets
//! 429 with the quota's own `Retry-After`.
//!
//! ```text
//! cargo run -p fairshare-tower --example http_service --features axum,metrics            # self-test, exits
//! cargo run -p fairshare-tower --example http_service --features axum,metrics -- --serve # keeps serving on 127.0.0.1:3000
//! cargo run -p fairshare-tower --example http_service --features axum,metrics -- --load 5
//! ```
//!
//! `--load SECS` measures requests per second through the layer with a closed-loop client
//! on loopback (and through tower's `ConcurrencyLimit` on the same machine for comparison).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use fairshare::config::{Quota, TenantLimits};
use fairshare::pressure::{PressureConfig, PressureLevel};
use fairshare::{ClassId, ClassSpec, Classes, SchedulerConfig};
use fairshare_tower::{FairError, FairLayer};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tower::ServiceBuilder;

const API: ClassId = ClassId::new(0);
const SIGNIN: ClassId = ClassId::new(1);
const BULK: ClassId = ClassId::new(2);
const IN_FLIGHT: u32 = 8;

type Extract = fn(&http::Request<axum::body::Body>) -> (String, ClassId);
type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Tenant from the `x-tenant` header, class from the path.
fn extract(req: &http::Request<axum::body::Body>) -> (String, ClassId) {
    let tenant = req
        .headers()
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    let path = req.uri().path();
    let class = if path.starts_with("/signin") {
        SIGNIN
    } else if path.starts_with("/bulk") {
        BULK
    } else {
        API
    };
    (tenant, class)
}

fn layer(rate_per_tenant: u32) -> FairLayer<String, Extract> {
    let classes = Classes::new([
        ClassSpec::new("api"),
        ClassSpec::new("signin").with_reserved_percent(25),
        ClassSpec::new("bulk"),
    ])
    .expect("three classes");
    let quota = Quota::per_second(NonZeroU32::new(rate_per_tenant).expect("non-zero rate"));
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(IN_FLIGHT))
        .with_tenant_limits(TenantLimits::new().with_quota(quota))
        .with_pressure(Some(PressureConfig::new().with_max_items(200)));
    FairLayer::builder(config)
        .classes(classes)
        .shed_at(BULK, Some(PressureLevel::Elevated))
        .shed_at(API, Some(PressureLevel::Shedding))
        .shed_at(SIGNIN, None)
        .retry_after(Duration::from_secs(2))
        .heavy_tenants(5, |tenant: &String| tenant.clone())
        .build(extract as Extract)
        .expect("classes fit the configuration")
}

async fn work(ms: u64) -> &'static str {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    "ok\n"
}

/// The application: handlers behind the fair layer, `/metrics` beside it (never queued).
fn app(fair: FairLayer<String, Extract>, prometheus: PrometheusHandle, work_ms: u64) -> Router {
    let handlers = Router::new()
        .route("/signin", get(move || work(work_ms)))
        .route("/bulk/export", get(move || work(work_ms * 4)))
        .fallback(move || work(work_ms))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    |e: FairError<Infallible>| async move { e },
                ))
                .layer(fair.clone()),
        );
    let metrics = Router::new().route(
        "/metrics",
        get(move || {
            let fair = fair.clone();
            let prometheus = prometheus.clone();
            async move {
                fair.publish_heavy_tenants();
                prometheus.run_upkeep();
                prometheus.render()
            }
        }),
    );
    handlers.merge(metrics)
}

async fn serve(app: Router, addr: &str) -> SocketAddr {
    // A backlog for a peak's worth of connections arriving at once (tokio's default is 1,024).
    let addr: SocketAddr = addr.parse().expect("an address such as 127.0.0.1:3000");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("bind");
    let listener = socket.listen(4_096).expect("listen");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

struct Answer {
    status: u16,
    latency: Duration,
    body: String,
}

async fn request(client: &HttpClient, addr: SocketAddr, path: &str, tenant: &str) -> Answer {
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("x-tenant", tenant)
        .body(Empty::new())
        .expect("request");
    let start = Instant::now();
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        latency: start.elapsed(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Default)]
struct Tally {
    ok: u64,
    limited: u64,
    shed: u64,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, a: &Answer) {
        match a.status {
            200 => {
                self.ok += 1;
                self.latencies.push(a.latency);
            }
            429 => self.limited += 1,
            503 => self.shed += 1,
            other => panic!("unexpected status {other}"),
        }
    }

    fn line(&mut self, name: &str) -> String {
        self.latencies.sort();
        let pct = |p: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return Duration::ZERO;
            }
            self.latencies[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
        };
        format!(
            "{name:<8} 200: {:>4}  429: {:>4}  503: {:>4}  served p50 {:>7.1?}  p99 {:>7.1?}",
            self.ok,
            self.limited,
            self.shed,
            pct(0.50),
            pct(0.99)
        )
    }
}

/// The bounded replay: a flood of api and bulk requests at once, sign-ins beside it.
async fn self_test(prometheus: PrometheusHandle) {
    let fair = layer(100);
    let addr = serve(app(fair.clone(), prometheus, 5), "127.0.0.1:0").await;
    println!("serving on http://{addr} (self-test)");
    let flood_client = client();
    let mut flood = Vec::new();
    for i in 0..600 {
        let c = flood_client.clone();
        let (path, tenant) = if i % 3 == 0 {
            ("/bulk/export", format!("org-{}", i % 10))
        } else {
            ("/api/orders", "acme".to_owned())
        };
        flood.push(tokio::spawn(async move {
            (path, request(&c, addr, path, &tenant).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let signins: Vec<_> = (0..10)
        .map(|u| {
            tokio::spawn(async move {
                let c = client();
                let mut out = Vec::new();
                for _ in 0..10 {
                    out.push(request(&c, addr, "/signin", &format!("user-{u}")).await);
                }
                out
            })
        })
        .collect();
    let (mut api, mut bulk, mut signin) = (Tally::default(), Tally::default(), Tally::default());
    for s in signins {
        for a in s.await.expect("sign-in task") {
            signin.add(&a);
        }
    }
    for f in flood {
        let (path, a) = f.await.expect("flood task");
        if path.starts_with("/bulk") {
            bulk.add(&a);
        } else {
            api.add(&a);
        }
    }
    println!(
        "replayed: tenant acme sends 400 api requests at once (quota 100/s), 10 orgs 200 bulk exports, 10 users sign in 10 times each"
    );
    println!("{}", signin.line("signin"));
    println!("{}", api.line("api"));
    println!("{}", bulk.line("bulk"));
    assert_eq!(signin.ok, 100, "sign-in must never be refused");
    assert!(api.limited > 0, "the flood was never rate limited");

    let scrape = request(&client(), addr, "/metrics", "ops").await;
    assert_eq!(scrape.status, 200);
    println!("\n/metrics excerpt:");
    for line in scrape.body.lines().filter(|l| {
        !l.starts_with('#') && l.starts_with("fairshare_") && !l.contains("quantile=\"0.")
    }) {
        println!("  {line}");
    }
    let stats = fair.stats();
    assert_eq!(stats.in_flight, 0);
    println!(
        "\nscheduler: admitted {}, rate limited {}, in flight {}, queued {}",
        stats.admission.admitted, stats.admission.rate_limited, stats.in_flight, stats.queued
    );
}

/// Closed-loop load on loopback: `conns` clients each sending the next request as soon as
/// the last is answered, for `secs`; returns requests per second.
async fn load(addr: SocketAddr, conns: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let c = client();
                let tenant = format!("t{}", i % 16);
                while !stop.load(Ordering::Relaxed) {
                    let a = request(&c, addr, "/api/x", &tenant).await;
                    assert_eq!(a.status, 200, "{}", a.body);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in tasks {
        t.await.expect("load task");
    }
    n as f64 / elapsed.as_secs_f64()
}

async fn load_test(prometheus: PrometheusHandle, secs: u64) {
    let conns = 32;
    let fair = layer(u32::MAX);
    let fair_addr = serve(app(fair, prometheus, 0), "127.0.0.1:0").await;
    let baseline = ServiceBuilder::new()
        .layer(tower::limit::ConcurrencyLimitLayer::new(IN_FLIGHT as usize))
        .service(Router::new().fallback(|| work(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base_addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, tower::make::Shared::new(baseline))
            .await
            .expect("serve")
    });
    let base = load(base_addr, conns, secs).await;
    let ours = load(fair_addr, conns, secs).await;
    println!(
        "loopback, {conns} closed-loop clients, {secs} s each, empty handler, in-flight {IN_FLIGHT}:"
    );
    println!("  ConcurrencyLimit: {base:>9.0} req/s");
    println!(
        "  FairLayer:        {ours:>9.0} req/s ({:.2}x)",
        ours / base
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let prometheus = PrometheusBuilder::new()
        // Heavy-tenant gauges of tenants that fell out of the top are dropped after a minute.
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
        .install_recorder()
        .expect("install the Prometheus recorder");
    match args.first().map(String::as_str) {
        Some("--serve") => {
            let addr = args.get(1).map_or("127.0.0.1:3000", String::as_str);
            let addr = serve(app(layer(100), prometheus, 5), addr).await;
            println!(
                "serving on http://{addr}; try: curl -H 'x-tenant: acme' http://{addr}/signin"
            );
            std::future::pending::<()>().await;
        }
        Some("--load") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
            load_test(prometheus, secs).await;
        }
        _ => self_test(prometheus).await,
    }
}
