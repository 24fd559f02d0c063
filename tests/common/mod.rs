//! Helpers shared by the integration tests: config and push-option shorthands, the proptest
//! config every property test uses, a watchdog for calls that must terminate, the conservation
//! [`Ledger`] (every item pushed comes back exactly once), and the checker of the DRR fairness
//! bound stated in `FairQueue`'s rustdoc. The submodules hold the helpers of one family of test
//! files each: scheduler builders and refusal checks (`scheduler`), threads, wakers and
//! producers/workers for the shared handle (`threads`), class shorthands and generators
//! (`classes`), and the generators of the model-based admission and queue tests
//! (`admission_model`, `queue_model`).

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use fairshare::config::QueueConfig;
use fairshare::{ClassId, PushOptions};

/// `NonZeroU32` from a literal the test knows is non-zero.
#[track_caller]
pub(crate) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test passed a zero where a non-zero value is required")
}

/// A queue config from raw numbers (quantum and default weight must be non-zero).
#[track_caller]
pub(crate) fn config(quantum: u32, default_weight: u32, max_credit_rounds: u32) -> QueueConfig {
    QueueConfig::new()
        .with_quantum(nz(quantum))
        .with_default_weight(nz(default_weight))
        .with_max_credit_rounds(max_credit_rounds)
}

/// Push options for an item of `cost` in the default class, with no deadline.
pub(crate) fn opts(cost: u32) -> PushOptions {
    PushOptions::new().with_cost(cost)
}

/// Push options for an item of `cost` in `class`, with no deadline.
pub(crate) fn opts_in(class: ClassId, cost: u32) -> PushOptions {
    PushOptions::new().with_class(class).with_cost(cost)
}

/// A model's in-flight limit as the crate takes it: the models count slots in `u64`, the
/// crate's limits are `u32`.
#[track_caller]
pub(crate) fn in_flight_limit(n: u64) -> u32 {
    u32::try_from(n).expect("test in-flight limits fit in u32")
}

/// Runs `f` on a helper thread and fails the test if it does not return within `limit`: a call
/// that spins forever becomes a readable test failure instead of a hung test binary. A panic
/// inside `f` is re-raised on the test thread.
///
/// On a timeout the helper thread is left spinning; the test binary exits when its tests are
/// done, so it only costs CPU for the rest of the run.
#[track_caller]
pub(crate) fn must_finish_within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = f();
        // The receiver is gone only if the test already failed on a timeout.
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            worker
                .join()
                .expect("worker finished after sending its result");
            out
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("worker exited without sending a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {limit:?} (an endless loop?)")
        }
    }
}

/// A record of a run of pops, for checking the fairness bound.
///
/// `pre[k]` holds every tenant's queued length just before pop `k` (after any pushes that came
/// before it), `post[k]` just after it. `pops[k]` is the tenant served by pop `k` and the cost
/// of the item.
#[derive(Debug, Default, Clone)]
pub(crate) struct PopTrace {
    pub(crate) weights: Vec<u64>,
    pub(crate) pops: Vec<(usize, u64)>,
    pub(crate) pre: Vec<Vec<usize>>,
    pub(crate) post: Vec<Vec<usize>>,
}

/// The largest observed `|S_i·w_j − S_j·w_i|` for one pair of tenants over a window of pops in
/// which both stayed backlogged, and the bound it must stay under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairGap {
    pub(crate) i: usize,
    pub(crate) j: usize,
    /// Pops `first..last` (exclusive end) form the window.
    pub(crate) first: usize,
    pub(crate) last: usize,
    /// `S_i` and `S_j` over the window.
    pub(crate) served_i: u64,
    pub(crate) served_j: u64,
    /// `|S_i·w_j − S_j·w_i|`.
    pub(crate) gap: u128,
    /// `(3·Q + M/w_i + M/w_j) · w_i·w_j = 3·Q·w_i·w_j + M·w_j + M·w_i`.
    pub(crate) bound: u128,
}

impl PairGap {
    /// `gap / bound`: below 1 means the bound holds.
    pub(crate) fn ratio(&self) -> f64 {
        self.gap as f64 / self.bound as f64
    }

    pub(crate) fn holds(&self) -> bool {
        self.gap < self.bound
    }
}

