//! Soak: N seeded random requests (default 10,000,000; `--requests N`, `--seed S`) through
//! `FairLayer` around an in-process inner service, driven by hand like an executor (each
//! response future polled only when its waker fired), with a ledger of every request.
//!
//! ```text
//! cargo run --release -p fairshare-tower --example tower_soak                        # ~10 s
//! cargo run --release -p fairshare-tower --example tower_soak -- --requests 1000000  # what CI runs
//! ```
//!
//! 1,000 tenants (a quarter of the requests from one flooding tenant), three classes (one
//! with a reserved share), per-tenant rate quotas and queue caps on a manual clock, global
//! capacity with eviction, a pressure gauge that sheds one class; an inner service that
//! answers at once or later, fails some requests, and streams bodies of several frames;
//! clients that go away while waiting, while running or half-way through a body; operators
//! blocking, purging and re-weighting tenants and moving the in-flight limit.
//!
//! Checked throughout: every request has exactly one outcome (its own response or inner
//! error, a refusal that never reached the inner service, or the client's cancellation); the
//! in-flight count never exceeds the limit (after a lowered limit, what was in flight then);
//! the requests the inner service runs plus the bodies streaming never exceed it either; and
//! a request woken by nothing never finishes (no lost wake-up: at the end, with every limit
//! lifted, wake-ups alone drive every request to its end). At the end in flight and queued
//! are 0. The resident set may grow at most a bound above its level after the first round.
//! Exits non-zero on any break; prints requests/s and VmHWM.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use fairshare::config::{Capacity, Quota, ShedPolicy, TenantLimits};
use fairshare::pressure::{PressureConfig, PressureLevel};
use fairshare::{BlockReason, ClassId, ClassSpec, Classes, ManualClock, SchedulerConfig};
use fairshare_tower::{Admission, FairBody, FairError, FairLayer, FairService, ResponseFuture};
use http_body::{Body, Frame};
use tower::{Layer, Service};

/// Tenants.
const TENANTS: u64 = 1_000;
/// Response futures alive at most (clients waiting or running): keeps memory bounded.
const MAX_OUTSTANDING: usize = 4_000;
/// The in-flight limit in normal operation.
const IN_FLIGHT: u32 = 16;
/// Requests per round (the resident set is sampled after each).
const ROUND: u64 = 250_000;
/// The resident set may grow at most this much above its level after the first round.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A request: its id and what the key extractor reads.
struct Req {
    id: u64,
    tenant: u64,
    class: u16,
    cost: u32,
}

fn extract(r: &Req) -> Admission<u64> {
    Admission::new(r.tenant)
        .class(ClassId::new(r.class))
        .cost(r.cost)
}

type Extract = fn(&Req) -> Admission<u64>;
type Fut = ResponseFuture<Inner, Req, u64, ManualClock>;
type Resp = http::Response<FairBody<TestBody, u64, ManualClock>>;

/// How the inner service answers one request.
#[derive(Clone, Copy)]
enum Answer {
    /// A response with this many body frames.
    Ok(u8),
    /// The service's error.
    Err,
}

/// An inner call waiting for the driver to answer it.
struct Running {
    waker: Option<Waker>,
    answer: Option<Answer>,
}

/// What the inner service saw.
#[derive(Default)]
struct World {
    /// Requests the inner service was called for and still without an outcome (id →
    /// answered later or not).
    called: HashMap<u64, bool>,
    running: HashMap<u64, Running>,
    /// Ids of inner calls waiting for an answer, in call order (some may be gone).
    later: Vec<u64>,
    /// How the next call answers: at once (`Some`) or later.
    plans: HashMap<u64, Option<Answer>>,
}

#[derive(Clone)]
struct Inner(Rc<RefCell<World>>);

struct InnerFut {
    id: u64,
    world: Rc<RefCell<World>>,
    done: bool,
}

struct TestBody {
    id: u64,
    frames: u8,
}

#[derive(Debug)]
struct InnerError(u64);

