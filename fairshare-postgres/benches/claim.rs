#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
// reason: `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]
//! Claims per second with 4 concurrent claimers, and enqueue of a 1,000-job batch, each beside
//! the plain FIFO `SKIP LOCKED` queue on the same throwaway PostgreSQL in the same run.
//!
//! Every claim and insert goes over a real connection (unix socket) to a real server: the
//! path production runs. Two pairs per group: statements prepared once per connection
//! ([`Session`] against the FIFO queue's prepared statements: what a worker loop runs), and
//! statements sent as text each time (the plain [`Queue`] methods against the FIFO queue's
//! text). Setup (filling, analysing and truncating the tables) is outside the timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairshare_postgres::testing::{FifoPrepared, FifoQueue, TempPostgres};
use fairshare_postgres::{NewJob, Queue, QueueConfig, Session};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;
use tokio_postgres::Client;

const CLAIMERS: usize = 4;
const JOBS_PER_RUN: usize = 2_000;
const TENANTS: usize = 10;
const BATCH: usize = 1_000;

struct Setup {
    rt: Runtime,
    // Kept alive for the whole run; dropped last.
    _server: TempPostgres,
    conn: String,
    fair: Queue,
    fifo: FifoQueue,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLAIMERS)
        .enable_all()
        .build()
        .unwrap();
    let server = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let conn = server.connection_string();
    let fair = Queue::new(QueueConfig::new("bench_fair").unwrap());
    let fifo = FifoQueue::new("bench_fifo").unwrap();
    rt.block_on(async {
        let mut c = fairshare_postgres::connect(&conn).await.unwrap();
        fair.migrate(&mut c).await.unwrap();
        fifo.migrate(&c).await.unwrap();
    });
    Setup {
        rt,
        _server: server,
        conn,
        fair,
        fifo,
    }
}

fn payload(i: usize) -> Vec<u8> {
    format!("job-payload-{i:06}").into_bytes()
}

/// One claimer's connection, in one of the four configurations.
enum Claimer {
    FifoPrepared(FifoQueue, Client, FifoPrepared),
    FifoText(FifoQueue, Client),
    FairSession(Session),
    FairText(Queue, Client),
}

impl Claimer {
    /// Claims one job at a time until none is left; how many.
    async fn drain(&self) -> usize {
        let mut n = 0;
        loop {
            let got = match self {
                Claimer::FifoPrepared(f, c, p) => {
                    f.claim(c, Some(p), "bench", 1).await.unwrap().len()
                }
                Claimer::FifoText(f, c) => f.claim(c, None, "bench", 1).await.unwrap().len(),
                Claimer::FairSession(s) => s.claim(1).await.unwrap().len(),
                Claimer::FairText(q, c) => q.claim(c, "bench", 1).await.unwrap().len(),
            };
            if got == 0 {
                return n;
            }
            n += got;
        }
    }
}

async fn fill(s: &Setup, admin: &mut Client, fair: bool) {
    if fair {
        admin
            .batch_execute("TRUNCATE bench_fair.jobs, bench_fair.tenants")
            .await
            .unwrap();
        for t in 0..TENANTS {
            let jobs: Vec<NewJob> = (0..JOBS_PER_RUN / TENANTS)
                .map(|i| NewJob::new(payload(i)))
                .collect();
            s.fair
                .enqueue_batch(admin, &format!("t{t}"), &jobs)
                .await
                .unwrap();
        }
        // As autovacuum does on a live queue table (its threshold is far below one run).
        admin
            .batch_execute("ANALYZE bench_fair.jobs")
            .await
            .unwrap();
    } else {
        admin
            .batch_execute("TRUNCATE bench_fifo.jobs")
            .await
            .unwrap();
        for t in 0..TENANTS {
            let jobs: Vec<Vec<u8>> = (0..JOBS_PER_RUN / TENANTS).map(payload).collect();
            s.fifo
                .enqueue_batch(&*admin, None, &format!("t{t}"), &jobs)
                .await
                .unwrap();
        }
        admin
            .batch_execute("ANALYZE bench_fifo.jobs")
            .await
            .unwrap();
    }
}