impl fmt::Display for PairGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenants {} and {} over pops {}..{}: served {} and {}, |S_i*w_j - S_j*w_i| = {} \
             vs bound {} (ratio {:.3})",
            self.i,
            self.j,
            self.first,
            self.last,
            self.served_i,
            self.served_j,
            self.gap,
            self.bound,
            self.ratio()
        )
    }
}

impl PopTrace {
    /// The largest cost among the items served (the `M` of the bound).
    pub(crate) fn max_cost(&self) -> u64 {
        self.pops.iter().map(|&(_, c)| c).max().unwrap_or(0)
    }

    /// For every pair of tenants, the window (run of consecutive pops during which both were
    /// non-empty before and after every pop) with the largest weighted gap, in exact integer
    /// arithmetic. Pairs that were never backlogged together are left out.
    pub(crate) fn pair_gaps(&self, quantum: u64) -> Vec<PairGap> {
        let n = self.weights.len();
        let m = u128::from(self.max_cost());
        let q = u128::from(quantum);
        let mut out = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                let (wi, wj) = (self.weights[i], self.weights[j]);
                let bound = 3 * q * u128::from(wi) * u128::from(wj)
                    + m * u128::from(wj)
                    + m * u128::from(wi);
                let mut worst: Option<PairGap> = None;
                let mut k = 0;
                while k < self.pops.len() {
                    let both = |k: usize| {
                        self.pre[k][i] > 0
                            && self.pre[k][j] > 0
                            && self.post[k][i] > 0
                            && self.post[k][j] > 0
                    };
                    if !both(k) {
                        k += 1;
                        continue;
                    }
                    let start = k;
                    while k < self.pops.len() && both(k) {
                        k += 1;
                    }
                    // Pops start..k all had i and j backlogged. D(p) = S_i·w_j − S_j·w_i over
                    // pops start..p; every window's gap is D(b) − D(a) for start <= a <= b <= k.
                    let gap = self.run_gap(i, j, start, k);
                    if worst.is_none_or(|w| gap.gap > w.gap) {
                        worst = Some(PairGap { bound, ..gap });
                    }
                }
                out.extend(worst);
            }
        }
        out
    }

    /// The widest `|D(b) − D(a)|` for pops in `start..end`, with its window.
    fn run_gap(&self, i: usize, j: usize, start: usize, end: usize) -> PairGap {
        let (wi, wj) = (i128::from(self.weights[i]), i128::from(self.weights[j]));
        let mut d: i128 = 0;
        let (mut lo, mut lo_at) = (0i128, start);
        let (mut hi, mut hi_at) = (0i128, start);
        for p in start..end {
            let (t, c) = self.pops[p];
            if t == i {
                d += i128::from(c) * wj;
            } else if t == j {
                d -= i128::from(c) * wi;
            }
            if d < lo {
                (lo, lo_at) = (d, p + 1);
            }
            if d > hi {
                (hi, hi_at) = (d, p + 1);
            }
        }
        let (first, last) = (lo_at.min(hi_at), lo_at.max(hi_at));
        let served = |who: usize| -> u64 {
            self.pops[first..last]
                .iter()
                .filter(|&&(t, _)| t == who)
                .map(|&(_, c)| c)
                .sum()
        };
        PairGap {
            i,
            j,
            first,
            last,
            served_i: served(i),
            served_j: served(j),
            gap: (hi - lo) as u128,
            bound: 0,
        }
    }
}

pub(crate) mod admission_model;
pub(crate) mod class_oracle;
pub(crate) mod classes;
pub(crate) mod queue_model;
pub(crate) mod scheduler;
pub(crate) mod threads;

/// A proptest config with `cases` cases whose failures are saved next to the test source
/// (`<test file>.regressions`) and replayed first on later runs.
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}

/// One way an item pushed by the host can come back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Way {
    /// Handed out by `dispatch` (with a ticket).
    Dispatched,
    /// Handed out by `pop`.
    Popped,
    /// Refused at the push, handed back inside the `Rejected`.
    Refused,
    /// Evicted to make room for another tenant's item (`take_returned`).
    Evicted,
    /// Its deadline passed while queued (`take_returned` / `take_expired`).
    Expired,
    /// Shed by the queue-delay target (`take_returned`).
    Shed,
    /// Removed by `purge`.
    Purged,
    /// Removed by `retain` (the predicate said no).
    RetainedOut,
    /// Yielded by `drain`.
    Drained,
    /// Handed back by `close`.
    Closed,
}

