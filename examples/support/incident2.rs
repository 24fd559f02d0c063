//! Incident 2 in simulated time: the scenario, one run per setup, and the printed report.
//!
//! Shared by `examples/signin_reservation.rs` (which prints the report) and `tests/examples.rs`
//! (which asserts its key numbers), so the test checks the very simulation the example shows.
//!
//! The model: a fleet of identical worker slots (say, 40 request handlers in front of the
//! session store). Every request holds one slot for its service time, drawn when the request
//! is generated, so every setup sees exactly the same requests. Each request's tenant is the
//! customer organisation it belongs to (org sizes follow a Zipf law: a few big customers, many
//! small ones), and each request gives up if it has not started within the deadline (its
//! client's timeout), so it is pushed with that deadline. A pool's queue holds at most what its
//! slots can start within the deadline (`slots × deadline ÷ mean service time`); beyond that,
//! newcomers are refused at the door, or evict the oldest request of the organisation furthest
//! over its fair share ([`ShedPolicy::EvictOverShare`]). Every request that is not served is
//! answered with a 503 and a `Retry-After`: the refusal's own `retry_at` where it has one (rate
//! limits), otherwise the time the work queued ahead in its pool needs to drain (queued requests
//! × mean service time ÷ slots), rounded up to whole seconds as HTTP sends it, at least 1 s.
//!
//! Time is plain simulated milliseconds (the schedulers read them through a [`ManualClock`]),
//! events are processed in order, and arrivals come from a fixed-seed generator: every run
//! prints the same numbers.

use std::fmt::Write as _;
use std::num::NonZeroU32;

use super::replay_util::{SplitMix64, group, percentile};

use fairshare::{
    ClassId, ClassSpec, Classes, ManualClock, Nanos, PushOptions, RejectReason, Scheduler,
    SchedulerConfig, Ticket,
    config::{Capacity, ShedPolicy},
};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Signing in: creates a session.
    SignIn,
    /// Everything else: pages and API calls of signed-in users.
    Normal,
}

/// A stretch of the peak with constant arrival rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    /// The phase ends here (ms); it starts where the previous one ended.
    pub(crate) until_ms: u64,
    /// Sign-in requests per second, all organisations together (Poisson arrivals).
    pub(crate) signin_per_s: f64,
    /// Page and API requests per second, all organisations together (Poisson arrivals).
    pub(crate) normal_per_s: f64,
}

/// Everything that shapes the replay. [`Scenario::incident`] is the one the example prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scenario {
    /// Worker slots in the fleet (the global in-flight limit).
    pub(crate) slots: u32,
    /// Customer organisations (the tenants); request shares follow a Zipf law over them.
    pub(crate) orgs: u32,
    pub(crate) phases: [Phase; 4],
    /// A sign-in holds its slot `signin_service_ms ± signin_jitter_ms`, uniformly.
    pub(crate) signin_service_ms: u64,
    pub(crate) signin_jitter_ms: u64,
    /// A page or API request holds its slot `normal_service_ms ± normal_jitter_ms`, uniformly.
    pub(crate) normal_service_ms: u64,
    pub(crate) normal_jitter_ms: u64,
    /// A request not started this long after it arrived is given up (the client's timeout).
    pub(crate) deadline_ms: u64,
    /// The operators' dedicated sign-in pool: slots taken out of the fleet for sign-in only.
    pub(crate) signin_pool: u32,
    /// The same pool, sized like the reservation (the second dedicated-pool run).
    pub(crate) signin_pool_large: u32,
    /// fairshare: the share of the fleet reserved for the sign-in class.
    pub(crate) signin_reserved_percent: u8,
    /// fairshare: the class weights (sign-in, normal) for slots nobody reserved.
    pub(crate) signin_weight: u32,
    pub(crate) normal_weight: u32,
    /// Seed of the arrival generator.
    pub(crate) seed: u64,
}

