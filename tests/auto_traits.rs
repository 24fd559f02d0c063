//! Compile-time checks of the public types' auto traits and trait impls, and a smoke test.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use fairshare::{
    BlockReason, ConfigError, Dispatch, FairQueue, ManualClock, PushOptions, RejectReason,
    Rejected, Scheduler, SchedulerConfig, SharedScheduler, StdClock, TenantHandle, Ticket,
    adaptive::AdaptiveLimit,
    config::QueueConfig,
    pressure::PressureGauge,
    shared::{Job, Lease, WaitError},
    stats::{QueueCounters, TenantCounters, WaitHistogram},
};

fn send_sync<T: Send + Sync>() {}
fn error<E: std::error::Error + Send + Sync + 'static>() {}

/// Not `Debug`, not `Clone`: `Rejected<T>` must still be an error.
struct Opaque;

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<FairQueue<u64, String>>();
    send_sync::<Rejected<String>>();
    send_sync::<TenantHandle>();
    send_sync::<Ticket>();
    send_sync::<Dispatch<String>>();
    send_sync::<QueueConfig>();
    send_sync::<QueueCounters>();
    send_sync::<TenantCounters>();
    send_sync::<RejectReason>();
    send_sync::<BlockReason>();
    send_sync::<ConfigError>();
    send_sync::<Scheduler<u64, String>>();
    send_sync::<Scheduler<u64, String, ManualClock>>();
    send_sync::<SchedulerConfig>();
    send_sync::<PushOptions>();
    send_sync::<SharedScheduler<u64, String>>();
    send_sync::<SharedScheduler<u64, String, ManualClock>>();
    send_sync::<Job<u64, String>>();
    send_sync::<Lease<u64, String, StdClock>>();
    send_sync::<WaitError>();
    send_sync::<AdaptiveLimit>();
    send_sync::<PressureGauge>();
    send_sync::<WaitHistogram>();
}

/// A lease can move to the thread that does the work, and the handle's futures can move
/// between the threads of a work-stealing runtime.
#[test]
fn leases_and_futures_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    let h: SharedScheduler<u64, String> = SharedScheduler::new(SchedulerConfig::new());
    h.try_push(1, "job".to_string()).unwrap();
    let job = h.try_dispatch().unwrap();
    send(&job);
    std::thread::spawn(move || job.lease.complete(1))
        .join()
        .unwrap();
    let fut = h.dispatch_async();
    send(&fut);
    let fut = h.pop_async();
    send(&fut);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn rejected_is_an_error_for_any_item_type() {
    error::<Rejected<Opaque>>();
    error::<Rejected<String>>();
    error::<RejectReason>();
    error::<ConfigError>();

    let mut q: FairQueue<u8, Opaque> = FairQueue::new();
    let err = q
        .try_push_with(1, Opaque, PushOptions::new().with_cost(0))
        .unwrap_err();
    assert_eq!(err.to_string(), "item cost must be at least 1");
    let debug = format!("{err:?}");
    assert!(
        debug.starts_with("Rejected") && debug.contains("ZeroCost"),
        "{debug}"
    );
    // Usable as a boxed error, as hosts do with `?`.
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert_eq!(boxed.to_string(), "item cost must be at least 1");
}

#[test]
fn value_types_are_copy_and_comparable() {
    fn copy_eq<T: Copy + Eq + std::fmt::Debug>() {}
    copy_eq::<TenantHandle>();
    copy_eq::<QueueConfig>();
    copy_eq::<QueueCounters>();
    copy_eq::<TenantCounters>();
    copy_eq::<RejectReason>();
    copy_eq::<BlockReason>();
    copy_eq::<PushOptions>();
}

#[test]
fn queue_smoke() {
    let mut q: FairQueue<&str, String> = FairQueue::default();
    assert!(q.is_empty());
    assert_eq!(q.pop(), None);
    for i in 0..3 {
        q.try_push("heavy", format!("h{i}")).unwrap();
    }
    q.try_push_with("light", "l0".to_string(), PushOptions::new().with_cost(2))
        .unwrap();
    assert_eq!((q.len(), q.queued_cost(), q.active_tenants()), (4, 5, 2));
    let d = q.dispatch().expect("queued");
    assert_eq!(d.item, "h0");
    assert_eq!(q.in_flight(&"heavy"), 1);
    assert!(q.complete(d.ticket, 1));
    let rest: Vec<String> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(rest, ["l0", "h1", "h2"]);
    assert!(q.is_empty());
    assert_eq!(q.known_tenants(), 0);
}
