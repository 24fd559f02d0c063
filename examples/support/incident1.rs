//! Incident 1 in simulated time: the scenario, one run per queue policy, and the printed report.
//!
//! Shared by `examples/noisy_neighbor.rs` (which prints the report) and `tests/examples.rs`
//! (which asserts its key numbers), so the test checks the very simulation the example shows.
//!
//! The model: a pool of identical workers takes the next job from the host's queue whenever one
//! is free; each job occupies its worker for a service time drawn when the job is generated, so
//! every policy sees exactly the same jobs. Time is plain simulated milliseconds (the
//! [`Scheduler`] reads them through a [`ManualClock`]), events are processed in order, and the
//! arrivals come from a fixed-seed generator: every run prints the same numbers.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::num::NonZeroU32;

use super::replay_util::{SplitMix64, group, percentile};

use fairshare::{
    BlockReason, FairQueue, ManualClock, Nanos, RejectReason, Scheduler, SchedulerConfig,
    config::{Quota, TenantLimits},
};

/// The tenant that floods the queue; normal tenants are `1..=normal_tenants`.
pub(crate) const FLOOD: u32 = 0;

const MS_PER_MIN: u64 = 60_000;

/// Everything that shapes the replay. [`Scenario::incident`] is the one the example prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scenario {
    /// Normal tenants, each submitting a small share of the steady load.
    pub(crate) normal_tenants: u32,
    /// Jobs per second from all normal tenants together (Poisson arrivals).
    pub(crate) normal_per_s: f64,
    /// Workers in the pool.
    pub(crate) workers: usize,
    /// How long a job occupies a worker, in ms: `service_ms ± service_jitter_ms`, uniformly
    /// (so the workers do not finish in lockstep).
    pub(crate) service_ms: u64,
    pub(crate) service_jitter_ms: u64,
    /// Jobs the flooding tenant submits...
    pub(crate) flood_jobs: u64,
    /// ...starting at this time (ms)...
    pub(crate) flood_start_ms: u64,
    /// ...evenly spread over this long (ms).
    pub(crate) flood_span_ms: u64,
    /// When operators block the flooding tenant and purge its queued jobs (block & purge run).
    pub(crate) operators_act_ms: u64,
    /// The per-tenant rate limit of the rate-limit run: jobs per second...
    pub(crate) quota_per_s: u32,
    /// ...and the burst a tenant may save up.
    pub(crate) quota_burst: u32,
    /// Normal tenants submit until this time (ms); the run then drains the queue.
    pub(crate) horizon_ms: u64,
    /// Width of one row of the waiting-time chart (ms of submission time).
    pub(crate) chart_bucket_ms: u64,
    /// Seed of the arrival generator.
    pub(crate) seed: u64,
}

impl Scenario {
    /// The incident at full scale: 300 normal tenants at 15 jobs/s on a pool with room for 25
    /// jobs/s (5 workers, 200 ± 100 ms a job); at 0:10 one tenant submits 140,000 jobs within
    /// 10 minutes. Normal load continues for five hours, about as long as the real incident.
    pub(crate) const fn incident() -> Self {
        Scenario {
            normal_tenants: 300,
            normal_per_s: 15.0,
            workers: 5,
            service_ms: 200,
            service_jitter_ms: 100,
            flood_jobs: 140_000,
            flood_start_ms: 10 * MS_PER_MIN,
            flood_span_ms: 10 * MS_PER_MIN,
            operators_act_ms: 15 * MS_PER_MIN,
            quota_per_s: 1,
            quota_burst: 100,
            horizon_ms: 300 * MS_PER_MIN,
            chart_bucket_ms: 15 * MS_PER_MIN,
            seed: 0x1115_9316_6625_1bba,
        }
    }

    /// Jobs per second the worker pool can serve.
    pub(crate) fn capacity_per_s(&self) -> f64 {
        self.workers as f64 * 1000.0 / self.service_ms as f64
    }

