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

use crate::clock::Nanos;

/// The "no node" / "no tenant" index.
pub(crate) const NIL: u32 = u32::MAX;

/// The most nodes the slab can index (`NIL` is reserved).
pub(crate) const MAX_ITEMS: u32 = u32::MAX - 1;

#[derive(Debug)]
struct Node<T> {
    item: Option<T>,
    enqueued: Nanos,
    /// Next node of the same tenant's FIFO, or of the free list.
    next: u32,
    cost: u32,
    /// Bumped on every allocation, so a deadline entry can tell its item from a later one.
    generation: u32,
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
            let slot = &mut self.nodes[idx as usize];
            self.free = slot.next;
            slot.item = Some(item);
            slot.enqueued = enqueued;
            slot.next = NIL;
            slot.cost = cost;
            slot.generation = slot.generation.wrapping_add(1);
            idx
        } else {
            let idx = self.nodes.len() as u32;
            self.nodes.push(Node {
                item: Some(item),
                enqueued,
                next: NIL,
                cost,
                generation: 0,
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
        self.nodes[idx as usize].item.is_some()
    }

    /// Whether node `idx` still holds the item allocated as `generation` at `enqueued`.
    #[inline]
    pub(crate) fn holds(&self, idx: u32, generation: u32, enqueued: Nanos) -> bool {
        self.nodes.get(idx as usize).is_some_and(|n| {
            n.item.is_some() && n.generation == generation && n.enqueued == enqueued
        })
    }

    #[inline]
    pub(crate) fn enqueued(&self, idx: u32) -> Nanos {
        self.nodes[idx as usize].enqueued
    }

    #[inline]
    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].generation
    }

    #[inline]
    pub(crate) fn cost(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].cost
    }

    /// The item at `idx`. Panics only if `idx` is not a live node (a bug in this crate).
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &T {
        match &self.nodes[idx as usize].item {
            Some(item) => item,
            None => unreachable!("fairshare: node {idx} holds no item"),
        }
    }

    /// Takes the item out of live node `idx`, leaving a linked tombstone.
    #[inline]
    pub(crate) fn take_item(&mut self, idx: u32) -> (T, Taken) {
        let node = &mut self.nodes[idx as usize];
        let Some(item) = node.item.take() else {
            unreachable!("fairshare: node {idx} holds no item")
        };
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
        let Some(item) = node.item.take() else {
            unreachable!("fairshare: node {idx} holds no item")
        };
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
        debug_assert!(node.item.is_none());
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
