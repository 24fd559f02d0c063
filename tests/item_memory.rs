//! What a queued item costs, measured by a counting global allocator (every byte this test
//! binary holds): a `u64` item takes at most 24 bytes beyond itself in the item slab, and
//! `FairQueue::footprint` says what the allocator sees. It runs without the libtest harness
//! (`harness = false`), whose threads would otherwise allocate while it measures.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::alloc::System;
use std::mem::size_of;

use fairshare::FairQueue;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes held now by this whole test binary.
fn held() -> isize {
    let s = GLOBAL.stats();
    // A reallocation's growth or shrinkage is already in these two.
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

fn main() {
    queued_u64_item_takes_at_most_24_bytes_beyond_itself();
    println!("test queued_u64_item_takes_at_most_24_bytes_beyond_itself ... ok");
}

fn queued_u64_item_takes_at_most_24_bytes_beyond_itself() {
    // One tenant, so only the item slab grows; a power of two, so the slab's capacity (it
    // doubles) ends exactly at the backlog.
    const ITEMS: u64 = 1 << 20;
    let (_, node) = FairQueue::<u64, u64>::footprint();
    assert_eq!(node, size_of::<u64>() + 24);

    let mut q: FairQueue<u64, u64> = FairQueue::new();
    q.try_push(0, 0).unwrap();
    let (held_one, heap_one) = (held(), q.heap_bytes());
    for i in 1..ITEMS {
        q.try_push(0, i).unwrap();
    }
    let grown = held() - held_one;
    // Every byte the allocator gave the queue for the items after the first.
    let per_item = grown as f64 / (ITEMS - 1) as f64;
    println!(
        "{ITEMS} u64 items queued in one tenant: {grown} B more than with one item, \
         {per_item:.3} B per item, {:.3} B beyond the item (footprint: {node} B a node)",
        per_item - size_of::<u64>() as f64
    );
    assert!(
        per_item <= (size_of::<u64>() + 24) as f64,
        "{per_item:.3} B per queued u64 item, more than 24 B beyond it"
    );
    // The queue's own account agrees with the allocator's.
    assert_eq!(q.heap_bytes() - heap_one, grown as usize);

    // The items are all there, in order.
    let mut n = 0;
    while let Some(x) = q.pop() {
        assert_eq!(x, n);
        n += 1;
    }
    assert_eq!(n, ITEMS);
}