    /// Every job of the scenario in submission order; without the flood if `flood` is false
    /// (the normal tenants' jobs are the same either way).
    pub(crate) fn arrivals(&self, flood: bool) -> Vec<Job> {
        let mut rng = SplitMix64(self.seed);
        let service_ms = |rng: &mut SplitMix64| {
            let spread = 2 * self.service_jitter_ms + 1;
            self.service_ms - self.service_jitter_ms + rng.next_u64() % spread
        };
        let mut jobs = Vec::new();
        // Poisson arrivals: exponential gaps between the normal tenants' jobs.
        let mean_gap_ms = 1000.0 / self.normal_per_s;
        let mut t = 0.0f64;
        loop {
            t += -(1.0 - rng.unit()).ln() * mean_gap_ms;
            let at_ms = t as u64;
            if at_ms >= self.horizon_ms {
                break;
            }
            let tenant = 1 + (rng.next_u64() % u64::from(self.normal_tenants)) as u32;
            let service_ms = service_ms(&mut rng);
            jobs.push(Job {
                tenant,
                at_ms,
                service_ms,
            });
        }
        if flood {
            for i in 0..self.flood_jobs {
                jobs.push(Job {
                    tenant: FLOOD,
                    at_ms: self.flood_start_ms + i * self.flood_span_ms / self.flood_jobs,
                    service_ms: service_ms(&mut rng),
                });
            }
        }
        jobs.sort_by_key(|j| j.at_ms); // stable: ties keep generation order
        jobs
    }
}

/// One job: who submitted it, when, and how long it will occupy a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) tenant: u32,
    pub(crate) at_ms: u64,
    pub(crate) service_ms: u64,
}

// ===== the queue policies =====

/// What the host puts between its producers and its worker pool.
trait Host {
    /// A job arrives at `now_ms`: queue it, or refuse it and hand it back with the reason.
    fn submit(&mut self, job: Job, now_ms: u64) -> Result<(), (Job, RejectReason)>;
    /// The next job for a free worker.
    fn next(&mut self, now_ms: u64) -> Option<Job>;
    fn is_empty(&self) -> bool;
    /// When the operators act next, if they have something planned.
    fn next_action_ms(&self) -> Option<u64> {
        None
    }
    /// The operators' action, due at `now_ms`; returns the jobs it took out of the queue.
    fn act(&mut self, _now_ms: u64) -> Vec<Job> {
        Vec::new()
    }
}

/// The incident's setup: one FIFO shared by every tenant.
struct Fifo(VecDeque<Job>);