impl Service<Req> for Inner {
    type Response = http::Response<TestBody>;
    type Error = InnerError;
    type Future = InnerFut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), InnerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> InnerFut {
        let mut w = self.0.borrow_mut();
        let plan = w.plans.remove(&req.id).expect("every request is planned");
        if w.called.insert(req.id, plan.is_none()).is_some() {
            panic!("request {} reached the inner service twice", req.id);
        }
        if plan.is_none() {
            w.later.push(req.id);
        }
        w.running.insert(
            req.id,
            Running {
                waker: None,
                answer: plan,
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
        let id = self.id;
        let mut w = self.world.borrow_mut();
        let r = w.running.get_mut(&id).expect("a live inner call");
        let Some(answer) = r.answer else {
            r.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        w.running.remove(&id);
        drop(w);
        self.done = true;
        Poll::Ready(match answer {
            Answer::Ok(frames) => Ok(http::Response::new(TestBody { id, frames })),
            Answer::Err => Err(InnerError(id)),
        })
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
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<&'static [u8]>, Infallible>>> {
        if self.frames == 0 {
            return Poll::Ready(None);
        }
        self.frames -= 1;
        Poll::Ready(Some(Ok(Frame::data(&b"chunk"[..]))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames == 0
    }
}

/// Each response future's waker queues its id for the driver.
struct Wakeup {
    id: u64,
    woken: Arc<Mutex<Vec<u64>>>,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.lock().expect("not poisoned").push(self.id);
    }
}

struct Pending {
    fut: Pin<Box<Fut>>,
    waker: Waker,
}

/// Outcomes, counted.
#[derive(Default, Debug)]
struct Counts {
    served: u64,
    inner_errors: u64,
    refused: u64,
    /// Refusals by status: 429, 503, 403, other.
    by_status: [u64; 4],
    cancelled: u64,
    bodies_dropped: u64,
}

struct Soak {
    rng: XorShift,
    clock: ManualClock,
    layer: FairLayer<u64, Extract, ManualClock>,
    svc: FairService<Inner, u64, Extract, ManualClock>,
    world: Rc<RefCell<World>>,
    woken: Arc<Mutex<Vec<u64>>>,
    pending: HashMap<u64, Pending>,
    /// Ids of `pending`, to pick one at random (stale ids are skipped).
    pending_ids: Vec<u64>,
    open: Vec<(u64, Resp)>,
    /// Requests made so far (ids 1..=made).
    made: u64,
    /// Requests without an outcome yet (each leaves this set exactly once).
    live: HashSet<u64>,
    counts: Counts,
    limit: Option<u32>,
    prev_in_flight: u64,
    /// Tenants an operator blocked (and has not unblocked yet).
    blocked: Vec<u64>,
    /// The most requests seen queued at once.
    max_queued: usize,
}

impl Soak {
    fn new(seed: u64) -> Self {
        let clock = ManualClock::new();
        let classes = Classes::new([
            ClassSpec::new("api"),
            ClassSpec::new("signin").with_reserved_percent(25),
            ClassSpec::new("bulk"),
        ])
        .expect("valid classes");
        let limits = TenantLimits::new()
            .with_quota(
                Quota::per_second(NonZeroU32::new(2_000).expect("non-zero"))
                    .allow_burst(NonZeroU32::new(200).expect("non-zero")),
            )
            .with_max_items(300);
        let config = SchedulerConfig::new()
            .with_max_in_flight(Some(IN_FLIGHT))
            .with_tenant_limits(limits)
            .with_capacity(Capacity::new().with_max_items(600))
            .with_shed_policy(ShedPolicy::EvictOverShare)
            .with_pressure(Some(PressureConfig::new().with_max_items(800)));
        let layer = FairLayer::builder(config)
            .classes(classes)
            .shed_at(ClassId::new(2), Some(PressureLevel::Elevated))
            .shed_at(ClassId::new(1), None)
            .build_with_clock(clock.clone(), extract as Extract)
            .expect("the classes fit");
        let world = Rc::new(RefCell::new(World::default()));
        let svc = layer.layer(Inner(Rc::clone(&world)));
        Soak {
            rng: XorShift(seed),
            clock,
            layer,
            svc,
            world,
            woken: Arc::new(Mutex::new(Vec::new())),
            pending: HashMap::new(),
            pending_ids: Vec::new(),
            open: Vec::new(),
            made: 0,
            live: HashSet::new(),
            counts: Counts::default(),
            limit: Some(IN_FLIGHT),
            prev_in_flight: 0,
            max_queued: 0,
            blocked: Vec::new(),
        }
    }

    fn record(&mut self, id: u64, what: &'static str) -> Result<(), String> {
        let mut w = self.world.borrow_mut();
        w.called.remove(&id);
        w.plans.remove(&id); // a refused request's plan was never read
        drop(w);
        if self.live.remove(&id) {
            Ok(())
        } else {
            Err(format!("request {id}: a second outcome ({what})"))
        }
    }

    fn call(&mut self) -> Result<(), String> {
        self.made += 1;
        let id = self.made;
        self.live.insert(id);
        let r = &mut self.rng;
        let tenant = if r.below(4) == 0 { 0 } else { r.below(TENANTS) };
        let class = match r.below(10) {
            0 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        let plan = match r.below(10) {
            0..=3 => Some(Answer::Ok(r.below(3) as u8)),
            4 => Some(Answer::Err),
            _ => None,
        };
        let cost = 1 + r.below(3) as u32;
        self.world.borrow_mut().plans.insert(id, plan);
        let req = Req {
            id,
            tenant,
            class,
            cost,
        };
        let mut cx = Context::from_waker(Waker::noop());
        if !matches!(self.svc.poll_ready(&mut cx), Poll::Ready(Ok(()))) {
            return Err("the inner service is always ready".into());
        }
        let fut = Box::pin(self.svc.call(req));
        let waker = Waker::from(Arc::new(Wakeup {
            id,
            woken: Arc::clone(&self.woken),
        }));
        self.pending.insert(id, Pending { fut, waker });
        self.pending_ids.push(id);
        // A new task is polled once, as a spawn would.
        self.woken.lock().expect("not poisoned").push(id);
        Ok(())
    }

    fn poll(&mut self, id: u64) -> Result<(), String> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ok(()); // finished or cancelled already: a stale wake-up
        };
        let mut cx = Context::from_waker(&p.waker);
        let Poll::Ready(out) = p.fut.as_mut().poll(&mut cx) else {
            return Ok(());
        };
        self.pending.remove(&id);
        let called = self.world.borrow().called.contains_key(&id);
        match out {
            Ok(resp) => {
                if !called || resp.body().get_ref().id != id {
                    return Err(format!("request {id} got a response not its own"));
                }
                self.counts.served += 1;
                self.open.push((id, resp));
                self.record(id, "response")
            }
            Err(FairError::Inner(InnerError(e))) => {
                if !called || e != id {
                    return Err(format!("request {id} got an error not its own"));
                }
                self.counts.inner_errors += 1;
                self.record(id, "inner error")
            }
            Err(FairError::Refused {
                reason,
                retry_after,
            }) => {
                if called {
                    return Err(format!("request {id} refused ({reason}) after running"));
                }
                if retry_after.is_some() != reason.is_retryable() {
                    return Err(format!("{reason}: Retry-After {retry_after:?}"));
                }
                self.counts.refused += 1;
                let k = match reason.status().as_u16() {
                    429 => 0,
                    503 => 1,
                    403 => 2,
                    _ => 3,
                };
                self.counts.by_status[k] += 1;
                self.record(id, "refused")
            }
            Err(_) => Err("an unknown error variant".into()),
        }
    }

    fn run_woken(&mut self) -> Result<(), String> {
        loop {
            let batch = std::mem::take(&mut *self.woken.lock().expect("not poisoned"));
            if batch.is_empty() {
                return Ok(());
            }
            for id in batch {
                self.poll(id)?;
            }
        }
    }

    fn answer_some(&mut self, all: bool) {
        let mut wakers = Vec::new();
        {
            let mut w = self.world.borrow_mut();
            let n = if all {
                w.later.len()
            } else {
                (self.rng.below(4) as usize).min(w.later.len())
            };
            for _ in 0..n {
                let k = self.rng.below(w.later.len() as u64) as usize;
                let id = w.later.swap_remove(k);
                let answer = if self.rng.below(8) == 0 {
                    Answer::Err
                } else {
                    Answer::Ok(self.rng.below(3) as u8)
                };
                if let Some(r) = w.running.get_mut(&id) {
                    r.answer = Some(answer);
                    wakers.extend(r.waker.take());
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    fn read_bodies(&mut self, all: bool) -> Result<(), String> {
        let n = if all {
            self.open.len()
        } else {
            (self.rng.below(4) as usize).min(self.open.len())
        };
        for _ in 0..n {
            let k = self.rng.below(self.open.len() as u64) as usize;
            let (id, mut resp) = self.open.swap_remove(k);
            if !all && self.rng.below(10) == 0 {
                self.counts.bodies_dropped += 1;
                continue; // the client went away mid-body: dropped here
            }
            let mut cx = Context::from_waker(Waker::noop());
            while let Poll::Ready(Some(_)) = Pin::new(resp.body_mut()).poll_frame(&mut cx) {}
            if resp.body().holds_slot() {
                return Err(format!("request {id}: a finished body holds its slot"));
            }
        }
        Ok(())
    }

    fn cancel_one(&mut self) -> Result<(), String> {
        while let Some(id) = self.pending_ids.pop() {
            if self.pending.remove(&id).is_some() {
                self.counts.cancelled += 1;
                return self.record(id, "cancelled");
            }
        }
        Ok(())
    }

    fn operator(&mut self) {
        let t = self.rng.below(TENANTS);
        match self.rng.below(6) {
            0 => {
                self.layer
                    .with_scheduler(|s| s.block(t, BlockReason::Abuse));
                self.blocked.push(t);
            }
            1 => {
                while let Some(b) = self.blocked.pop() {
                    self.layer.with_scheduler(|s| s.unblock(&b));
                }
            }
            2 => drop(self.layer.with_scheduler(|s| s.purge(&t))),
            3 => {
                let w = NonZeroU32::new(1 + self.rng.below(8) as u32).expect("non-zero");
                self.layer.with_scheduler(|s| s.set_weight(t, w));
            }
            _ => {
                let limit = Some(IN_FLIGHT / 2 + self.rng.below(u64::from(IN_FLIGHT)) as u32);
                self.limit = limit;
                self.layer.with_scheduler(|s| s.set_in_flight_limit(limit));
                // What is in flight now may finish under a lowered limit.
                self.prev_in_flight = self.prev_in_flight.max(self.layer.in_flight());
            }
        }
    }

    fn check(&mut self) -> Result<(), String> {
        let in_flight = self.layer.in_flight();
        if let Some(l) = self.limit {
            if in_flight > u64::from(l).max(self.prev_in_flight) {
                return Err(format!(
                    "{in_flight} in flight above the limit {l} (was {})",
                    self.prev_in_flight
                ));
            }
        }
        let running = self.world.borrow().running.len() as u64;
        let streaming = self
            .open
            .iter()
            .filter(|(_, r)| r.body().holds_slot())
            .count() as u64;
        if running + streaming > in_flight {
            return Err(format!(
                "{running} inner calls and {streaming} bodies for {in_flight} slots in flight"
            ));
        }
        self.prev_in_flight = in_flight;
        self.max_queued = self.max_queued.max(self.layer.queued());
        Ok(())
    }

    fn requests(&mut self, n: u64) -> Result<(), String> {
        let mut made = 0;
        let mut i = 0u64;
        while made < n {
            i += 1;
            match self.rng.below(100) {
                0..=39 if self.pending.len() < MAX_OUTSTANDING => {
                    self.call()?;
                    made += 1;
                }
                0..=59 => self.answer_some(false),
                60..=79 => self.read_bodies(false)?,
                80..=81 => self.cancel_one()?,
                82..=84 => self
                    .clock
                    .advance(Duration::from_micros(self.rng.below(500))),
                85 if self.rng.below(20) == 0 => self.operator(),
                // A burst: a client retrying in a loop, a batch job fanning out.
                86 if self.rng.below(10) == 0 => {
                    for _ in 0..100.min(n - made) {
                        if self.pending.len() >= MAX_OUTSTANDING {
                            break;
                        }
                        self.call()?;
                        made += 1;
                    }
                }
                _ => {}
            }
            self.run_woken()?;
            if self.pending_ids.len() > 4 * MAX_OUTSTANDING {
                let pending = &self.pending;
                self.pending_ids.retain(|id| pending.contains_key(id));
            }
            if i % 64 == 0 {
                self.check()?;
            }
        }
        Ok(())
    }

    /// Lifts the limits and drives everything to its end by wake-ups alone.
    fn finish(&mut self) -> Result<(), String> {
        self.limit = None;
        self.layer.with_scheduler(|s| {
            s.set_in_flight_limit(None);
            for t in 0..TENANTS {
                s.unblock(&t);
            }
        });
        let mut idle = 0;
        while !self.pending.is_empty() || !self.open.is_empty() {
            let before = (self.pending.len(), self.open.len());
            self.answer_some(true);
            self.run_woken()?;
            self.read_bodies(true)?;
            self.run_woken()?;
            if (self.pending.len(), self.open.len()) == before {
                idle += 1;
                if idle > 2 {
                    return Err(format!(
                        "{} requests wait for ever with no limit (in flight {}, queued {})",
                        self.pending.len(),
                        self.layer.in_flight(),
                        self.layer.queued()
                    ));
                }
            } else {
                idle = 0;
            }
        }
        if self.layer.in_flight() != 0 || self.layer.queued() != 0 {
            return Err(format!(
                "at the end: {} in flight, {} queued",
                self.layer.in_flight(),
                self.layer.queued()
            ));
        }
        if let Some(id) = self.live.iter().next() {
            return Err(format!("request {id} has no outcome"));
        }
        Ok(())
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.replace('_', "").parse().expect("a number"))
            .unwrap_or(default)
    };
    let requests = arg("--requests", 10_000_000);
    let seed = arg("--seed", 0x9e37_79b9_7f4a_7c15).max(1);
    let mut soak = Soak::new(seed);
    let start = Instant::now();
    let mut done = 0;
    let mut baseline = None;
    let mut max_rss = 0;
    while done < requests {
        let n = ROUND.min(requests - done);
        if let Err(e) = soak.requests(n) {
            eprintln!("soak: broken after {done} requests (seed {seed}): {e}");
            return ExitCode::FAILURE;
        }
        done += n;
        let rss = status_kib("VmRSS:");
        max_rss = max_rss.max(rss);
        let base = *baseline.get_or_insert(rss);
        if rss > base + RSS_GROWTH_BOUND_KIB {
            eprintln!(
                "soak: VmRSS {rss} KiB grew beyond {base} + {RSS_GROWTH_BOUND_KIB} KiB after {done} requests"
            );
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = soak.finish() {
        eprintln!("soak: broken at the end (seed {seed}): {e}");
        return ExitCode::FAILURE;
    }
    let secs = start.elapsed().as_secs_f64();
    let c = &soak.counts;
    let stats = soak.layer.stats();
    println!(
        "soak: {done} requests (seed {seed}) in {secs:.1} s = {:.0} requests/s; each exactly one outcome: \
         {} served ({} bodies dropped half-read), {} inner errors, {} refused (429: {}, 503: {} of which {} evicted, 403: {}, other: {}), \
         {} cancelled; at most {} queued; in flight and queued 0 at the end; VmRSS max {max_rss} KiB (bound: first round {} + \
         {RSS_GROWTH_BOUND_KIB} KiB), VmHWM {} KiB",
        done as f64 / secs,
        c.served,
        c.bodies_dropped,
        c.inner_errors,
        c.refused,
        c.by_status[0],
        c.by_status[1],
        stats.admission.evicted,
        c.by_status[2],
        c.by_status[3],
        c.cancelled,
        soak.max_queued,
        baseline.unwrap_or(0),
        status_kib("VmHWM:")
    );
    ExitCode::SUCCESS
}
