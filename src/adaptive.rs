//! Adaptive concurrency limits: [`AdaptiveLimit`] turns completion latencies and failures into
//! a global in-flight limit, within fixed bounds.
//!
//! Pure state machines: they read no clock (latencies are measured by the caller on its
//! clock) and use only deterministic arithmetic, so under a
//! [`ManualClock`](crate::ManualClock) the limit follows the same path on every run.

use crate::clock::Nanos;

/// How a dispatched item ended, as reported on completion.
///
/// # Examples
///
/// ```
/// assert_ne!(fairshare::adaptive::Outcome::Success, fairshare::adaptive::Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Outcome {
    /// The work succeeded.
    Success,
    /// The work failed because of overload (timeouts, errors under load): back off.
    Failure,
    /// The work was abandoned (the lease was dropped): no signal.
    Dropped,
}

/// AIMD: additive increase of 1 per limit's worth of fast successes, multiplicative decrease
/// on a failure or a completion slower than `latency_threshold`.
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::adaptive::Aimd;
/// let aimd = Aimd::new(1, 100, Nanos::from_millis(50)).with_backoff_permille(500);
/// assert_eq!(aimd.bounds(), (1, 100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Aimd {
    min: u32,
    max: u32,
    latency_threshold: Nanos,
    backoff_permille: u32,
}

impl Aimd {
    /// Limits within `[min, max]` (`min` at least 1), backing off to 90% on overload.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = fairshare::adaptive::Aimd::new(0, 10, fairshare::Nanos::from_millis(5));
    /// assert_eq!(a.bounds(), (1, 10));
    /// ```
    pub const fn new(min: u32, max: u32, latency_threshold: Nanos) -> Self {
        let min = if min == 0 { 1 } else { min };
        Aimd {
            min,
            max: if max < min { min } else { max },
            latency_threshold,
            backoff_permille: 900,
        }
    }

    /// Sets the multiplicative decrease, in per-mille of the current limit (clamped to
    /// 1..=999).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = fairshare::adaptive::Aimd::new(1, 10, fairshare::Nanos::from_millis(5)).with_backoff_permille(500);
    /// assert_eq!(a.backoff_permille(), 500);
    /// ```
    pub const fn with_backoff_permille(mut self, permille: u32) -> Self {
        self.backoff_permille = if permille == 0 {
            1
        } else if permille > 999 {
            999
        } else {
            permille
        };
        self
    }

    /// `(min, max)`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::adaptive::Aimd::new(2, 8, fairshare::Nanos::ZERO).bounds(), (2, 8));
    /// ```
    pub const fn bounds(&self) -> (u32, u32) {
        (self.min, self.max)
    }

    /// The backoff factor, per-mille.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::adaptive::Aimd::new(1, 8, fairshare::Nanos::ZERO).backoff_permille(), 900);
    /// ```
    pub const fn backoff_permille(&self) -> u32 {
        self.backoff_permille
    }
}

/// A gradient limit (in the style of Netflix's concurrency-limits "Gradient2"): compares a
/// long-term smoothed latency with the recent one; when recent latency rises above
/// `tolerance ×` the long-term one the limit shrinks in proportion, otherwise it grows by
/// about `sqrt(limit)`.
///
/// # Examples
///
/// ```
/// let g = fairshare::adaptive::Gradient::new(1, 200);
/// assert_eq!(g.bounds(), (1, 200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gradient {
    min: u32,
    max: u32,
    tolerance: f64,
    smoothing: f64,
}

impl Gradient {
    /// Limits within `[min, max]` (`min` at least 1), tolerance 1.5, smoothing 0.2.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::adaptive::Gradient::new(0, 0).bounds(), (1, 1));
    /// ```
    pub const fn new(min: u32, max: u32) -> Self {
        let min = if min == 0 { 1 } else { min };
        Gradient {
            min,
            max: if max < min { min } else { max },
            tolerance: 1.5,
            smoothing: 0.2,
        }
    }

    /// `(min, max)`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::adaptive::Gradient::new(3, 9).bounds(), (3, 9));
    /// ```
    pub const fn bounds(&self) -> (u32, u32) {
        (self.min, self.max)
    }
}

/// Which adaptive algorithm drives the global in-flight limit.
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::adaptive::{AdaptiveLimit, Aimd, Outcome};
/// let mut limit = AdaptiveLimit::aimd(Aimd::new(1, 10, Nanos::from_millis(100)), 4);
/// assert_eq!(limit.current(), 4);
/// assert_eq!(limit.on_sample(Nanos::from_millis(500), Outcome::Success), 3); // too slow: back off
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    algo: Algo,
    limit: u32,
}

