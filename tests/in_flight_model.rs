#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Per-tenant and global in-flight limits on a manual clock: never exceeded, and dispatch is
//! work-conserving under them (it returns an item iff some queued tenant has room), with
//! limits raised and lowered at runtime. Also: close hands back parked tenants' items.

use fairshare::{
    ManualClock, Scheduler, SchedulerConfig, SharedScheduler, Ticket, config::TenantLimits,
};
use proptest::prelude::*;
use std::num::NonZeroU32;

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