/// The host's conservation ledger: every item id it handed to the crate and every way each came
/// back. Recording an id twice, or an id that was never pushed, panics at once with the id and
/// both ways; [`assert_all_back`](Self::assert_all_back) fails naming every id still owed.
/// Panics fail a proptest case like a `prop_assert!` (proptest catches and shrinks them).
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    /// Every id pushed, with the way it came back once it did.
    ids: BTreeMap<u64, Option<Way>>,
    /// How many ids are pushed and not back yet.
    owed: usize,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records that the host hands item `id` to the crate (before the push, so a refusal can be
    /// recorded as a way back).
    #[track_caller]
    pub(crate) fn pushed(&mut self, id: impl Into<u64>) {
        let id = id.into();
        assert!(
            self.ids.insert(id, None).is_none(),
            "item {id} pushed twice (the test reused an id)"
        );
        self.owed += 1;
    }

    /// Records that item `id` came back `way`.
    #[track_caller]
    pub(crate) fn back(&mut self, id: impl Into<u64>, way: Way) {
        let id = id.into();
        match self.ids.get_mut(&id) {
            None => panic!("item {id} came back ({way:?}) but was never pushed"),
            Some(Some(before)) => {
                panic!("item {id} came back twice: {before:?}, then {way:?}")
            }
            Some(slot) => {
                *slot = Some(way);
                self.owed -= 1;
            }
        }
    }

    /// Records every id of `ids` as come back `way`.
    #[track_caller]
    pub(crate) fn back_all<I: Into<u64>>(&mut self, ids: impl IntoIterator<Item = I>, way: Way) {
        for id in ids {
            self.back(id, way);
        }
    }

    /// Whether `id` was pushed.
    pub(crate) fn was_pushed(&self, id: impl Into<u64>) -> bool {
        self.ids.contains_key(&id.into())
    }

    /// How item `id` came back, if it did.
    pub(crate) fn way(&self, id: impl Into<u64>) -> Option<Way> {
        self.ids.get(&id.into()).copied().flatten()
    }

    /// How many ids were pushed.
    pub(crate) fn pushed_count(&self) -> usize {
        self.ids.len()
    }

    /// How many ids are pushed and not back yet (what the crate still holds).
    pub(crate) fn owed(&self) -> usize {
        self.owed
    }

    /// The ids pushed and not back yet, in ascending order.
    pub(crate) fn owed_ids(&self) -> Vec<u64> {
        self.ids
            .iter()
            .filter(|(_, w)| w.is_none())
            .map(|(&id, _)| id)
            .collect()
    }

    /// How many ids came back `way`.
    pub(crate) fn count(&self, way: Way) -> usize {
        self.ids.values().filter(|w| **w == Some(way)).count()
    }

    /// Asserts that every id pushed came back exactly once (twice is caught by
    /// [`back`](Self::back) already), naming the ids that did not.
    #[track_caller]
    pub(crate) fn assert_all_back(&self) {
        let owed = self.owed_ids();
        assert!(
            owed.is_empty(),
            "{} of {} items never came back (lost): {owed:?}",
            owed.len(),
            self.ids.len()
        );
    }
}

/// A drop counter: hands out [`Tracked`] items with ids 0, 1, 2, ... and counts how often each
/// was dropped, so a test can check that nothing leaks and nothing is dropped twice.
#[derive(Debug, Default, Clone)]
pub(crate) struct Drops(Rc<RefCell<Vec<u32>>>);

impl Drops {
    pub(crate) fn item(&self) -> Tracked {
        let mut counts = self.0.borrow_mut();
        counts.push(0);
        Tracked {
            id: counts.len() - 1,
            drops: self.clone(),
        }
    }

    pub(crate) fn created(&self) -> usize {
        self.0.borrow().len()
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.borrow().iter().map(|&c| u64::from(c)).sum()
    }

    /// Ids whose drop count is not exactly `want`.
    pub(crate) fn not_dropped(&self, want: u32) -> Vec<(usize, u32)> {
        self.0
            .borrow()
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != want)
            .map(|(id, &c)| (id, c))
            .collect()
    }
}

#[derive(Debug)]
/// An item of a [`Drops`] counter: counts its own drop.
pub(crate) struct Tracked {
    pub(crate) id: usize,
    pub(crate) drops: Drops,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.0.borrow_mut()[self.id] += 1;
    }
}
