//! `fairshare-tower`: requests from several tenants and classes (any cost, unknown classes
//! too) through `FairLayer` around an in-process inner service that answers at once, later or
//! with an error, with response bodies of several frames that end, fail or are dropped
//! half-read; response futures dropped while waiting, granted or running; several services on
//! one layer; operator calls through `with_scheduler` (block, purge, limits, weights, classes,
//! the in-flight limit, a new configuration); a manual clock for the rate limits.
//!
//! Futures are polled by hand, each with its own waker that records a wake: `PollWoken` polls
//! only woken futures, as an executor would, so a lost wake-up leaves a future waiting. At the
//! end every limit is lifted and everything is driven to its end by wake-ups alone: every
//! request must have exactly one outcome (a response from its own inner call, the inner
//! service's error, a refusal that never reached the inner service, or our own cancellation),
//! and the layer must be back at 0 in flight and 0 queued.
//!
//! Checked after every operation: `pending inner calls + bodies holding a slot <= in flight <=
//! bodies holding a slot + futures not finished`, and in flight never above the global
//! in-flight limit (or, just after the limit was lowered, above what was in flight then). With
//! no other limit in play (no tenant or class in-flight caps, nobody blocked), a queued request
//! and a free slot never coexist: no slot is lost.

use crate::common::{Class, Cost, Weight, reason};
use crate::scheduler::{Limits, Setup};
use arbitrary::{Arbitrary, Unstructured};
use fairshare::pressure::{PressureConfig, PressureLevel};
use fairshare::{ClassId, ClassSpec, Classes, ManualClock, Nanos, SchedulerConfig};
use fairshare_tower::{Admission, FairBody, FairError, FairLayer, FairService, ResponseFuture};
use http_body::{Body, Frame};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Tenants in play.
const TENANTS: u8 = 6;

/// The layer's configuration beyond the scheduler's.
#[derive(Debug, Clone, Arbitrary)]
pub struct LayerSetup {
    setup: Setup,
    classes: Option<Vec<Class>>,
    /// Pressure gauge on queued items, if any.
    pressure_items: Option<u8>,
    /// Per class index: the level from which it is shed (`None`: never).
    shed_at: Vec<(u8, Option<u8>)>,
    retry_after_ms: u16,
}

/// What the inner service does with one request.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Plan {
    /// Answers on the first poll: a response with `frames` body frames (the body then fails
    /// if `body_fails`), or the service's error.
    Now {
        ok: bool,
        frames: u8,
        body_fails: bool,
    },
    /// Waits until a `Finish` operation answers it.
    Later,
}

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// Readies a service and calls it.
    Call {
        service: u8,
        tenant: u8,
        class: u8,
        cost: Cost,
        plan: Plan,
    },
    /// Polls one unfinished response future, woken or not.
    Poll {
        which: u8,
    },
    /// Polls every woken response future.
    PollWoken,
    /// Drops a response future (the client went away).
    Cancel {
        which: u8,
    },
    /// Answers a waiting inner call (and wakes the future that waits on it).
    Finish {
        which: u8,
        ok: bool,
        frames: u8,
        body_fails: bool,
    },
    /// Reads one frame of a response body.
    PollBody {
        which: u8,
    },
    /// Drops a response body, read or not.
    DropBody {
        which: u8,
    },
    /// Another service on the same layer.
    NewService,
    Advance {
        ms: u16,
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
    SetWeight {
        tenant: u8,
        weight: Weight,
    },
    SetLimits {
        tenant: u8,
        limits: Limits,
    },
    SetInFlightLimit {
        limit: Option<u8>,
    },
    SetClasses {
        classes: Vec<Class>,
    },
    Reconfigure {
        setup: Setup,
    },
}

/// A request: its id (unique, increasing) and what the extractor reads.
#[derive(Debug)]
pub struct Req {
    id: u64,
    tenant: u8,
    class: u16,
    cost: u32,
}

fn extract(r: &Req) -> Admission<u8> {
    Admission::new(r.tenant)
        .class(ClassId::new(r.class))
        .cost(r.cost)
}

type Extract = fn(&Req) -> Admission<u8>;
type Layer = FairLayer<u8, Extract, ManualClock>;
type Svc = FairService<Inner, u8, Extract, ManualClock>;
type Fut = ResponseFuture<Inner, Req, u8, ManualClock>;
type Resp = http::Response<FairBody<TestBody, u8, ManualClock>>;

/// The inner service's error, naming its request.
#[derive(Debug)]
pub struct InnerError(u64);

