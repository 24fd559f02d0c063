//! # Implementation details
//!
//! One recorded stream (admitted, served or refused cost): a ring of `N` sub-window
//! [`Summary`]s, the sampler in front of it, and the merge a query runs.
//!
//! Sub-window `i` holds what was recorded at times `now` with `now / L == i` (`L` the
//! sub-window length); the ring keeps the current index `cur` and the `N - 1` before it. A
//! record or a query at a later index clears the sub-windows that fell out. A `now` before
//! the current sub-window's start counts as the current sub-window (time going backwards is
//! no time passed).
//!
//! The sampler keeps each unit of cost with probability `1/S` (a geometric skip over the
//! units, so the fast path is one compare and a subtraction) and records each kept unit with
//! weight `S`; within an item, the whole strides after its first kept unit are counted
//! exactly instead (same expectation, less variance, O(1) steps for any cost). The estimate
//! is unbiased and a tenant's variance is at most `S` times its cost. `S` is set at every sub-window boundary to the last sub-window's total divided
//! by the target number of samples (at least 1), and doubles within a sub-window that has
//! taken twice its target.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::summary::{Summary, hash_of};
use crate::clock::Nanos;

/// A splitmix64 generator: the sampler's only source of randomness (seeded by the config).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// The sampler's state.
#[derive(Debug, Clone)]
struct Sampler {
    /// Units of cost until (and including) the next kept unit.
    skip: u64,
    /// The weight of a kept unit; 1 records everything.
    stride: u64,
    /// `1 / ln(1 - 1/stride)`, for drawing geometric gaps.
    inv_log_q: f64,
    /// Target samples per sub-window; `None` records everything.
    target: Option<u64>,
    /// Samples taken in the current sub-window (reset to `target` on a doubling).
    taken: u64,
    rng: Rng,
}

impl Sampler {
    fn new(target: Option<u64>, seed: u64) -> Self {
        let mut s = Sampler {
            skip: 1,
            stride: 1,
            inv_log_q: 0.0,
            target,
            taken: 0,
            rng: Rng::new(seed),
        };
        s.set_stride(1);
        s
    }

    fn set_stride(&mut self, stride: u64) {
        self.stride = stride.max(1);
        self.inv_log_q = if self.stride > 1 {
            1.0 / (1.0 - 1.0 / self.stride as f64).ln()
        } else {
            0.0
        };
        self.skip = self.gap();
    }

    /// A geometric gap with success probability `1/stride` (always 1 when recording all).
    fn gap(&mut self) -> u64 {
        if self.stride == 1 {
            return 1;
        }
        let g = (self.rng.unit().ln() * self.inv_log_q).floor();
        if g >= (u64::MAX / 2) as f64 {
            u64::MAX / 2
        } else {
            g as u64 + 1
        }
    }
}

/// A ring of sub-window summaries for one stream (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Window<K> {
    pub(crate) subs: Vec<Summary<K>>,
    /// The current sub-window index (`now / sub_len`).
    cur: u64,
    sub_len: u64,
    sampler: Sampler,
}

impl<K> Window<K> {
    pub(crate) fn new(
        k: usize,
        sub_windows: usize,
        sub_len: Nanos,
        target: Option<u64>,
        seed: u64,
    ) -> Self {
        Window {
            subs: (0..sub_windows.max(1)).map(|_| Summary::new(k)).collect(),
            cur: 0,
            sub_len: sub_len.as_u64().max(1),
            sampler: Sampler::new(target, seed),
        }
    }
}

impl<K: Hash + Eq + Clone> Window<K> {
    /// Records `cost` for `key` at `now`: the fast path skips unsampled units.
    #[inline]
    pub(crate) fn record<S: BuildHasher>(&mut self, hasher: &S, key: &K, cost: u64, now: Nanos) {
        if cost < self.sampler.skip {
            self.sampler.skip -= cost;
            return;
        }
        self.record_sampled(hasher, key, cost, now);
    }

    #[inline(never)]
    fn record_sampled<S: BuildHasher>(&mut self, hasher: &S, key: &K, cost: u64, now: Nanos) {
        if self.advance(now) && cost < self.sampler.skip {
            // A new sub-window drew a new stride and skip: the item is judged by those.
            self.sampler.skip -= cost;
            return;
        }
        let stride = self.sampler.stride;
        let weight = if stride == 1 {
            cost
        } else {
            // The unit at `skip` is kept. Of the units after it, whole strides are counted
            // exactly and the rest (fewer than a stride) sampled on: unbiased either way,
            // and an item of any cost takes O(1) expected steps.
            let rest = cost - self.sampler.skip;
            let mut weight = stride.saturating_add(rest - rest % stride);
            let mut rest = rest % stride;
            loop {
                let g = self.sampler.gap();
                if g <= rest {
                    weight = weight.saturating_add(stride);
                    rest -= g;
                } else {
                    self.sampler.skip = g - rest;
                    break;
                }
            }
            weight
        };
        let hash = hash_of(hasher, key);
        let sub = (self.cur % self.subs.len() as u64) as usize;
        self.subs[sub].add(hash, key, weight);
        if let Some(target) = self.sampler.target {
            self.sampler.taken += 1;
            if self.sampler.taken >= 2 * target {
                self.sampler.taken = target;
                self.sampler.set_stride(stride.saturating_mul(2));
            }
        }
    }