impl Scenario {
    /// The incident's morning peak: 40 slots; a sign-in wave (everyone signing in at 9:00)
    /// when the fleet still has room overall, then page traffic peaking above capacity.
    pub(crate) const fn incident() -> Self {
        Scenario {
            slots: 40,
            orgs: 50,
            phases: [
                Phase {
                    name: "before the peak",
                    until_ms: 20_000,
                    signin_per_s: 10.0,
                    normal_per_s: 140.0,
                },
                Phase {
                    name: "sign-in wave",
                    until_ms: 60_000,
                    signin_per_s: 50.0,
                    normal_per_s: 150.0,
                },
                Phase {
                    name: "peak",
                    until_ms: 130_000,
                    signin_per_s: 30.0,
                    normal_per_s: 230.0,
                },
                Phase {
                    name: "after the peak",
                    until_ms: 150_000,
                    signin_per_s: 10.0,
                    normal_per_s: 140.0,
                },
            ],
            signin_service_ms: 150,
            signin_jitter_ms: 50,
            normal_service_ms: 200,
            normal_jitter_ms: 100,
            deadline_ms: 2_000,
            signin_pool: 4,
            signin_pool_large: 6,
            signin_reserved_percent: 15,
            signin_weight: 1,
            normal_weight: 9,
            seed: 0x0395_dca5_bc35_1a2a,
        }
    }

    /// The phase the time `ms` falls in.
    pub(crate) fn phase_of(&self, ms: u64) -> usize {
        self.phases
            .iter()
            .position(|p| ms < p.until_ms)
            .unwrap_or(self.phases.len() - 1)
    }

    /// When the phase `i` starts (ms).
    pub(crate) fn phase_start_ms(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.phases[i - 1].until_ms
        }
    }

    /// Slots a phase's arrivals would keep busy on average: (sign-in, normal).
    pub(crate) fn demand_slots(&self, phase: &Phase) -> (f64, f64) {
        (
            phase.signin_per_s * self.signin_service_ms as f64 / 1000.0,
            phase.normal_per_s * self.normal_service_ms as f64 / 1000.0,
        )
    }

    /// Slots reserved for sign-in under the classes setup (rounded down, as the scheduler does).
    pub(crate) fn reserved_slots(&self) -> u32 {
        self.slots * u32::from(self.signin_reserved_percent) / 100
    }

    /// Every request of the scenario, in arrival order.
    pub(crate) fn arrivals(&self) -> Vec<Request> {
        let mut rng = SplitMix64(self.seed);
        // Zipf(1) over the organisations: org `i` sends a share proportional to 1 / (i + 1).
        let mut cdf: Vec<f64> = (1..=self.orgs).map(|i| 1.0 / f64::from(i)).collect();
        let total: f64 = cdf.iter().sum();
        let mut acc = 0.0;
        for c in &mut cdf {
            acc += *c / total;
            *c = acc;
        }
        let mut requests = Vec::new();
        for kind in [Kind::SignIn, Kind::Normal] {
            let (base, jitter) = match kind {
                Kind::SignIn => (self.signin_service_ms, self.signin_jitter_ms),
                Kind::Normal => (self.normal_service_ms, self.normal_jitter_ms),
            };
            for (p, phase) in self.phases.iter().enumerate() {
                let per_s = match kind {
                    Kind::SignIn => phase.signin_per_s,
                    Kind::Normal => phase.normal_per_s,
                };
                let mean_gap_ms = 1000.0 / per_s;
                let mut t = self.phase_start_ms(p) as f64;
                loop {
                    t += -(1.0 - rng.unit()).ln() * mean_gap_ms;
                    let at_ms = t as u64;
                    if at_ms >= phase.until_ms {
                        break;
                    }
                    let u = rng.unit();
                    let org = cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1) as u32;
                    let service_ms = base - jitter + rng.next_u64() % (2 * jitter + 1);
                    requests.push(Request {
                        org,
                        kind,
                        phase: p as u8,
                        at_ms,
                        service_ms,
                    });
                }
            }
        }
        requests.sort_by_key(|r| r.at_ms); // stable: ties keep generation order
        requests
    }
}

/// One request: whose, what for, when it arrived and how long it holds a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) org: u32,
    pub(crate) kind: Kind,
    /// Index of the phase it arrived in.
    pub(crate) phase: u8,
    pub(crate) at_ms: u64,
    pub(crate) service_ms: u64,
}

// ===== the setups =====

/// How the fleet is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// One scheduler for the whole fleet, one class: sign-in waits in its organisation's
    /// queue beside that organisation's page requests.
    Shared,
    /// What the operators did: `signin_slots` of the fleet form a separate pool (its own
    /// scheduler and in-flight limit) that serves sign-in only; the rest serve everything else.
    Dedicated { signin_slots: u32 },
    /// fairshare classes: one scheduler for the whole fleet, a sign-in class with a reserved
    /// share that lends its idle slots, and a normal class.
    Reserved,
}