impl Host for Fifo {
    fn submit(&mut self, job: Job, _now_ms: u64) -> Result<(), (Job, RejectReason)> {
        self.0.push_back(job);
        Ok(())
    }
    fn next(&mut self, _now_ms: u64) -> Option<Job> {
        self.0.pop_front()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// fairshare's core queue: per-tenant FIFOs served by weighted deficit round robin. With
/// `operators_act_ms` set, operators block the flooding tenant then and purge its queue.
struct Fair {
    queue: FairQueue<u32, Job>,
    operators_act_ms: Option<u64>,
}

impl Host for Fair {
    fn submit(&mut self, job: Job, _now_ms: u64) -> Result<(), (Job, RejectReason)> {
        self.queue
            .try_push(job.tenant, job)
            .map_err(|rejected| rejected.into_parts())
    }
    fn next(&mut self, _now_ms: u64) -> Option<Job> {
        self.queue.pop()
    }
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    fn next_action_ms(&self) -> Option<u64> {
        self.operators_act_ms
    }
    fn act(&mut self, _now_ms: u64) -> Vec<Job> {
        self.operators_act_ms = None;
        self.queue.block(FLOOD, BlockReason::Abuse);
        self.queue.purge(&FLOOD)
    }
}

/// fairshare's admission pipeline in front of the fair queue: every tenant gets the same rate
/// quota, so the flood is refused at the door with a retry time.
struct Admission {
    scheduler: Scheduler<u32, Job, ManualClock>,
    clock: ManualClock,
}

impl Admission {
    fn new(scenario: &Scenario) -> Self {
        let quota = Quota::per_second(non_zero(scenario.quota_per_s))
            .allow_burst(non_zero(scenario.quota_burst));
        let config =
            SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_quota(quota));
        let clock = ManualClock::new();
        Admission {
            scheduler: Scheduler::with_clock(config, clock.clone()),
            clock,
        }
    }
}

impl Host for Admission {
    fn submit(&mut self, job: Job, now_ms: u64) -> Result<(), (Job, RejectReason)> {
        self.clock.set(Nanos::from_millis(now_ms));
        match self.scheduler.try_push(job.tenant, job) {
            // No global capacity is configured, so nothing is ever evicted to make room.
            Ok(()) => {
                assert_eq!(self.scheduler.counters().evicted, 0);
                Ok(())
            }
            Err(rejected) => Err(rejected.into_parts()),
        }
    }
    fn next(&mut self, now_ms: u64) -> Option<Job> {
        self.clock.set(Nanos::from_millis(now_ms));
        self.scheduler.pop()
    }
    fn is_empty(&self) -> bool {
        self.scheduler.queue().is_empty()
    }
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("the scenario's quota values are non-zero")
}

// ===== the simulation =====

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    /// Waiting time (submission to start of service) of every served normal job, sorted, ms.
    pub(crate) normal_waits: Vec<u64>,
    /// Normal jobs submitted, and how many of them were refused.
    pub(crate) normal_jobs: u64,
    pub(crate) normal_refused: u64,
    /// Flood jobs submitted, and where each one ended up.
    pub(crate) flood_jobs: u64,
    pub(crate) flood_served: u64,
    pub(crate) flood_purged: u64,
    pub(crate) flood_refused: u64,
    /// Flood refusals by reason.
    pub(crate) flood_rate_limited: u64,
    pub(crate) flood_blocked: u64,
    /// `retry_at - now` of every `RateLimited` refusal, sorted, ms.
    pub(crate) retry_after_ms: Vec<u64>,
    /// When the last flood job finished, ms.
    pub(crate) flood_done_ms: Option<u64>,
    /// Worst wait of a normal job, by submission time (one entry per chart bucket), ms.
    pub(crate) worst_wait_by_bucket: Vec<u64>,
}

impl Outcome {
    /// The normal tenants' waiting-time percentile `p` (nearest rank), ms.
    pub(crate) fn normal_wait_percentile(&self, p: u64) -> u64 {
        percentile(&self.normal_waits, p)
    }

    /// The normal tenants' longest wait, ms.
    pub(crate) fn normal_wait_max(&self) -> u64 {
        self.normal_waits.last().copied().unwrap_or(0)
    }
}

/// The worker pool and the measurements of one run.
struct Sim {
    chart_bucket_ms: u64,
    /// Worker `w` is busy until `busy_until[w]`.
    busy_until: Vec<u64>,
    out: Outcome,
}

impl Sim {
    fn new(scenario: &Scenario) -> Self {
        let buckets = scenario.horizon_ms.div_ceil(scenario.chart_bucket_ms) as usize;
        Sim {
            chart_bucket_ms: scenario.chart_bucket_ms,
            busy_until: vec![0; scenario.workers],
            out: Outcome {
                worst_wait_by_bucket: vec![0; buckets],
                ..Outcome::default()
            },
        }
    }

