//! The layer over real HTTP on 127.0.0.1 with a real client: rate limits answered 429 with a
//! `Retry-After` that works, cancelled requests freeing their slots, the response body
//! holding its slot, and sign-in keeping its reserved share while the rest sheds in grades.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use common::{BULK, Extract, SIGNIN, client, eventually, get, percentile, serve};
use fairshare::SchedulerConfig;
use fairshare::config::{Quota, TenantLimits};
use fairshare::pressure::{PressureConfig, PressureLevel};
use fairshare_tower::FairLayer;
use http_body::Frame;

/// Concurrent flood requests in the sign-in test (half bulk, half api).
const FLOOD: usize = 400;

/// When a request reached the fair layer.
#[derive(Clone, Copy)]
struct Arrived(Instant);

/// The tests of this file measure time: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn quick() -> &'static str {
    tokio::time::sleep(Duration::from_millis(5)).await;
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_tenant_gets_429_with_a_retry_after_that_works() {
    let _serial = SERIAL.lock().await;
    let limits = TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(2).unwrap()));
    let layer: FairLayer<String, Extract> = FairLayer::new(
        SchedulerConfig::new()
            .with_max_in_flight(Some(8))
            .with_tenant_limits(limits),
        common::extract,
    );
    let addr = serve(common::behind_fair(
        Router::new().fallback(quick),
        layer.clone(),
    ))
    .await;
    let c = client();

    // The burst (2) passes; the third request in the same instant is over the quota.
    assert_eq!(get(&c, addr, "/api", "acme").await.status, 200);
    assert_eq!(get(&c, addr, "/api", "acme").await.status, 200);
    let refused = get(&c, addr, "/api", "acme").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("rate quota"), "{refused:?}");
    // One unit comes back every 500 ms: the wait, rounded up to whole seconds, is 1 s.
    let retry_after = refused.retry_after.expect("429 carries Retry-After");
    assert_eq!(retry_after, 1);
    // Another tenant is not affected.
    assert_eq!(get(&c, addr, "/api", "globex").await.status, 200);

    // Honoured, the retry passes.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let retried = get(&c, addr, "/api", "acme").await;
    assert_eq!(retried.status, 200, "{retried:?}");
    let stats = layer.stats();
    assert_eq!(stats.admission.rate_limited, 1);
    assert_eq!(stats.admission.admitted, 4);
}

/// A handler that never finishes: only a cancellation can free its slot.
async fn hang() -> &'static str {
    std::future::pending::<()>().await;
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_free_their_slots() {
    let _serial = SERIAL.lock().await;
    let layer: FairLayer<String, Extract> = FairLayer::new(
        SchedulerConfig::new().with_max_in_flight(Some(2)),
        common::extract,
    );
    let app = Router::new()
        .route("/hang", axum::routing::get(hang))
        .fallback(quick);
    let addr = serve(common::behind_fair(app, layer.clone())).await;

    // Six clients give up after 200 ms: two were running (hung), four were queued.
    let gave_up: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                let c = client();
                let tenant = format!("t{}", i % 3);
                tokio::time::timeout(Duration::from_millis(200), get(&c, addr, "/hang", &tenant))
                    .await
                    .is_err()
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(2), || layer.in_flight() == 2
            && layer.queued() == 4)
        .await,
        "in flight {}, queued {}",
        layer.in_flight(),
        layer.queued()
    );
    for g in gave_up {
        assert!(g.await.unwrap(), "a hung request answered");
    }
    // The server sees the connections close and drops the request futures: every slot
    // comes back, and nothing stays queued.
    assert!(
        eventually(Duration::from_secs(5), || layer.in_flight() == 0
            && layer.queued() == 0)
        .await,
        "in flight {}, queued {} after the clients left",
        layer.in_flight(),
        layer.queued()
    );
    // Both slots serve again.
    let c = client();
    let (a, b) = tokio::join!(get(&c, addr, "/x", "after"), get(&c, addr, "/y", "after"));
    assert_eq!((a.status, b.status), (200, 200));
    assert!(eventually(Duration::from_secs(2), || layer.in_flight() == 0).await);
}

/// A body of `chunks` chunks, one every `gap`.
struct SlowBody {
    chunks: usize,
    gap: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.chunks -= 1;
        let next = tokio::time::Instant::now() + self.gap;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk ")))))
    }
}

