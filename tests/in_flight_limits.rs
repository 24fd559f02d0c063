//! Per-tenant and global in-flight limits: never exceeded (on a manual clock and under real
//! concurrent workers), dispatch is work-conserving under them (it returns an item iff some
//! queued tenant has room), limits can be raised and lowered at runtime, a tenant at its limit
//! blocks nobody else, and drain and close hand back every item whatever the limits.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::num::NonZeroU32;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering::SeqCst},
};
use std::thread;
use std::time::{Duration, Instant};

use fairshare::{
    FairQueue, ManualClock, Scheduler, SchedulerConfig, SharedScheduler, Ticket,
    config::TenantLimits, shared::WaitError,
};
use proptest::prelude::*;

use common::threads::{LONG, Rng, SETTLE, Shared, recv_prompt, spawn_recv};

const N: u8 = 4;

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Dispatch,
    Pop,
    Complete(usize),
    SetLimit(u8, Option<u32>),
    Global(Option<u32>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..N).prop_map(Op::Push),
        6 => Just(Op::Dispatch),
        2 => Just(Op::Pop),
        4 => any::<usize>().prop_map(Op::Complete),
        1 => (0..N, prop::option::of(1..=3u32)).prop_map(|(t, l)| Op::SetLimit(t, l)),
        1 => prop::option::of(1..=4u32).prop_map(Op::Global),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
    #[test]
    fn in_flight_limits_hold_and_dispatch_is_work_conserving(
        default in 1..=3u32,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let cfg = SchedulerConfig::new()
            .with_tenant_limits(TenantLimits::new().with_max_in_flight(default));
        let mut s: Scheduler<u8, u8, ManualClock> = Scheduler::with_clock(cfg, ManualClock::new());
        let mut limit: [u32; N as usize] = [default; N as usize];
        let mut global: Option<u32> = None;
        let mut queued = [0usize; N as usize];
        let mut inflight = [0u32; N as usize];
        let mut tickets: Vec<(u8, Ticket)> = Vec::new();
        for op in ops {
            match op {
                Op::Push(t) => { s.try_push(t, t).unwrap(); queued[t as usize] += 1; }
                Op::Dispatch | Op::Pop => {
                    let total: u64 = inflight.iter().map(|&x| u64::from(x)).sum();
                    let eligible = global.is_none_or(|g| total < u64::from(g))
                        && (0..N as usize).any(|t| queued[t] > 0 && inflight[t] < limit[t]);
                    let got = if matches!(op, Op::Dispatch) {
                        s.dispatch().map(|d| { let t = d.item; tickets.push((t, d.ticket)); t })
                    } else {
                        s.pop()
                    };
                    prop_assert_eq!(got.is_some(), eligible, "work conservation under limits {:?}", limit);
                    if let Some(t) = got {
                        let t = t as usize;
                        prop_assert!(inflight[t] < limit[t], "tenant {} over its limit", t);
                        queued[t] -= 1;
                        if matches!(op, Op::Dispatch) { inflight[t] += 1; }
                    }
                }
                Op::Complete(i) => if !tickets.is_empty() {
                    let (t, tk) = tickets.swap_remove(i % tickets.len());
                    prop_assert!(s.complete(tk, 1));
                    inflight[t as usize] -= 1;
                }
                Op::SetLimit(t, l) => {
                    let mut tl = TenantLimits::new();
                    if let Some(l) = l { tl = tl.with_max_in_flight(l); }
                    s.set_limits(t, tl);
                    limit[t as usize] = l.unwrap_or(u32::MAX);
                }
                Op::Global(g) => { s.set_in_flight_limit(g); global = g; }
            }
            for t in 0..N {
                prop_assert_eq!(s.queue().in_flight(&t), inflight[t as usize]);
            }
            let total: u64 = inflight.iter().map(|&x| u64::from(x)).sum();
            prop_assert_eq!(s.queue().total_in_flight(), total);
        }
    }
}

#[test]
fn close_returns_items_of_a_tenant_parked_at_its_in_flight_limit() {
    let h: SharedScheduler<&str, u32> = SharedScheduler::new(
        SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_in_flight(1)),
    );
    for i in 0..3 {
        h.try_push("a", i).unwrap();
    }
    let job = h.try_dispatch().unwrap();
    assert!(h.try_dispatch().is_none()); // parks "a" off the ring
    let mut left = h.close();
    left.sort_unstable();
    assert_eq!(left, [1, 2], "close must hand back every queued item");
    drop(job);
    let _ = NonZeroU32::MIN;
}

// ===== in-flight limits =====

