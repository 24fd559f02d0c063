//! The service called directly (no network), polled by hand: fair order, cancellation in
//! every state, refusals that never reach the inner service, hand-backs of queued requests,
//! `Retry-After` on a manual clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fairshare::config::{Capacity, Quota, ShedPolicy, TenantLimits};
use fairshare::{BlockReason, ClassId, ManualClock, RejectReason, SchedulerConfig};
use fairshare_tower::{FairError, FairLayer, Refusal};
use tower::{Layer, Service, ServiceExt};

type Req = http::Request<String>;

fn tenant(req: &Req) -> (String, ClassId) {
    (
        req.headers()["x-tenant"].to_str().unwrap().to_owned(),
        ClassId::DEFAULT,
    )
}

fn req(tenant: &str, body: &str) -> Req {
    http::Request::builder()
        .header("x-tenant", tenant)
        .body(body.to_owned())
        .unwrap()
}

/// An inner service that answers with the request body and counts its calls.
fn echo(
    calls: Arc<AtomicUsize>,
) -> impl Service<Req, Response = http::Response<String>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(move |r: Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        let body = r.into_body();
        async move { Ok::<_, Infallible>(http::Response::new(body)) }
    })
}

fn poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

fn ready<S: Service<Req>>(svc: &mut S) {
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("inner service not ready"),
    }
}

#[test]
fn waits_in_fair_order_for_a_slot() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    let mut call = |t: &str, b: &str| {
        ready(&mut svc);
        Box::pin(svc.call(req(t, b)))
    };
    let mut first = call("flood", "f0");
    let mut flood: Vec<_> = (1..6).map(|_| call("flood", "f")).collect();
    let mut quiet = call("quiet", "q");
    // The first runs at once; the others wait, and the inner service has been called once.
    let Poll::Ready(Ok(resp)) = poll(&mut first) else {
        panic!("first request did not run")
    };
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(poll(&mut quiet).is_pending());
    assert!(flood.iter_mut().all(|f| poll(f).is_pending()));
    assert_eq!((layer.in_flight(), layer.queued()), (1, 6));
    // The flood's backlog arrived first, so its next request has the turn; then the quiet
    // tenant, ahead of the flood's other four: within one turn of the flood, not behind it.
    drop(resp);
    let Poll::Ready(Ok(f1)) = poll(&mut flood[0]) else {
        panic!("the flood's turn")
    };
    assert!(poll(&mut quiet).is_pending());
    drop(f1);
    let Poll::Ready(Ok(q)) = poll(&mut quiet) else {
        panic!("quiet tenant not served within one turn of the flood")
    };
    assert_eq!(q.body().get_ref(), "q");
    assert!(flood[1..].iter_mut().all(|f| poll(f).is_pending()));
    drop(q);
    for f in &mut flood[1..] {
        let Poll::Ready(Ok(r)) = poll(f) else {
            panic!("flood not served in turn")
        };
        drop(r);
    }
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 7);
}

#[test]
fn a_cancelled_waiter_gives_its_place_up_and_loses_no_slot() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    ready(&mut svc);
    let mut running = Box::pin(svc.call(req("a", "1")));
    ready(&mut svc);
    let mut cancelled = Box::pin(svc.call(req("b", "2")));
    ready(&mut svc);
    let mut after = Box::pin(svc.call(req("c", "3")));
    let Poll::Ready(Ok(resp)) = poll(&mut running) else {
        panic!()
    };
    assert!(poll(&mut cancelled).is_pending());
    drop(cancelled); // the client went away while queued
    drop(resp); // the slot is dispatched to b's token, freed on the spot, then goes to c
    let Poll::Ready(Ok(r)) = poll(&mut after) else {
        panic!("the slot of the cancelled request was lost")
    };
    assert_eq!(r.body().get_ref(), "3");
    drop(r);
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the cancelled request never ran"
    );
}

#[test]
fn a_request_dropped_after_its_grant_frees_the_slot() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    ready(&mut svc);
    let mut running = Box::pin(svc.call(req("a", "1")));
    ready(&mut svc);
    let granted = Box::pin(svc.call(req("b", "2")));
    let Poll::Ready(Ok(resp)) = poll(&mut running) else {
        panic!()
    };
    drop(resp); // b is granted the slot but its future has not run yet
    assert_eq!(layer.in_flight(), 1);
    drop(granted);
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_request_dropped_while_running_frees_the_slot() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let inner = tower::service_fn(|_r: Req| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let mut svc = layer.layer(inner);
    ready(&mut svc);
    let mut running = Box::pin(svc.call(req("a", "1")));
    assert!(poll(&mut running).is_pending());
    assert_eq!(layer.in_flight(), 1);
    drop(running);
    assert_eq!(layer.in_flight(), 0);
}

