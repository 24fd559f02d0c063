#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Claims per second with 4 concurrent claimers, and enqueue of a 1,000-job batch, each beside
//! the plain FIFO `SKIP LOCKED` queue on the same throwaway PostgreSQL in the same run.
//!
//! Every claim and insert goes over a real connection (unix socket) to a real server: the
//! path production runs. Setup (filling and truncating the tables) is outside the timings.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairshare_postgres::testing::{FifoQueue, TempPostgres};
use fairshare_postgres::{NewJob, Queue, QueueConfig};
use tokio::runtime::Runtime;
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

async fn clients(conn: &str, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(fairshare_postgres::connect(conn).await.unwrap());
    }
    out
}

fn claim(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("claim_4_claimers");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(JOBS_PER_RUN as u64));
    let mut admin = s.rt.block_on(fairshare_postgres::connect(&s.conn)).unwrap();
    let claimers = s.rt.block_on(clients(&s.conn, CLAIMERS));
    let claimers: Vec<std::sync::Arc<Client>> = claimers.into_iter().map(std::sync::Arc::new).collect();

    group.bench_function(BenchmarkId::new("fifo_order_by_id", JOBS_PER_RUN), |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    admin.batch_execute("TRUNCATE bench_fifo.jobs").await.unwrap();
                    for t in 0..TENANTS {
                        let jobs: Vec<Vec<u8>> = (0..JOBS_PER_RUN / TENANTS).map(payload).collect();
                        s.fifo.enqueue_batch(&admin, &format!("t{t}"), &jobs).await.unwrap();
                    }
                    // As autovacuum does on a live table (its threshold is lower than one run).
                    admin.batch_execute("ANALYZE bench_fifo.jobs").await.unwrap();
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for client in &claimers {
                        let (client, fifo) = (client.clone(), s.fifo.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut n = 0;
                            while !fifo.claim(&*client, "bench", 1).await.unwrap().is_empty() {
                                n += 1;
                            }
                            n
                        }));
                    }
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

    group.bench_function(BenchmarkId::new("fair_pass_order", JOBS_PER_RUN), |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    admin
                        .batch_execute("TRUNCATE bench_fair.jobs, bench_fair.tenants")
                        .await
                        .unwrap();
                    for t in 0..TENANTS {
                        let jobs: Vec<NewJob> =
                            (0..JOBS_PER_RUN / TENANTS).map(|i| NewJob::new(payload(i))).collect();
                        s.fair.enqueue_batch(&mut admin, &format!("t{t}"), &jobs).await.unwrap();
                    }
                    admin.batch_execute("ANALYZE bench_fair.jobs").await.unwrap();
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for client in &claimers {
                        let (client, fair) = (client.clone(), s.fair.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut n = 0;
                            while !fair.claim(&*client, "bench", 1).await.unwrap().is_empty() {
                                n += 1;
                            }
                            n
                        }));
                    }
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
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("enqueue_batch_1000");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut client = s.rt.block_on(fairshare_postgres::connect(&s.conn)).unwrap();
    let payloads: Vec<Vec<u8>> = (0..BATCH).map(payload).collect();
    let jobs: Vec<NewJob> = payloads.iter().cloned().map(NewJob::new).collect();

    group.bench_function(BenchmarkId::new("plain_insert_unnest", BATCH), |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    if i % 50 == 0 {
                        client.batch_execute("TRUNCATE bench_fifo.jobs").await.unwrap();
                    }
                    let start = Instant::now();
                    s.fifo.enqueue_batch(&client, "acme", &payloads).await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });

    group.bench_function(BenchmarkId::new("fair_enqueue_batch", BATCH), |b| {
        b.iter_custom(|iters| {
            s.rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    if i % 50 == 0 {
                        client
                            .batch_execute("TRUNCATE bench_fair.jobs, bench_fair.tenants")
                            .await
                            .unwrap();
                    }
                    let start = Instant::now();
                    s.fair.enqueue_batch(&mut client, "acme", &jobs).await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, claim, enqueue);
criterion_main!(benches);
