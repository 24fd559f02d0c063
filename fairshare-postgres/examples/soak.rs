#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Soak: N seeded random jobs (default 100,000; `--jobs N`, `--seed S`) through one queue on a
//! throwaway PostgreSQL, with a ledger of every job and every lease.
//!
//! ```text
//! cargo run --release -p fairshare-postgres --example postgres_soak                # ~100 s
//! cargo run --release -p fairshare-postgres --example postgres_soak -- --jobs 5000 # what CI runs
//! ```
//!
//! Two producer tasks enqueue batches (uniform and mixed costs) for 50 tenants, one of them a
//! flood; four worker tasks, each on its own connection (a `Session`), claim 1 to 4 jobs at a
//! time and for each complete it (with an actual cost), fail it (retried after a short
//! backoff), release it, extend its lease, or sit on it past its lease and then try to
//! complete it; a supervisor kills a random worker every so often (its task aborted
//! wherever it is, mid-statement included: its connection drops, its leases stay until they
//! expire) and starts a new one. The lease is short, so expired leases are reaped and
//! claimed again all through the run.
//!
//! Checked throughout, on the database's clock (the lease ends the claims return): a job is
//! never claimed again while a lease on it holds (a new claim of a job starts at or after
//! the end of every earlier lease not given back); a completed job is never claimed again
//! and never completed twice; a report after the lease ended is refused; every claim's
//! payload is its own job's. At the end: every job enqueued is done exactly once (the
//! database's rows and the ledger agree; a completion in doubt, its worker killed during the
//! call, counts only if the row says done), nothing is queued or running, and no row is
//! unknown to the ledger. Exits non-zero on any break; prints jobs/s, operations/s and the
//! soak process's VmHWM (the server's memory is its own).
//!
//! It starts a throwaway server from `/usr/lib/postgresql/*/bin` (or uses `FAIRSHARE_PG`, a
//! connection string, with a schema `soak` that it drops first).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fairshare_postgres::testing::TempPostgres;
use fairshare_postgres::{Error, FailOutcome, Job, JobId, NewJob, Queue, QueueConfig, Session};

const TENANTS: u64 = 50;
const WORKERS: usize = 4;
const PRODUCERS: u64 = 2;
const LEASE: Duration = Duration::from_millis(400);

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

/// Where one lease stands, as its worker last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    /// Held (or its worker was killed holding it).
    Holding,
    /// A report is under way (in doubt if its worker was killed meanwhile).
    Reporting(Report),
    /// Given back before its end: released, or failed and queued again.
    GivenBack,
    /// Completed: the job is done.
    Completed,
    /// A report was refused (the lease had ended).
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Complete,
    GiveBack,
}

#[derive(Debug)]
struct Claim {
    token: i64,
    until: SystemTime,
    held: LeaseState,
}

#[derive(Debug)]
struct JobRec {
    tenant: String,
    /// Learned from the enqueue's reply or from the first claim, whichever comes first.
    id: Option<JobId>,
    claims: Vec<Claim>,
}

/// Jobs by their sequence number (in the payload, `t<tenant>:<seq>`): registered before
/// their enqueue, so a claim racing the enqueue's reply finds its job.
#[derive(Default)]
struct Ledger {
    jobs: HashMap<u64, JobRec>,
    by_id: HashMap<JobId, u64>,
    completed: u64,
    claims: u64,
    /// Claims of a job whose earlier lease ended unreported (its worker killed or late).
    reclaimed: u64,
    refused_reports: u64,
    given_back: u64,
    extended: u64,
    killed: u64,
    ops: u64,
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(l: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().expect("a task panicked holding the ledger")
}

/// The job a payload names.
fn seq_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload)
        .ok()?
        .split_once(':')?
        .1
        .parse()
        .ok()
}

/// Learns `id` is job `seq`; errs if either was already paired otherwise.
fn pair(l: &mut Ledger, id: JobId, seq: u64) -> Result<(), String> {
    let rec = l
        .jobs
        .get_mut(&seq)
        .ok_or_else(|| format!("job {id} carries job {seq}'s payload, never enqueued"))?;
    match rec.id {
        Some(known) if known != id => {
            return Err(format!("jobs {known} and {id} carry the same payload"));
        }
        _ => rec.id = Some(id),
    }
    if let Some(other) = l.by_id.insert(id, seq) {
        if other != seq {
            return Err(format!("job {id} carries two payloads"));
        }
    }
    Ok(())
}

