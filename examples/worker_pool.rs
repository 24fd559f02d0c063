//! Real threads sharing one `SharedScheduler`: one heavy and six light tenants, backpressure, clean close.
//!
//! Four producer threads push jobs: one for a heavy tenant (`acme`, 2,400 bulk jobs as fast as
//! it can, each estimated at cost 1 but actually costing 3), and three for six light tenants
//! (100 jobs each at a steady pace, estimated at 2, actually 1 or 2). Four worker threads take
//! jobs with `dispatch_timeout`, "run" them (sleep in proportion to the actual cost) and report
//! the actual cost with `lease.complete`.
//!
//! - A global in-flight limit of 3 (say, the database behind the workers takes 3 connections):
//!   one of the four workers is always waiting, and never more than 3 jobs run at once.
//! - A global `Capacity` of 48 queued jobs with `ShedPolicy::EvictOverShare`: when the queue is
//!   full, acme's producer is the one refused (it is the tenant furthest over its share), waits
//!   in `push_timeout`, and a light tenant's push evicts acme's oldest job instead of being
//!   refused. Evicted jobs come back through `Scheduler::take_returned` (the pusher takes them
//!   right after its push) and are routed back to their producer, which queues them again.
//! - At the end the queue drains, `close()` stops the workers, and every job is checked to have
//!   come back exactly once.
//!
//! Real threads make timing vary: the job counts, costs and the conservation check are exact on
//! every run; waits and backpressure counts are marked `~` (approximate, they vary run to run).

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{
    PushOptions, RejectReason, SchedulerConfig, SharedScheduler,
    config::{Capacity, ShedPolicy},
    shared::WaitError,
    stats::{AdmissionCounters, QueueCounters},
};

const HEAVY: &str = "acme";
const LIGHT: [&str; 6] = ["globex", "initech", "umbrella", "hooli", "wayne", "stark"];
const HEAVY_JOBS: u32 = 2_400;
const LIGHT_JOBS: u32 = 100;
/// Light producers pause this long between pushes.
const LIGHT_PACE: Duration = Duration::from_millis(2);
const WORKERS: usize = 4;
const MAX_IN_FLIGHT: u32 = 3;
const QUEUE_CAPACITY: u64 = 48;
/// How long a producer waits for room before trying again.
const PUSH_TIMEOUT: Duration = Duration::from_millis(20);
/// When main looks at the queue.
const SNAPSHOT_AT: Duration = Duration::from_millis(100);
/// Wall time of one unit of actual cost.
const COST_UNIT: Duration = Duration::from_micros(200);

type Handle = SharedScheduler<&'static str, Job>;

/// A job: its id (for the exactly-once check), tenant, estimated and actual cost.
#[derive(Debug)]
struct Job {
    id: usize,
    tenant: &'static str,
    estimate: u32,
    actual: u32,
    submitted: Instant,
}

/// What the threads observed, per tenant.
#[derive(Debug, Default)]
struct TenantStats {
    produced: u64,
    estimated_cost: u64,
    completed: u64,
    actual_cost: u64,
    waits: Vec<Duration>,
    /// Pushes that found the queue full and waited in `push_timeout`.
    waited_for_room: u64,
    /// Waits that hit the timeout (the job was kept and pushed again).
    timed_out: u64,
    /// This tenant's jobs evicted to make room for another tenant.
    evicted: u64,
}

/// Shared by every thread.
struct Shared {
    handle: Handle,
    stats: Mutex<BTreeMap<&'static str, TenantStats>>,
    /// How many times each job came back to the host: must end at exactly 1 for every job.
    returned: Vec<AtomicU8>,
    running: AtomicUsize,
    peak_running: AtomicUsize,
}

impl Shared {
    fn stat(&self, tenant: &'static str, f: impl FnOnce(&mut TenantStats)) {
        f(self.stats.lock().unwrap().entry(tenant).or_default());
    }