    /// Replays `jobs` through `host`, event by event, until every job is served or handed back.
    fn run(mut self, mut host: impl Host, jobs: &[Job]) -> Outcome {
        let mut next = 0;
        let mut now = 0;
        loop {
            while let Some(&job) = jobs.get(next).filter(|j| j.at_ms <= now) {
                next += 1;
                self.submitted(job);
                if let Err((job, reason)) = host.submit(job, now) {
                    self.refused(job, reason, now);
                }
            }
            if host.next_action_ms().is_some_and(|at| at <= now) {
                for job in host.act(now) {
                    assert_eq!(job.tenant, FLOOD, "operators purge only the flood");
                    self.out.flood_purged += 1;
                }
            }
            for w in 0..self.busy_until.len() {
                if self.busy_until[w] > now {
                    continue;
                }
                let Some(job) = host.next(now) else { break };
                self.busy_until[w] = now + job.service_ms;
                self.served(job, now);
            }
            // Jump to the next event: an arrival, an operator action, or a worker freeing up
            // while work is waiting.
            let busy_worker_free = self.busy_until.iter().copied().filter(|&t| t > now).min();
            now = [
                jobs.get(next).map(|j| j.at_ms),
                host.next_action_ms(),
                busy_worker_free.filter(|_| !host.is_empty()),
            ]
            .into_iter()
            .flatten()
            .min()
            .map_or(u64::MAX, |t| t.max(now));
            if now == u64::MAX {
                break;
            }
        }
        self.out.normal_waits.sort_unstable();
        self.out.retry_after_ms.sort_unstable();
        self.out
    }

    fn submitted(&mut self, job: Job) {
        if job.tenant == FLOOD {
            self.out.flood_jobs += 1;
        } else {
            self.out.normal_jobs += 1;
        }
    }

    fn served(&mut self, job: Job, now: u64) {
        if job.tenant == FLOOD {
            self.out.flood_served += 1;
            let done = now + job.service_ms;
            self.out.flood_done_ms = Some(self.out.flood_done_ms.map_or(done, |d| d.max(done)));
            return;
        }
        let wait = now - job.at_ms;
        self.out.normal_waits.push(wait);
        let bucket = (job.at_ms / self.chart_bucket_ms) as usize;
        let worst = &mut self.out.worst_wait_by_bucket[bucket];
        *worst = (*worst).max(wait);
    }

    /// A refused job is back in the host's hands: count it by reason.
    fn refused(&mut self, job: Job, reason: RejectReason, now: u64) {
        if job.tenant != FLOOD {
            self.out.normal_refused += 1;
            return;
        }
        self.out.flood_refused += 1;
        match reason {
            RejectReason::RateLimited { retry_at } => {
                self.out.flood_rate_limited += 1;
                let retry_ms = retry_at.as_u64().div_ceil(1_000_000);
                self.out.retry_after_ms.push(retry_ms.saturating_sub(now));
            }
            RejectReason::Blocked { .. } => self.out.flood_blocked += 1,
            other => panic!("unexpected refusal in the replay: {other}"),
        }
    }
}

// ===== one function per policy =====

/// The normal tenants alone, on the shared FIFO: the waits before the incident.
pub(crate) fn no_flood(scenario: &Scenario) -> Outcome {
    Sim::new(scenario).run(Fifo(VecDeque::new()), &scenario.arrivals(false))
}

/// The normal tenants alone, on fairshare's queue.
pub(crate) fn no_flood_fair(scenario: &Scenario) -> Outcome {
    let host = Fair {
        queue: FairQueue::new(),
        operators_act_ms: None,
    };
    Sim::new(scenario).run(host, &scenario.arrivals(false))
}

/// The incident as it happened: one FIFO shared by every tenant.
pub(crate) fn shared_fifo(scenario: &Scenario) -> Outcome {
    Sim::new(scenario).run(Fifo(VecDeque::new()), &scenario.arrivals(true))
}

/// fairshare's `FairQueue`, nothing else: the flood is queued, but only gets its fair turn.
pub(crate) fn fair_queue(scenario: &Scenario) -> Outcome {
    let host = Fair {
        queue: FairQueue::new(),
        operators_act_ms: None,
    };
    Sim::new(scenario).run(host, &scenario.arrivals(true))
}

/// fairshare's `Scheduler` with a per-tenant rate quota: the flood is refused at the door.
pub(crate) fn rate_limited(scenario: &Scenario) -> Outcome {
    Sim::new(scenario).run(Admission::new(scenario), &scenario.arrivals(true))
}

