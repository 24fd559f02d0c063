#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Replays the 140,000-job incident on one PostgreSQL database: 4 worker processes, pass order vs plain FIFO.
//!
//! One tenant enqueues 140,000 jobs at once while 100 others keep a normal rate (2 jobs a
//! second each). Four worker processes (this binary re-executed with `worker ...`, each with
//! its own connection) claim one job at a time and "run" it for 1 ms. The same run happens
//! twice on the same database: with this crate's pass order, and with the plain FIFO queue
//! (`ORDER BY id ... FOR UPDATE SKIP LOCKED`). The other tenants' waits (claim time minus
//! enqueue time, on the database clock) are printed for both; a job still unclaimed at the
//! end counts with its wait so far, a lower bound, marked `>=`.
//!
//! Run: `cargo run --release -p fairshare-postgres --example fleet_replay`. It starts a
//! throwaway server from `/usr/lib/postgresql/*/bin` (set `FAIRSHARE_PG` to a connection
//! string to use another database; it creates schemas `replay_fair` and `replay_fifo` there,
//! dropping them first). `FAIRSHARE_REPLAY_SECS` sets each phase's length (default 8).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fairshare_postgres::testing::{FifoPrepared, FifoQueue, TempPostgres};
use fairshare_postgres::{NewJob, Queue, QueueConfig, Session};

const FLOOD: usize = 140_000;
const OTHERS: usize = 100;
const OTHER_PERIOD: Duration = Duration::from_millis(500);
const PRODUCERS: usize = 10;
const WORKERS: usize = 4;
const SERVICE: Duration = Duration::from_millis(1);

/// A connection with its queue's statements prepared.
#[allow(clippy::large_enum_variant)] // one per worker process: its size costs nothing
enum Conn {
    Fair(Session),
    Fifo(FifoQueue, tokio_postgres::Client, FifoPrepared),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2], &args[3], &args[4], args[5].parse()?).await;
    }
    let secs: u64 = std::env::var("FAIRSHARE_REPLAY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let window = Duration::from_secs(secs);
    let _server;
    let conn = match std::env::var("FAIRSHARE_PG") {
        Ok(conn) => conn,
        Err(_) => {
            let server = TempPostgres::start()?;
            let conn = server.connection_string();
            println!(
                "started a throwaway PostgreSQL {} in {}",
                server.version(),
                server.dir().display()
            );
            _server = server;
            conn
        }
    };
    println!(
        "flood: 1 tenant x {FLOOD} jobs at once; others: {OTHERS} tenants x 1 job / {} ms; \
         {WORKERS} worker processes, {} ms per job, {secs} s per phase\n",
        OTHER_PERIOD.as_millis(),
        SERVICE.as_millis()
    );
    let mut results = Vec::new();
    for mode in ["fair", "fifo"] {
        results.push((mode, phase(&conn, mode, window).await?));
    }
    println!("\nother tenants' wait for their job to be claimed:");
    for (mode, r) in &results {
        let label = if *mode == "fair" {
            "pass order (fairshare-postgres)"
        } else {
            "plain FIFO (ORDER BY id)       "
        };
        println!(
            "  {label}  p50 {}  p99 {}  max {}  ({} of {} served; {} flood jobs served)",
            r.fmt(50.0),
            r.fmt(99.0),
            r.fmt(100.0),
            r.served,
            r.waits.len(),
            r.flood_served
        );
    }
    Ok(())
}

struct PhaseResult {
    /// (wait in ms, served?)
    waits: Vec<(f64, bool)>,
    served: usize,
    flood_served: i64,
}

impl PhaseResult {
    fn fmt(&self, p: f64) -> String {
        if self.waits.is_empty() {
            return "-".into();
        }
        let mut w = self.waits.clone();
        w.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rank = ((p / 100.0) * w.len() as f64).ceil() as usize;
        let (ms, served) = w[rank.clamp(1, w.len()) - 1];
        let prefix = if served { "" } else { ">=" };
        if ms >= 1000.0 {
            format!("{prefix}{:.2} s", ms / 1000.0)
        } else {
            format!("{prefix}{ms:.1} ms")
        }
    }
}

