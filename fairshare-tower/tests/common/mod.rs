//! Shared helpers: an axum server on 127.0.0.1:0 behind the layer, a hyper client, and
//! latency percentiles.
#![allow(dead_code)] // each test file uses a different part
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use fairshare::{ClassId, ClassSpec, Classes};
use fairshare_tower::{FairError, FairLayer};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;

pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The three classes of the sign-in incident: api (default), signin (reserved), bulk.
pub(crate) fn classes(signin_reserved: u8) -> Classes {
    Classes::new([
        ClassSpec::new("api"),
        ClassSpec::new("signin").with_reserved_percent(signin_reserved),
        ClassSpec::new("bulk"),
    ])
    .unwrap()
}

pub(crate) const API: ClassId = ClassId::new(0);
pub(crate) const SIGNIN: ClassId = ClassId::new(1);
pub(crate) const BULK: ClassId = ClassId::new(2);

/// Tenant from `x-tenant`, class from the path's first segment.
pub(crate) fn extract(req: &http::Request<axum::body::Body>) -> (String, ClassId) {
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

pub(crate) type Extract = fn(&http::Request<axum::body::Body>) -> (String, ClassId);

/// `app` behind the fair layer, refusals answered by `FairError::refusal_response` (what
/// the `axum` feature's `IntoResponse` does too), so these tests need no feature.
pub(crate) fn behind_fair(app: Router, layer: FairLayer<String, Extract>) -> Router {
    app.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(
                |e: FairError<Infallible>| async move {
                    match e.refusal_response(axum::body::Body::from) {
                        Some(resp) => resp,
                        None => unreachable!("the handlers never fail"),
                    }
                },
            ))
            .layer(layer),
    )
}

/// A listener on 127.0.0.1:0 with a backlog for a thousand connections arriving at once
/// (tokio's default of 1,024 can fill while the accept loop is busy; a dropped SYN is
/// retried after a second, which would show up as a one-second latency).
pub(crate) fn listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(4_096).unwrap()
}

/// Serves `app` on 127.0.0.1:0 in a task; returns its address.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// Serves a whole service (not a router) on 127.0.0.1:0: the server readies a clone of it
/// for every request.
pub(crate) async fn serve_service<S>(svc: S) -> SocketAddr
where
    S: tower::Service<
            http::Request<axum::body::Body>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, tower::make::Shared::new(svc))
            .await
            .unwrap();
    });
    addr
}

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http()
}

/// One response: status, `Retry-After` (seconds), body, latency.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: String,
    pub(crate) latency: Duration,
}

pub(crate) async fn get(client: &HttpClient, addr: SocketAddr, path: &str, tenant: &str) -> Answer {
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("x-tenant", tenant)
        .body(Empty::new())
        .unwrap();
    let start = Instant::now();
    let resp = client.request(req).await.expect("request failed");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
        latency: start.elapsed(),
    }
}

/// The `p`-th percentile (0..=100) of `samples`, nearest rank.
pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty());
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Waits (polling) until `cond` holds, up to `timeout`.
pub(crate) async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