/// fairshare's `FairQueue`, and operators block the tenant and purge its queued jobs.
pub(crate) fn block_and_purge(scenario: &Scenario) -> Outcome {
    let host = Fair {
        queue: FairQueue::new(),
        operators_act_ms: Some(scenario.operators_act_ms),
    };
    Sim::new(scenario).run(host, &scenario.arrivals(true))
}

// ===== the whole replay and its report =====

/// Every run of the replay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replay {
    pub(crate) scenario: Scenario,
    pub(crate) no_flood: Outcome,
    pub(crate) no_flood_fair: Outcome,
    pub(crate) shared_fifo: Outcome,
    pub(crate) fair_queue: Outcome,
    pub(crate) rate_limited: Outcome,
    pub(crate) block_and_purge: Outcome,
}

/// Runs every policy on `scenario`.
pub(crate) fn replay(scenario: Scenario) -> Replay {
    Replay {
        scenario,
        no_flood: no_flood(&scenario),
        no_flood_fair: no_flood_fair(&scenario),
        shared_fifo: shared_fifo(&scenario),
        fair_queue: fair_queue(&scenario),
        rate_limited: rate_limited(&scenario),
        block_and_purge: block_and_purge(&scenario),
    }
}

impl Replay {
    /// The table, the notes and the chart, as the example prints them.
    pub(crate) fn report(&self) -> String {
        let s = &self.scenario;
        let mut r = String::new();
        let _ = writeln!(
            r,
            "Incident 1 replay: {} normal tenants submit ~{} jobs/s to a pool with room for {} jobs/s",
            s.normal_tenants,
            s.normal_per_s,
            s.capacity_per_s()
        );
        let _ = writeln!(
            r,
            "({} workers, {}±{} ms a job). At {} one tenant submits {} jobs within {} min.\n",
            s.workers,
            s.service_ms,
            s.service_jitter_ms,
            clock_time(s.flood_start_ms),
            group(s.flood_jobs),
            s.flood_span_ms / MS_PER_MIN
        );
        let _ = writeln!(
            r,
            "{:<36} {:^26} {:^41}",
            "", "other tenants' wait", "flooding tenant's jobs"
        );
        let _ = writeln!(
            r,
            "{:<36} {:>8} {:>8} {:>8} {:>12} {:>10} {:>8} {:>8}",
            "policy", "p50", "p99", "max", "served", "done at", "purged", "refused"
        );
        self.row(&mut r, "no flood (reference)", &self.no_flood, false);
        let fifo_row = "shared FIFO (the incident)";
        self.row(&mut r, fifo_row, &self.shared_fifo, true);
        self.row(&mut r, "fairshare FairQueue", &self.fair_queue, true);
        let rate = format!("fairshare Scheduler, {}/s rate limit", s.quota_per_s);
        self.row(&mut r, &rate, &self.rate_limited, true);
        let ops = format!(
            "fairshare + block & purge at {}",
            clock_time(s.operators_act_ms)
        );
        self.row(&mut r, &ops, &self.block_and_purge, true);

        let (before, fifo, fair) = (
            self.no_flood.normal_wait_percentile(99),
            self.shared_fifo.normal_wait_percentile(99),
            self.fair_queue.normal_wait_percentile(99),
        );
        let extra = fair.saturating_sub(before);
        let _ = writeln!(
            r,
            "\nOther tenants' p99 wait under the flood: shared FIFO {} ({}x the no-flood reference);",
            fmt_wait(fifo),
            group(fifo / before.max(1)),
        );
        let _ = writeln!(
            r,
            "FairQueue {} (reference + {}: {} one {} ms job, the wait for a busy worker to finish).",
            fmt_wait(fair),
            fmt_wait(extra),
            if extra <= s.service_ms {
                "at most"
            } else {
                "MORE than"
            },
            s.service_ms
        );
        let _ = writeln!(
            r,
            "The flood still gets every spare worker: all {} of its jobs served by {} (FIFO: by {}).",
            group(self.fair_queue.flood_served),
            self.fair_queue
                .flood_done_ms
                .map_or_else(|| "-".into(), clock_time),
            self.shared_fifo
                .flood_done_ms
                .map_or_else(|| "-".into(), clock_time),
        );
        let rl = &self.rate_limited;
        let _ = writeln!(
            r,
            "Rate limit ({} job/s per tenant, burst {}): {} flood jobs came back as RateLimited, each with\n\
             a retry time {} to {} ahead (median {}); other tenants' jobs refused: {}.",
            s.quota_per_s,
            s.quota_burst,
            group(rl.flood_rate_limited),
            fmt_wait(rl.retry_after_ms.first().copied().unwrap_or(0)),
            fmt_wait(rl.retry_after_ms.last().copied().unwrap_or(0)),
            fmt_wait(percentile(&rl.retry_after_ms, 50)),
            group(rl.normal_refused)
        );
        let bp = &self.block_and_purge;
        let _ = writeln!(
            r,
            "Block & purge at {}: purge handed back {} queued jobs and {} later submissions came back as\n\
             Blocked (abuse): {} served + {} purged + {} refused = {} of {} flood jobs, none lost.",
            clock_time(s.operators_act_ms),
            group(bp.flood_purged),
            group(bp.flood_blocked),
            group(bp.flood_served),
            group(bp.flood_purged),
            group(bp.flood_refused),
            group(bp.flood_served + bp.flood_purged + bp.flood_refused),
            group(bp.flood_jobs)
        );

        self.chart(&mut r);
        // Centred headers leave trailing spaces; the printed report has none.
        r.lines().map(|l| l.trim_end().to_string() + "\n").collect()
    }

