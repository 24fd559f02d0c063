//! Time as a value: [`Nanos`], the [`Clock`] trait, a [`ManualClock`] for tests and simulations,
//! and [`StdClock`], the one place in the crate that reads real time (with `TscClock`, its
//! cheaper twin behind the `quanta` feature).
//!
//! Every decision in `fairshare` is a pure function of its state and a `now` the caller passes in
//! (or that the public type reads once per call through a `Clock`). Under a [`ManualClock`] every
//! behaviour is reproducible to the nanosecond, so host code can test its own use of the crate in
//! milliseconds of CI time.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A point in time or a span, in nanoseconds from an arbitrary origin.
///
/// Arithmetic saturates: subtracting a later time from an earlier one gives [`Nanos::ZERO`]
/// ("time going backwards counts as no time passed"), and adding past `u64::MAX` stays at
/// `u64::MAX` (about 584 years of uptime).
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use std::time::Duration;
///
/// let t = Nanos::from(Duration::from_millis(5));
/// assert_eq!(t.as_u64(), 5_000_000);
/// assert_eq!(Nanos::new(3) - Nanos::new(10), Nanos::ZERO); // saturates
/// assert_eq!(Duration::from(t), Duration::from_millis(5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Nanos(u64);

impl Nanos {
    /// Zero nanoseconds.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable time.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// Wraps a count of nanoseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Nanos::new(7).as_u64(), 7);
    /// ```
    pub const fn new(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// Whole seconds, saturating.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Nanos::from_secs(2).as_u64(), 2_000_000_000);
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// Whole milliseconds, saturating.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Nanos::from_millis(2).as_u64(), 2_000_000);
    /// ```
    pub const fn from_millis(millis: u64) -> Self {
        Nanos(millis.saturating_mul(1_000_000))
    }

    /// Whole microseconds, saturating.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Nanos::from_micros(2).as_u64(), 2_000);
    /// ```
    pub const fn from_micros(micros: u64) -> Self {
        Nanos(micros.saturating_mul(1_000))
    }

    /// The raw count of nanoseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Nanos::from_micros(1).as_u64(), 1_000);
    /// ```
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later (time going backwards is no time passed).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// assert_eq!(Nanos::new(10).saturating_since(Nanos::new(4)), Nanos::new(6));
    /// assert_eq!(Nanos::new(4).saturating_since(Nanos::new(10)), Nanos::ZERO);
    /// ```
    pub const fn saturating_since(self, earlier: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl From<Duration> for Nanos {
    fn from(d: Duration) -> Self {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for Duration {
    fn from(n: Nanos) -> Self {
        Duration::from_nanos(n.0)
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Duration::from_nanos(self.0))
    }
}

/// A monotonic source of time.
///
/// Implementations must never go backwards; if one does anyway, every consumer in this crate
/// treats the step back as no time passed.
///
/// # Examples
///
/// ```
/// use fairshare::{Clock, ManualClock, Nanos};
///
/// fn elapsed(clock: &impl Clock, since: Nanos) -> Nanos {
///     clock.now() - since
/// }
/// let clock = ManualClock::new();
/// clock.advance(std::time::Duration::from_millis(3));
/// assert_eq!(elapsed(&clock, Nanos::ZERO), Nanos::from_millis(3));
/// ```
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Nanos;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

/// A clock that moves only when told to. Clones share one time.
///
/// # Examples
///
/// ```
/// use fairshare::{Clock, ManualClock, Nanos};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let view = clock.clone();
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(view.now(), Nanos::from_secs(1));
/// clock.set(Nanos::new(5)); // may move backwards: consumers treat that as no time passed
/// assert_eq!(view.now(), Nanos::new(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Clock, ManualClock, Nanos};
    /// assert_eq!(ManualClock::new().now(), Nanos::ZERO);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `by` (saturating at [`Nanos::MAX`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Clock, ManualClock, Nanos};
    /// let clock = ManualClock::new();
    /// clock.advance(std::time::Duration::from_nanos(10));
    /// assert_eq!(clock.now(), Nanos::new(10));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = Nanos::from(by).as_u64();
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Sets the time.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Clock, ManualClock, Nanos};
    /// let clock = ManualClock::new();
    /// clock.set(Nanos::from_secs(9));
    /// assert_eq!(clock.now(), Nanos::from_secs(9));
    /// ```
    pub fn set(&self, to: Nanos) {
        self.now.store(to.as_u64(), Ordering::Release);
    }
}

impl Clock for ManualClock {
    // Inline across crates: one load, read once per admission check, is cheaper than a call.
    #[inline]
    fn now(&self) -> Nanos {
        Nanos(self.now.load(Ordering::Acquire))
    }
}

/// The real monotonic clock: [`std::time::Instant`] measured from the moment the clock was made.
///
/// # Examples
///
/// ```
/// use fairshare::{Clock, StdClock};
/// let clock = StdClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// let _clock = fairshare::StdClock::new();
    /// ```
    #[allow(clippy::disallowed_methods)] // the one place that reads real time
    pub fn new() -> Self {
        StdClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads real time
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

/// The real monotonic clock read from the CPU's time-stamp counter through [`quanta`], measured
/// from the moment the clock was made. Feature `quanta`.
///
/// It reads the same time as [`StdClock`] at a fraction of the cost on a machine with an
/// invariant TSC (a read and a multiply, no call into the vDSO), which matters when the host
/// passes the real clock to a check that otherwise takes a few nanoseconds. Precision: the
/// TSC's, calibrated against the OS monotonic clock when the first `TscClock` (or any quanta
/// clock) is made; quanta falls back to the OS clock where no usable TSC exists. Clones share
/// one origin.
///
/// A host that would rather read the clock once per batch of checks can tick a
/// [`ManualClock`] from its own loop instead: its precision is then the host's tick.
///
/// # Examples
///
/// ```
/// use fairshare::{Clock, clock::TscClock};
/// let clock = TscClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[cfg(feature = "quanta")]
#[derive(Debug, Clone)]
pub struct TscClock {
    clock: quanta::Clock,
    origin: u64,
}

#[cfg(feature = "quanta")]
impl TscClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// let _clock = fairshare::clock::TscClock::new();
    /// ```
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        TscClock { clock, origin }
    }
}

#[cfg(feature = "quanta")]
impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl Clock for TscClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos(self.clock.delta_as_nanos(self.origin, self.clock.raw()))
    }
}

