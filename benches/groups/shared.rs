//! The shared handle: producer/consumer throughput with batch operations, beside an
//! unbounded crossbeam channel moving the same number of items.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fairshare::{PushOptions, SchedulerConfig, SharedScheduler};

/// Items moved per measured iteration.
const ITEMS: u64 = 20_000;
/// Batch sizes measured for the handle (the channel moves items one by one).
const BATCHES: [usize; 2] = [64, 256];
const TENANTS: u64 = 64;

fn run_channel(producers: u64) -> Duration {
    let (tx, rx) = crossbeam::channel::unbounded::<u64>();
    let per = ITEMS / producers;
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..per {
                    tx.send(p * per + i).unwrap();
                }
            })
        })
        .collect();
    let mut got = 0;
    while got < per * producers {
        black_box(rx.recv().unwrap());
        got += 1;
    }
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

fn run_shared(producers: u64, batch: usize) -> Duration {
    let h: SharedScheduler<u64, u64> = SharedScheduler::new(SchedulerConfig::new());
    let per = ITEMS / producers;
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let h = h.clone();
            thread::spawn(move || {
                let mut i = 0;
                while i < per {
                    let end = (i + batch as u64).min(per);
                    let batch = (i..end).map(|j| {
                        let id = p * per + j;
                        (id % TENANTS, id, PushOptions::new())
                    });
                    for r in h.try_push_batch(batch) {
                        black_box(r.is_ok());
                    }
                    i = end;
                }
            })
        })
        .collect();
    let mut got = 0;
    while got < per * producers {
        let got_batch = h.pop_batch(batch);
        if got_batch.is_empty() {
            match h.pop_timeout(Duration::from_millis(100)) {
                Ok(item) => {
                    black_box(item);
                    got += 1;
                }
                Err(e) => panic!("consumer starved: {e}"),
            }
        } else {
            got += got_batch.len() as u64;
            black_box(got_batch);
        }
    }
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

pub(crate) fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_throughput");
    g.throughput(Throughput::Elements(ITEMS))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for producers in [1u64, 2] {
        g.bench_with_input(
            BenchmarkId::new("crossbeam_channel", format!("{producers}p1c")),
            &producers,
            |b, &p| b.iter_custom(|iters| (0..iters).map(|_| run_channel(p)).sum()),
        );
        for batch in BATCHES {
            g.bench_with_input(
                BenchmarkId::new(format!("shared_batch{batch}"), format!("{producers}p1c")),
                &producers,
                |b, &p| b.iter_custom(|iters| (0..iters).map(|_| run_shared(p, batch)).sum()),
            );
        }
    }
    g.finish();
}