/// A body's error.
#[derive(Debug)]
pub struct BodyError;

/// An inner call waiting for `Finish`.
#[derive(Debug, Default)]
struct Running {
    waker: Option<Waker>,
    answer: Option<Result<(u8, bool), ()>>,
}

/// What the inner service saw.
#[derive(Debug, Default)]
struct World {
    /// Requests the inner service was called for.
    called: HashSet<u64>,
    /// Inner calls not answered yet, by request id (answered ones wait here for their poll).
    running: HashMap<u64, Running>,
    /// Plans by request id, read at call time.
    plans: HashMap<u64, Plan>,
}

/// The inner service: records each call; answers as planned.
#[derive(Debug, Clone)]
pub struct Inner(Rc<RefCell<World>>);

/// The inner service's future.
#[derive(Debug)]
pub struct InnerFut {
    id: u64,
    world: Rc<RefCell<World>>,
    done: bool,
}

/// A body of `frames` data frames, then the end (or an error if `fails`).
#[derive(Debug)]
pub struct TestBody {
    id: u64,
    frames: u8,
    fails: bool,
}

impl tower_service::Service<Req> for Inner {
    type Response = http::Response<TestBody>;
    type Error = InnerError;
    type Future = InnerFut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), InnerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> InnerFut {
        let mut w = self.0.borrow_mut();
        assert!(
            w.called.insert(req.id),
            "request {} reached the inner service twice",
            req.id
        );
        let answer = match w.plans.get(&req.id).copied() {
            Some(Plan::Now {
                ok,
                frames,
                body_fails,
            }) => Some(if ok {
                Ok((frames % 4, body_fails))
            } else {
                Err(())
            }),
            Some(Plan::Later) => None,
            None => panic!("request {} reached the inner service unplanned", req.id),
        };
        w.running.insert(
            req.id,
            Running {
                waker: None,
                answer,
            },
        );
        InnerFut {
            id: req.id,
            world: Rc::clone(&self.0),
            done: false,
        }
    }
}

impl Future for InnerFut {
    type Output = Result<http::Response<TestBody>, InnerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "inner future polled after it finished");
        let id = self.id;
        let mut w = self.world.borrow_mut();
        let r = w.running.get_mut(&id).expect("a live inner call");
        match r.answer {
            None => {
                r.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(answer) => {
                w.running.remove(&id);
                drop(w);
                self.done = true;
                Poll::Ready(match answer {
                    Ok((frames, fails)) => Ok(http::Response::new(TestBody { id, frames, fails })),
                    Err(()) => Err(InnerError(id)),
                })
            }
        }
    }
}

impl Drop for InnerFut {
    fn drop(&mut self) {
        if !self.done {
            self.world.borrow_mut().running.remove(&self.id);
        }
    }
}

impl Body for TestBody {
    type Data = &'static [u8];
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<&'static [u8]>, BodyError>>> {
        if self.frames > 0 {
            self.frames -= 1;
            Poll::Ready(Some(Ok(Frame::data(&b"x"[..]))))
        } else if self.fails {
            self.fails = false;
            Poll::Ready(Some(Err(BodyError)))
        } else {
            Poll::Ready(None)
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames == 0 && !self.fails
    }
}

/// A waker that records that it was woken.
#[derive(Debug, Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A response future we still own.
struct Pending {
    id: u64,
    fut: Pin<Box<Fut>>,
    flag: Arc<Flag>,
    waker: Waker,
}

/// A response whose body we still own.
struct Open {
    id: u64,
    resp: Resp,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Response,
    InnerError,
    Refused,
    Cancelled,
}

struct State {
    layer: Layer,
    clock: ManualClock,
    world: Rc<RefCell<World>>,
    services: Vec<Svc>,
    pending: Vec<Pending>,
    open: Vec<Open>,
    outcomes: HashMap<u64, Outcome>,
    next_id: u64,
    /// The global in-flight limit as last set.
    limit: Option<u32>,
    /// In flight after the previous operation (a lowered limit lets these finish).
    prev_in_flight: u64,
    /// No limit other than the global one can hold a queued request back.
    simple: bool,
    classes: usize,
}

/// Decodes and runs one input.
#[allow(clippy::disallowed_macros)] // the replay print below, on request only
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = LayerSetup::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    // Replaying a crash with FAIRSHARE_FUZZ_PRINT set prints the decoded operations.
    if std::env::var_os("FAIRSHARE_FUZZ_PRINT").is_some() {
        eprintln!("{setup:#?}\n{ops:#?}");
    }
    run_ops(&setup, &ops);
}