/// One scheduler and the slots it dispatches to.
struct Pool {
    scheduler: Scheduler<u32, Request, ManualClock>,
    slots: u32,
    /// The mean service time of the pool's traffic, for the Retry-After estimate.
    mean_service_ms: u64,
}

impl Pool {
    /// A pool of `slots` whose queue holds what the slots can start within the deadline.
    fn new(clock: &ManualClock, slots: u32, mean_service_ms: u64, deadline_ms: u64) -> Self {
        let queue_cap = u64::from(slots) * deadline_ms / mean_service_ms;
        let config = SchedulerConfig::new()
            .with_max_in_flight(Some(slots))
            .with_capacity(Capacity::new().with_max_items(queue_cap))
            .with_shed_policy(ShedPolicy::EvictOverShare);
        Pool {
            scheduler: Scheduler::with_clock(config, clock.clone()),
            slots,
            mean_service_ms,
        }
    }

    /// Seconds until the work queued in this pool has drained: queued × mean service ÷
    /// slots, rounded up to whole seconds, at least one.
    fn retry_after_s(&self) -> u64 {
        let queued = self.scheduler.queue().len() as u64;
        let drain_ms = queued * self.mean_service_ms / u64::from(self.slots);
        drain_ms.div_ceil(1000).max(1)
    }
}

/// The pools of one setup, and where each request goes.
struct Fleet {
    setup: Setup,
    clock: ManualClock,
    pools: Vec<Pool>,
    /// The sign-in class (classes setup only).
    signin_class: ClassId,
    normal_class: ClassId,
}

impl Fleet {
    fn new(scenario: &Scenario, setup: Setup) -> Self {
        let clock = ManualClock::new();
        let s = scenario;
        let (pools, signin_class, normal_class) = match setup {
            Setup::Shared => (
                vec![Pool::new(
                    &clock,
                    s.slots,
                    s.normal_service_ms,
                    s.deadline_ms,
                )],
                ClassId::DEFAULT,
                ClassId::DEFAULT,
            ),
            Setup::Dedicated { signin_slots } => (
                vec![
                    Pool::new(&clock, signin_slots, s.signin_service_ms, s.deadline_ms),
                    Pool::new(
                        &clock,
                        s.slots - signin_slots,
                        s.normal_service_ms,
                        s.deadline_ms,
                    ),
                ],
                ClassId::DEFAULT,
                ClassId::DEFAULT,
            ),
            Setup::Reserved => {
                let mut pool = Pool::new(&clock, s.slots, s.normal_service_ms, s.deadline_ms);
                let classes = Classes::new([
                    ClassSpec::new("normal").with_weight(non_zero(s.normal_weight)),
                    ClassSpec::new("signin")
                        .with_weight(non_zero(s.signin_weight))
                        .with_reserved_percent(s.signin_reserved_percent),
                ])
                .expect("the scenario's classes are valid");
                let signin = classes.id("signin").expect("defined above");
                let normal = classes.id("normal").expect("defined above");
                pool.scheduler
                    .set_classes(classes)
                    .expect("nothing is queued yet");
                (vec![pool], signin, normal)
            }
        };
        Fleet {
            setup,
            clock,
            pools,
            signin_class,
            normal_class,
        }
    }

    /// The pool and class a request goes to.
    fn route(&self, kind: Kind) -> (usize, ClassId) {
        match (self.setup, kind) {
            (Setup::Shared, _) => (0, ClassId::DEFAULT),
            (Setup::Dedicated { .. }, Kind::SignIn) => (0, ClassId::DEFAULT),
            (Setup::Dedicated { .. }, Kind::Normal) => (1, ClassId::DEFAULT),
            (Setup::Reserved, Kind::SignIn) => (0, self.signin_class),
            (Setup::Reserved, Kind::Normal) => (0, self.normal_class),
        }
    }

    fn in_flight(&self) -> u64 {
        self.pools
            .iter()
            .map(|p| p.scheduler.queue().total_in_flight())
            .sum()
    }
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("the scenario's weights are non-zero")
}

// ===== the simulation =====

