//! Replays the first incident in simulated time: one tenant floods a shared queue with 140,000 jobs.
//!
//! A worker pool with room for 1,000 jobs per second serves 300 normal tenants (together about
//! 600 jobs per second, Poisson-like). At t = 60 s one tenant submits 140,000 jobs within 20 s.
//! The same arrivals are replayed through a plain FIFO and through `fairshare::FairQueue`, and
//! the normal tenants' waiting times are compared. Everything runs on simulated time with a
//! fixed seed, so the output is identical on every run.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::collections::VecDeque;

use fairshare::{BlockReason, FairQueue};

const NORMAL_TENANTS: u32 = 300;
const FLOOD_TENANT: u32 = u32::MAX;
const WORKERS: u64 = 10;
/// Service time of one job, in ms: 10 workers x 100 jobs/s = 1,000 jobs per second.
const SERVICE_MS: u64 = 10;
const NORMAL_RATE_PER_S: f64 = 600.0;
const FLOOD_JOBS: u32 = 140_000;
const FLOOD_START_MS: u64 = 60_000;
const FLOOD_SPAN_MS: u64 = 20_000;
const HORIZON_MS: u64 = 600_000;

#[derive(Clone, Copy)]
struct Job {
    tenant: u32,
    submitted_ms: u64,
}

/// A small deterministic generator (SplitMix64), so the replay needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every job of the scenario, in submission order.
fn arrivals() -> Vec<Job> {
    let mut rng = Rng(0x5eed);
    let mut jobs = Vec::new();
    // Poisson arrivals for the normal tenants: exponential gaps.
    let mut t = 0.0f64;
    loop {
        t += -(1.0 - rng.unit()).ln() / NORMAL_RATE_PER_S * 1000.0;
        if t as u64 >= HORIZON_MS {
            break;
        }
        let tenant = (rng.next_u64() % u64::from(NORMAL_TENANTS)) as u32;
        jobs.push(Job {
            tenant,
            submitted_ms: t as u64,
        });
    }
    for i in 0..u64::from(FLOOD_JOBS) {
        jobs.push(Job {
            tenant: FLOOD_TENANT,
            submitted_ms: FLOOD_START_MS + i * FLOOD_SPAN_MS / u64::from(FLOOD_JOBS),
        });
    }
    jobs.sort_by_key(|j| j.submitted_ms); // stable: ties keep generation order
    jobs
}

/// What the host does with the flooding tenant.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Fifo,
    Fair,
    /// Fair queue, and at `at_ms` the operator blocks the tenant and purges its queued jobs.
    FairBlockPurge {
        at_ms: u64,
    },
}

#[derive(Default)]
struct Outcome {
    normal_waits: Vec<u64>,
    flood_done: u64,
    purged: usize,
    refused: u64,
    /// Worst normal wait per 30 s bucket of submission time.
    timeline: Vec<u64>,
}

/// The queue under test: the shared FIFO of the incident, or fairshare's fair queue.
enum Queue {
    Fifo(VecDeque<Job>),
    Fair(Box<FairQueue<u32, Job>>),
}

impl Queue {
    fn push(&mut self, job: Job) -> bool {
        match self {
            Queue::Fifo(q) => {
                q.push_back(job);
                true
            }
            Queue::Fair(q) => q.try_push(job.tenant, job).is_ok(),
        }
    }
    fn pop(&mut self) -> Option<Job> {
        match self {
            Queue::Fifo(q) => q.pop_front(),
            Queue::Fair(q) => q.pop(),
        }
    }
    fn is_empty(&self) -> bool {
        match self {
            Queue::Fifo(q) => q.is_empty(),
            Queue::Fair(q) => q.is_empty(),
        }
    }
}