fn plain_classes(n: usize) -> Classes {
    Classes::new((0..n.max(1)).map(|i| ClassSpec::new(format!("c{i}"))))
        .expect("plain classes are valid")
}

fn level(code: u8) -> PressureLevel {
    match code % 4 {
        0 => PressureLevel::Normal,
        1 => PressureLevel::Elevated,
        2 => PressureLevel::Shedding,
        _ => PressureLevel::Critical,
    }
}

fn class_caps(specs: &[Class], classes: &Classes) -> bool {
    !specs.is_empty()
        && classes
            .iter()
            .any(|(_, c)| c.max_in_flight().is_some() || c.ceiling_percent() < 100)
}

/// Runs `ops` on a layer built from `setup`, checking every contract.
pub fn run_ops(setup: &LayerSetup, ops: &[Op]) {
    let mut config = setup.setup.get();
    if let Some(m) = setup.pressure_items {
        config = config.with_pressure(Some(
            PressureConfig::new().with_max_items(u64::from(m % 32).max(1)),
        ));
    }
    let clock = ManualClock::new();
    clock.set(Nanos::from_secs(1));
    let mut builder = FairLayer::builder(config)
        .retry_after(Duration::from_millis(u64::from(setup.retry_after_ms)));
    let mut simple = config.tenant_limits().max_in_flight().is_none();
    if let Some(specs) = &setup.classes {
        let Ok(classes) = crate::common::classes(specs) else {
            return;
        };
        simple &= !class_caps(specs, &classes);
        builder = builder.classes(classes);
    }
    for &(class, lvl) in setup.shed_at.iter().take(6) {
        builder = builder.shed_at(ClassId::new(u16::from(class % 5)), lvl.map(level));
    }
    let Ok(layer) = builder.build_with_clock(clock.clone(), extract as Extract) else {
        // The classes do not fit the configuration: refused, as documented.
        return;
    };
    let classes = layer.with_scheduler(|s| s.classes().len());
    let world = Rc::new(RefCell::new(World::default()));
    let first = tower_layer::Layer::layer(&layer, Inner(Rc::clone(&world)));
    let mut st = State {
        layer,
        clock,
        world,
        services: vec![first],
        pending: Vec::new(),
        open: Vec::new(),
        outcomes: HashMap::new(),
        next_id: 0,
        limit: config.max_in_flight(),
        prev_in_flight: 0,
        simple,
        classes,
    };
    for op in ops.iter().take(256) {
        step(&mut st, op);
        check(&mut st);
    }
    finish(&mut st);
}

fn poll_future(st: &mut State, k: usize) {
    let p = &mut st.pending[k];
    p.flag.0.store(false, Ordering::SeqCst);
    let mut cx = Context::from_waker(&p.waker);
    let Poll::Ready(out) = p.fut.as_mut().poll(&mut cx) else {
        return;
    };
    let id = st.pending.swap_remove(k).id;
    let called = st.world.borrow().called.contains(&id);
    let outcome = match out {
        Ok(resp) => {
            assert!(called, "request {id} answered without an inner call");
            assert_eq!(
                resp.body().get_ref().id,
                id,
                "request {id} got another request's response"
            );
            st.open.push(Open {
                id,
                resp,
                ended: false,
            });
            Outcome::Response
        }
        Err(FairError::Inner(InnerError(e))) => {
            assert_eq!(e, id, "request {id} got another request's error");
            assert!(called, "request {id}: an inner error without an inner call");
            Outcome::InnerError
        }
        Err(FairError::Refused {
            reason,
            retry_after,
        }) => {
            assert!(
                !called,
                "request {id} was refused ({reason}) after reaching the inner service"
            );
            assert_eq!(
                retry_after.is_some(),
                reason.is_retryable(),
                "Retry-After on {reason:?}: {retry_after:?}"
            );
            let _ = reason.status();
            Outcome::Refused
        }
        Err(_) => panic!("an error variant this target does not know"),
    };
    record(st, id, outcome);
}

fn record(st: &mut State, id: u64, outcome: Outcome) {
    if let Some(before) = st.outcomes.insert(id, outcome) {
        panic!("request {id}: a second outcome {outcome:?} after {before:?}");
    }
}

