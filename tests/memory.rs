//! Memory follows the backlog: measured by a counting global allocator (every byte this test
//! binary holds), a spike of a million tenants that push once and drain gives back the tenant
//! table, and what stays is the empty queue plus the documented item slab (the backlog's
//! high-water mark, reused by the next spike). Steady state allocates nothing per operation.
//! It runs without the libtest harness (`harness = false`), whose threads would otherwise
//! allocate while it measures.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::alloc::System;

use fairshare::{FairQueue, SchedulerConfig, SharedScheduler};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes held now by this whole test binary.
fn held() -> isize {
    let s = GLOBAL.stats();
    // A reallocation's growth or shrinkage is already in these two.
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// The measurement, alone in this process, so that nothing else allocates while it counts.
fn main() {
    memory_returns_after_a_spike_and_steady_state_allocates_nothing();
    println!("test memory_returns_after_a_spike_and_steady_state_allocates_nothing ... ok");
    an_idle_known_tenant_costs_its_footprint();
    println!("test an_idle_known_tenant_costs_its_footprint ... ok");
}

/// A known idle tenant (pinned by a handle, nothing queued) costs what `footprint` says, plus
/// only the growth slack of the slot slab and the key table: every byte the queue holds for
/// it is counted here.
fn an_idle_known_tenant_costs_its_footprint() {
    // 7/8 of 2^17: the key table is at its load factor, the slab at its capacity's 7/8.
    const TENANTS: usize = 114_688;
    let mut handles = Vec::with_capacity(TENANTS);
    let mut q: FairQueue<u64, u64> = FairQueue::new();
    let base = held();
    for k in 0..TENANTS as u64 {
        handles.push(q.tenant(k));
    }
    let per_tenant = (held() - base) as f64 / TENANTS as f64;
    let (footprint, _) = FairQueue::<u64, u64>::footprint();
    println!(
        "{TENANTS} idle known tenants: {per_tenant:.1} B each, footprint {footprint} B \
         (the rest is growth slack)"
    );
    assert_eq!(q.known_tenants(), TENANTS);
    assert!(
        per_tenant >= footprint as f64 && per_tenant <= footprint as f64 * 8.0 / 7.0 + 1.0,
        "an idle known tenant holds {per_tenant:.1} B, footprint says {footprint} B"
    );
    // The figure the README quotes; a change to the slot's layout must update both.
    assert!(footprint <= 125, "footprint grew to {footprint} B");
    drop(handles);
}

fn memory_returns_after_a_spike_and_steady_state_allocates_nothing() {
    const TENANTS: u64 = 1_000_000;
    let base = held();
    let mut q: FairQueue<u64, u64> = FairQueue::new();
    let empty = held() - base;
    for t in 0..TENANTS {
        q.try_push(t, t).unwrap();
    }
    let peak = held() - base;
    while q.pop().is_some() {}
    let after = held() - base;
    let item_slab = (TENANTS as usize * FairQueue::<u64, u64>::footprint().1) as isize;
    println!(
        "1M tenants, pushed once and drained: empty queue {empty} B, peak {peak} B, after the \
         drain {after} B (item slab {item_slab} B)"
    );
    assert!(
        after as f64 <= 1.1 * (empty + item_slab) as f64,
        "after the drain {after} B, above the empty queue ({empty} B) plus the item slab \
         ({item_slab} B) by more than 10% (peak {peak} B)"
    );

    // Steady state: a closed loop of push and pop over a thousand backlogged tenants, and of
    // push, dispatch and complete through the shared handle, allocates nothing. (The warm-up
    // is long: tenants forgotten and made again leave tombstones in the key table, which
    // grows once to the size where rehashing in place absorbs them.)
    let mut q: FairQueue<u64, u64> = FairQueue::new();
    for t in 0..1000 {
        q.try_push(t, t).unwrap();
    }
    for i in 0..300_000 {
        let x = q.pop().unwrap();
        q.try_push(x, i).unwrap();
    }
    let h: SharedScheduler<u64, u64> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(64)));
    for t in 0..1000 {
        h.try_push(t, t).unwrap();
    }
    for i in 0..300_000 {
        let job = h.try_dispatch().unwrap();
        h.try_push(job.item, i).unwrap();
        job.lease.complete(1);
    }
    let region = Region::new(GLOBAL);
    for i in 0..100_000 {
        let x = q.pop().unwrap();
        q.try_push(x, i).unwrap();
    }
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "the queue's steady state allocated: {change:?}"
    );
    let region = Region::new(GLOBAL);
    for i in 0..100_000 {
        let job = h.try_dispatch().unwrap();
        h.try_push(job.item, i).unwrap();
        job.lease.complete(1);
    }
    let change = region.change();
    // With the `metrics` feature, each admission, dispatch and completion builds its metric
    // key with the class's name as a label, which allocates (as the `metrics` module says);
    // without it the shared handle's steady state allocates nothing.
    if !cfg!(feature = "metrics") {
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "the shared handle's steady state allocated: {change:?}"
        );
    }
}
