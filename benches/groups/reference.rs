//! Yardsticks, not products: the simplest designs the performance targets were calibrated with,
//! measured in the same run as our code and the official baselines. They answer "is this
//! bar reachable on this machine at all?" (at a million tenants every design pays a
//! random memory access per lookup, and this machine's memory latency is what it is).

use std::collections::VecDeque;

use hashbrown::HashMap;

type Fast = foldhash::fast::RandomState;

/// The brief's "reference O(1) deficit round robin with a fast hash": key -> tenant index,
/// one `VecDeque` per tenant, one ring of active tenants, unit quantum and unit cost. No
/// weights, costs, counters, limits or lifecycle: the floor under any fair queue.
#[derive(Default)]
pub(crate) struct ReferenceDrr {
    index: HashMap<u64, usize, Fast>,
    tenants: Vec<(VecDeque<u64>, i64)>,
    ring: VecDeque<usize>,
}

impl ReferenceDrr {
    pub(crate) fn push(&mut self, key: u64, item: u64) {
        let next = self.tenants.len();
        let idx = *self.index.entry(key).or_insert(next);
        if idx == next {
            self.tenants.push((VecDeque::new(), 0));
        }
        let (q, _) = &mut self.tenants[idx];
        q.push_back(item);
        if q.len() == 1 {
            self.ring.push_back(idx);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<u64> {
        loop {
            let &idx = self.ring.front()?;
            let (q, deficit) = &mut self.tenants[idx];
            if *deficit >= 1 {
                *deficit -= 1;
                let item = q.pop_front();
                if q.is_empty() {
                    *deficit = 0;
                    self.ring.pop_front();
                }
                return item;
            }
            *deficit += 1;
            self.ring.rotate_left(1);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tenants.iter().map(|(q, _)| q.len()).sum()
    }
}

/// The brief's "plain GCRA check with the time passed in", keyed by a fast hash map of
/// theoretical arrival times: the floor under any keyed rate limiter (no blocking, caps,
/// classes or permits).
pub(crate) struct ReferenceGcra {
    tats: HashMap<u64, u64, Fast>,
    interval: u64,
    window: u64,
}

impl ReferenceGcra {
    /// `interval` ns per unit, `burst` units.
    pub(crate) fn new(interval: u64, burst: u64) -> Self {
        ReferenceGcra {
            tats: HashMap::with_hasher(Fast::default()),
            interval,
            window: interval * burst,
        }
    }

    /// Charges one unit to `key` at `now` if its limit allows.
    #[inline]
    pub(crate) fn check(&mut self, key: u64, now: u64) -> bool {
        let tat = self.tats.entry(key).or_insert(0);
        let charged = tat.saturating_add(self.interval);
        if now < charged.saturating_sub(self.window) {
            return false;
        }
        *tat = (*tat).max(now).saturating_add(self.interval);
        true
    }

    pub(crate) fn keys(&self) -> usize {
        self.tats.len()
    }
}