    fn came_back(&self, job: &Job) {
        self.returned[job.id].fetch_add(1, Ordering::Relaxed);
    }
}

/// What main saw of the scheduler: a mid-run snapshot, and the counters before `close()`.
struct End {
    snapshot: Vec<(&'static str, usize)>,
    admission: AdmissionCounters,
    queue: QueueCounters,
    handed_back: usize,
}

/// A producer's plan: which tenants it pushes for, how many jobs each, and its pace.
struct Producer {
    tenants: Vec<&'static str>,
    jobs_per_tenant: u32,
    pace: Option<Duration>,
    first_id: usize,
}

fn main() {
    let started = Instant::now();
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(MAX_IN_FLIGHT))
        .with_capacity(Capacity::new().with_max_items(QUEUE_CAPACITY))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    // One producer for the heavy tenant, three for two light tenants each; job ids are
    // consecutive per producer.
    let mut producers = Vec::new();
    let mut next_id = 0;
    let plans = std::iter::once((vec![HEAVY], HEAVY_JOBS, None)).chain(
        LIGHT
            .chunks(2)
            .map(|pair| (pair.to_vec(), LIGHT_JOBS, Some(LIGHT_PACE))),
    );
    for (tenants, jobs_per_tenant, pace) in plans {
        let first_id = next_id;
        next_id += tenants.len() * jobs_per_tenant as usize;
        producers.push(Producer {
            tenants,
            jobs_per_tenant,
            pace,
            first_id,
        });
    }
    let total_jobs = next_id;
    let shared = Arc::new(Shared {
        handle: SharedScheduler::new(config),
        stats: Mutex::new(BTreeMap::new()),
        returned: (0..total_jobs).map(|_| AtomicU8::new(0)).collect(),
        running: AtomicUsize::new(0),
        peak_running: AtomicUsize::new(0),
    });

    // Evicted jobs go back to the producer of their tenant, which queues them again.
    let mut mailboxes = BTreeMap::new();
    let mut inboxes = Vec::new();
    for p in &producers {
        let (tx, rx) = mpsc::channel();
        for &tenant in &p.tenants {
            mailboxes.insert(tenant, tx.clone());
        }
        inboxes.push(rx);
    }

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || work(&shared))
        })
        .collect();
    let producer_threads: Vec<_> = producers
        .into_iter()
        .zip(inboxes)
        .map(|(plan, inbox)| {
            let shared = Arc::clone(&shared);
            let mailboxes = mailboxes.clone();
            thread::spawn(move || {
                produce(&shared, &plan, &inbox, &mailboxes);
                inbox // handed back so evictions after this producer finished are not lost
            })
        })
        .collect();
    drop(mailboxes);

    // A look at the queue while acme's producer keeps it full.
    thread::sleep(SNAPSHOT_AT);
    let snapshot = shared.handle.with_scheduler(|s| {
        let tenants = s.queue().tenants();
        tenants
            .map(|(&tenant, queued, _)| (tenant, queued))
            .collect()
    });

    // Jobs evicted after their own producer had finished: queue them again from here.
    let inboxes: Vec<_> = producer_threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut late: Vec<Job> = inboxes.iter().flat_map(|inbox| inbox.try_iter()).collect();
    while let Some(job) = late.pop() {
        for victim in push(&shared, job) {
            shared.stat(victim.tenant, |s| s.evicted += 1);
            late.push(victim);
        }
    }

    // Let the workers drain the queue, then close: workers see `Closed` and stop.
    while shared
        .handle
        .with_scheduler(|s| s.queue().len() as u64 + s.queue().total_in_flight())
        > 0
    {
        thread::sleep(Duration::from_millis(1));
    }
    let (admission, queue, pending) = shared
        .handle
        .with_scheduler(|s| (s.counters(), s.queue().counters(), s.pending_returns()));
    assert_eq!(pending, 0, "every evicted job was taken back");
    let handed_back = shared.handle.close();
    for job in &handed_back {
        shared.came_back(job);
    }
    for w in workers {
        w.join().unwrap();
    }

    let end = End {
        snapshot,
        admission,
        queue,
        handed_back: handed_back.len(),
    };
    report(&shared, &end);
    println!("\nRan in ~{} ms.", started.elapsed().as_millis());
}