fn poll_body(st: &mut State, k: usize) {
    let o = &mut st.open[k];
    if o.ended {
        return;
    }
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(o.resp.body_mut()).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(_))) => {}
        Poll::Ready(Some(Err(_)) | None) => o.ended = true,
        Poll::Pending => panic!("a test body is never pending"),
    }
    if o.ended || o.resp.body().is_end_stream() {
        assert!(
            !o.resp.body().holds_slot(),
            "request {}: a finished body still holds its slot",
            o.id
        );
    }
}

fn step(st: &mut State, op: &Op) {
    match *op {
        Op::Call {
            service,
            tenant,
            class,
            cost,
            plan,
        } => {
            if st.pending.len() >= 64 {
                return;
            }
            st.next_id += 1;
            let id = st.next_id;
            st.world.borrow_mut().plans.insert(id, plan);
            let req = Req {
                id,
                tenant: tenant % TENANTS,
                class: u16::from(class % 5),
                cost: cost.get(),
            };
            let k = usize::from(service) % st.services.len();
            let svc = &mut st.services[k];
            let mut cx = Context::from_waker(Waker::noop());
            assert!(matches!(
                tower_service::Service::poll_ready(svc, &mut cx),
                Poll::Ready(Ok(()))
            ));
            let fut = Box::pin(tower_service::Service::call(svc, req));
            let flag = Arc::new(Flag(AtomicBool::new(true)));
            let waker = Waker::from(Arc::clone(&flag));
            st.pending.push(Pending {
                id,
                fut,
                flag,
                waker,
            });
        }
        Op::Poll { which } => {
            if !st.pending.is_empty() {
                let k = usize::from(which) % st.pending.len();
                poll_future(st, k);
            }
        }
        Op::PollWoken => poll_woken(st),
        Op::Cancel { which } => {
            if !st.pending.is_empty() {
                let k = usize::from(which) % st.pending.len();
                let p = st.pending.swap_remove(k);
                let id = p.id;
                drop(p);
                record(st, id, Outcome::Cancelled);
            }
        }
        Op::Finish {
            which,
            ok,
            frames,
            body_fails,
        } => {
            let mut w = st.world.borrow_mut();
            let mut waiting: Vec<u64> = w
                .running
                .iter()
                .filter(|(_, r)| r.answer.is_none())
                .map(|(&id, _)| id)
                .collect();
            if waiting.is_empty() {
                return;
            }
            waiting.sort_unstable();
            let id = waiting[usize::from(which) % waiting.len()];
            let r = w.running.get_mut(&id).expect("listed above");
            r.answer = Some(if ok {
                Ok((frames % 4, body_fails))
            } else {
                Err(())
            });
            // No waker yet: the inner future was never polled; its first poll answers.
            let waker = r.waker.take();
            drop(w);
            waker.into_iter().for_each(Waker::wake);
        }
        Op::PollBody { which } => {
            if !st.open.is_empty() {
                let k = usize::from(which) % st.open.len();
                poll_body(st, k);
                if st.open[k].ended {
                    st.open.swap_remove(k);
                }
            }
        }
        Op::DropBody { which } => {
            if !st.open.is_empty() {
                let k = usize::from(which) % st.open.len();
                st.open.swap_remove(k);
            }
        }
        Op::NewService => {
            if st.services.len() < 4 {
                let svc = tower_layer::Layer::layer(&st.layer, Inner(Rc::clone(&st.world)));
                st.services.push(svc);
            }
        }
        Op::Advance { ms } => st.clock.advance(Duration::from_millis(u64::from(ms))),
        Op::Block { tenant, reason: r } => {
            st.simple = false;
            st.layer
                .with_scheduler(|s| s.block(tenant % TENANTS, reason(r)));
        }
        Op::Unblock { tenant } => {
            st.layer.with_scheduler(|s| s.unblock(&(tenant % TENANTS)));
        }
        Op::Purge { tenant } => {
            // The purged tokens are dropped here: their requests are answered as refused.
            let purged = st.layer.with_scheduler(|s| s.purge(&(tenant % TENANTS)));
            drop(purged);
        }
        Op::SetWeight { tenant, weight } => st
            .layer
            .with_scheduler(|s| s.set_weight(tenant % TENANTS, weight.get())),
        Op::SetLimits { tenant, limits } => {
            let l = limits.get();
            st.simple &= l.max_in_flight().is_none();
            st.layer
                .with_scheduler(|s| s.set_limits(tenant % TENANTS, l));
        }
        Op::SetInFlightLimit { limit } => {
            let limit = limit.map(|l| u32::from(l % 8));
            st.limit = limit;
            st.layer.with_scheduler(|s| s.set_in_flight_limit(limit));
        }
        Op::SetClasses { ref classes } => {
            let Ok(set) = crate::common::classes(classes) else {
                return;
            };
            let caps = class_caps(classes, &set);
            let n = set.len();
            if st.layer.with_scheduler(|s| s.set_classes(set)).is_ok() {
                st.simple &= !caps;
                st.classes = n;
            }
        }
        Op::Reconfigure { setup } => {
            let config = setup.get();
            st.limit = config.max_in_flight();
            st.simple &= config.tenant_limits().max_in_flight().is_none();
            st.layer.with_scheduler(|s| s.reconfigure(config));
        }
    }
}

