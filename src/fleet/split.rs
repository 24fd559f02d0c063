//! [`QuotaSplit`]: a fleet-wide per-tenant [`Quota`] divided among the healthy nodes.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::Quota;

/// A fleet-wide per-tenant rate [`Quota`] split evenly across `healthy` nodes, each of which
/// enforces its part locally with no coordination.
///
/// - **Rate.** Each node replenishes one unit every `healthy × interval` (the total's
///   [`replenish_interval`](Quota::replenish_interval) times the number of healthy nodes),
///   so the nodes' rates sum to exactly the total's rate: the split itself rounds nothing.
///   (The total's interval is whole nanoseconds, as in any [`Quota`]; an interval beyond
///   `u64::MAX` nanoseconds, about 584 years, saturates, which only lowers the rate.)
/// - **Burst.** Each node allows a burst of `⌈burst / healthy⌉`, at least 1, so the nodes'
///   bursts sum to `healthy · ⌈burst / healthy⌉`, between `burst` and `burst + healthy − 1`.
///   A node's burst is also the largest item cost it can ever admit: an item costlier than
///   the per-node burst, though within the fleet-wide burst, is refused as too large on every
///   node. Keep the fleet-wide burst at least `healthy ×` the largest item cost.
///
/// # Fairness
///
/// With the per-node quotas enforced by the crate's limiter (a GCRA: over any window of
/// length `T` it admits at most `burst + ⌊T / interval⌋` units of cost), over any window of
/// length `T` the fleet as a whole admits at most
///
/// ```text
/// healthy · ⌈burst / healthy⌉  +  ⌊T / interval⌋   <=   burst + ⌊T / interval⌋ + (healthy − 1)
/// ```
///
/// units (see [`max_admitted`](Self::max_admitted)): what the fleet-wide quota enforced in one
/// place would allow, plus at most `healthy − 1` units of burst rounding. *Why:* node `m`
/// admits at most `b + ⌊T / (healthy · interval)⌋`, and
/// `healthy · ⌊x / healthy⌋ <= ⌊x⌋`. Conversely, with all nodes healthy and every node
/// offered enough work, the fleet admits at least `healthy · ⌊T / (healthy · interval)⌋ >
/// T / interval − healthy` units in any window, a fraction of at least
/// `1 − healthy · interval / T` of the total's rate.
///
/// When the number of healthy nodes changes, build a new split and give each node its new
/// quota. While the change spreads, nodes enforce different splits, so the bound is stated
/// for windows in which the set of healthy nodes stays the same.
///
/// # Examples
///
/// ```
/// use fairshare::Quota;
/// use fairshare::fleet::QuotaSplit;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let n = |n| NonZeroU32::new(n).unwrap();
/// // 1,000 jobs per second with a burst of 100, fleet-wide, on 3 healthy nodes.
/// let total = Quota::per_second(n(1000)).allow_burst(n(100));
/// let split = QuotaSplit::new(total, n(3));
/// let node = split.per_node();
/// assert_eq!(node.replenish_interval(), Duration::from_millis(3)); // 333.3 per second each
/// assert_eq!(node.burst().get(), 34); // ⌈100 / 3⌉
/// assert_eq!(split.max_admitted(Duration::from_secs(1)), 3 * 34 + 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaSplit {
    total: Quota,
    healthy: NonZeroU32,
}

impl QuotaSplit {
    /// The split of `total` over `healthy` nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// let total = Quota::per_second(NonZeroU32::new(10).unwrap());
    /// let split = QuotaSplit::new(total, NonZeroU32::MIN);
    /// assert_eq!(split.per_node(), total); // one node enforces the whole quota
    /// ```
    pub const fn new(total: Quota, healthy: NonZeroU32) -> Self {
        QuotaSplit { total, healthy }
    }

    /// The fleet-wide quota.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// let total = Quota::per_second(NonZeroU32::new(10).unwrap());
    /// assert_eq!(QuotaSplit::new(total, NonZeroU32::MIN).total(), total);
    /// ```
    pub const fn total(&self) -> Quota {
        self.total
    }

    /// The number of healthy nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// let total = Quota::per_second(NonZeroU32::new(10).unwrap());
    /// assert_eq!(QuotaSplit::new(total, NonZeroU32::MIN).healthy().get(), 1);
    /// ```
    pub const fn healthy(&self) -> NonZeroU32 {
        self.healthy
    }

    /// The quota each healthy node enforces: interval `healthy × interval` (saturating), burst
    /// `⌈burst / healthy⌉` (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// # use std::time::Duration;
    /// let n = |n| NonZeroU32::new(n).unwrap();
    /// let node = QuotaSplit::new(Quota::per_second(n(100)).allow_burst(n(5)), n(10)).per_node();
    /// assert_eq!(node.replenish_interval(), Duration::from_millis(100));
    /// assert_eq!(node.burst().get(), 1);
    /// ```
    pub fn per_node(&self) -> Quota {
        let interval = self
            .interval()
            .checked_mul(self.healthy.get())
            .unwrap_or(Duration::MAX);
        // `with_period` is `None` only for a zero interval, which `interval()` rules out.
        let quota = Quota::with_period(interval).unwrap_or(self.total);
        quota.allow_burst(self.node_burst())
    }

    /// The sum of the nodes' bursts: `healthy · ⌈burst / healthy⌉`, between `burst` and
    /// `burst + healthy − 1`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// let n = |n| NonZeroU32::new(n).unwrap();
    /// let split = QuotaSplit::new(Quota::per_second(n(100)).allow_burst(n(10)), n(4));
    /// assert_eq!(split.fleet_burst(), 12); // 4 nodes × 3
    /// ```
    pub fn fleet_burst(&self) -> u64 {
        u64::from(self.healthy.get()) * u64::from(self.node_burst().get())
    }

    /// The most cost the healthy nodes together admit in any window of length `window`:
    /// [`fleet_burst`](Self::fleet_burst) plus `⌊window / interval⌋` (see `# Fairness`),
    /// saturating.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Quota, fleet::QuotaSplit};
    /// # use std::num::NonZeroU32;
    /// # use std::time::Duration;
    /// let n = |n| NonZeroU32::new(n).unwrap();
    /// let split = QuotaSplit::new(Quota::per_second(n(100)).allow_burst(n(10)), n(4));
    /// assert_eq!(split.max_admitted(Duration::from_secs(2)), 12 + 200);
    /// ```
    pub fn max_admitted(&self, window: Duration) -> u64 {
        let refills = window.as_nanos() / self.interval().as_nanos();
        self.fleet_burst()
            .saturating_add(u64::try_from(refills).unwrap_or(u64::MAX))
    }

    /// The total's interval, at least 1 ns (as the limiter reads it, even for a deserialised
    /// quota that skipped the constructors).
    fn interval(&self) -> Duration {
        self.total.replenish_interval().max(Duration::from_nanos(1))
    }

    /// `⌈burst / healthy⌉`, at least 1.
    fn node_burst(&self) -> NonZeroU32 {
        let share = self.total.burst().get().div_ceil(self.healthy.get());
        NonZeroU32::new(share).unwrap_or(NonZeroU32::MIN)
    }
}