fn simulate(policy: Policy, with_flood: bool) -> Outcome {
    let jobs: Vec<Job> = arrivals()
        .into_iter()
        .filter(|j| with_flood || j.tenant != FLOOD_TENANT)
        .collect();
    let mut out = Outcome {
        timeline: vec![0; (HORIZON_MS / 30_000) as usize],
        ..Outcome::default()
    };
    let mut queue = match policy {
        Policy::Fifo => Queue::Fifo(VecDeque::new()),
        _ => Queue::Fair(Box::default()),
    };
    // Worker w is free again at busy_until[w].
    let mut busy_until = [0u64; WORKERS as usize];
    let mut next = 0;
    for now in 0.. {
        while next < jobs.len() && jobs[next].submitted_ms <= now {
            if !queue.push(jobs[next]) {
                // Refused at the door (the tenant is blocked): the job comes back to the host.
                out.refused += 1;
            }
            next += 1;
        }
        if let (Policy::FairBlockPurge { at_ms }, Queue::Fair(fair)) = (policy, &mut queue) {
            if now == at_ms {
                fair.block(FLOOD_TENANT, BlockReason::Abuse);
                out.purged = fair.purge(&FLOOD_TENANT).len();
            }
        }
        for free_at in busy_until.iter_mut() {
            if *free_at > now {
                continue;
            }
            let Some(job) = queue.pop() else { break };
            *free_at = now + SERVICE_MS;
            if job.tenant == FLOOD_TENANT {
                out.flood_done += 1;
            } else {
                let wait = now - job.submitted_ms;
                out.normal_waits.push(wait);
                let bucket = (job.submitted_ms / 30_000) as usize;
                out.timeline[bucket] = out.timeline[bucket].max(wait);
            }
        }
        if next == jobs.len() && queue.is_empty() {
            break;
        }
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

fn fmt_ms(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.0} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

fn main() {
    println!(
        "Incident 1 replay: {NORMAL_TENANTS} normal tenants at ~{NORMAL_RATE_PER_S} jobs/s, capacity 1000 jobs/s;"
    );
    println!(
        "at t={} s one tenant submits {FLOOD_JOBS} jobs within {} s.\n",
        FLOOD_START_MS / 1000,
        FLOOD_SPAN_MS / 1000
    );
    // The same normal load without the flood, served by the plain FIFO.
    let mut baseline = simulate(Policy::Fifo, false).normal_waits;
    baseline.sort_unstable();
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>12} {:>8} {:>8}",
        "queue", "p50 wait", "p99 wait", "max wait", "flood served", "purged", "refused"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>12} {:>8} {:>8}",
        "no flood (reference)",
        fmt_ms(percentile(&baseline, 50.0)),
        fmt_ms(percentile(&baseline, 99.0)),
        fmt_ms(*baseline.last().unwrap_or(&0)),
        "-",
        "-",
        "-"
    );
    let cases = [
        ("shared FIFO", Policy::Fifo),
        ("fairshare FairQueue", Policy::Fair),
        (
            "fairshare + block & purge at 70 s",
            Policy::FairBlockPurge { at_ms: 70_000 },
        ),
    ];
    let mut timelines = Vec::new();
    for (name, policy) in cases {
        let mut o = simulate(policy, true);
        o.normal_waits.sort_unstable();
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>12} {:>8} {:>8}",
            name,
            fmt_ms(percentile(&o.normal_waits, 50.0)),
            fmt_ms(percentile(&o.normal_waits, 99.0)),
            fmt_ms(*o.normal_waits.last().unwrap_or(&0)),
            o.flood_done,
            o.purged,
            o.refused,
        );
        timelines.push((name, o.timeline));
    }
    println!("\nWorst wait of normal tenants' jobs, by submission time (each # = 10 s):");
    for (name, timeline) in &timelines[..2] {
        println!("  {name}:");
        for (i, worst) in timeline.iter().enumerate().take(12) {
            let bar = "#".repeat((*worst / 10_000) as usize);
            println!(
                "    {:>3}-{:<3}s {:>8} {}",
                i * 30,
                (i + 1) * 30,
                fmt_ms(*worst),
                if bar.is_empty() { "." } else { &bar }
            );
        }
    }
}