    /// Moves the ring to `now`'s sub-window, clearing those that fell out, and resets the
    /// stride from the sub-window just closed. Returns whether it moved.
    pub(crate) fn advance(&mut self, now: Nanos) -> bool {
        let idx = now.as_u64() / self.sub_len;
        if idx <= self.cur {
            return false;
        }
        let n = self.subs.len() as u64;
        let closed = if idx == self.cur + 1 {
            self.subs[(self.cur % n) as usize].total
        } else {
            0 // at least one whole sub-window passed with nothing sampled
        };
        let steps = (idx - self.cur).min(n);
        for j in 1..=steps {
            self.subs[((self.cur + j) % n) as usize].clear();
        }
        self.cur = idx;
        if let Some(target) = self.sampler.target {
            self.sampler.taken = 0;
            self.sampler.set_stride(closed / target.max(1));
        }
        true
    }

    /// The estimated total recorded in the window (as of the last [`advance`](Self::advance)).
    pub(crate) fn total(&self) -> u64 {
        self.subs
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.total))
    }

    /// The sub-windows still in the window at `now`, without moving the ring.
    fn live_at(&self, now: Nanos) -> impl Iterator<Item = &Summary<K>> {
        let n = self.subs.len() as u64;
        let idx = (now.as_u64() / self.sub_len).max(self.cur);
        (0..n).filter_map(move |o| {
            let i = self.cur.checked_sub(o)?;
            (i + n > idx).then(|| &self.subs[(i % n) as usize])
        })
    }

    /// The estimated total in the window at `now`, without moving the ring.
    pub(crate) fn total_at(&self, now: Nanos) -> u64 {
        self.live_at(now)
            .fold(0u64, |a, s| a.saturating_add(s.total))
    }

    /// Keys tracked, summed over the sub-windows still in the window at `now`.
    pub(crate) fn tracked_at(&self, now: Nanos) -> usize {
        self.live_at(now).map(|s| s.slots.len()).sum()
    }

    /// The current weight of one sampled unit (1: exact).
    pub(crate) fn stride(&self) -> u64 {
        self.sampler.stride
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.subs.capacity() * std::mem::size_of::<Summary<K>>()
            + self.subs.iter().map(Summary::heap_bytes).sum::<usize>()
    }
}

/// One key's bounds over the window, as merged from the sub-windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// Where the key's first slot is: `(sub-window, slot)`.
    pub(crate) sub: u32,
    pub(crate) slot: u32,
    pub(crate) hash: u64,
    /// The sum of its counts where tracked.
    tracked: u64,
    /// The sum of `count - error` where tracked: a lower bound of its weight.
    pub(crate) lower: u64,
    /// The sum of the floors of the full sub-windows where it is tracked.
    floors_tracked: u64,
}

impl Row {
    /// An upper bound of the key's weight: its counts where tracked, plus the floor of every
    /// full sub-window where it is not (`floors` is the sum of all full sub-windows' floors).
    pub(crate) fn upper(&self, floors: u64) -> u64 {
        self.tracked
            .saturating_add(floors.saturating_sub(self.floors_tracked))
    }
}

/// Scratch space for merging a window's sub-windows (allocated once, reused by each query).
#[derive(Debug, Clone)]
pub(crate) struct Merge {
    pub(crate) rows: Vec<Row>,
    table: HashTable<u32>,
    /// The sum of the floors of the full sub-windows: the most an untracked key can weigh.
    pub(crate) floors: u64,
}

impl Merge {
    pub(crate) fn new(k: usize, sub_windows: usize) -> Self {
        let most = k.max(1) * sub_windows.max(1);
        Merge {
            rows: Vec::with_capacity(most),
            table: HashTable::with_capacity(most),
            floors: 0,
        }
    }

    /// Merges `window`'s sub-windows into one row per distinct key: O(N k).
    pub(crate) fn run<K: Hash + Eq + Clone>(&mut self, window: &Window<K>) {
        self.rows.clear();
        self.table.clear();
        self.floors = 0;
        for (s, sub) in window.subs.iter().enumerate() {
            let floor = sub.floor();
            self.floors = self.floors.saturating_add(floor);
            for (i, slot) in sub.slots.iter().enumerate() {
                let subs = &window.subs;
                let rows = &self.rows;
                let found = self.table.find(slot.hash, |&r| {
                    let row = &rows[r as usize];
                    subs[row.sub as usize].slots[row.slot as usize].key == slot.key
                });
                let lower = slot.count - slot.error.min(slot.count);
                if let Some(&r) = found {
                    let row = &mut self.rows[r as usize];
                    row.tracked = row.tracked.saturating_add(slot.count);
                    row.lower = row.lower.saturating_add(lower);
                    row.floors_tracked = row.floors_tracked.saturating_add(floor);
                } else {
                    let r = self.rows.len() as u32;
                    self.rows.push(Row {
                        sub: s as u32,
                        slot: i as u32,
                        hash: slot.hash,
                        tracked: slot.count,
                        lower,
                        floors_tracked: floor,
                    });
                    let rows = &self.rows;
                    self.table
                        .insert_unique(slot.hash, r, |&j| rows[j as usize].hash);
                }
            }
        }
    }

    /// The row of `key` (hash `hash`) in the last merge of `window`.
    pub(crate) fn find<K: Eq>(&self, window: &Window<K>, hash: u64, key: &K) -> Option<&Row> {
        let rows = &self.rows;
        self.table
            .find(hash, |&r| {
                let row = &rows[r as usize];
                window.subs[row.sub as usize].slots[row.slot as usize].key == *key
            })
            .map(|&r| &rows[r as usize])
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Row>() + self.table.allocation_size()
    }
}
