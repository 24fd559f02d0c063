//! [`Quota`]: a rate and a burst for the GCRA rate limiter.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::clock::Nanos;

/// A rate limit: one unit of cost replenished every `replenish_interval`, up to `burst` units
/// saved up. An item of cost `c` uses `c` units. Same meaning as governor's `Quota`.
///
/// # Examples
///
/// ```
/// use fairshare::config::Quota;
/// use std::num::NonZeroU32;
///
/// // 100 jobs per second, at most 20 at once.
/// let q = Quota::per_second(NonZeroU32::new(100).unwrap())
///     .allow_burst(NonZeroU32::new(20).unwrap());
/// assert_eq!(q.burst().get(), 20);
/// assert_eq!(q.replenish_interval(), std::time::Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Nanoseconds per unit of cost (at least 1). 128-bit, so that any `Duration` is exact.
    interval: u128,
    burst: NonZeroU32,
}

impl Quota {
    /// `rate` units per second, with a burst of `rate`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_second(NonZeroU32::new(4).unwrap());
    /// assert_eq!(q.burst().get(), 4);
    /// ```
    pub const fn per_second(rate: NonZeroU32) -> Self {
        Self::per(Nanos::from_secs(1), rate)
    }

    /// `rate` units per minute, with a burst of `rate`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_minute(NonZeroU32::new(60).unwrap());
    /// assert_eq!(q.replenish_interval(), std::time::Duration::from_secs(1));
    /// ```
    pub const fn per_minute(rate: NonZeroU32) -> Self {
        Self::per(Nanos::from_secs(60), rate)
    }

    /// `rate` units per hour, with a burst of `rate`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_hour(NonZeroU32::new(3600).unwrap());
    /// assert_eq!(q.replenish_interval(), std::time::Duration::from_secs(1));
    /// ```
    pub const fn per_hour(rate: NonZeroU32) -> Self {
        Self::per(Nanos::from_secs(3600), rate)
    }

    const fn per(period: Nanos, rate: NonZeroU32) -> Self {
        let interval = period.as_u64() / rate.get() as u64;
        Quota {
            interval: if interval == 0 { 1 } else { interval as u128 },
            burst: rate,
        }
    }

    /// One unit every `interval`, with a burst of 1; `None` if `interval` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = fairshare::config::Quota::with_period(Duration::from_millis(250)).unwrap();
    /// assert_eq!(q.burst().get(), 1);
    /// assert!(fairshare::config::Quota::with_period(Duration::ZERO).is_none());
    /// ```
    pub fn with_period(interval: Duration) -> Option<Self> {
        let interval = interval.as_nanos();
        (interval > 0).then_some(Quota {
            interval,
            burst: NonZeroU32::MIN,
        })
    }

    /// The same rate with a different burst.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_second(NonZeroU32::new(10).unwrap())
    ///     .allow_burst(NonZeroU32::new(1).unwrap());
    /// assert_eq!(q.burst().get(), 1);
    /// ```
    pub const fn allow_burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// The most cost that can be admitted at once (and the largest single item cost).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_second(NonZeroU32::new(10).unwrap());
    /// assert_eq!(q.burst().get(), 10);
    /// ```
    pub const fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// The time it takes to replenish one unit.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_second(NonZeroU32::new(1000).unwrap());
    /// assert_eq!(q.replenish_interval(), std::time::Duration::from_millis(1));
    /// ```
    pub fn replenish_interval(&self) -> Duration {
        let n = self.interval_nanos();
        // A `Duration` holds 2^64 s, and every interval came from one.
        Duration::new((n / 1_000_000_000) as u64, (n % 1_000_000_000) as u32)
    }

    /// At least 1 ns, even for a deserialised value that skipped the constructors.
    pub(crate) const fn interval_nanos(&self) -> u128 {
        if self.interval == 0 { 1 } else { self.interval }
    }
}