fn poll_woken(st: &mut State) {
    let mut k = st.pending.len();
    while k > 0 {
        k -= 1;
        if k < st.pending.len() && st.pending[k].flag.0.load(Ordering::SeqCst) {
            poll_future(st, k);
        }
    }
}

fn check(st: &mut State) {
    let in_flight = st.layer.in_flight();
    let holding = st
        .open
        .iter()
        .filter(|o| o.resp.body().holds_slot())
        .count() as u64;
    let inner = st.world.borrow().running.len() as u64;
    assert!(
        inner + holding <= in_flight,
        "{inner} inner calls running and {holding} bodies streaming, but {in_flight} in flight: a slot was freed early"
    );
    assert!(
        in_flight <= holding + st.pending.len() as u64,
        "{in_flight} in flight for {holding} bodies and {} unfinished futures: a slot leaked",
        st.pending.len()
    );
    if let Some(l) = st.limit {
        assert!(
            in_flight <= u64::from(l).max(st.prev_in_flight),
            "{in_flight} in flight above the limit {l} (was {})",
            st.prev_in_flight
        );
        if st.simple && in_flight < u64::from(l) {
            assert_eq!(
                st.layer.queued(),
                0,
                "a request waits while a slot is free ({in_flight} of {l} in flight)"
            );
        }
    } else if st.simple {
        assert_eq!(st.layer.queued(), 0, "a request waits with no limit set");
    }
    st.prev_in_flight = in_flight;
}

/// Lifts every limit, then drives everything to its end by wake-ups alone.
fn finish(st: &mut State) {
    let classes = st.classes;
    st.layer.with_scheduler(|s| {
        s.reconfigure(SchedulerConfig::new());
        s.set_in_flight_limit(None);
        for t in 0..TENANTS {
            s.clear_limits(&t);
            s.unblock(&t);
        }
        s.set_classes(plain_classes(classes))
            .expect("same number of classes");
    });
    st.limit = None;
    st.simple = true;
    let mut idle_rounds = 0;
    while !st.pending.is_empty() || !st.open.is_empty() {
        let before = (st.pending.len(), st.open.len(), st.outcomes.len());
        // Answer every inner call (waking its future), then run what was woken, then read
        // every body to its end (freeing its slot).
        let (answered, wakers) = {
            let mut w = st.world.borrow_mut();
            let mut answered = false;
            let mut wakers = Vec::new();
            for r in w.running.values_mut().filter(|r| r.answer.is_none()) {
                answered = true;
                r.answer = Some(Ok((1, false)));
                // An inner future never polled has no waker: its response future still owes
                // its first poll, so it is flagged already.
                wakers.extend(r.waker.take());
            }
            (answered, wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
        poll_woken(st);
        while let Some(mut o) = st.open.pop() {
            while !o.ended {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(o.resp.body_mut()).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(_)) | None) => o.ended = true,
                    Poll::Pending => panic!("a test body is never pending"),
                }
            }
            assert!(!o.resp.body().holds_slot());
        }
        check(st);
        let after = (st.pending.len(), st.open.len(), st.outcomes.len());
        if after == before && !answered {
            idle_rounds += 1;
            assert!(
                idle_rounds < 2,
                "{} requests wait for ever with every limit lifted (ids {:?}; in flight {}, queued {})",
                st.pending.len(),
                st.pending.iter().map(|p| p.id).collect::<Vec<_>>(),
                st.layer.in_flight(),
                st.layer.queued()
            );
        } else {
            idle_rounds = 0;
        }
    }
    assert_eq!(
        st.layer.in_flight(),
        0,
        "slots held after every request ended"
    );
    assert_eq!(
        st.layer.queued(),
        0,
        "tokens queued after every request ended"
    );
    assert!(st.world.borrow().running.is_empty());
    for id in 1..=st.next_id {
        assert!(st.outcomes.contains_key(&id), "request {id} has no outcome");
    }
}