/// A producer: pushes its tenants' jobs round-robin, re-queues jobs evicted from its tenants.
fn produce(
    shared: &Shared,
    plan: &Producer,
    inbox: &mpsc::Receiver<Job>,
    mailboxes: &BTreeMap<&'static str, mpsc::Sender<Job>>,
) {
    let mut id = plan.first_id;
    for i in 0..plan.jobs_per_tenant {
        for &tenant in &plan.tenants {
            let (estimate, actual) = if tenant == HEAVY {
                (1, 3) // bulk updates: costlier than the tenant says
            } else {
                (2, 1 + i % 2) // light jobs: cheaper than estimated
            };
            let job = Job {
                id,
                tenant,
                estimate,
                actual,
                submitted: Instant::now(),
            };
            id += 1;
            shared.stat(tenant, |s| {
                s.produced += 1;
                s.estimated_cost += u64::from(estimate);
            });
            let mut pending = vec![job];
            pending.extend(inbox.try_iter());
            for job in pending {
                for victim in push(shared, job) {
                    shared.stat(victim.tenant, |s| s.evicted += 1);
                    // The owner's producer queues it again; if it has finished, main does.
                    mailboxes[victim.tenant].send(victim).unwrap();
                }
            }
            if let Some(pace) = plan.pace {
                thread::sleep(pace);
            }
        }
    }
}

/// Pushes `job`, waiting in `push_timeout` while the queue is full (and again after a
/// timeout: the job is never given up). Returns the jobs evicted to make room.
fn push(shared: &Shared, job: Job) -> Vec<Job> {
    let tenant = job.tenant;
    let opts = PushOptions::new().with_cost(job.estimate);
    let mut job = match shared.handle.try_push_with(tenant, job, opts) {
        Ok(()) => return take_evicted(shared),
        Err(rejected) => {
            assert!(matches!(
                rejected.reason(),
                RejectReason::CapacityFull { .. }
            ));
            shared.stat(tenant, |s| s.waited_for_room += 1);
            rejected.into_inner()
        }
    };
    loop {
        match shared.handle.push_timeout(tenant, job, opts, PUSH_TIMEOUT) {
            Ok(()) => return take_evicted(shared),
            Err(rejected) => {
                // Only a full queue makes a producer wait; nothing here blocks or closes early.
                assert!(matches!(
                    rejected.reason(),
                    RejectReason::CapacityFull { .. }
                ));
                shared.stat(tenant, |s| s.timed_out += 1);
                job = rejected.into_inner();
            }
        }
    }
}

/// Takes the jobs evicted to make room, which wait in the scheduler until taken. Another
/// producer's push may have evicted some of them: each goes back to its own producer anyway.
fn take_evicted(shared: &Shared) -> Vec<Job> {
    shared
        .handle
        .with_scheduler(|s| s.take_returned())
        .into_iter()
        .map(|r| {
            assert_eq!(r.reason(), RejectReason::Evicted);
            r.into_inner()
        })
        .collect()
}

/// A worker: takes jobs until the scheduler is closed and empty.
fn work(shared: &Shared) {
    loop {
        let job = match shared.handle.dispatch_timeout(Duration::from_millis(50)) {
            Ok(job) => job,
            Err(WaitError::Timeout) => continue,
            Err(_) => return, // closed and empty
        };
        let item = job.item;
        let waited = item.submitted.elapsed();
        let running = shared.running.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_running.fetch_max(running, Ordering::SeqCst);
        thread::sleep(COST_UNIT * item.actual);
        shared.running.fetch_sub(1, Ordering::SeqCst);
        shared.stat(item.tenant, |s| {
            s.completed += 1;
            s.actual_cost += u64::from(item.actual);
            s.waits.push(waited);
        });
        shared.came_back(&item);
        job.lease.complete(item.actual);
    }
}

