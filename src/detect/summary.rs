//! # Implementation details
//!
//! One sub-window's heavy-hitter summary: weighted Space-Saving over at most `k` keys.
//!
//! Each tracked key has a `count` (an overestimate of its weight in this sub-window) and an
//! `error` (the count it inherited when it took a slot over; `count - error` is a lower
//! bound). A min-heap of slot indices by count finds the slot to take over in O(1) and keeps
//! its order in O(log k) per increment; a `HashTable<u32>` from key to slot finds a key with
//! one hash. Invariants, which the bounds in the module docs rest on:
//!
//! - the counts sum to `total`, the weight recorded since the last [`clear`](Summary::clear);
//! - while fewer than `k` keys are tracked nothing has been evicted, so every count is exact
//!   and an untracked key has weight zero;
//! - once full, the smallest count `min` only grows, every `error` is at most `min`, and an
//!   untracked key's true weight is at most `min <= total / k`.
//!
//! The table is created with room for `2k` keys, so that the tombstones an eviction leaves
//! are always cleaned by rehashing in place: it never reallocates.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// One tracked key.
#[derive(Debug, Clone)]
pub(crate) struct Slot<K> {
    pub(crate) key: K,
    pub(crate) hash: u64,
    pub(crate) count: u64,
    pub(crate) error: u64,
    /// This slot's position in the heap.
    heap_pos: u32,
}

/// Weighted Space-Saving over at most `k` keys (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Summary<K> {
    k: usize,
    pub(crate) slots: Vec<Slot<K>>,
    /// Slot indices, a binary min-heap by `count`.
    heap: Vec<u32>,
    table: HashTable<u32>,
    pub(crate) total: u64,
}

impl<K> Summary<K> {
    /// An empty summary of at most `k` keys (at least one), with all its memory.
    pub(crate) fn new(k: usize) -> Self {
        let k = k.max(1);
        Summary {
            k,
            slots: Vec::with_capacity(k),
            heap: Vec::with_capacity(k),
            table: HashTable::with_capacity(2 * k),
            total: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Summary<K> {
    /// Forgets every key, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.heap.clear();
        self.table.clear();
        self.total = 0;
    }

    /// Whether `k` keys are tracked (from then on, untracked keys may have weight).
    pub(crate) fn is_full(&self) -> bool {
        self.slots.len() == self.k
    }

    /// The smallest count once full (the most an untracked key can have weighed), else zero.
    pub(crate) fn floor(&self) -> u64 {
        if self.is_full() {
            self.slots[self.heap[0] as usize].count
        } else {
            0
        }
    }

    /// The slot of `key`, whose hash is `hash`.
    #[cfg(test)]
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<&Slot<K>> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i as usize].key == *key)
            .map(|&i| &slots[i as usize])
    }

    /// Adds `weight` to `key` (hash `hash`), taking over the smallest slot if `key` is not
    /// tracked and the summary is full.
    pub(crate) fn add(&mut self, hash: u64, key: &K, weight: u64) {
        self.total = self.total.saturating_add(weight);
        let slots = &self.slots;
        if let Some(&i) = self.table.find(hash, |&i| slots[i as usize].key == *key) {
            let slot = &mut self.slots[i as usize];
            slot.count = slot.count.saturating_add(weight);
            let pos = slot.heap_pos as usize;
            self.sift_down(pos);
            return;
        }
        if !self.is_full() {
            let i = self.slots.len() as u32;
            let pos = self.heap.len();
            self.slots.push(Slot {
                key: key.clone(),
                hash,
                count: weight,
                error: 0,
                heap_pos: pos as u32,
            });
            self.heap.push(i);
            let slots = &self.slots;
            self.table
                .insert_unique(hash, i, |&j| slots[j as usize].hash);
            self.sift_up(pos);
            return;
        }
        // Take over the smallest slot: the newcomer inherits its count as possible overcount.
        let i = self.heap[0];
        let old_hash = self.slots[i as usize].hash;
        if let Ok(entry) = self.table.find_entry(old_hash, |&j| j == i) {
            entry.remove();
        }
        let slot = &mut self.slots[i as usize];
        let floor = slot.count;
        slot.key = key.clone();
        slot.hash = hash;
        slot.count = floor.saturating_add(weight);
        slot.error = floor;
        let slots = &self.slots;
        self.table
            .insert_unique(hash, i, |&j| slots[j as usize].hash);
        self.sift_down(0);
    }

    fn count_at(&self, pos: usize) -> u64 {
        self.slots[self.heap[pos] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a] as usize].heap_pos = a as u32;
        self.slots[self.heap[b] as usize].heap_pos = b as u32;
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= n {
                return;
            }
            let right = left + 1;
            let child = if right < n && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(child) >= self.count_at(pos) {
                return;
            }
            self.swap(pos, child);
            pos = child;
        }
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                return;
            }
            self.swap(pos, parent);
            pos = parent;
        }
    }

    /// Bytes this summary holds on the heap (fixed at construction).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<K>>()
            + self.heap.capacity() * std::mem::size_of::<u32>()
            + self.table.allocation_size()
    }
}

/// Hashes `key` with `hasher` (one place, so every table agrees).
pub(crate) fn hash_of<K: Hash, S: BuildHasher>(hasher: &S, key: &K) -> u64 {
    hasher.hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::Summary;

    fn add(s: &mut Summary<u32>, key: u32, w: u64) {
        let h = super::hash_of(&foldhash::fast::FixedState::default(), &key);
        s.add(h, &key, w);
    }

    fn get(s: &Summary<u32>, key: u32) -> Option<(u64, u64)> {
        let h = super::hash_of(&foldhash::fast::FixedState::default(), &key);
        s.find(h, &key).map(|e| (e.count, e.error))
    }

    #[test]
    fn exact_until_full_then_bounded() {
        let mut s = Summary::new(3);
        add(&mut s, 1, 5);
        add(&mut s, 2, 1);
        add(&mut s, 3, 2);
        assert_eq!(get(&s, 1), Some((5, 0)));
        assert_eq!(s.floor(), 1);
        add(&mut s, 4, 1); // takes over key 2's slot (count 1)
        assert_eq!(get(&s, 2), None);
        assert_eq!(get(&s, 4), Some((2, 1)));
        assert_eq!(s.total, 9);
        assert_eq!(s.slots.iter().map(|e| e.count).sum::<u64>(), s.total);
    }

    #[test]
    fn heavy_key_survives_a_stream_of_distinct_keys_and_memory_is_fixed() {
        let mut s = Summary::new(8);
        let bytes = s.heap_bytes();
        for i in 0..100_000u32 {
            add(&mut s, 1_000_000 + i, 1);
            if i % 3 == 0 {
                add(&mut s, 7, 1);
            }
        }
        let (count, error) = get(&s, 7).unwrap();
        let truth = 100_000u64.div_ceil(3);
        assert!(count - error <= truth && truth <= count);
        assert!(error <= s.total / 8);
        assert_eq!(s.heap_bytes(), bytes);
        s.clear();
        assert_eq!((s.total, s.floor(), get(&s, 7)), (0, 0, None));
    }
}
