//! Helpers shared by the integration tests: config and push-option shorthands, a watchdog for
//! calls that must terminate, and the checker of the DRR fairness bound stated in `FairQueue`'s
//! rustdoc.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::fmt;
use std::num::NonZeroU32;
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
