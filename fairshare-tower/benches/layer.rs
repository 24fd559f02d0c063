//! The layer's overhead per request against tower's `ConcurrencyLimit`, in the same run:
//! both wrap a trivial inner service and are called directly (no network, no runtime: every
//! future is ready at its first poll), with the same in-flight limit.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
// `criterion_group!` defines an undocumented `pub fn` for each group.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use fairshare::{ClassId, ClassSpec, Classes, SchedulerConfig};
use fairshare_tower::FairLayer;
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service};

/// The tenant and class of a request, as an earlier layer (authentication) would set them.
#[derive(Clone, Copy)]
struct Who(u64, ClassId);

type Req = http::Request<()>;

fn req(tenant: u64, class: ClassId) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(Who(tenant, class));
    r
}

fn extract(r: &Req) -> (u64, ClassId) {
    let who = r
        .extensions()
        .get::<Who>()
        .copied()
        .unwrap_or(Who(0, ClassId::DEFAULT));
    (who.0, who.1)
}

fn inner() -> impl Service<Req, Response = http::Response<String>, Error = Infallible> + Clone {
    tower::service_fn(|_r: Req| std::future::ready(Ok(http::Response::new(String::new()))))
}

/// One request through `svc`: ready, call, the response, its body dropped.
fn one<S>(svc: &mut S, r: Req)
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let fut = pin!(svc.call(r));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(resp)) => drop(resp),
        _ => panic!("not answered at once"),
    }
}

fn overhead(c: &mut Criterion) {
    const LIMIT: usize = 8;
    let mut g = c.benchmark_group("layer_overhead");
    g.throughput(Throughput::Elements(1));

    let mut base = ConcurrencyLimit::new(inner(), LIMIT);
    g.bench_function(BenchmarkId::new("concurrency_limit", 1), |b| {
        b.iter_batched(
            || req(0, ClassId::DEFAULT),
            |r| one(&mut base, r),
            BatchSize::SmallInput,
        )
    });

    let layer = FairLayer::new(
        SchedulerConfig::new().with_max_in_flight(Some(LIMIT as u32)),
        extract as fn(&Req) -> (u64, ClassId),
    );
    let mut fair = layer.layer(inner());
    g.bench_function(BenchmarkId::new("fair_layer", 1), |b| {
        b.iter_batched(
            || req(0, ClassId::DEFAULT),
            |r| one(&mut fair, r),
            BatchSize::SmallInput,
        )
    });

    // 1,000 tenants in turn: the tenant table is exercised, not one hot slot.
    let mut next = 0u64;
    g.bench_function(BenchmarkId::new("fair_layer", 1_000), |b| {
        b.iter_batched(
            || {
                next = (next + 1) % 1_000;
                req(next, ClassId::DEFAULT)
            },
            |r| one(&mut fair, r),
            BatchSize::SmallInput,
        )
    });

    // Three classes with a reservation, as in the example.
    let classes = Classes::new([
        ClassSpec::new("api"),
        ClassSpec::new("signin").with_reserved_percent(25),
        ClassSpec::new("bulk"),
    ])
    .unwrap();
    let layer3 = FairLayer::builder(SchedulerConfig::new().with_max_in_flight(Some(LIMIT as u32)))
        .classes(classes)
        .build(extract as fn(&Req) -> (u64, ClassId))
        .unwrap();
    let mut fair3 = layer3.layer(inner());
    let mut k = 0u16;
    g.bench_function(BenchmarkId::new("fair_layer_3_classes", 1_000), |b| {
        b.iter_batched(
            || {
                k = k.wrapping_add(1);
                req(u64::from(k % 1_000), ClassId::new(k % 3))
            },
            |r| one(&mut fair3, r),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    assert_eq!(layer.in_flight(), 0);
}

criterion_group!(benches, overhead);

/// `LAYER_COUNT=<inner|limit|fair|fair3> LAYER_N=<n>` runs `n` requests through one variant
/// and exits, for instruction counts under `valgrind --tool=callgrind` (`inner` is the bare
/// inner service: subtract it to get a layer's own cost); otherwise the criterion benches
/// run.
fn main() {
    if let Ok(which) = std::env::var("LAYER_COUNT") {
        let n: u64 = std::env::var("LAYER_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        count(&which, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn count(which: &str, n: u64) {
    const LIMIT: usize = 8;
    let reqs: Vec<Req> = (0..n)
        .map(|i| req(i % 1_000, ClassId::new((i % 3) as u16)))
        .collect();
    match which {
        "inner" => {
            let mut bare = inner();
            reqs.into_iter().for_each(|r| one(&mut bare, r));
        }
        "limit" => {
            let mut base = ConcurrencyLimit::new(inner(), LIMIT);
            reqs.into_iter().for_each(|r| one(&mut base, r));
        }
        "fair" | "fair3" => {
            let mut b =
                FairLayer::builder(SchedulerConfig::new().with_max_in_flight(Some(LIMIT as u32)));
            if which == "fair3" {
                b = b.classes(
                    Classes::new([
                        ClassSpec::new("api"),
                        ClassSpec::new("signin").with_reserved_percent(25),
                        ClassSpec::new("bulk"),
                    ])
                    .unwrap(),
                );
            }
            let extract3 = extract as fn(&Req) -> (u64, ClassId);
            let extract1: fn(&Req) -> (u64, ClassId) = |r| (extract(r).0, ClassId::DEFAULT);
            let layer = b
                .build(if which == "fair3" { extract3 } else { extract1 })
                .unwrap();
            let mut fair = layer.layer(inner());
            reqs.into_iter().for_each(|r| one(&mut fair, r));
        }
        other => panic!("unknown variant {other}"),
    }
}