fn claim(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("claim_4_claimers");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(JOBS_PER_RUN as u64));
    let admin = Mutex::new(s.rt.block_on(fairshare_postgres::connect(&s.conn)).unwrap());

    for kind in ["fifo_prepared", "fair_session", "fifo_text", "fair_text"] {
        let claimers: Vec<Arc<Claimer>> = s.rt.block_on(async {
            let mut out = Vec::new();
            for _ in 0..CLAIMERS {
                let c = fairshare_postgres::connect(&s.conn).await.unwrap();
                out.push(Arc::new(match kind {
                    "fifo_prepared" => {
                        let p = s.fifo.prepare(&c).await.unwrap();
                        Claimer::FifoPrepared(s.fifo.clone(), c, p)
                    }
                    "fifo_text" => Claimer::FifoText(s.fifo.clone(), c),
                    "fair_session" => Claimer::FairSession(
                        Session::new(s.fair.clone(), c, "bench").await.unwrap(),
                    ),
                    _ => Claimer::FairText(s.fair.clone(), c),
                }));
            }
            out
        });
        let fair = kind.starts_with("fair");
        group.bench_function(BenchmarkId::new(kind, JOBS_PER_RUN), |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        fill(&s, &mut *admin.lock().await, fair).await;
                        let start = Instant::now();
                        let tasks: Vec<_> = claimers
                            .iter()
                            .map(|c| {
                                let c = c.clone();
                                tokio::spawn(async move { c.drain().await })
                            })
                            .collect();
                        let mut claimed = 0;
                        for t in tasks {
                            claimed += t.await.unwrap();
                        }
                        total += start.elapsed();
                        assert_eq!(claimed, JOBS_PER_RUN);
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("enqueue_batch_1000");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(BATCH as u64));
    let payloads: Vec<Vec<u8>> = (0..BATCH).map(payload).collect();
    let jobs: Vec<NewJob> = payloads.iter().cloned().map(NewJob::new).collect();
    let (fifo_client, fifo_prep, mut session, mut text_client) = s.rt.block_on(async {
        let fc = fairshare_postgres::connect(&s.conn).await.unwrap();
        let fp = s.fifo.prepare(&fc).await.unwrap();
        let sc = fairshare_postgres::connect(&s.conn).await.unwrap();
        let session = Session::new(s.fair.clone(), sc, "bench").await.unwrap();
        let tc = fairshare_postgres::connect(&s.conn).await.unwrap();
        (fc, fp, session, tc)
    });

    for kind in [
        "plain_insert_prepared",
        "fair_session",
        "plain_insert_text",
        "fair_text",
    ] {
        group.bench_function(BenchmarkId::new(kind, BATCH), |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        if i % 50 == 0 {
                            text_client
                                .batch_execute("TRUNCATE bench_fifo.jobs; TRUNCATE bench_fair.jobs, bench_fair.tenants")
                                .await
                                .unwrap();
                        }
                        let start = Instant::now();
                        match kind {
                            "plain_insert_prepared" => {
                                s.fifo.enqueue_batch(&fifo_client, Some(&fifo_prep), "acme", &payloads).await.unwrap();
                            }
                            "plain_insert_text" => {
                                s.fifo.enqueue_batch(&fifo_client, None, "acme", &payloads).await.unwrap();
                            }
                            "fair_session" => {
                                session.enqueue_batch("acme", &jobs).await.unwrap();
                            }
                            _ => {
                                s.fair.enqueue_batch(&mut text_client, "acme", &jobs).await.unwrap();
                            }
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

/// Median of unsorted samples.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The same pairs measured alternately, round after round (the order flipped every round),
/// so that a machine whose load drifts between criterion's groups still gives a fair ratio.
/// Printed, not a criterion measurement: a cross-check of the criterion medians.
fn paired(_: &mut Criterion) {
    let s = setup();
    let mut admin = s.rt.block_on(fairshare_postgres::connect(&s.conn)).unwrap();
    let (fifo_claimers, fair_claimers) = s.rt.block_on(async {
        let (mut fifo, mut fair) = (Vec::new(), Vec::new());
        for _ in 0..CLAIMERS {
            let c = fairshare_postgres::connect(&s.conn).await.unwrap();
            let p = s.fifo.prepare(&c).await.unwrap();
            fifo.push(Arc::new(Claimer::FifoPrepared(s.fifo.clone(), c, p)));
            let c = fairshare_postgres::connect(&s.conn).await.unwrap();
            fair.push(Arc::new(Claimer::FairSession(
                Session::new(s.fair.clone(), c, "bench").await.unwrap(),
            )));
        }
        (fifo, fair)
    });
    let drain = |claimers: &Vec<Arc<Claimer>>, admin: &mut Client, fair: bool| {
        s.rt.block_on(async {
            fill(&s, admin, fair).await;
            let start = Instant::now();
            let tasks: Vec<_> = claimers
                .iter()
                .map(|c| {
                    let c = c.clone();
                    tokio::spawn(async move { c.drain().await })
                })
                .collect();
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap();
            }
            assert_eq!(n, JOBS_PER_RUN);
            start.elapsed()
        })
    };
    let (mut fifo_t, mut fair_t) = (Vec::new(), Vec::new());
    for round in 0..12 {
        if round % 2 == 0 {
            fifo_t.push(drain(&fifo_claimers, &mut admin, false));
            fair_t.push(drain(&fair_claimers, &mut admin, true));
        } else {
            fair_t.push(drain(&fair_claimers, &mut admin, true));
            fifo_t.push(drain(&fifo_claimers, &mut admin, false));
        }
    }
    let (f, q) = (median(fifo_t), median(fair_t));
    println!(
        "paired claim (4 claimers, prepared): fifo {f:.1?} fair {q:.1?} per {JOBS_PER_RUN} jobs, ratio {:.2}",
        f.as_secs_f64() / q.as_secs_f64()
    );

    let payloads: Vec<Vec<u8>> = (0..BATCH).map(payload).collect();
    let jobs: Vec<NewJob> = payloads.iter().cloned().map(NewJob::new).collect();
    let (fifo_client, fifo_prep, mut session) = s.rt.block_on(async {
        let fc = fairshare_postgres::connect(&s.conn).await.unwrap();
        let fp = s.fifo.prepare(&fc).await.unwrap();
        let sc = fairshare_postgres::connect(&s.conn).await.unwrap();
        (
            fc,
            fp,
            Session::new(s.fair.clone(), sc, "bench").await.unwrap(),
        )
    });
    let (mut fifo_t, mut fair_t) = (Vec::new(), Vec::new());
    s.rt.block_on(async {
        for round in 0..400 {
            if round % 50 == 0 {
                admin
                    .batch_execute(
                        "TRUNCATE bench_fifo.jobs; TRUNCATE bench_fair.jobs, bench_fair.tenants",
                    )
                    .await
                    .unwrap();
            }
            for first in [round % 2 == 0, round % 2 != 0] {
                let start = Instant::now();
                if first {
                    s.fifo
                        .enqueue_batch(&fifo_client, Some(&fifo_prep), "acme", &payloads)
                        .await
                        .unwrap();
                    fifo_t.push(start.elapsed());
                } else {
                    session.enqueue_batch("acme", &jobs).await.unwrap();
                    fair_t.push(start.elapsed());
                }
            }
        }
    });
    let (f, q) = (median(fifo_t), median(fair_t));
    println!(
        "paired enqueue (batch of {BATCH}, prepared): plain insert {f:.2?} fair {q:.2?}, ratio {:.2}",
        f.as_secs_f64() / q.as_secs_f64()
    );
}

criterion_group!(benches, claim, enqueue, paired);
criterion_main!(benches);