#[test]
fn in_flight_limits_hold_under_concurrent_workers() {
    const GLOBAL: u32 = 3;
    const PER_TENANT: u32 = 2;
    const HOT: u32 = 0; // overridden to 1
    const N_TENANTS: u32 = 5;
    let config = SchedulerConfig::new()
        .with_max_in_flight(Some(GLOBAL))
        .with_tenant_limits(TenantLimits::new().with_max_in_flight(PER_TENANT));
    let h: Shared<(u32, u32)> = SharedScheduler::new(config);
    h.with_scheduler(|s| s.set_limits(HOT, TenantLimits::new().with_max_in_flight(1)));
    let limit_of = |t: u32| if t == HOT { 1 } else { PER_TENANT };

    let global = Arc::new(AtomicU64::new(0));
    let per: Arc<Vec<AtomicU64>> = Arc::new((0..N_TENANTS).map(|_| AtomicU64::new(0)).collect());
    let max_global = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));

    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let (h, global, per, max_global, violations) = (
                h.clone(),
                Arc::clone(&global),
                Arc::clone(&per),
                Arc::clone(&max_global),
                Arc::clone(&violations),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(77 + w);
                let mut done = 0u64;
                loop {
                    let jobs = if rng.chance(30) {
                        let jobs = h.dispatch_batch(rng.range(1, 4) as usize);
                        if jobs.is_empty() {
                            if h.is_closed() {
                                break;
                            }
                            thread::yield_now();
                            continue;
                        }
                        jobs
                    } else {
                        match h.dispatch_timeout(Duration::from_millis(50)) {
                            Ok(job) => vec![job],
                            Err(WaitError::Closed) => break,
                            Err(_) => continue,
                        }
                    };
                    // Count first (after the lease exists), uncount before releasing: what
                    // the test sees in flight is a subset of what the scheduler has.
                    for job in &jobs {
                        let (t, _) = job.item;
                        let g = global.fetch_add(1, SeqCst) + 1;
                        max_global.fetch_max(g, SeqCst);
                        let n = per[t as usize].fetch_add(1, SeqCst) + 1;
                        let mut v = violations.lock().unwrap();
                        if g > u64::from(GLOBAL) {
                            v.push(format!("{g} in flight, global limit {GLOBAL}"));
                        }
                        if n > u64::from(limit_of(t)) {
                            v.push(format!("tenant {t}: {n} in flight, limit {}", limit_of(t)));
                        }
                    }
                    if rng.chance(20) {
                        h.with_scheduler(|s| {
                            let q = s.queue();
                            let mut v = violations.lock().unwrap();
                            if q.total_in_flight() > u64::from(GLOBAL) {
                                v.push(format!("scheduler reports {}", q.total_in_flight()));
                            }
                            for t in 0..N_TENANTS {
                                if q.in_flight(&t) > limit_of(t) {
                                    v.push(format!("scheduler: tenant {t} {}", q.in_flight(&t)));
                                }
                            }
                        });
                    }
                    for _ in 0..rng.range(0, 50) {
                        std::hint::spin_loop();
                    }
                    for job in jobs {
                        let (t, _) = job.item;
                        per[t as usize].fetch_sub(1, SeqCst);
                        global.fetch_sub(1, SeqCst);
                        done += 1;
                        if rng.chance(50) {
                            job.lease.complete(1);
                        } else {
                            drop(job.lease);
                        }
                    }
                }
                done
            })
        })
        .collect();

    let mut rng = Rng::new(5);
    let total = 3_000u32;
    for i in 0..total {
        // The hot tenant sends half of everything.
        let t = if rng.chance(50) {
            HOT
        } else {
            rng.range(1, u64::from(N_TENANTS) - 1) as u32
        };
        h.try_push(t, (t, i)).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(20);
    while !h.is_empty() && Instant::now() < until {
        thread::sleep(Duration::from_millis(2));
    }
    assert!(
        h.close().is_empty(),
        "workers should have drained the queue"
    );
    let done: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(done, u64::from(total));
    let v = violations.lock().unwrap();
    assert!(v.is_empty(), "limits exceeded: {:?}", &v[..v.len().min(10)]);
    assert!(max_global.load(SeqCst) >= 1);
    assert_eq!(h.with_scheduler(|s| s.queue().total_in_flight()), 0);
}

#[test]
fn tenant_at_in_flight_limit_does_not_block_others() {
    let h: SharedScheduler<&'static str, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(10)));
    h.with_scheduler(|s| s.set_limits("hog", TenantLimits::new().with_max_in_flight(1)));
    for i in 0..3 {
        h.try_push("hog", i).unwrap();
    }
    h.try_push("light", 100).unwrap();
    h.try_push("light", 101).unwrap();

    let hog = h.try_dispatch().expect("hog's first item");
    assert_eq!(hog.item, 0);
    // hog is at its limit with two items queued: light is served anyway.
    let l1 = h.try_dispatch().expect("light is not blocked by hog");
    let l2 = h.try_dispatch().expect("light is not blocked by hog");
    assert_eq!((l1.item, l2.item), (100, 101));
    assert!(h.try_dispatch().is_none(), "hog is at its limit");
    assert!(
        h.try_pop().is_none(),
        "pop honours the in-flight limits too"
    );

    // A worker asleep while only hog's items are queued gets a light item pushed later.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    h.try_push("light", 102).unwrap();
    assert_eq!(recv_prompt(&rx, "worker waiting behind hog"), Ok(102));

    // Releasing hog's lease wakes a waiting worker for hog's next item.
    let rx = {
        let h = h.clone();
        spawn_recv(move || h.dispatch_timeout(LONG).map(|j| j.item))
    };
    thread::sleep(SETTLE);
    drop(hog);
    assert_eq!(recv_prompt(&rx, "worker waiting for hog's slot"), Ok(1));
    drop((l1, l2));
    assert_eq!(h.close(), [2]);
}

/// Drain hands back every item, in-flight limits notwithstanding.
#[test]
fn drain_ignores_in_flight_limits() {
    let mut q: FairQueue<&str, u32> = FairQueue::new();
    q.set_in_flight_limit(Some(1));
    q.try_push("a", 1).unwrap();
    q.try_push("a", 2).unwrap();
    q.try_push("b", 3).unwrap();
    let d = q.dispatch().unwrap();
    assert!(q.dispatch().is_none());
    let drain = q.drain();
    assert_eq!(drain.size_hint(), (2, Some(2)));
    let mut rest: Vec<u32> = drain.collect();
    rest.sort_unstable();
    assert_eq!(rest, [2, 3]);
    assert!(q.is_empty());
    assert!(q.complete(d.ticket, 1));
}