/// Records a claim; errs if a lease on the job still held when this one began.
fn claimed(ledger: &Shared, job: &Job) -> Result<(), String> {
    let mut l = lock(ledger);
    l.claims += 1;
    l.ops += 1;
    let id = job.id();
    let lease = job.lease();
    let seq = seq_of(job.payload()).ok_or_else(|| format!("job {id}: a payload not ours"))?;
    pair(&mut l, id, seq)?;
    let rec = l.jobs.get_mut(&seq).ok_or("paired above")?;
    if rec.tenant != job.tenant() {
        return Err(format!("job {id} claimed under another tenant"));
    }
    // The claim's start on the database clock: its lease end minus the lease length.
    let start = lease.until() - LEASE;
    let mut reclaimed = false;
    for c in &mut rec.claims {
        match c.held {
            LeaseState::Completed => {
                return Err(format!("job {id} claimed again after completion"));
            }
            // A report in doubt (its worker killed during the call) may have gone through:
            // a give-back that did lets the job be claimed at once.
            LeaseState::GivenBack | LeaseState::Reporting(Report::GiveBack) => {}
            LeaseState::Holding | LeaseState::Refused | LeaseState::Reporting(Report::Complete) => {
                if start < c.until {
                    return Err(format!(
                        "job {id} claimed at {start:?} while an earlier lease held until {:?}",
                        c.until
                    ));
                }
                reclaimed |= c.held != LeaseState::Refused;
                // Claimable again: a completion in doubt did not go through.
                if c.held == LeaseState::Reporting(Report::Complete) {
                    c.held = LeaseState::Refused;
                }
            }
        }
    }
    rec.claims.push(Claim {
        token: lease.token(),
        until: lease.until(),
        held: LeaseState::Holding,
    });
    if reclaimed {
        l.reclaimed += 1;
    }
    Ok(())
}

fn set(ledger: &Shared, id: JobId, token: i64, held: LeaseState) -> Result<(), String> {
    let mut l = lock(ledger);
    l.ops += 1;
    match held {
        LeaseState::Completed => l.completed += 1,
        LeaseState::GivenBack => l.given_back += 1,
        LeaseState::Refused => l.refused_reports += 1,
        _ => {}
    }
    let seq = *l.by_id.get(&id).ok_or("a report on a job never claimed")?;
    let rec = l.jobs.get_mut(&seq).ok_or("paired")?;
    if held == LeaseState::Completed && rec.claims.iter().any(|c| c.held == LeaseState::Completed) {
        return Err(format!("job {id} completed twice"));
    }
    let claim = rec
        .claims
        .iter_mut()
        .find(|c| c.token == token)
        .ok_or_else(|| format!("job {id}: a report under a lease never claimed"))?;
    claim.held = held;
    Ok(())
}

/// A report's result: accepted, or refused because the lease ended (anything else breaks).
fn accepted<T>(r: &Result<T, Error>, late: bool) -> Result<bool, String> {
    match r {
        Ok(_) if late => Err("a report after the lease ended was accepted".into()),
        Ok(_) => Ok(true),
        Err(e) if e.is_lease_lost() => Ok(false),
        Err(e) => Err(format!("report failed: {e}")),
    }
}