    /// One table row; `flood` is false for the reference run, which has no flood to count.
    fn row(&self, r: &mut String, name: &str, o: &Outcome, flood: bool) {
        let count = |n: u64| if flood { group(n) } else { "-".to_string() };
        let done = o.flood_done_ms.map_or_else(|| "-".to_string(), clock_time);
        let _ = writeln!(
            r,
            "{:<36} {:>8} {:>8} {:>8} {:>12} {:>10} {:>8} {:>8}",
            name,
            fmt_wait(o.normal_wait_percentile(50)),
            fmt_wait(o.normal_wait_percentile(99)),
            fmt_wait(o.normal_wait_max()),
            count(o.flood_served),
            done,
            count(o.flood_purged),
            count(o.flood_refused),
        );
    }

    /// Worst wait of normal tenants' jobs over time, FIFO beside the fair queue, on one scale.
    fn chart(&self, r: &mut String) {
        const BAR_UNIT_MS: u64 = 5 * MS_PER_MIN;
        const BAR_WIDTH: usize = 24;
        let bar = |ms: u64| {
            let n = ms.div_ceil(BAR_UNIT_MS) as usize;
            if ms < BAR_UNIT_MS / 10 {
                ".".to_string()
            } else {
                "#".repeat(n.min(BAR_WIDTH))
            }
        };
        let _ = writeln!(
            r,
            "\nWorst wait of other tenants' jobs, by submission time (each # = {} min of waiting):",
            BAR_UNIT_MS / MS_PER_MIN
        );
        let _ = writeln!(r, "  submitted  shared FIFO{:23}fairshare FairQueue", "");
        let fifo = &self.shared_fifo.worst_wait_by_bucket;
        let fair = &self.fair_queue.worst_wait_by_bucket;
        let step = self.scenario.chart_bucket_ms;
        for (i, (&a, &b)) in fifo.iter().zip(fair).enumerate() {
            let from = i as u64 * step;
            let _ = writeln!(
                r,
                "  {:<10} {:>7} {:<26}{:>7} {}",
                format!("{}-{}", clock_time(from), clock_time(from + step)),
                fmt_wait(a),
                bar(a),
                fmt_wait(b),
                bar(b)
            );
        }
    }
}

/// `h:mm` of a simulated time.
fn clock_time(ms: u64) -> String {
    let min = ms / MS_PER_MIN;
    format!("{}:{:02}", min / 60, min % 60)
}

/// A waiting time in the most readable unit.
fn fmt_wait(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{:.0} min", ms as f64 / 6e4),
        _ => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}