async fn slow_body() -> Body {
    let gap = Duration::from_millis(100);
    Body::new(SlowBody {
        chunks: 3,
        gap,
        sleep: Box::pin(tokio::time::sleep(gap)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_holds_the_slot_until_it_ends() {
    let _serial = SERIAL.lock().await;
    let layer: FairLayer<String, Extract> = FairLayer::new(
        SchedulerConfig::new().with_max_in_flight(Some(1)),
        common::extract,
    );
    let app = Router::new()
        .route("/stream", axum::routing::get(slow_body))
        .fallback(quick);
    let addr = serve(common::behind_fair(app, layer.clone())).await;
    let c = client();

    let started = Instant::now();
    let streaming = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, addr, "/stream", "a").await })
    };
    assert!(eventually(Duration::from_secs(2), || layer.in_flight() == 1).await);
    // The handler has returned (headers are out), but its body streams for ~300 ms: the one
    // slot stays taken, so another tenant's request waits for the body's end.
    let other = get(&c, addr, "/quick", "b").await;
    let stream = streaming.await.unwrap();
    assert_eq!((stream.status, other.status), (200, 200));
    assert_eq!(stream.body, "chunk chunk chunk ");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the stream took {:?}",
        started.elapsed()
    );
    assert!(
        other.latency >= Duration::from_millis(150),
        "the second request ran while the first body streamed ({:?})",
        other.latency
    );
    assert!(eventually(Duration::from_secs(2), || layer.in_flight() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_keeps_its_reserved_share_while_the_rest_sheds_in_grades() {
    let _serial = SERIAL.lock().await;
    // The second incident: sign-in must not starve at peak. It is reserved 25% of the 8
    // slots, never shed for pressure; bulk sheds from elevated pressure, api from shedding.
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(8))
        .with_pressure(Some(PressureConfig::new().with_max_items(100)));
    let layer: FairLayer<String, Extract> = FairLayer::builder(config)
        .classes(common::classes(25))
        .shed_at(BULK, Some(PressureLevel::Elevated))
        .shed_at(common::API, Some(PressureLevel::Shedding))
        .shed_at(SIGNIN, None)
        .retry_after(Duration::from_secs(2))
        .build(common::extract as Extract)
        .unwrap();
    // Each request is stamped when it reaches the layer and its handler records how long it
    // waited there: the scheduling's own delay, apart from the client's and the executor's
    // (on two shared cores, a thousand connection tasks delay everything they share a
    // runtime with).
    let waits: Arc<Mutex<Vec<(String, Duration)>>> = Arc::default();
    let recorded = waits.clone();
    let handler = move |req: axum::extract::Request| {
        let recorded = recorded.clone();
        async move {
            let waited = req.extensions().get::<Arrived>().unwrap().0.elapsed();
            recorded
                .lock()
                .unwrap()
                .push((req.uri().path().to_owned(), waited));
            tokio::time::sleep(Duration::from_millis(5)).await;
            "ok"
        }
    };
    let app = common::behind_fair(Router::new().fallback(handler), layer.clone()).layer(
        tower::util::MapRequestLayer::new(|mut req: axum::extract::Request| {
            req.extensions_mut().insert(Arrived(Instant::now()));
            req
        }),
    );
    let addr = serve(app).await;

    // The sign-in users connect before the peak (one sign-in each, not measured), as
    // signed-in browsers keep their connections.
    let users: Vec<_> = (0..10).map(|_| client()).collect();
    for (u, c) in users.iter().enumerate() {
        assert_eq!(
            get(c, addr, "/signin", &format!("user-{u}")).await.status,
            200
        );
    }
    waits.lock().unwrap().clear();
    let flood_client = client();
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let c = flood_client.clone();
        let path = if i % 2 == 0 {
            "/bulk/export"
        } else {
            "/api/page"
        };
        flood.push(tokio::spawn(async move {
            (path, get(&c, addr, path, &format!("org-{}", i % 20)).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signins: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(u, c)| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..5 {
                    out.push(get(&c, addr, "/signin", &format!("user-{u}")).await);
                }
                out
            })
        })
        .collect();

    let mut signin_lat = Vec::new();
    for s in signins {
        for a in s.await.unwrap() {
            assert_eq!(a.status, 200, "sign-in refused: {a:?}");
            signin_lat.push(a.latency);
        }
    }
    let (mut refused_bulk, mut refused_api, mut ok) = (0, 0, 0);
    for f in flood {
        let (path, a) = f.await.unwrap();
        match a.status {
            200 => ok += 1,
            503 => {
                assert_eq!(a.retry_after, Some(2), "{a:?}");
                assert!(a.body.contains("pressure"), "{a:?}");
                if path.starts_with("/bulk") {
                    refused_bulk += 1;
                } else {
                    refused_api += 1;
                }
            }
            other => panic!("unexpected status {other}: {a:?}"),
        }
    }
    let p99 = percentile(&mut signin_lat, 99.0);
    let in_layer = |prefix: &str| {
        let mut w: Vec<Duration> = waits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, d)| *d)
            .collect();
        percentile(&mut w, 99.0)
    };
    let (signin_wait, api_wait) = (in_layer("/signin"), in_layer("/api"));
    println!(
        "flood: {ok} served, bulk shed {refused_bulk}/{}, api shed {refused_api}/{}; \
         sign-in p99 {p99:?} at the client, {signin_wait:?} waiting in the layer (api {api_wait:?})",
        FLOOD / 2,
        FLOOD / 2
    );
    // Graded: bulk sheds first and most; the flood is mostly answered, not queued for ever.
    assert!(refused_bulk > 0, "bulk was never shed");
    assert!(
        refused_bulk >= refused_api,
        "bulk {refused_bulk} < api {refused_api}"
    );
    assert!(ok > 0);
    // Sign-in is served from its share: ten users queue for its 2-3 slots, about four slot
    // turnovers, not behind the flood. A slot turns over in the handler time plus however
    // long the executor takes to run the task and write the body, which on two shared cores
    // running a debug build under other builds is several handler times: measured 10-50 ms
    // quiet, up to 120 ms loaded, against 240-640 ms for api. The absolute bound is loose;
    // the comparison with api is the point.
    assert!(
        signin_wait < Duration::from_millis(200),
        "sign-in waited {signin_wait:?} in the layer"
    );
    assert!(
        signin_wait < api_wait,
        "sign-in {signin_wait:?}, api {api_wait:?}"
    );
    assert!(eventually(Duration::from_secs(2), || layer.in_flight() == 0).await);
    assert_eq!(layer.queued(), 0);
}