async fn worker(
    queue: Queue,
    conn: String,
    name: String,
    ledger: Shared,
    seed: u64,
) -> Result<(), String> {
    let client = fairshare_postgres::connect(&conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = Session::new(queue, client, &name)
        .await
        .map_err(|e| e.to_string())?;
    let mut rng = XorShift(seed);
    loop {
        let jobs = s
            .claim(1 + rng.below(4) as u32)
            .await
            .map_err(|e| format!("{name}: claim: {e}"))?;
        if jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        for job in &jobs {
            claimed(&ledger, job)?;
        }
        for job in jobs {
            let id = job.id();
            let mut lease = job.lease().clone();
            let token = lease.token();
            tokio::time::sleep(Duration::from_micros(rng.below(2_000))).await;
            let late = match rng.below(100) {
                // Sits on it past its lease: whatever it reports next is refused.
                0 if rng.below(5) == 0 => {
                    tokio::time::sleep(LEASE + Duration::from_millis(20)).await;
                    true
                }
                3..=7 => {
                    if accepted(&s.extend_lease(&mut lease, LEASE).await, false)? {
                        let mut l = lock(&ledger);
                        l.extended += 1;
                        let seq = *l.by_id.get(&id).ok_or("claimed above")?;
                        let rec = l.jobs.get_mut(&seq).ok_or("paired")?;
                        if let Some(c) = rec.claims.iter_mut().find(|c| c.token == token) {
                            c.until = lease.until();
                        }
                    }
                    false
                }
                _ => false,
            };
            let what = rng.below(100);
            let report = if what < 85 {
                Report::Complete
            } else {
                Report::GiveBack
            };
            set(&ledger, id, token, LeaseState::Reporting(report))?;
            let ok = match what {
                0..=84 => accepted(&s.complete(&lease, 1 + rng.below(3) as u32).await, late)?,
                85..=94 => {
                    let r = s.fail(&lease, "soak: simulated failure").await;
                    if let Ok(FailOutcome::Dead) = r {
                        return Err(format!("job {id} dead-lettered (attempt limit too low)"));
                    }
                    accepted(&r, late)?
                }
                _ => accepted(&s.release(&lease).await, late)?,
            };
            let held = match (ok, report) {
                (true, Report::Complete) => LeaseState::Completed,
                (true, Report::GiveBack) => LeaseState::GivenBack,
                (false, _) => LeaseState::Refused,
            };
            set(&ledger, id, token, held)?;
        }
    }
}

async fn producer(
    queue: Queue,
    conn: String,
    ledger: Shared,
    jobs: u64,
    next: Arc<AtomicU64>,
    seed: u64,
) -> Result<(), String> {
    let mut client = fairshare_postgres::connect(&conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut rng = XorShift(seed);
    loop {
        let size = if rng.below(10) == 0 { 200 } else { 8 };
        let n = 1 + rng.below(size);
        let first = next.fetch_add(n, Ordering::SeqCst);
        if first >= jobs {
            return Ok(());
        }
        let n = n.min(jobs - first);
        let tenant = if rng.below(3) == 0 {
            0
        } else {
            rng.below(TENANTS)
        };
        let mixed = rng.below(4) == 0;
        let batch: Vec<NewJob> = (first..first + n)
            .map(|seq| {
                let job = NewJob::new(format!("t{tenant}:{seq}"));
                if mixed {
                    job.with_cost(NonZeroU32::new(1 + (seq % 3) as u32).expect("non-zero"))
                } else {
                    job
                }
            })
            .collect();
        let tenant = format!("t{tenant}");
        {
            let mut l = lock(&ledger);
            l.ops += 1;
            for seq in first..first + n {
                l.jobs.insert(
                    seq,
                    JobRec {
                        tenant: tenant.clone(),
                        id: None,
                        claims: Vec::new(),
                    },
                );
            }
        }
        let ids = queue
            .enqueue_batch(&mut client, &tenant, &batch)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
        if ids.len() as u64 != n {
            return Err(format!("{} ids for a batch of {n}", ids.len()));
        }
        {
            let mut l = lock(&ledger);
            for (id, seq) in ids.into_iter().zip(first..) {
                pair(&mut l, id, seq)?;
            }
        }
        tokio::time::sleep(Duration::from_micros(rng.below(3_000))).await;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.replace('_', "").parse().expect("a number"))
            .unwrap_or(default)
    };
    let jobs = arg("--jobs", 100_000);
    let seed = arg("--seed", 0x9e37_79b9_7f4a_7c15).max(1);
    let _server;
    let conn = match std::env::var("FAIRSHARE_PG") {
        Ok(conn) => conn,
        Err(_) => {
            let server = TempPostgres::start().map_err(|e| e.to_string())?;
            let conn = server.connection_string();
            _server = server;
            conn
        }
    };
    let config = QueueConfig::new("soak")
        .map_err(|e| e.to_string())?
        .with_lease(LEASE)
        .with_reap_interval(Duration::from_millis(50))
        .with_max_attempts(NonZeroU32::new(10_000).expect("non-zero"))
        .with_backoff(Duration::from_millis(2), Duration::from_millis(50));
    let queue = Queue::new(config);
    let mut admin = fairshare_postgres::connect(&conn)
        .await
        .map_err(|e| e.to_string())?;
    admin
        .batch_execute("DROP SCHEMA IF EXISTS soak CASCADE")
        .await
        .map_err(|e| e.to_string())?;
    queue.migrate(&mut admin).await.map_err(|e| e.to_string())?;

    let ledger: Shared = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = XorShift(seed);
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(producer(
                queue.clone(),
                conn.clone(),
                Arc::clone(&ledger),
                jobs,
                Arc::clone(&next),
                seed ^ (p + 1),
            ))
        })
        .collect();
    let mut spawned = 0u64;
    let mut spawn = |rng: &mut XorShift| {
        spawned += 1;
        tokio::spawn(worker(
            queue.clone(),
            conn.clone(),
            format!("worker-{spawned}"),
            Arc::clone(&ledger),
            rng.next() | 1,
        ))
    };
    let mut workers: Vec<_> = (0..WORKERS).map(|_| spawn(&mut rng)).collect();
    let mut producers_done = false;
    let mut producer_handles = producers;
    loop {
        tokio::time::sleep(Duration::from_millis(20 + rng.below(200))).await;
        // A worker that stopped on its own found a break.
        for w in &mut workers {
            if w.is_finished() {
                return match w.await {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => Err("a worker stopped".into()),
                    Err(e) => Err(format!("a worker panicked: {e}")),
                };
            }
        }
        if !producers_done && producer_handles.iter().all(|p| p.is_finished()) {
            for p in producer_handles.drain(..) {
                p.await.map_err(|e| e.to_string())??;
            }
            producers_done = true;
        }
        // Kill one (wherever it is) and start another.
        if rng.below(3) == 0 {
            let k = rng.below(workers.len() as u64) as usize;
            let w = workers.swap_remove(k);
            w.abort();
            let _ = w.await;
            lock(&ledger).killed += 1;
            workers.push(spawn(&mut rng));
        }
        if producers_done {
            let counts = queue.counts(&admin).await.map_err(|e| e.to_string())?;
            if counts.queued == 0 && counts.running == 0 {
                break;
            }
        }
    }
    for w in workers {
        w.abort();
        let _ = w.await;
    }
    let secs = start.elapsed().as_secs_f64();

    // The rows against the ledger.
    let rows = admin
        .query("SELECT id, state, attempts FROM soak.jobs", &[])
        .await
        .map_err(|e| e.to_string())?;
    let l = lock(&ledger);
    if rows.len() as u64 != jobs || l.jobs.len() as u64 != jobs {
        return Err(format!(
            "{} rows and {} jobs in the ledger for {jobs} enqueued",
            rows.len(),
            l.jobs.len()
        ));
    }
    let mut in_doubt_done = 0;
    for row in &rows {
        let id = JobId::new(row.get(0));
        let state: &str = row.get(1);
        let rec = l
            .by_id
            .get(&id)
            .and_then(|seq| l.jobs.get(seq))
            .ok_or_else(|| format!("row {id} unknown to the ledger"))?;
        if state != "done" {
            return Err(format!("job {id} ended {state}, not done"));
        }
        let completed = rec
            .claims
            .iter()
            .filter(|c| c.held == LeaseState::Completed)
            .count();
        let in_doubt = rec
            .claims
            .iter()
            .filter(|c| c.held == LeaseState::Reporting(Report::Complete))
            .count();
        // A completion in doubt beside an accepted one was refused (its lease had been taken
        // over); with none accepted, one in doubt went through.
        match (completed, in_doubt) {
            (1, _) => {}
            (0, 1..) => in_doubt_done += 1,
            _ => {
                return Err(format!(
                    "job {id}: {completed} completions and {in_doubt} in doubt"
                ));
            }
        }
    }
    let ops = l.ops;
    println!(
        "soak: {jobs} jobs (seed {seed}) in {secs:.1} s = {:.0} jobs/s, {:.0} operations/s; every job done \
         exactly once ({} completions seen, {in_doubt_done} in doubt from killed workers and done in the table); \
         {} claims, {} given back (failed or released), {} reports refused after their lease, {} leases extended, \
         {} workers killed, {} jobs claimed again after a lease ended unreported, none while a lease on it held; \
         VmHWM {} KiB",
        jobs as f64 / secs,
        ops as f64 / secs,
        l.completed,
        l.claims,
        l.given_back,
        l.refused_reports,
        l.extended,
        l.killed,
        l.reclaimed,
        status_kib("VmHWM:")
    );
    Ok(())
}
