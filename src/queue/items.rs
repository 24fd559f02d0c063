//! # Implementation details
//!
//! Every queued item lives in one slab of nodes; each tenant's FIFO is a singly linked list of
//! node indices through that slab. A freed node goes on a free list and is the next one reused,
//! so a steady push/pop workload allocates nothing.
//!
//! An item can leave from the middle of its FIFO (its deadline passed) without a walk: its node
//! becomes a *tombstone* (no item, still linked) and is freed when it reaches the head of its
//! list. Tenants keep the invariant "the head node is live, or the list is empty", so pop never
//! sees a tombstone.
//!
//! ## Node layout
//!
//! A node is what a queued item costs, so it is arranged to pack. The item sits in an enum,
//! `Slot`, together with the node's generation, rather than as an `Option<T>` beside a
//! `generation` field: an `Option<u64>` spends a whole 8-byte word on its tag, and the enum's
//! tag shares that word with the generation instead. A `u64` item's node is then 32 bytes, 24
//! beyond `T` (it took 40); items with a niche (`Box`, `String`) keep their 24 beyond `T`, and
//! no `T` gets a larger node (the tests below check a range of types). The generation is the
//! field that goes in the enum, in both variants, because the hot path reads it least: push
//! bumps it, pop carries it over, and only deadlines compare it. The cost, read at every
//! dispatch, and the links stay plain fields.

use crate::clock::Nanos;

/// The "no node" / "no tenant" index.
pub(crate) const NIL: u32 = u32::MAX;

/// The most nodes the slab can index (`NIL` is reserved).
pub(crate) const MAX_ITEMS: u32 = u32::MAX - 1;

#[derive(Debug)]
struct Node<T> {
    slot: Slot<T>,
    enqueued: Nanos,
    /// Next node of the same tenant's FIFO, or of the free list.
    next: u32,
    cost: u32,
}

/// A node's item, if it holds one, and its generation either way: in effect
/// `(Option<T>, u32)`, but one enum, so the tag and the generation share a word (see the
/// module docs).
#[derive(Debug)]
enum Slot<T> {
    Live {
        item: T,
        generation: u32,
    },
    /// A tombstone or a free node.
    Vacant {
        generation: u32,
    },
}

impl<T> Slot<T> {
    /// Bumped on every allocation of the node, so a deadline entry can tell its item from a
    /// later one.
    #[inline(always)]
    fn generation(&self) -> u32 {
        match *self {
            Slot::Live { generation, .. } | Slot::Vacant { generation } => generation,
        }
    }

    /// Takes the item out, keeping the generation. Panics only if there is no item (a bug in
    /// this crate).
    #[inline(always)]
    #[track_caller]
    fn take(&mut self) -> T {
        let generation = self.generation();
        match std::mem::replace(self, Slot::Vacant { generation }) {
            Slot::Live { item, .. } => item,
            Slot::Vacant { .. } => unreachable!("fairshare: the node holds no item"),
        }
    }
}

/// A slab of list nodes shared by all tenants' FIFOs.
#[derive(Debug)]
pub(crate) struct ItemSlab<T> {
    nodes: Vec<Node<T>>,
    free: u32,
    /// Live items.
    len: u32,
    /// Linked nodes: live items and tombstones.
    used: u32,
}

/// What a node held when its item was taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) cost: u32,
    pub(crate) enqueued: Nanos,
}

impl<T> ItemSlab<T> {
    pub(crate) const fn new() -> Self {
        ItemSlab {
            nodes: Vec::new(),
            free: NIL,
            len: 0,
            used: 0,
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    #[inline(always)]
    pub(crate) fn is_full(&self) -> bool {
        self.used >= MAX_ITEMS
    }

    /// Stores `item` as an unlinked node and returns its index. The caller checks `is_full`.
    #[inline(always)]
    pub(crate) fn alloc(&mut self, item: T, cost: u32, enqueued: Nanos) -> u32 {
        debug_assert!(!self.is_full());
        self.len += 1;
        self.used += 1;
        if self.free != NIL {
            let idx = self.free;
            let node = &mut self.nodes[idx as usize];
            self.free = node.next;
            let generation = node.slot.generation().wrapping_add(1);
            node.slot = Slot::Live { item, generation };
            node.enqueued = enqueued;
            node.next = NIL;
            node.cost = cost;
            idx
        } else {
            let idx = self.nodes.len() as u32;
            self.nodes.push(Node {
                slot: Slot::Live {
                    item,
                    generation: 0,
                },
                enqueued,
                next: NIL,
                cost,
            });
            idx
        }
    }

    /// Links node `after` to node `idx`.
    #[inline(always)]
    pub(crate) fn set_next(&mut self, after: u32, idx: u32) {
        self.nodes[after as usize].next = idx;
    }

    #[inline]
    pub(crate) fn next(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].next
    }

    #[inline]
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        matches!(self.nodes[idx as usize].slot, Slot::Live { .. })
    }

    /// Whether node `idx` still holds the item allocated as `generation` at `enqueued`.
    #[inline]
    pub(crate) fn holds(&self, idx: u32, generation: u32, enqueued: Nanos) -> bool {
        self.nodes.get(idx as usize).is_some_and(|n| {
            matches!(n.slot, Slot::Live { generation: g, .. } if g == generation)
                && n.enqueued == enqueued
        })
    }