/// What happened to one kind of traffic in one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Traffic {
    /// Requests that arrived.
    pub(crate) submitted: u64,
    /// Waiting time (arrival to start of service) of every served request, sorted, ms.
    pub(crate) waits: Vec<u64>,
    /// Refused at the door (the pool's queue was full and the newcomer was the one to go).
    pub(crate) refused: u64,
    /// Admitted, then evicted to make room for a request of an organisation further below
    /// its fair share.
    pub(crate) evicted: u64,
    /// Admitted, then not started before the deadline.
    pub(crate) expired: u64,
    /// Requests submitted and served, per phase.
    pub(crate) by_phase: [(u64, u64); 4],
}

impl Traffic {
    /// Requests served within the deadline.
    pub(crate) fn served(&self) -> u64 {
        self.waits.len() as u64
    }

    /// Share of requests served within the deadline, in percent.
    pub(crate) fn success_percent(&self) -> f64 {
        percent(self.served(), self.submitted)
    }

    /// Share served within the deadline among requests that arrived in phase `i`, in percent.
    pub(crate) fn phase_success_percent(&self, i: usize) -> f64 {
        let (submitted, served) = self.by_phase[i];
        percent(served, submitted)
    }

    /// Waiting-time percentile `p` (nearest rank) of served requests, ms.
    pub(crate) fn wait_percentile(&self, p: u64) -> u64 {
        percentile(&self.waits, p)
    }

    /// Requests answered with a 503.
    pub(crate) fn shed(&self) -> u64 {
        self.refused + self.evicted + self.expired
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) setup: Setup,
    pub(crate) signin: Traffic,
    pub(crate) normal: Traffic,
    /// `Retry-After` (whole seconds) sent with every 503, sorted.
    pub(crate) retry_after_s: Vec<u64>,
    /// Refusals that carried their own `retry_at` (rate limits); none are configured here.
    pub(crate) with_retry_at: u64,
    /// Most sign-in requests in flight at once.
    pub(crate) signin_max_in_flight: u64,
    /// Most page/API requests in flight at once.
    pub(crate) normal_max_in_flight: u64,
    /// Page/API dispatches made while sign-in requests waited and the sign-in class held
    /// fewer slots than its reservation (classes setup only; the reservation says none).
    pub(crate) reservation_violations: u64,
    /// Stretches during which sign-in requests waited while the sign-in class held fewer
    /// slots than its reservation (it was idle, page/API had borrowed every slot, and then
    /// sign-ins arrived; classes setup only): the longest one, ms...
    pub(crate) below_reservation_longest_ms: u64,
    /// ...and the most page/API completions within one of them (each freed slot goes to
    /// sign-in, so this is at most the reservation).
    pub(crate) below_reservation_most_completions: u64,
    /// Per phase: slot-milliseconds left idle anywhere in the fleet while sign-in requests
    /// were waiting...
    pub(crate) idle_slot_ms_while_signin_waited: [u64; 4],
    /// ...and milliseconds during which sign-in requests were waiting.
    pub(crate) signin_waiting_ms: [u64; 4],
}

impl Outcome {
    fn new(setup: Setup) -> Self {
        Outcome {
            setup,
            signin: Traffic::default(),
            normal: Traffic::default(),
            retry_after_s: Vec::new(),
            with_retry_at: 0,
            signin_max_in_flight: 0,
            normal_max_in_flight: 0,
            reservation_violations: 0,
            below_reservation_longest_ms: 0,
            below_reservation_most_completions: 0,
            idle_slot_ms_while_signin_waited: [0; 4],
            signin_waiting_ms: [0; 4],
        }
    }

    fn traffic(&mut self, kind: Kind) -> &mut Traffic {
        match kind {
            Kind::SignIn => &mut self.signin,
            Kind::Normal => &mut self.normal,
        }
    }

    /// How many 503s carried each `Retry-After`: (seconds, count), ascending.
    pub(crate) fn retry_after_histogram(&self) -> Vec<(u64, u64)> {
        let mut h: Vec<(u64, u64)> = Vec::new();
        for &s in &self.retry_after_s {
            match h.last_mut() {
                Some((v, n)) if *v == s => *n += 1,
                _ => h.push((s, 1)),
            }
        }
        h
    }

