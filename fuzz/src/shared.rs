//! `SharedScheduler`, single-threaded: pushes (one by one and in batches), dispatches (try,
//! batch, a zero timeout, a future polled once and maybe dropped), leases completed at any
//! cost, with an outcome, or dropped, operator calls through `with_scheduler`, a clock moved
//! both ways, and `close` with leases still out.

use crate::common::{Cost, Item, Ledger, Opts, Way, catch_host, host_panic, reason};
use crate::scheduler::{Limits, Setup, YEAR};
use arbitrary::{Arbitrary, Unstructured};
use fairshare::adaptive::Outcome;
use fairshare::shared::{Job, Lease, WaitError};
use fairshare::{
    Clock, ManualClock, Nanos, RejectReason, Scheduler, SharedScheduler, TenantHandle,
};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    Push {
        tenant: u8,
        opts: Opts,
    },
    PushTo {
        handle: u8,
        opts: Opts,
    },
    PushBatch {
        items: Vec<(u8, Opts)>,
    },
    Tenant {
        tenant: u8,
    },
    Release {
        handle: u8,
    },
    TryPop,
    TryDispatch,
    DispatchBatch {
        max: u8,
    },
    PopBatch {
        max: u8,
    },
    DispatchTimeoutZero,
    PollDispatch {
        keep: bool,
    },
    PollPop,
    Complete {
        which: u8,
        actual: Cost,
        outcome: u8,
    },
    DropLease {
        which: u8,
    },
    TakeReturned,
    Advance {
        ms: u32,
    },
    Back {
        ms: u32,
    },
    Years {
        forward: bool,
        years: u8,
    },
    Block {
        tenant: u8,
        reason: u8,
    },
    Unblock {
        tenant: u8,
    },
    Purge {
        tenant: u8,
    },
    Retain {
        tenant: u8,
        modulo: u8,
        panic_at: Option<u8>,
    },
    SetLimits {
        tenant: u8,
        limits: Limits,
    },
    SetInFlightLimit {
        limit: Option<u8>,
    },
    Reconfigure {
        setup: Setup,
    },
    Close,
}

type Shared = SharedScheduler<u8, Item, ManualClock>;
type Leased = Job<u8, Item, ManualClock>;
type Held = Lease<u8, Item, ManualClock>;

fn tenant(t: u8) -> u8 {
    t % 8
}

/// Decodes and runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    run_ops(&setup, &ops);
}

struct World {
    h: Shared,
    clock: ManualClock,
    ledger: Ledger,
    leases: Vec<Held>,
    handles: Vec<(TenantHandle, u8)>,
    closed: bool,
}

/// Runs `ops` on a shared scheduler built from `setup`, checking every contract.
pub fn run_ops(setup: &Setup, ops: &[Op]) {
    let clock = ManualClock::new();
    clock.set(Nanos::from_secs(1));
    let mut w = World {
        h: SharedScheduler::from_scheduler(Scheduler::with_clock(setup.get(), clock.clone())),
        clock,
        ledger: Ledger::default(),
        leases: Vec::new(),
        handles: Vec::new(),
        closed: false,
    };
    for op in ops {
        step(&mut w, op);
        check(&w);
    }
    // Close with leases still out: everything queued comes back, the leases still complete.
    for item in w.h.close() {
        w.ledger.back(item, Way::Closed);
    }
    for r in w.h.take_returned() {
        w.ledger.back(r.into_inner(), Way::Returned);
    }
    assert!(w.h.is_empty());
    assert!(
        matches!(w.h.try_push(0, w.ledger.item(0, 0)), Err(ref r) if r.reason() == RejectReason::Closed)
    );
    for lease in w.leases.drain(..) {
        lease.complete(1);
    }
    assert_eq!(w.h.with_scheduler(|s| s.queue().total_in_flight()), 0);
    w.ledger.assert_empty();
}

fn take(w: &mut World, job: Leased) {
    let Job { item, lease, .. } = job;
    w.ledger.back(item, Way::Dispatched);
    w.leases.push(lease);
}