    #[inline]
    pub(crate) fn enqueued(&self, idx: u32) -> Nanos {
        self.nodes[idx as usize].enqueued
    }

    #[inline]
    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].slot.generation()
    }

    #[inline]
    pub(crate) fn cost(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].cost
    }

    /// The item at `idx`. Panics only if `idx` is not a live node (a bug in this crate).
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &T {
        match &self.nodes[idx as usize].slot {
            Slot::Live { item, .. } => item,
            Slot::Vacant { .. } => unreachable!("fairshare: node {idx} holds no item"),
        }
    }

    /// Takes the item out of live node `idx`, leaving a linked tombstone.
    #[inline]
    pub(crate) fn take_item(&mut self, idx: u32) -> (T, Taken) {
        let node = &mut self.nodes[idx as usize];
        let item = node.slot.take();
        self.len -= 1;
        let taken = Taken {
            cost: node.cost,
            enqueued: node.enqueued,
        };
        (item, taken)
    }

    /// Takes the item out of live node `idx` and frees the node at once, returning the item,
    /// what the node held and the next node of its list.
    #[inline(always)]
    pub(crate) fn take_and_free(&mut self, idx: u32) -> (T, Taken, u32) {
        let node = &mut self.nodes[idx as usize];
        let item = node.slot.take();
        let taken = Taken {
            cost: node.cost,
            enqueued: node.enqueued,
        };
        let next = node.next;
        node.next = self.free;
        self.free = idx;
        self.len -= 1;
        self.used -= 1;
        (item, taken, next)
    }

    /// Whether any node is a tombstone (a deadline took its item out of a FIFO's middle).
    #[inline(always)]
    pub(crate) fn has_tombstones(&self) -> bool {
        self.used != self.len
    }

    /// Frees tombstone `idx`, returning the next node of its list.
    #[inline]
    pub(crate) fn free(&mut self, idx: u32) -> u32 {
        let node = &mut self.nodes[idx as usize];
        debug_assert!(matches!(node.slot, Slot::Vacant { .. }));
        let next = node.next;
        node.next = self.free;
        self.free = idx;
        self.used -= 1;
        next
    }

    /// Bytes held by the slab (capacity, not length): the high-water mark of the backlog.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<T>>()
    }

    pub(crate) const fn node_size() -> usize {
        std::mem::size_of::<Node<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// The layout this module had before `Slot`: the item as `Option<T>` and the
    /// generation beside it. Kept here only to check that no `T` gets a larger node.
    #[allow(dead_code)] // only measured
    struct OptionNode<T> {
        item: Option<T>,
        enqueued: Nanos,
        next: u32,
        cost: u32,
        generation: u32,
    }

    #[test]
    fn u64_node_is_24_bytes_beyond_the_item() {
        assert_eq!(size_of::<Node<u64>>(), size_of::<u64>() + 24);
        assert_eq!(ItemSlab::<u64>::node_size(), 32);
        // What the `Option<u64>` layout took.
        assert_eq!(size_of::<OptionNode<u64>>(), size_of::<u64>() + 32);
    }

    #[test]
    fn no_item_type_gets_a_larger_node() {
        fn check<T>() {
            let (new, old) = (size_of::<Node<T>>(), size_of::<OptionNode<T>>());
            assert!(
                new <= old,
                "{}: {new} B, was {old} B",
                std::any::type_name::<T>()
            );
        }
        check::<()>();
        check::<u8>();
        check::<u32>();
        check::<u64>();
        check::<u128>();
        check::<(u64, u32)>();
        check::<[u64; 4]>();
        check::<Box<u64>>();
        check::<String>();
        check::<Vec<u8>>();
        check::<&'static str>();
        check::<std::sync::Arc<()>>();
        // Items with a niche keep the 24 B they had.
        assert_eq!(size_of::<Node<Box<u64>>>(), size_of::<Box<u64>>() + 24);
        assert_eq!(size_of::<Node<String>>(), size_of::<String>() + 24);
    }

    #[test]
    fn take_leaves_a_tombstone_and_reuse_bumps_the_generation() {
        let mut slab = ItemSlab::new();
        let a = slab.alloc(7u64, 3, Nanos::new(5));
        assert!(slab.is_live(a) && slab.holds(a, 0, Nanos::new(5)));
        assert_eq!(
            (slab.cost(a), *slab.get(a), slab.enqueued(a)),
            (3, 7, Nanos::new(5))
        );
        let (item, taken) = slab.take_item(a);
        assert_eq!((item, taken.cost, taken.enqueued), (7, 3, Nanos::new(5)));
        assert!(!slab.is_live(a) && !slab.holds(a, 0, Nanos::new(5)));
        assert!(slab.has_tombstones());
        assert_eq!(slab.free(a), NIL);
        // Same node, same enqueue time: only the generation tells the two items apart.
        let b = slab.alloc(8, 1, Nanos::new(5));
        assert_eq!(b, a);
        assert!(!slab.holds(b, 0, Nanos::new(5)) && slab.holds(b, 1, Nanos::new(5)));
        let (item, taken, next) = slab.take_and_free(b);
        assert_eq!((item, taken.cost, next, slab.len()), (8, 1, NIL, 0));
        assert!(!slab.has_tombstones());
    }
}
