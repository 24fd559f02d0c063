#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! The incident in small: one tenant floods the shared queue while 20 others keep a normal
//! rate; 4 workers with a 5 ms service time. In pass order the others' p99 wait stays within
//! 10 service times; in plain FIFO order it grows with the flood (here they are not served
//! at all within the run).
//!
//! The flood is 3,000 jobs here (the example replays the full 140,000) so the test stays
//! near five seconds: 3,000 jobs take 4 workers about 4 s, longer than each 2 s phase.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fairshare_postgres::testing::FifoQueue;
use fairshare_postgres::{NewJob, Queue, Session};

const SERVICE: Duration = Duration::from_millis(5);
const WORKERS: usize = 4;
const FLOOD: usize = 3_000;
const OTHERS: usize = 20;
const PERIOD: Duration = Duration::from_millis(100);
const PRODUCE_FOR: Duration = Duration::from_millis(1_500);
const PHASE: Duration = Duration::from_millis(2_000);
/// The stated bound: the other tenants' p99 wait, in service times.
const BOUND_SERVICE_TIMES: u32 = 10;

#[derive(Clone)]
enum Mode {
    Fair(Queue),
    Fifo(Arc<FifoQueue>),
}

impl Mode {
    fn schema(&self) -> String {
        match self {
            Mode::Fair(q) => q.config().schema().to_owned(),
            Mode::Fifo(_) => "fifo_fairness".to_owned(),
        }
    }

    async fn enqueue(&self, c: &mut tokio_postgres::Client, tenant: &str, n: usize) {
        match self {
            Mode::Fair(q) => {
                let jobs: Vec<_> = (0..n).map(|i| NewJob::new(format!("{i}"))).collect();
                q.enqueue_batch(c, tenant, &jobs).await.unwrap();
            }
            Mode::Fifo(f) => {
                let jobs: Vec<_> = (0..n).map(|i| format!("{i}").into_bytes()).collect();
                f.enqueue_batch(c, None, tenant, &jobs).await.unwrap();
            }
        }
    }

    /// One worker on its own connection (statements prepared, as production workers run):
    /// claim one job, "run" it for SERVICE, complete it; until `until`.
    async fn work(self, until: Instant) -> usize {
        let c = common::client().await;
        let mut done = 0;
        match self {
            Mode::Fair(q) => {
                let mut s = Session::new(q, c, "w").await.unwrap();
                while Instant::now() < until {
                    let jobs = s.claim(1).await.unwrap();
                    for job in &jobs {
                        tokio::time::sleep(SERVICE).await;
                        s.complete(job.lease(), 1).await.unwrap();
                    }
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    done += jobs.len();
                }
            }
            Mode::Fifo(f) => {
                let prep = f.prepare(&c).await.unwrap();
                while Instant::now() < until {
                    let jobs = f.claim(&c, Some(&prep), "w", 1).await.unwrap();
                    for (id, _, _) in &jobs {
                        tokio::time::sleep(SERVICE).await;
                        assert!(f.complete(&c, Some(&prep), *id).await.unwrap());
                    }
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    done += jobs.len();
                }
            }
        }
        done
    }
}

/// Runs one phase; the other tenants' waits in ms (an unserved job counts with its wait so
/// far, a lower bound) and how many of them were served.
async fn phase(mode: Mode) -> (Vec<f64>, usize) {
    let mut c = common::client().await;
    mode.enqueue(&mut c, "flood", FLOOD).await;
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(tokio::spawn(mode.clone().work(start + PHASE)));
    }
    let mut producers = Vec::new();
    for t in 0..OTHERS {
        let mode = mode.clone();
        producers.push(tokio::spawn(async move {
            let mut c = common::client().await;
            // Staggered, so arrivals are spread evenly over each period.
            tokio::time::sleep(PERIOD * t as u32 / OTHERS as u32).await;
            let mut tick = tokio::time::interval(PERIOD);
            while start.elapsed() < PRODUCE_FOR {
                tick.tick().await;
                mode.enqueue(&mut c, &format!("tenant-{t}"), 1).await;
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    for w in workers {
        w.await.unwrap();
    }
    let rows = c
        .query(
            &format!(
                "SELECT (extract(epoch FROM COALESCE(claimed_at, now()) - created_at) * 1000)::float8,
                        claimed_at IS NOT NULL
                   FROM \"{}\".jobs WHERE tenant <> 'flood'",
                mode.schema()
            ),
            &[],
        )
        .await
        .unwrap();
    let waits = rows.iter().map(|r| r.get::<_, f64>(0)).collect();
    let served = rows.iter().filter(|r| r.get::<_, bool>(1)).count();
    (waits, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_order_bounds_other_tenants_wait_fifo_does_not() {
    let (fair, _c) = common::queue("fairness", |c| c).await;
    let fifo = FifoQueue::new("fifo_fairness").unwrap();
    fifo.migrate(&common::client().await).await.unwrap();

    let (fair_waits, fair_served) = phase(Mode::Fair(fair)).await;
    let (fifo_waits, fifo_served) = phase(Mode::Fifo(Arc::new(fifo))).await;
    let p = |w: &[f64], q| common::percentile(w, q);
    println!(
        "fair: p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({fair_served}/{} served); \
         fifo: p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({fifo_served}/{} served)",
        p(&fair_waits, 50.0),
        p(&fair_waits, 99.0),
        p(&fair_waits, 100.0),
        fair_waits.len(),
        p(&fifo_waits, 50.0),
        p(&fifo_waits, 99.0),
        p(&fifo_waits, 100.0),
        fifo_waits.len(),
    );
    let bound_ms = (SERVICE * BOUND_SERVICE_TIMES).as_secs_f64() * 1000.0;
    assert!(fair_waits.len() >= OTHERS * 10, "the producers ran");
    assert_eq!(
        fair_served,
        fair_waits.len(),
        "fair order serves every other tenant's job"
    );
    assert!(
        p(&fair_waits, 99.0) <= bound_ms,
        "fair p99 {:.1} ms over {BOUND_SERVICE_TIMES} service times",
        p(&fair_waits, 99.0)
    );
    // FIFO: the others wait behind the flood, far beyond the bound.
    assert!(
        fifo_served * 10 < fifo_waits.len(),
        "FIFO served {fifo_served} behind the flood"
    );
    assert!(p(&fifo_waits, 99.0) > 10.0 * bound_ms);
}