    /// Average idle slots while sign-in requests were waiting during phase `i`.
    pub(crate) fn idle_slots_while_signin_waited(&self, i: usize) -> f64 {
        if self.signin_waiting_ms[i] == 0 {
            0.0
        } else {
            self.idle_slot_ms_while_signin_waited[i] as f64 / self.signin_waiting_ms[i] as f64
        }
    }
}

/// A request holding a slot.
struct Running {
    until_ms: u64,
    pool: usize,
    kind: Kind,
    ticket: Ticket,
}

/// Replays `requests` through the fleet of `setup`, event by event, until every request is
/// served or answered with a 503.
pub(crate) fn run(scenario: &Scenario, setup: Setup, requests: &[Request]) -> Outcome {
    let mut fleet = Fleet::new(scenario, setup);
    let mut out = Outcome::new(setup);
    let reserved = u64::from(scenario.reserved_slots());
    let slots = u64::from(scenario.slots);
    let mut running: Vec<Running> = Vec::with_capacity(scenario.slots as usize);
    let mut in_flight = [0u64; 2]; // by kind: sign-in, normal
    let mut signin_queued = 0u64;
    let mut next = 0;
    let mut now = 0u64;
    // For the idle-capacity integral: the state after the previous event.
    let (mut last_ms, mut last_waiting, mut last_idle) = (0u64, false, 0u64);
    // The current stretch of sign-in waiting below its reservation: (start, completions).
    let mut below: Option<(u64, u64)> = None;
    loop {
        fleet.clock.set(Nanos::from_millis(now));
        if last_waiting {
            let phase = scenario.phase_of(last_ms);
            out.signin_waiting_ms[phase] += now - last_ms;
            out.idle_slot_ms_while_signin_waited[phase] += last_idle * (now - last_ms);
        }
        // Completions due now free their slots.
        let mut i = 0;
        while i < running.len() {
            if running[i].until_ms <= now {
                let r = running.swap_remove(i);
                in_flight[r.kind as usize] -= 1;
                if let (Some((_, n)), Kind::Normal) = (&mut below, r.kind) {
                    *n += 1;
                }
                let done = fleet.pools[r.pool].scheduler.complete(r.ticket, 1);
                assert!(done, "every ticket completes exactly once");
            } else {
                i += 1;
            }
        }
        // Arrivals due now.
        while let Some(&req) = requests.get(next).filter(|r| r.at_ms <= now) {
            next += 1;
            let t = out.traffic(req.kind);
            t.submitted += 1;
            t.by_phase[usize::from(req.phase)].0 += 1;
            let (p, class) = fleet.route(req.kind);
            let opts = PushOptions::new()
                .with_class(class)
                .with_deadline(Nanos::from_millis(req.at_ms + scenario.deadline_ms));
            let evicted_before = fleet.pools[p].scheduler.counters().evicted;
            match fleet.pools[p].scheduler.try_push_with(req.org, req, opts) {
                Ok(()) => {
                    if req.kind == Kind::SignIn {
                        signin_queued += 1;
                    }
                    // Requests evicted to make room come back through `take_returned` (with
                    // any that expired meanwhile): each is answered with a 503 at once.
                    if fleet.pools[p].scheduler.counters().evicted > evicted_before {
                        for returned in fleet.pools[p].scheduler.take_returned() {
                            let (victim, reason) = returned.into_parts();
                            if victim.kind == Kind::SignIn {
                                signin_queued -= 1;
                            }
                            shed(&mut out, &fleet.pools[p], victim, reason, now);
                        }
                    }
                }
                Err(rejected) => {
                    let (req, reason) = rejected.into_parts();
                    shed(&mut out, &fleet.pools[p], req, reason, now);
                }
            }
        }
        // Every free slot takes the next request its scheduler picks.
        for p in 0..fleet.pools.len() {
            while let Some(d) = fleet.pools[p].scheduler.dispatch() {
                let req = d.item;
                if setup == Setup::Reserved && req.kind == Kind::Normal {
                    let q = fleet.pools[p].scheduler.queue();
                    let signin = fleet.signin_class;
                    // A free slot went to page/API while sign-in requests waited below the
                    // reservation: the reservation was not honoured.
                    if q.class_len(signin) > 0 && u64::from(q.class_in_flight(signin)) < reserved {
                        out.reservation_violations += 1;
                    }
                }
                let wait = now - req.at_ms;
                let t = out.traffic(req.kind);
                t.waits.push(wait);
                t.by_phase[usize::from(req.phase)].1 += 1;
                if req.kind == Kind::SignIn {
                    signin_queued -= 1;
                }
                in_flight[req.kind as usize] += 1;
                running.push(Running {
                    until_ms: now + req.service_ms,
                    pool: p,
                    kind: req.kind,
                    ticket: d.ticket,
                });
            }
            for expired in fleet.pools[p].scheduler.take_returned() {
                let (req, reason) = expired.into_parts();
                if req.kind == Kind::SignIn {
                    signin_queued -= 1;
                }
                shed(&mut out, &fleet.pools[p], req, reason, now);
            }
        }
        out.signin_max_in_flight = out.signin_max_in_flight.max(in_flight[0]);
        out.normal_max_in_flight = out.normal_max_in_flight.max(in_flight[1]);
        if setup == Setup::Reserved {
            let q = fleet.pools[0].scheduler.queue();
            let held = u64::from(q.class_in_flight(fleet.signin_class));
            debug_assert_eq!(held, in_flight[0]);
            if signin_queued > 0 && held < reserved {
                below.get_or_insert((now, 0));
            } else if let Some((start, completions)) = below.take() {
                out.below_reservation_longest_ms =
                    out.below_reservation_longest_ms.max(now - start);
                out.below_reservation_most_completions =
                    out.below_reservation_most_completions.max(completions);
            }
        }
        debug_assert_eq!(fleet.in_flight(), in_flight[0] + in_flight[1]);
        (last_ms, last_waiting, last_idle) = (now, signin_queued > 0, slots - fleet.in_flight());

        // Jump to the next event: an arrival or a completion. (Queued requests past their
        // deadline are found by the next event's dispatch; events are milliseconds apart.)
        let next_done = running.iter().map(|r| r.until_ms).min();
        now = match [requests.get(next).map(|r| r.at_ms), next_done]
            .into_iter()
            .flatten()
            .min()
        {
            Some(t) => t.max(now),
            None => break,
        };
    }
    // Whatever is still queued has outlived its deadline by now.
    let last_deadline = requests
        .last()
        .map_or(0, |r| r.at_ms + scenario.deadline_ms);
    fleet.clock.set(Nanos::from_millis(last_deadline.max(now)));
    for p in 0..fleet.pools.len() {
        for expired in fleet.pools[p].scheduler.take_returned() {
            let (req, reason) = expired.into_parts();
            shed(&mut out, &fleet.pools[p], req, reason, now);
        }
        assert!(fleet.pools[p].scheduler.queue().is_empty());
    }
    for t in [&mut out.signin, &mut out.normal] {
        t.waits.sort_unstable();
    }
    out.retry_after_s.sort_unstable();
    out
}