#[test]
fn an_inner_error_frees_the_slot_and_is_passed_through() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let inner = tower::service_fn(|_r: Req| async {
        Err::<http::Response<String>, _>(std::io::Error::other("boom"))
    });
    let mut svc = layer.layer(inner);
    ready(&mut svc);
    match poll(&mut Box::pin(svc.call(req("a", "1")))) {
        Poll::Ready(Err(FairError::Inner(e))) => assert_eq!(e.to_string(), "boom"),
        other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
    }
    assert_eq!(layer.in_flight(), 0);
}

/// An inner service that is never ready.
#[derive(Clone)]
struct NeverReady;

impl Service<Req> for NeverReady {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }
    fn call(&mut self, _: Req) -> Self::Future {
        unreachable!("called without being ready")
    }
}

#[test]
fn poll_ready_forwards_to_the_inner_service() {
    let layer = FairLayer::new(SchedulerConfig::new(), tenant);
    let mut svc = layer.layer(NeverReady);
    assert!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    let mut ok = layer.layer(echo(Arc::new(AtomicUsize::new(0))));
    assert!(
        ok.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
}

#[test]
fn refusals_never_reach_the_inner_service() {
    let limits = TenantLimits::new().with_max_items(1);
    let cfg = SchedulerConfig::new()
        .with_max_in_flight(Some(1))
        .with_tenant_limits(limits);
    let layer = FairLayer::new(cfg, tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    ready(&mut svc);
    let mut running = Box::pin(svc.call(req("a", "1")));
    ready(&mut svc);
    let mut queued = Box::pin(svc.call(req("a", "2")));
    ready(&mut svc);
    // The tenant's queue cap (1 item) is reached: 429, retry after the default back-off.
    match poll(&mut Box::pin(svc.call(req("a", "3")))) {
        Poll::Ready(Err(e @ FairError::Refused { .. })) => {
            assert_eq!(e.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        }
        _ => panic!("over the cap, not refused"),
    }
    layer.with_scheduler(|s| s.block("b".to_owned(), BlockReason::Abuse));
    match poll(&mut Box::pin(svc.call(req("b", "4")))) {
        Poll::Ready(Err(e @ FairError::Refused { .. })) => {
            assert_eq!(e.status(), Some(http::StatusCode::FORBIDDEN));
            assert_eq!(e.retry_after(), None, "a block is not lifted by waiting");
        }
        _ => panic!("blocked tenant not refused"),
    }
    let Poll::Ready(Ok(r)) = poll(&mut running) else {
        panic!()
    };
    drop(r);
    let Poll::Ready(Ok(r)) = poll(&mut queued) else {
        panic!()
    };
    drop(r);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.stats().admission.tenant_full, 1);
    assert_eq!(layer.stats().admission.blocked, 1);
}

#[test]
fn a_purged_request_is_answered_not_left_waiting() {
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(1)), tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    ready(&mut svc);
    let mut running = Box::pin(svc.call(req("a", "1")));
    ready(&mut svc);
    let mut queued = Box::pin(svc.call(req("flood", "2")));
    assert!(poll(&mut queued).is_pending());
    let purged = layer.with_scheduler(|s| s.purge(&"flood".to_owned()));
    assert_eq!(purged.len(), 1);
    drop(purged);
    match poll(&mut queued) {
        Poll::Ready(Err(FairError::Refused {
            reason: Refusal::Admission(RejectReason::Closed),
            retry_after: None,
        })) => {}
        _ => panic!("purged request not answered"),
    }
    let Poll::Ready(Ok(r)) = poll(&mut running) else {
        panic!()
    };
    drop(r);
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
}

#[test]
fn an_evicted_request_is_answered_503() {
    // Room for 2 queued requests; a newcomer evicts from the tenant furthest over its share.
    let cfg = SchedulerConfig::new()
        .with_max_in_flight(Some(1))
        .with_capacity(Capacity::new().with_max_items(2))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let layer = FairLayer::new(cfg, tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    let mut call = |t: &str| {
        ready(&mut svc);
        Box::pin(svc.call(req(t, "x")))
    };
    let mut running = call("flood");
    let mut f1 = call("flood");
    let mut f2 = call("flood");
    assert!(poll(&mut f1).is_pending() && poll(&mut f2).is_pending());
    let mut quiet = call("quiet");
    // One of the flood's queued requests (its oldest) made room for the quiet tenant.
    match poll(&mut f1) {
        Poll::Ready(Err(
            e @ FairError::Refused {
                reason: Refusal::Admission(RejectReason::Evicted),
                ..
            },
        )) => {
            assert_eq!(e.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        }
        _ => panic!("the flood's oldest queued request was not evicted"),
    }
    assert!(poll(&mut f2).is_pending() && poll(&mut quiet).is_pending());
    let Poll::Ready(Ok(r)) = poll(&mut running) else {
        panic!()
    };
    drop(r);
    let Poll::Ready(Ok(r)) = poll(&mut f2) else {
        panic!("the flood's turn")
    };
    drop(r);
    let Poll::Ready(Ok(r)) = poll(&mut quiet) else {
        panic!("quiet tenant not served")
    };
    drop(r);
    assert_eq!(layer.stats().admission.evicted, 1);
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Regression (found by the `tower` fuzz target): a layer built without eviction or a
/// queue-delay target did not collect what the scheduler handed back after an operator
/// turned eviction on with `reconfigure`, so the evicted request waited for ever.
#[test]
fn a_request_evicted_after_a_reconfigure_is_answered() {
    let cap = Capacity::new().with_max_items(2);
    let cfg = SchedulerConfig::new()
        .with_max_in_flight(Some(1))
        .with_capacity(cap);
    let layer = FairLayer::new(cfg, tenant);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(echo(calls.clone()));
    let mut call = |t: &str| {
        ready(&mut svc);
        Box::pin(svc.call(req(t, "x")))
    };
    let mut running = call("flood");
    let mut f1 = call("flood");
    let mut f2 = call("flood");
    assert!(poll(&mut f1).is_pending() && poll(&mut f2).is_pending());
    layer.with_scheduler(|s| s.reconfigure(cfg.with_shed_policy(ShedPolicy::EvictOverShare)));
    let mut quiet = call("quiet");
    assert!(
        matches!(
            poll(&mut f1),
            Poll::Ready(Err(FairError::Refused {
                reason: Refusal::Admission(RejectReason::Evicted),
                ..
            }))
        ),
        "the evicted request was not answered"
    );
    for f in [&mut running, &mut f2, &mut quiet] {
        let Poll::Ready(Ok(r)) = poll(f) else {
            panic!("a request left waiting")
        };
        drop(r);
    }
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn retry_after_follows_the_rate_limiter_on_the_scheduler_clock() {
    let clock = ManualClock::new();
    let quota = Quota::per_minute(NonZeroU32::new(6).unwrap()); // one every 10 s
    let cfg = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_quota(quota));
    let layer = FairLayer::builder(cfg)
        .build_with_clock(clock.clone(), tenant)
        .unwrap();
    let mut svc = layer.layer(echo(Arc::new(AtomicUsize::new(0))));
    for _ in 0..6 {
        ready(&mut svc);
        assert!(matches!(
            poll(&mut Box::pin(svc.call(req("a", "x")))),
            Poll::Ready(Ok(_))
        ));
    }
    clock.advance(Duration::from_millis(2_500));
    ready(&mut svc);
    let Poll::Ready(Err(e)) = poll(&mut Box::pin(svc.call(req("a", "x")))) else {
        panic!("over the quota, not refused")
    };
    assert_eq!(e.status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(e.retry_after(), Some(Duration::from_millis(7_500)));
    assert_eq!(e.retry_after_secs(), Some(8));
    clock.advance(Duration::from_millis(7_500));
    ready(&mut svc);
    assert!(matches!(
        poll(&mut Box::pin(svc.call(req("a", "x")))),
        Poll::Ready(Ok(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_lose_no_slot() {
    // Many tasks on two threads call, cancel at random points and complete: every slot comes
    // back and every request that was not cancelled is answered.
    let extract: fn(&Req) -> (String, ClassId) = tenant;
    let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(3)), extract);
    let inner = tower::service_fn(|_r: Req| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let svc = layer.layer(inner);
    let mut tasks = Vec::new();
    for i in 0..2_000u32 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let t = format!("t{}", i % 7);
            let fut = svc.oneshot(req(&t, "x"));
            if i % 3 == 0 {
                // Cancelled after a random short while (waiting or running).
                let _ = tokio::time::timeout(Duration::from_micros(u64::from(i % 50)), fut).await;
                None
            } else {
                Some(fut.await.is_ok())
            }
        }));
    }
    for t in tasks {
        if let Some(ok) = t.await.unwrap() {
            assert!(ok);
        }
    }
    assert_eq!((layer.in_flight(), layer.queued()), (0, 0));
}

#[cfg(feature = "axum")]
#[test]
fn into_response_answers_a_refusal_with_status_and_retry_after() {
    use axum_core::response::IntoResponse;
    let e: FairError<Infallible> = FairError::Refused {
        reason: Refusal::Pressure {
            level: fairshare::pressure::PressureLevel::Critical,
            class: ClassId::DEFAULT,
        },
        retry_after: Some(Duration::from_millis(2_500)),
    };
    let resp = e.into_response();
    assert_eq!(resp.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[http::header::RETRY_AFTER], "3");
}