fn push_one(w: &mut World, t: u8, opts: Opts, handle: Option<TenantHandle>) {
    let item = w.ledger.item(t, opts.class());
    let id = item.id;
    let o = opts.at(w.clock.now());
    let r = match handle {
        Some(h) => w.h.try_push_to(h, item, o),
        None => w.h.try_push_with(t, item, o),
    };
    if w.closed {
        assert!(
            matches!(&r, Err(e) if e.reason() == RejectReason::Closed),
            "a closed scheduler admitted"
        );
    }
    w.ledger.pushed(id, r);
}

fn step(w: &mut World, op: &Op) {
    let now = w.clock.now();
    match *op {
        Op::Push { tenant: t, opts } => push_one(w, tenant(t), opts, None),
        Op::PushTo { handle, opts } => {
            if !w.handles.is_empty() {
                let (h, t) = w.handles[usize::from(handle) % w.handles.len()];
                push_one(w, t, opts, Some(h));
            }
        }
        Op::PushBatch { ref items } => {
            let batch: Vec<(u8, Item, fairshare::PushOptions)> = items
                .iter()
                .take(32)
                .map(|&(t, o)| {
                    let t = tenant(t);
                    (t, w.ledger.item(t, o.class()), o.at(now))
                })
                .collect();
            let ids: Vec<u64> = batch.iter().map(|(_, i, _)| i.id).collect();
            let results = w.h.try_push_batch(batch);
            assert_eq!(results.len(), ids.len(), "one result per batch item");
            for (id, r) in ids.into_iter().zip(results) {
                w.ledger.pushed(id, r);
            }
        }
        Op::Tenant { tenant: t } => {
            if w.handles.len() < 16 {
                let t = tenant(t);
                w.handles.push((w.h.tenant(t), t));
            }
        }
        Op::Release { handle } => {
            if !w.handles.is_empty() {
                let (h, _) = w.handles.swap_remove(usize::from(handle) % w.handles.len());
                w.h.release(h);
            }
        }
        Op::TryPop => {
            if let Some(item) = w.h.try_pop() {
                w.ledger.back(item, Way::Dispatched);
            }
        }
        Op::TryDispatch => {
            if let Some(job) = w.h.try_dispatch() {
                take(w, job);
            }
        }
        Op::DispatchBatch { max } => {
            let jobs = w.h.dispatch_batch(usize::from(max % 16));
            assert!(jobs.len() <= usize::from(max % 16));
            for job in jobs {
                take(w, job);
            }
        }
        Op::PopBatch { max } => {
            let items = w.h.pop_batch(usize::from(max % 16));
            assert!(items.len() <= usize::from(max % 16));
            for item in items {
                w.ledger.back(item, Way::Dispatched);
            }
        }
        Op::DispatchTimeoutZero => match w.h.dispatch_timeout(Duration::ZERO) {
            Ok(job) => take(w, job),
            Err(WaitError::Closed) => assert!(w.closed, "Closed from an open scheduler"),
            Err(_) => {}
        },
        Op::PollDispatch { keep } => {
            let mut cx = Context::from_waker(Waker::noop());
            let r = {
                let mut fut = pin!(w.h.dispatch_async());
                match fut.as_mut().poll(&mut cx) {
                    Poll::Ready(r) => Some(r),
                    // Dropping a pending future must not take anything.
                    Poll::Pending if !keep => None,
                    Poll::Pending => match fut.as_mut().poll(&mut cx) {
                        Poll::Ready(r) => Some(r),
                        Poll::Pending => None,
                    },
                }
            };
            match r {
                Some(Ok(job)) => take(w, job),
                Some(Err(WaitError::Closed)) => assert!(w.closed, "Closed from an open scheduler"),
                Some(Err(e)) => panic!("dispatch_async failed with {e:?}"),
                None => {}
            }
        }
        Op::PollPop => {
            let mut cx = Context::from_waker(Waker::noop());
            let r = pin!(w.h.pop_async()).poll(&mut cx);
            match r {
                Poll::Ready(Ok(item)) => w.ledger.back(item, Way::Dispatched),
                Poll::Ready(Err(WaitError::Closed)) => assert!(w.closed),
                Poll::Ready(Err(e)) => panic!("pop_async failed with {e:?}"),
                Poll::Pending => {}
            }
        }
        Op::Complete {
            which,
            actual,
            outcome,
        } => {
            if !w.leases.is_empty() {
                let l = w.leases.swap_remove(usize::from(which) % w.leases.len());
                let outcome = match outcome % 3 {
                    0 => Outcome::Success,
                    1 => Outcome::Failure,
                    _ => Outcome::Dropped,
                };
                l.complete_with(actual.get(), outcome);
            }
        }
        Op::DropLease { which } => {
            if !w.leases.is_empty() {
                drop(w.leases.swap_remove(usize::from(which) % w.leases.len()));
            }
        }
        Op::TakeReturned => {
            for r in w.h.take_returned() {
                assert!(matches!(
                    r.reason(),
                    RejectReason::Evicted
                        | RejectReason::DeadlineExpired { .. }
                        | RejectReason::QueueDelay { .. }
                ));
                w.ledger.back(r.into_inner(), Way::Returned);
            }
        }
        Op::Advance { ms } => w.clock.advance(Duration::from_millis(u64::from(ms))),
        Op::Back { ms } => w.clock.set(Nanos::new(
            now.as_u64().saturating_sub(u64::from(ms) * 1_000_000),
        )),
        Op::Years { forward, years } => {
            let by = u64::from(years).saturating_mul(YEAR);
            w.clock.set(Nanos::new(if forward {
                now.as_u64().saturating_add(by)
            } else {
                now.as_u64().saturating_sub(by)
            }));
        }
        Op::Block {
            tenant: t,
            reason: r,
        } => w.h.with_scheduler(|s| s.block(tenant(t), reason(r))),
        Op::Unblock { tenant: t } => {
            w.h.with_scheduler(|s| s.unblock(&tenant(t)));
        }
        Op::Purge { tenant: t } => {
            for item in w.h.with_scheduler(|s| s.purge(&tenant(t))) {
                w.ledger.back(item, Way::Purged);
            }
        }
        Op::Retain {
            tenant: t,
            modulo,
            panic_at,
        } => {
            let t = tenant(t);
            let m = u64::from(modulo.max(1));
            let len = w.h.len();
            let h = &w.h;
            let out = catch_host(|| {
                let mut calls = 0u8;
                h.with_scheduler(|s| {
                    s.retain(&t, |item| {
                        if Some(calls) == panic_at {
                            host_panic();
                        }
                        calls = calls.wrapping_add(1);
                        item.id % m != 0
                    })
                })
            });
            match out {
                Some(out) => {
                    for item in out {
                        w.ledger.back(item, Way::Retained);
                    }
                }
                // The lock is not poisoned (parking_lot) and nothing changed.
                None => assert_eq!(w.h.len(), len, "a panicking predicate changed the queue"),
            }
        }
        Op::SetLimits { tenant: t, limits } => {
            w.h.with_scheduler(|s| s.set_limits(tenant(t), limits.get()))
        }
        Op::SetInFlightLimit { limit } => {
            w.h.with_scheduler(|s| s.set_in_flight_limit(limit.map(|l| u32::from(l % 8))))
        }
        Op::Reconfigure { setup } => w.h.with_scheduler(|s| s.reconfigure(setup.get())),
        Op::Close => {
            for item in w.h.close() {
                w.ledger.back(item, Way::Closed);
            }
            w.closed = true;
            assert!(w.h.is_closed());
            assert!(w.h.is_empty(), "close left items queued");
        }
    }
}

fn check(w: &World) {
    let (len, pending, in_flight) = w.h.with_scheduler(|s| {
        (
            s.queue().len(),
            s.pending_returns(),
            s.queue().total_in_flight(),
        )
    });
    assert_eq!(len, w.h.len());
    assert_eq!(
        len + pending,
        w.ledger.held.len(),
        "queued + pending returns differ from the ledger"
    );
    assert_eq!(
        in_flight,
        w.leases.len() as u64,
        "in flight differs from the leases held"
    );
}