/// A request answered with a 503: counts it by reason and records its `Retry-After`.
fn shed(out: &mut Outcome, pool: &Pool, req: Request, reason: RejectReason, now_ms: u64) {
    let retry_after_s = match reason.retry_at() {
        Some(at) => {
            out.with_retry_at += 1;
            (at.as_u64().div_ceil(1_000_000).saturating_sub(now_ms))
                .div_ceil(1000)
                .max(1)
        }
        None => pool.retry_after_s(),
    };
    out.retry_after_s.push(retry_after_s);
    let t = out.traffic(req.kind);
    match reason {
        RejectReason::CapacityFull { .. } => t.refused += 1,
        RejectReason::Evicted => t.evicted += 1,
        RejectReason::DeadlineExpired { .. } => t.expired += 1,
        other => panic!("unexpected refusal in the replay: {other}"),
    }
}

// ===== the whole replay and its report =====

/// Every run of the replay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replay {
    pub(crate) scenario: Scenario,
    /// No isolation: one scheduler, one class.
    pub(crate) shared: Outcome,
    /// The operators' fix: a dedicated sign-in pool of `signin_pool` slots.
    pub(crate) dedicated: Outcome,
    /// The same fix with a pool as large as the reservation.
    pub(crate) dedicated_large: Outcome,
    /// fairshare: a reserved sign-in class that lends its idle slots.
    pub(crate) reserved: Outcome,
}