/// The real clock as last published by a quanta upkeep thread that the host starts: one atomic
/// load per read, no TSC read and no fence. Feature `quanta`.
///
/// Why it exists: a TSC or vDSO read orders the instruction stream (`lfence; rdtsc`), so a check
/// that reads it cannot overlap its cache misses with the previous check's. At a million
/// tenants, where each check misses the cache, that ordering (not the read itself) is what makes
/// an admission check on [`StdClock`] or [`TscClock`] several times slower than on a
/// [`ManualClock`]. This clock reads a plain atomic instead.
///
/// Precision: the upkeep interval. The core spawns no thread: the host runs
/// `quanta::Upkeep::new(interval).start()` and keeps the returned handle alive (or sets the
/// time itself with `quanta::set_recent`). Until the first update it reads zero, which the
/// scheduler treats as no time passed (its time never goes backwards).
///
/// # Examples
///
/// ```
/// use fairshare::{Clock, clock::RecentClock};
/// use std::time::Duration;
///
/// let _upkeep = quanta::Upkeep::new(Duration::from_millis(1)).start().unwrap();
/// let clock = RecentClock::new();
/// let a = clock.now();
/// std::thread::sleep(Duration::from_millis(20));
/// assert!(clock.now() > a);
/// ```
#[cfg(feature = "quanta")]
#[derive(Debug, Clone)]
pub struct RecentClock {
    clock: quanta::Clock,
    origin: quanta::Instant,
}

#[cfg(feature = "quanta")]
impl RecentClock {
    /// A clock whose origin is now.
    ///
    /// # Examples
    ///
    /// ```
    /// let _clock = fairshare::clock::RecentClock::new();
    /// ```
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        RecentClock { clock, origin }
    }
}

#[cfg(feature = "quanta")]
impl Default for RecentClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl Clock for RecentClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from(self.clock.recent().duration_since(self.origin))
    }
}

#[cfg(all(test, feature = "quanta"))]
mod tsc_tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // compares against real time
    fn tsc_clock_measures_the_same_time_as_the_std_clock() {
        let (tsc, std_clock) = (TscClock::new(), StdClock::new());
        let (t0, s0) = (tsc.now(), std_clock.now());
        std::thread::sleep(Duration::from_millis(50));
        let (t1, s1) = (tsc.now(), std_clock.now());
        let (dt, ds) = (t1.saturating_since(t0), s1.saturating_since(s0));
        assert!(
            dt >= Nanos::from_millis(45),
            "TSC clock moved {dt:?} in 50 ms"
        );
        // The two reads of each pair are a few microseconds apart; a scaling error would show
        // as a difference proportional to the 50 ms.
        let diff = dt.as_u64().abs_diff(ds.as_u64());
        assert!(diff < 2_000_000, "TSC {dt:?} against std {ds:?}");
    }
}
