#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Soak: N seeded random operations (default 10^8; `--ops N`, `--seed S`) across `FairQueue`,
//! `Scheduler` and `SharedScheduler`, with a conservation ledger (every item pushed comes back
//! exactly once, per-tenant FIFO) and a memory bound; exits non-zero if either breaks.
//!
//! Reports ops/s and the resident set (VmRSS, VmHWM from /proc/self/status).

use fairshare::config::{Capacity, Quota, SchedulerConfig, ShedPolicy, TenantLimits};
use fairshare::{
    BlockReason, Clock, FairQueue, ManualClock, Nanos, PushOptions, Scheduler, SharedScheduler,
    Ticket,
};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Tenants per layer.
const TENANTS: u64 = 1_000;
/// Backlog above which a layer only serves: keeps memory bounded.
const MAX_BACKLOG: usize = 20_000;
/// The resident set may grow at most this much above its level after the first million ops.
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

/// Ids the library holds, and the last id dispatched per tenant.
struct Ledger {
    next: u64,
    held: HashSet<u64>,
    last: Vec<u64>,
    back: u64,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            next: 0,
            held: HashSet::new(),
            last: vec![0; TENANTS as usize],
            back: 0,
        }
    }
    fn item(&mut self, tenant: u64) -> u64 {
        self.next += 1;
        self.next * TENANTS + tenant
    }
    fn accepted(&mut self, id: u64) -> Result<(), String> {
        if self.held.insert(id) {
            Ok(())
        } else {
            Err(format!("item {id} accepted twice"))
        }
    }
    fn back(&mut self, id: u64, dispatched: bool) -> Result<(), String> {
        if !self.held.remove(&id) {
            return Err(format!(
                "item {id} came back but was not held (lost or duplicated)"
            ));
        }
        self.back += 1;
        if dispatched {
            let t = (id % TENANTS) as usize;
            if self.last[t] >= id {
                return Err(format!(
                    "tenant {t}: FIFO broken ({id} after {})",
                    self.last[t]
                ));
            }
            self.last[t] = id;
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

fn check_len(layer: &str, len: usize, ledger: &Ledger) -> Result<(), String> {
    if len == ledger.held.len() {
        Ok(())
    } else {
        Err(format!(
            "{layer}: holds {len} items, the ledger {}",
            ledger.held.len()
        ))
    }
}

fn fair_queue(ops: u64, rng: &mut XorShift) -> Result<u64, String> {
    let mut q: FairQueue<u64, u64> = FairQueue::new();
    q.set_in_flight_limit(Some(32));
    let mut ledger = Ledger::new();
    let mut tickets: Vec<Ticket> = Vec::new();
    for i in 0..ops {
        let r = rng.below(100);
        // Skewed: a quarter of the ops go to tenant 0 (a flood), the rest spread out.
        let t = if rng.below(4) == 0 {
            0
        } else {
            rng.below(TENANTS)
        };
        if r < 50 && q.len() < MAX_BACKLOG {
            let id = ledger.item(t);
            let cost = 1 + (rng.below(16) as u32);
            match q.try_push_with(t, id, PushOptions::new().with_cost(cost)) {
                Ok(()) => ledger.accepted(id)?,
                Err(e) if *e.item() == id => {}
                Err(_) => return Err("a refusal handed back another item".into()),
            }
        } else if r < 80 {
            if let Some(d) = q.dispatch() {
                ledger.back(d.item, true)?;
                tickets.push(d.ticket);
            } else if !tickets.is_empty() {
                let k = rng.below(tickets.len() as u64) as usize;
                q.complete(tickets.swap_remove(k), rng.below(40) as u32);
            }
        } else if r < 95 {
            if !tickets.is_empty() {
                let k = rng.below(tickets.len() as u64) as usize;
                let actual = if rng.below(1000) == 0 {
                    u32::MAX
                } else {
                    rng.below(40) as u32
                };
                if !q.complete(tickets.swap_remove(k), actual) {
                    return Err("a live ticket was refused".into());
                }
            }
        } else if r < 97 {
            q.set_weight(t, NonZeroU32::new(1 + rng.below(8) as u32).unwrap());
        } else if r < 98 {
            for id in q.purge(&t) {
                ledger.back(id, false)?;
            }
        } else if r < 99 {
            let m = 2 + rng.below(3);
            for id in q.retain(&t, |id| (id / TENANTS) % m != 0) {
                ledger.back(id, false)?;
            }
        } else if rng.below(10) == 0 {
            q.clear_weight(&t);
        }
        if i % 4096 == 0 {
            check_len("FairQueue", q.len(), &ledger)?;
        }
    }
    for t in tickets {
        q.complete(t, 1);
    }
    for id in q.drain() {
        ledger.back(id, false)?;
    }
    if !ledger.held.is_empty() || q.total_in_flight() != 0 {
        return Err(format!(
            "FairQueue: {} items never came back",
            ledger.held.len()
        ));
    }
    Ok(ledger.back)
}

fn scheduler(ops: u64, rng: &mut XorShift) -> Result<u64, String> {
    let clock = ManualClock::new();
    let limits = TenantLimits::new()
        .with_quota(Quota::per_second(NonZeroU32::new(2_000).unwrap()))
        .with_max_items(200)
        .with_max_in_flight(4);
    let config = SchedulerConfig::new()
        .with_tenant_limits(limits)
        .with_capacity(Capacity::new().with_max_items(MAX_BACKLOG as u64))
        .with_shed_policy(ShedPolicy::EvictOverShare)
        .with_max_in_flight(Some(64));
    let mut s: Scheduler<u64, u64, _> = Scheduler::with_clock(config, clock.clone());
    let mut ledger = Ledger::new();
    let mut tickets: Vec<Ticket> = Vec::new();
    for i in 0..ops {
        let r = rng.below(100);
        let t = rng.below(TENANTS);
        if r < 50 {
            let id = ledger.item(t);
            let mut opts = PushOptions::new().with_cost(1 + rng.below(4) as u32);
            if rng.below(8) == 0 {
                opts = opts.with_deadline(Nanos::new(clock.now().as_u64() + rng.below(50_000_000)));
            }
            match s.try_push_with(t, id, opts) {
                Ok(()) => ledger.accepted(id)?,
                Err(e) if *e.item() == id => {}
                Err(_) => return Err("a refusal handed back another item".into()),
            }
        } else if r < 75 {
            if let Some(d) = s.dispatch() {
                ledger.back(d.item, true)?;
                tickets.push(d.ticket);
            }
        } else if r < 92 {
            if !tickets.is_empty() {
                let k = rng.below(tickets.len() as u64) as usize;
                s.complete(tickets.swap_remove(k), rng.below(8) as u32);
            }
        } else if r < 96 {
            clock.advance(Duration::from_micros(rng.below(2_000)));
        } else if r < 97 {
            // Backwards: counts as no time passed.
            clock.set(Nanos::new(
                clock.now().as_u64().saturating_sub(rng.below(5_000_000)),
            ));
        } else if r < 98 {
            for rej in s.take_returned() {
                ledger.back(rej.into_inner(), false)?;
            }
        } else if r < 99 {
            if rng.below(2) == 0 {
                s.block(t, BlockReason::Abuse);
                for id in s.purge(&t) {
                    ledger.back(id, false)?;
                }
            } else {
                s.unblock(&t);
            }
        } else {
            s.refund(&t, 1);
        }
        if i % 4096 == 0 {
            check_len("Scheduler", s.queue().len() + s.pending_returns(), &ledger)?;
        }
    }
    for t in tickets {
        s.complete(t, 1);
    }
    for t in 0..TENANTS {
        for id in s.purge(&t) {
            ledger.back(id, false)?;
        }
    }
    for rej in s.take_returned() {
        ledger.back(rej.into_inner(), false)?;
    }
    if !ledger.held.is_empty() {
        return Err(format!(
            "Scheduler: {} items never came back",
            ledger.held.len()
        ));
    }
    Ok(ledger.back)
}

fn shared(ops: u64, rng: &mut XorShift) -> Result<u64, String> {
    let h: SharedScheduler<u64, u64, ManualClock> =
        SharedScheduler::from_scheduler(Scheduler::with_clock(
            SchedulerConfig::new().with_max_in_flight(Some(64)),
            ManualClock::new(),
        ));
    let mut ledger = Ledger::new();
    let mut leases = Vec::new();
    for i in 0..ops {
        let r = rng.below(100);
        if r < 40 && h.len() < MAX_BACKLOG {
            let batch: Vec<(u64, u64, PushOptions)> = (0..1 + rng.below(8))
                .map(|_| {
                    let t = rng.below(TENANTS);
                    (t, ledger.item(t), PushOptions::new())
                })
                .collect();
            let ids: Vec<u64> = batch.iter().map(|b| b.1).collect();
            for (id, res) in ids.into_iter().zip(h.try_push_batch(batch)) {
                match res {
                    Ok(()) => ledger.accepted(id)?,
                    Err(e) if *e.item() == id => {}
                    Err(_) => return Err("a refusal handed back another item".into()),
                }
            }
        } else if r < 70 {
            for job in h.dispatch_batch(1 + rng.below(8) as usize) {
                ledger.back(job.item, true)?;
                leases.push(job.lease);
            }
        } else if r < 97 {
            if !leases.is_empty() {
                let k = rng.below(leases.len() as u64) as usize;
                let lease = leases.swap_remove(k);
                if rng.below(4) == 0 {
                    drop(lease)
                } else {
                    lease.complete(1 + rng.below(4) as u32)
                }
            }
        } else if let Some(id) = h.try_pop() {
            ledger.back(id, true)?;
        }
        if i % 4096 == 0 {
            check_len("SharedScheduler", h.len(), &ledger)?;
        }
    }
    for id in h.close() {
        ledger.back(id, false)?;
    }
    drop(leases);
    if !ledger.held.is_empty() {
        return Err(format!(
            "SharedScheduler: {} items never came back",
            ledger.held.len()
        ));
    }
    Ok(ledger.back)
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
    let ops = arg("--ops", 100_000_000);
    let seed = arg("--seed", 0x9e37_79b9_7f4a_7c15).max(1);
    let mut rng = XorShift(seed);
    // Rounds of a million ops per layer, so memory is sampled through the whole run.
    let round = 1_000_000u64.min(ops.max(3) / 3);
    let mut done = 0u64;
    let mut back = 0u64;
    let mut baseline = None;
    let mut max_rss = 0;
    let start = Instant::now();
    while done < ops {
        let n = round.min(ops - done);
        let result = match (done / round) % 3 {
            0 => fair_queue(n, &mut rng),
            1 => scheduler(n, &mut rng),
            _ => shared(n, &mut rng),
        };
        match result {
            Ok(b) => back += b,
            Err(e) => {
                eprintln!("soak: ledger broken after {done} ops (seed {seed}): {e}");
                return ExitCode::FAILURE;
            }
        }
        done += n;
        let rss = status_kib("VmRSS:");
        max_rss = max_rss.max(rss);
        let base = *baseline.get_or_insert(rss);
        if rss > base + RSS_GROWTH_BOUND_KIB {
            eprintln!(
                "soak: VmRSS {rss} KiB grew beyond {base} + {RSS_GROWTH_BOUND_KIB} KiB after {done} ops"
            );
            return ExitCode::FAILURE;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "soak: {done} ops (seed {seed}) in {secs:.1} s = {:.2} M ops/s; {back} items came back, none lost; \
         VmRSS max {max_rss} KiB (bound: first round {} + {RSS_GROWTH_BOUND_KIB} KiB), VmHWM {} KiB",
        done as f64 / secs / 1e6,
        baseline.unwrap_or(0),
        status_kib("VmHWM:")
    );
    ExitCode::SUCCESS
}