/// Runs every setup on `scenario`.
pub(crate) fn replay(scenario: Scenario) -> Replay {
    let requests = scenario.arrivals();
    Replay {
        scenario,
        shared: run(&scenario, Setup::Shared, &requests),
        dedicated: run(
            &scenario,
            Setup::Dedicated {
                signin_slots: scenario.signin_pool,
            },
            &requests,
        ),
        dedicated_large: run(
            &scenario,
            Setup::Dedicated {
                signin_slots: scenario.signin_pool_large,
            },
            &requests,
        ),
        reserved: run(&scenario, Setup::Reserved, &requests),
    }
}

impl Replay {
    /// Every run, with the name the report gives it.
    pub(crate) fn runs(&self) -> [(String, &Outcome); 4] {
        let s = &self.scenario;
        [
            (
                "(a) one shared fleet, no isolation".to_string(),
                &self.shared,
            ),
            (
                format!(
                    "(b) dedicated sign-in pool, {} of {}",
                    s.signin_pool, s.slots
                ),
                &self.dedicated,
            ),
            (
                format!(
                    "(b') dedicated sign-in pool, {} of {}",
                    s.signin_pool_large, s.slots
                ),
                &self.dedicated_large,
            ),
            (
                format!(
                    "(c) fairshare: sign-in {}% reserved",
                    s.signin_reserved_percent
                ),
                &self.reserved,
            ),
        ]
    }

