//! Fair multi-tenant admission for tower and axum services, on [`fairshare`].
//!
//! An API server shared by many tenants needs more than a concurrency limit: when one tenant
//! floods it, the others must keep their latency; sign-in must keep its share while
//! everything else sheds; and every refusal must tell the client when to come back.
//! [`FairLayer`] puts a [`fairshare`] scheduler in front of a service:
//!
//! - each request's tenant, class and cost come from a [`KeyExtractor`] (any
//!   `Fn(&Request) -> (key, class)` closure);
//! - it is admitted through the scheduler's checks (per-tenant rate limits and caps, global
//!   capacity with its shedding policy) and the class's pressure threshold, or refused with
//!   429 / 503 and `Retry-After` ([`FairError`]);
//! - it waits, inside its response future, for an in-flight slot, in fair order: tenants by
//!   weighted round robin inside each class, classes by reserved share, so a flood queues
//!   behind its own requests and a quiet tenant is served within one round;
//! - it holds its slot until the response body is finished ([`FairBody`]), and gives it up
//!   if the client goes away, while waiting or while running.
//!
//! There is no background thread and no runtime of its own: whichever task completes a
//! request hands the freed slot to the next request in fair order and wakes it, on whatever
//! executor drives the service.
//!
//! # Quick example
//!
//! ```
//! use fairshare::{ClassSpec, Classes, SchedulerConfig};
//! use fairshare::pressure::{PressureConfig, PressureLevel};
//! use fairshare_tower::{FairError, FairLayer};
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let classes = Classes::new([
//!     ClassSpec::new("api"),
//!     ClassSpec::new("signin").with_reserved_percent(25), // 2 of 8 slots, whenever it waits
//!     ClassSpec::new("bulk"),
//! ]).unwrap();
//! let (signin, bulk) = (classes.id("signin").unwrap(), classes.id("bulk").unwrap());
//! let config = SchedulerConfig::new()
//!     .with_max_in_flight(Some(8))
//!     .with_pressure(Some(PressureConfig::new().with_max_items(1_000)));
//! let layer = FairLayer::builder(config)
//!     .classes(classes)
//!     .shed_at(bulk, Some(PressureLevel::Elevated)) // graded: bulk first...
//!     .shed_at(signin, None)                        // ...sign-in never
//!     .build(move |req: &http::Request<String>| {
//!         let tenant = req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("-");
//!         let class = match req.uri().path() {
//!             "/signin" => signin,
//!             p if p.starts_with("/export") => bulk,
//!             _ => fairshare::ClassId::DEFAULT,
//!         };
//!         (tenant.to_owned(), class)
//!     })
//!     .unwrap();
//!
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service_fn(|_req| async {
//!     Ok::<_, Infallible>(http::Response::new("ok".to_owned()))
//! });
//! let req = http::Request::builder().uri("/signin").header("x-tenant", "acme").body(String::new()).unwrap();
//! match svc.ready().await.unwrap().call(req).await {
//!     Ok(resp) => assert_eq!(resp.status(), 200),
//!     Err(FairError::Refused { reason, retry_after }) => panic!("{reason} {retry_after:?}"),
//!     Err(FairError::Inner(e)) => match e {},
//!     Err(_) => unreachable!(),
//! }
//! assert_eq!(layer.in_flight(), 0); // the response (and its body) is gone: slot freed
//! # }
//! ```
//!
//! With axum, wrap the router's routes and turn refusals into responses with
//! `HandleErrorLayer` (with the `axum` feature, [`FairError`] is itself `IntoResponse`, so
//! the handler can be `|e: FairError<Infallible>| async move { e }`):
//!
//! ```
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use fairshare::{ClassId, SchedulerConfig};
//! use fairshare_tower::{FairError, FairLayer};
//! use std::convert::Infallible;
//! use tower::ServiceBuilder;
//!
//! let fair = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(64)), |req: &http::Request<axum::body::Body>| {
//!     let tenant = req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("-");
//!     (tenant.to_owned(), ClassId::DEFAULT)
//! });
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|e: FairError<Infallible>| async move {
//!             e.refusal_response(axum::body::Body::from).expect("handlers never fail")
//!         }))
//!         .layer(fair),
//! );
//! # let _ = app;
//! ```
//!
//! Route layers are the right place: the layer waits inside each request's future, so it
//! holds even though axum's router is always ready (a limit that waits in `poll_ready`, like
//! tower's `ConcurrencyLimit`, limits nothing there).
//!
//! # Refusals
//!
//! | refusal | status | `Retry-After` |
//! | --- | --- | --- |
//! | the tenant's rate quota (or its quota in the class) | 429 | when the quota allows it again, from the limiter's state, seconds rounded up |
//! | the tenant's queue cap | 429 | the configured back-off |
//! | global capacity, eviction, queue-delay shedding, class shed at the current pressure | 503 | the configured back-off ([`Builder::retry_after`], default 1 s) |
//! | tenant blocked | 403 | none |
//! | never admissible (cost above every burst) | 413 | none |
//!
//! # Feature flags
//!
//! - `axum`: `IntoResponse` for [`FairError`].
//! - `metrics`: the core's counters, gauges and wait histogram (see
//!   [`fairshare::metrics`]), this layer's pressure refusals as
//!   `fairshare_refused_total{reason = "pressure"}`, and a bounded heavy-tenant gauge
//!   ([`Builder::heavy_tenants`]).
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (keep in sync with `Cargo.toml` and the README).

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod body;
mod core_glue;
mod error;
mod extract;
mod layer;
mod service;
mod slot;

pub use body::FairBody;
pub use error::{FairError, Refusal};
pub use extract::{Admission, IntoAdmission, KeyExtractor};
pub use layer::{Builder, FairLayer};
pub use service::{FairService, ResponseFuture};
pub use slot::Token;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