fn report(shared: &Shared, end: &End) {
    println!(
        "Worker pool: {WORKERS} workers, at most {MAX_IN_FLIGHT} jobs in flight, room for \
         {QUEUE_CAPACITY} queued jobs; when the queue is full,"
    );
    println!(
        "the tenant furthest over its fair share is refused or evicted. {HEAVY} pushes \
         {HEAVY_JOBS} jobs as fast as"
    );
    println!(
        "it can (estimated cost 1, actual 3); {} light tenants push {LIGHT_JOBS} each at a \
         steady pace (estimated 2,",
        LIGHT.len()
    );
    println!("actual 1 or 2). Numbers marked ~ vary from run to run; the rest is exact.\n");
    let stats = shared.stats.lock().unwrap();
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>12} {:>11} {:>11}",
        "tenant", "produced", "completed", "est. cost", "actual cost", "~wait p50", "~wait max"
    );
    for tenant in std::iter::once(HEAVY).chain(LIGHT) {
        let s = &stats[tenant];
        let mut waits = s.waits.clone();
        waits.sort_unstable();
        let p50 = waits.get(waits.len() / 2).copied().unwrap_or_default();
        let max = waits.last().copied().unwrap_or_default();
        println!(
            "{:<10} {:>9} {:>10} {:>10} {:>12} {:>11} {:>11}",
            tenant,
            s.produced,
            s.completed,
            s.estimated_cost,
            s.actual_cost,
            fmt_ms(p50),
            fmt_ms(max),
        );
    }
    let sum = |f: fn(&TenantStats) -> u64| stats.values().map(f).sum::<u64>();
    let (produced, completed) = (sum(|s| s.produced), sum(|s| s.completed));
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>12}",
        "total",
        produced,
        completed,
        sum(|s| s.estimated_cost),
        sum(|s| s.actual_cost)
    );

    let heavy = &stats[HEAVY];
    let waiting: Vec<String> = end
        .snapshot
        .iter()
        .filter(|(_, queued)| *queued > 0)
        .map(|(tenant, queued)| format!("{tenant} {queued}"))
        .collect();
    println!(
        "\nBackpressure (~): {} ms in, the queue held {}. {HEAVY}'s producer found it full {} \
         times and",
        SNAPSHOT_AT.as_millis(),
        waiting.join(", "),
        heavy.waited_for_room,
    );
    println!(
        "waited in push_timeout ({} waits hit the {} ms timeout); light tenants' pushes evicted \
         {} {HEAVY} jobs,",
        heavy.timed_out,
        PUSH_TIMEOUT.as_millis(),
        heavy.evicted,
    );
    println!(
        "handed back by take_returned and queued again by their producer; light producers waited \
         {} times.",
        sum(|s| s.waited_for_room) - heavy.waited_for_room,
    );

    let once = shared
        .returned
        .iter()
        .all(|n| n.load(Ordering::Relaxed) == 1);
    let peak = shared.peak_running.load(Ordering::SeqCst);
    let admitted_net = end.admission.admitted - end.admission.evicted;
    println!(
        "\nNothing lost: {produced} jobs produced = {completed} completed + {} handed back by close(); \
         each job exactly once: {once}.\nScheduler counters: admitted - evicted = {admitted_net} = \
         dispatched {}. Never more than {MAX_IN_FLIGHT} jobs running: {}.",
        end.handed_back,
        end.queue.dispatched,
        peak <= MAX_IN_FLIGHT as usize,
    );
    assert!(once, "a job was lost or came back twice");
    assert_eq!(completed + end.handed_back as u64, produced);
    assert_eq!(admitted_net, end.queue.dispatched);
    assert!(peak <= MAX_IN_FLIGHT as usize);
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