    /// The tables and the notes, as the example prints them.
    pub(crate) fn report(&self) -> String {
        let s = &self.scenario;
        let runs = self.runs();
        let mut r = String::new();
        let _ = writeln!(
            r,
            "Incident 2 replay: a fleet of {} worker slots at the morning peak. {} customer orgs send",
            s.slots, s.orgs
        );
        let _ = writeln!(
            r,
            "sign-ins ({}±{} ms a request) and page/API requests ({}±{} ms); a request not started",
            s.signin_service_ms, s.signin_jitter_ms, s.normal_service_ms, s.normal_jitter_ms
        );
        let _ = writeln!(
            r,
            "within {} is given up (the client's timeout) and counts as failed.\n",
            fmt_ms(s.deadline_ms)
        );
        let _ = writeln!(
            r,
            "{:<18} {:>11} {:>10} {:>9} {:>22}",
            "phase", "time", "sign-in/s", "normal/s", "demand (busy slots)"
        );
        for (i, phase) in s.phases.iter().enumerate() {
            let (a, b) = s.demand_slots(phase);
            let _ = writeln!(
                r,
                "{:<18} {:>11} {:>10} {:>9} {:>22}",
                phase.name,
                format!(
                    "{}-{}",
                    clock_time(s.phase_start_ms(i)),
                    clock_time(phase.until_ms)
                ),
                phase.signin_per_s,
                phase.normal_per_s,
                format!("{a:.1} + {b:.1} of {}", s.slots),
            );
        }

        let _ = writeln!(
            r,
            "\n{:<40} {:^26}  {:^26}",
            "",
            format!("sign-in ({})", group(self.shared.signin.submitted)),
            format!("page/API ({})", group(self.shared.normal.submitted)),
        );
        let _ = writeln!(
            r,
            "{:<40} {:>8} {:>8} {:>8}  {:>8} {:>8} {:>8}",
            "setup", "served", "p50 wait", "p99 wait", "served", "p50 wait", "p99 wait"
        );
        for (name, o) in &runs {
            let _ = writeln!(
                r,
                "{:<40} {:>8} {:>8} {:>8}  {:>8} {:>8} {:>8}",
                name,
                fmt_percent(o.signin.success_percent()),
                fmt_ms(o.signin.wait_percentile(50)),
                fmt_ms(o.signin.wait_percentile(99)),
                fmt_percent(o.normal.success_percent()),
                fmt_ms(o.normal.wait_percentile(50)),
                fmt_ms(o.normal.wait_percentile(99)),
            );
        }

        let _ = writeln!(
            r,
            "\nSign-ins served within {}, by phase:",
            fmt_ms(s.deadline_ms)
        );
        let mut header = format!("{:<40}", "setup");
        for phase in &s.phases {
            let _ = write!(header, " {:>15}", phase.name);
        }
        let _ = writeln!(r, "{header}");
        for (name, o) in &runs {
            let mut row = format!("{name:<40}");
            for i in 0..s.phases.len() {
                let _ = write!(
                    row,
                    " {:>15}",
                    fmt_percent(o.signin.phase_success_percent(i))
                );
            }
            let _ = writeln!(r, "{row}");
        }

        let _ = writeln!(
            r,
            "\nShed: answered 503 with a Retry-After (sign-in / page-API):"
        );
        let _ = writeln!(
            r,
            "{:<40} {:>15} {:>13} {:>13} {:>15}  Retry-After sent",
            "setup", "503s", "refused", "evicted", "timed out"
        );
        for (name, o) in &runs {
            let pair = |a: u64, b: u64| format!("{} / {}", group(a), group(b));
            let hist: Vec<String> = o
                .retry_after_histogram()
                .iter()
                .map(|(secs, n)| format!("{secs} s x {}", group(*n)))
                .collect();
            let _ = writeln!(
                r,
                "{:<40} {:>15} {:>13} {:>13} {:>15}  {}",
                name,
                pair(o.signin.shed(), o.normal.shed()),
                pair(o.signin.refused, o.normal.refused),
                pair(o.signin.evicted, o.normal.evicted),
                pair(o.signin.expired, o.normal.expired),
                if hist.is_empty() {
                    "-".to_string()
                } else {
                    hist.join(", ")
                },
            );
        }
        let _ = writeln!(
            r,
            "Refused: the pool's queue was full (it holds what its slots can start within {}) and the",
            fmt_ms(s.deadline_ms)
        );
        let _ = writeln!(
            r,
            "newcomer's org was the one furthest over its fair share; evicted: made room for an org further"
        );
        let _ = writeln!(
            r,
            "below its share; timed out: not started within {}. Retry-After = the time the work queued",
            fmt_ms(s.deadline_ms)
        );
        let _ = writeln!(
            r,
            "ahead in the pool needs to drain (queued x mean service time / slots), rounded up to whole"
        );
        let _ = writeln!(
            r,
            "seconds; a refusal with its own retry_at (a rate limit) would send that instead."
        );

        let (b, c) = (&self.dedicated, &self.reserved);
        let wave = 1; // the sign-in wave
        let wave_ms = s.phases[wave].until_ms - s.phase_start_ms(wave);
        let _ = writeln!(
            r,
            "\nDedicated pool: during the sign-in wave, sign-ins were queued {} of the time while on",
            fmt_percent(percent(b.signin_waiting_ms[wave], wave_ms))
        );
        let _ = writeln!(
            r,
            "average {:.1} of the other pool's {} slots stood idle: isolation without borrowing starves sign-in.",
            b.idle_slots_while_signin_waited(wave),
            s.slots - s.signin_pool
        );
        let _ = writeln!(
            r,
            "Reservation ({} of {} slots; weights {}:{} for sign-in:page/API): sign-in held up to {} slots at",
            s.reserved_slots(),
            s.slots,
            s.signin_weight,
            s.normal_weight,
            c.signin_max_in_flight
        );
        let _ = writeln!(
            r,
            "once (borrowing slots page/API left idle), page/API up to {} (borrowing sign-in's idle",
            c.normal_max_in_flight
        );
        let _ = writeln!(
            r,
            "reservation). Sign-ins waiting below the reservation got every freed slot ({} went to page/API);",
            c.reservation_violations
        );
        let _ = writeln!(
            r,
            "the longest such stretch lasted {} ({} page/API completions; the bound is {}).",
            fmt_ms(c.below_reservation_longest_ms),
            c.below_reservation_most_completions,
            s.reserved_slots()
        );
        let lost = b.normal.served().saturating_sub(c.normal.served());
        let gained = c.signin.served().saturating_sub(b.signin.served());
        let _ = writeln!(
            r,
            "Against the dedicated pool, the reservation served {} more sign-ins and {} fewer page/API",
            group(gained),
            group(lost)
        );
        let _ = writeln!(
            r,
            "requests: at the peak sign-in needs {:.1} slots, more than the pool's {}; the rest came from idle slots.",
            s.demand_slots(&s.phases[2]).0,
            s.signin_pool
        );
        // Centred headers leave trailing spaces; the printed report has none.
        r.lines().map(|l| l.trim_end().to_string() + "\n").collect()
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn fmt_percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// `m:ss` of a simulated time.
fn clock_time(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// A duration in the most readable unit.
fn fmt_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        _ => format!("{:.1} min", ms as f64 / 6e4),
    }
}