async fn phase(
    conn: &str,
    mode: &str,
    window: Duration,
) -> Result<PhaseResult, Box<dyn std::error::Error>> {
    let schema = format!("replay_{mode}");
    let mut c = fairshare_postgres::connect(conn).await?;
    c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    let fair = Queue::new(QueueConfig::new(&schema)?);
    let fifo = FifoQueue::new(&schema)?;
    let t = Instant::now();
    if mode == "fair" {
        fair.migrate(&mut c).await?;
        let jobs: Vec<NewJob> = (0..FLOOD)
            .map(|i| NewJob::new(format!("bulk-update-{i}")))
            .collect();
        fair.enqueue_batch(&mut c, "flood", &jobs).await?;
    } else {
        fifo.migrate(&c).await?;
        let jobs: Vec<Vec<u8>> = (0..FLOOD)
            .map(|i| format!("bulk-update-{i}").into_bytes())
            .collect();
        fifo.enqueue_batch(&c, None, "flood", &jobs).await?;
    }
    println!(
        "[{mode}] flood of {FLOOD} jobs enqueued in one batch in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Start the workers and wait until every one is connected.
    let exe = std::env::current_exe()?;
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|_| {
            Command::new(&exe)
                // A little past the window, so the last jobs produced can still be claimed.
                .args([
                    "worker",
                    mode,
                    conn,
                    &schema,
                    &(window.as_millis() + 300).to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut outputs = Vec::new();
    for w in &mut workers {
        let mut out = BufReader::new(w.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "READY", "worker failed to start");
        outputs.push(out);
    }
    let start = Instant::now();

    // The other tenants, at their normal rate, over a few connections.
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let conn = conn.to_owned();
        let (fair, fifo) = (fair.clone(), fifo.clone());
        let fair_mode = mode == "fair";
        producers.push(tokio::spawn(async move {
            let c = fairshare_postgres::connect(&conn)
                .await
                .expect("producer connects");
            let mut conn = if fair_mode {
                Conn::Fair(Session::new(fair, c, "producer").await.expect("prepare"))
            } else {
                let prep = fifo.prepare(&c).await.expect("prepare");
                Conn::Fifo(fifo, c, prep)
            };
            let per = OTHERS / PRODUCERS;
            let step = OTHER_PERIOD / per as u32;
            let offset = step * p as u32 / PRODUCERS as u32;
            let mut k = 0u32;
            loop {
                let at = offset + step * k;
                if at >= window {
                    return;
                }
                tokio::time::sleep_until((start + at).into()).await;
                let tenant = format!("customer-{}", p * per + k as usize % per);
                match &mut conn {
                    Conn::Fair(session) => {
                        session
                            .enqueue(&tenant, &NewJob::new("share-ticket"))
                            .await
                            .expect("enqueue");
                    }
                    Conn::Fifo(fifo, c, prep) => {
                        fifo.enqueue_batch(c, Some(prep), &tenant, &[b"share-ticket".to_vec()])
                            .await
                            .expect("enqueue");
                    }
                }
                k += 1;
            }
        }));
    }
    for p in producers {
        p.await?;
    }
    let mut total = 0usize;
    for (w, out) in workers.iter_mut().zip(outputs) {
        for line in out.lines() {
            if let Some(n) = line?.strip_prefix("DONE ") {
                total += n.parse::<usize>()?;
            }
        }
        assert!(w.wait()?.success(), "worker failed");
    }
    println!(
        "[{mode}] {WORKERS} workers ran {total} jobs in {:.1} s ({:.0} jobs/s)",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
    if mode == "fair" {
        if let Some(top) = fair.backlog(&c).await?.first() {
            println!(
                "[{mode}] dashboard: largest backlog {} with {} queued",
                top.tenant, top.queued
            );
        }
    }
    let rows = c
        .query(
            &format!(
                "SELECT (extract(epoch FROM COALESCE(claimed_at, now()) - created_at) * 1000)::float8,
                        claimed_at IS NOT NULL
                   FROM \"{schema}\".jobs WHERE tenant <> 'flood'"
            ),
            &[],
        )
        .await?;
    let waits: Vec<(f64, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let flood_served: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".jobs WHERE tenant = 'flood' AND claimed_at IS NOT NULL"),
            &[],
        )
        .await?
        .get(0);
    Ok(PhaseResult {
        served: waits.iter().filter(|w| w.1).count(),
        waits,
        flood_served,
    })
}

/// A worker process: its own connection; claim one job, run it, complete it, until the
/// phase ends.
async fn worker(
    mode: &str,
    conn: &str,
    schema: &str,
    run_ms: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let c = fairshare_postgres::connect(conn).await?;
    let name = format!("worker-{}", std::process::id());
    // Statements prepared once on this worker's own connection, as production workers run.
    let mut conn = if mode == "fair" {
        Conn::Fair(Session::new(Queue::new(QueueConfig::new(schema)?), c, name.clone()).await?)
    } else {
        let fifo = FifoQueue::new(schema)?;
        let prep = fifo.prepare(&c).await?;
        Conn::Fifo(fifo, c, prep)
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY")?;
    stdout.flush()?;
    let until = Instant::now() + Duration::from_millis(run_ms);
    let mut done = 0usize;
    while Instant::now() < until {
        let n = match &mut conn {
            Conn::Fair(session) => {
                let jobs = session.claim(1).await?;
                for job in &jobs {
                    tokio::time::sleep(SERVICE).await;
                    session.complete(job.lease(), 1).await?;
                }
                jobs.len()
            }
            Conn::Fifo(fifo, c, prep) => {
                let jobs = fifo.claim(c, Some(prep), &name, 1).await?;
                for (id, _, _) in &jobs {
                    tokio::time::sleep(SERVICE).await;
                    fifo.complete(c, Some(prep), *id).await?;
                }
                jobs.len()
            }
        };
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        done += n;
    }
    writeln!(stdout, "DONE {done}")?;
    Ok(())
}