#[derive(Debug, Clone)]
enum Algo {
    Aimd {
        cfg: Aimd,
        successes: u32,
    },
    Gradient {
        cfg: Gradient,
        long: Option<f64>,
        estimate: f64,
    },
}

impl AdaptiveLimit {
    /// AIMD starting at `initial` (clamped to the bounds).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::adaptive::{AdaptiveLimit, Aimd};
    /// assert_eq!(AdaptiveLimit::aimd(Aimd::new(2, 8, Nanos::ZERO), 100).current(), 8);
    /// ```
    pub fn aimd(cfg: Aimd, initial: u32) -> Self {
        // Re-run the constructor's clamps: a deserialised value skipped them.
        let cfg = Aimd::new(cfg.min, cfg.max, cfg.latency_threshold)
            .with_backoff_permille(cfg.backoff_permille);
        AdaptiveLimit {
            limit: initial.clamp(cfg.min, cfg.max),
            algo: Algo::Aimd { cfg, successes: 0 },
        }
    }

    /// Gradient starting at `initial` (clamped to the bounds).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::adaptive::{AdaptiveLimit, Gradient};
    /// assert_eq!(AdaptiveLimit::gradient(Gradient::new(1, 50), 20).current(), 20);
    /// ```
    pub fn gradient(cfg: Gradient, initial: u32) -> Self {
        // Re-run the constructor's clamps: a deserialised value skipped them.
        let defaults = Gradient::new(cfg.min, cfg.max);
        let cfg = Gradient {
            tolerance: if cfg.tolerance.is_finite() && cfg.tolerance >= 1.0 {
                cfg.tolerance
            } else {
                defaults.tolerance
            },
            smoothing: if cfg.smoothing.is_finite() && cfg.smoothing > 0.0 && cfg.smoothing <= 1.0 {
                cfg.smoothing
            } else {
                defaults.smoothing
            },
            ..defaults
        };
        let limit = initial.clamp(cfg.min, cfg.max);
        AdaptiveLimit {
            limit,
            algo: Algo::Gradient {
                cfg,
                long: None,
                estimate: f64::from(limit),
            },
        }
    }

    /// The current limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::adaptive::{AdaptiveLimit, Gradient};
    /// assert_eq!(AdaptiveLimit::gradient(Gradient::new(1, 50), 5).current(), 5);
    /// ```
    pub fn current(&self) -> u32 {
        self.limit
    }

    /// Feeds one completion (its latency and outcome) and returns the new limit, always
    /// within the configured bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::adaptive::{AdaptiveLimit, Aimd, Outcome};
    /// let mut l = AdaptiveLimit::aimd(Aimd::new(1, 10, Nanos::from_millis(100)), 2);
    /// // two fast successes (one limit's worth) grow the limit by one
    /// l.on_sample(Nanos::from_millis(1), Outcome::Success);
    /// assert_eq!(l.on_sample(Nanos::from_millis(1), Outcome::Success), 3);
    /// assert_eq!(l.on_sample(Nanos::from_millis(1), Outcome::Failure), 2);
    /// ```
    pub fn on_sample(&mut self, latency: Nanos, outcome: Outcome) -> u32 {
        if outcome == Outcome::Dropped {
            return self.limit;
        }
        match &mut self.algo {
            Algo::Aimd { cfg, successes } => {
                if outcome == Outcome::Failure || latency > cfg.latency_threshold {
                    let reduced = u64::from(self.limit) * u64::from(cfg.backoff_permille) / 1000;
                    self.limit = (reduced as u32).clamp(cfg.min, cfg.max);
                    *successes = 0;
                } else {
                    *successes += 1;
                    if *successes >= self.limit {
                        *successes = 0;
                        self.limit = self.limit.saturating_add(1).clamp(cfg.min, cfg.max);
                    }
                }
            }
            Algo::Gradient {
                cfg,
                long,
                estimate,
            } => {
                let sample = (latency.as_u64().max(1)) as f64;
                let long_rtt = match *long {
                    None => sample,
                    Some(l) => l * 0.95 + sample * 0.05,
                };
                *long = Some(long_rtt);
                let gradient = if outcome == Outcome::Failure {
                    0.5
                } else {
                    (cfg.tolerance * long_rtt / sample).clamp(0.5, 1.0)
                };
                let queue = estimate.sqrt();
                let next = *estimate * gradient + queue;
                *estimate = (*estimate * (1.0 - cfg.smoothing) + next * cfg.smoothing)
                    .clamp(f64::from(cfg.min), f64::from(cfg.max));
                self.limit = (*estimate as u32).clamp(cfg.min, cfg.max);
            }
        }
        self.limit
    }
}
