//! # Implementation details
//!
//! Every queued item lives in one slab of nodes; each tenant's FIFO is a singly linked list of
//! node indices through that slab. A freed node goes on a free list and is the next one reused,
//! so a steady push/pop workload allocates nothing, and the per-item overhead is a `u32` link, a
//! `u32` cost and the `Option` tag.

/// The "no node" / "no tenant" index.
pub(crate) const NIL: u32 = u32::MAX;

/// The most items the slab can index (`NIL` is reserved).
pub(crate) const MAX_ITEMS: u32 = u32::MAX - 1;

#[derive(Debug)]
struct Node<T> {
    item: Option<T>,
    /// Next node of the same tenant's FIFO, or of the free list.
    next: u32,
    cost: u32,
}

/// A slab of list nodes shared by all tenants' FIFOs.
#[derive(Debug)]
pub(crate) struct ItemSlab<T> {
    nodes: Vec<Node<T>>,
    free: u32,
    len: u32,
}

impl<T> ItemSlab<T> {
    pub(crate) const fn new() -> Self {
        ItemSlab {
            nodes: Vec::new(),
            free: NIL,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= MAX_ITEMS
    }

    /// Stores `item` as an unlinked node and returns its index. The caller checks `is_full`.
    #[inline]
    pub(crate) fn alloc(&mut self, item: T, cost: u32) -> u32 {
        debug_assert!(!self.is_full());
        self.len += 1;
        if self.free != NIL {
            let idx = self.free;
            let node = &mut self.nodes[idx as usize];
            self.free = node.next;
            node.item = Some(item);
            node.next = NIL;
            node.cost = cost;
            idx
        } else {
            let idx = self.nodes.len() as u32;
            self.nodes.push(Node {
                item: Some(item),
                next: NIL,
                cost,
            });
            idx
        }
    }

    /// Links node `after` to node `idx` (appending `idx` to a list whose tail is `after`).
    #[inline]
    pub(crate) fn set_next(&mut self, after: u32, idx: u32) {
        self.nodes[after as usize].next = idx;
    }

    #[inline]
    pub(crate) fn next(&self, idx: u32) -> u32 {
        self.nodes[idx as usize].next
    }

    /// The item at `idx`. Panics only if `idx` is not a live node (a bug in this crate).
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &T {
        match &self.nodes[idx as usize].item {
            Some(item) => item,
            None => unreachable!("fairshare: linked node {idx} holds no item"),
        }
    }

    /// Frees node `idx`, returning its item, cost and the next node of its list.
    #[inline]
    pub(crate) fn take(&mut self, idx: u32) -> (T, u32, u32) {
        let node = &mut self.nodes[idx as usize];
        let Some(item) = node.item.take() else {
            unreachable!("fairshare: linked node {idx} holds no item")
        };
        let next = node.next;
        node.next = self.free;
        self.free = idx;
        self.len -= 1;
        (item, node.cost, next)
    }

    /// Bytes held by the slab (capacity, not length): the high-water mark of the backlog.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<T>>()
    }

    pub(crate) const fn node_size() -> usize {
        std::mem::size_of::<Node<T>>()
    }
}
