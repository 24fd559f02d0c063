//! What the detector reports: [`ShareEstimate`]s, [`NoisyEvent`]s with the [`Action`] they
//! carry, and the [`DetectorStats`] snapshot.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use crate::admission::Scheduler;
use crate::clock::{Clock, Nanos};
use crate::config::TenantLimits;

/// One tenant's estimated share of a window's total.
///
/// Its true share lies in `share - error ..= share` when recording is exact, and `error` is
/// at most `1/k` ([`DetectorConfig::error_bound`](super::DetectorConfig::error_bound)); with
/// sampling, the sampling error of the [module docs](super#sampling) adds to it.
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::detect::{Basis, Detector, DetectorConfig};
/// let mut d: Detector<&str> = Detector::new(DetectorConfig::new().with_sampling(None)).unwrap();
/// d.record_admitted(&"acme", 3, Nanos::ZERO);
/// d.record_admitted(&"globex", 1, Nanos::ZERO);
/// let top = d.shares_above(Basis::Admitted, 0.5, Nanos::ZERO);
/// assert_eq!((top[0].key, top[0].share, top[0].error), ("acme", 0.75, 0.0));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ShareEstimate<K> {
    /// The tenant.
    pub key: K,
    /// Its estimated share of the window's total: never below the truth (exact recording).
    pub share: f64,
    /// How much `share` may overstate the truth.
    pub error: f64,
    /// Its estimated cost in the window (the numerator of `share`).
    pub cost: u64,
}

/// A change to apply to a tenant's settings in the scheduler, carried by a [`NoisyEvent`].
///
/// The actions map one to one onto the [`Scheduler`]'s setters; [`apply`](Self::apply) makes
/// the call.
///
/// # Examples
///
/// ```
/// use fairshare::detect::Action;
/// use fairshare::{Scheduler, SchedulerConfig};
/// use std::num::NonZeroU32;
/// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
/// Action::SetWeight { weight: NonZeroU32::new(3).unwrap() }.apply("acme", &mut s);
/// assert_eq!(s.queue().weight(&"acme").get(), 3);
/// Action::ClearWeight.apply("acme", &mut s);
/// assert_eq!(s.queue().weight(&"acme").get(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// [`Scheduler::set_weight`]`(key, weight)`.
    SetWeight {
        /// The weight to set.
        weight: NonZeroU32,
    },
    /// [`Scheduler::clear_weight`]`(&key)`: back to the default weight.
    ClearWeight,
    /// [`Scheduler::set_limits`]`(key, limits)`.
    SetLimits {
        /// The limits to set.
        limits: TenantLimits,
    },
    /// [`Scheduler::clear_limits`]`(&key)`: back to the default limits.
    ClearLimits,
}

impl Action {
    /// Makes the call this action names on `scheduler` for `key`.
    ///
    /// # Panics
    ///
    /// As [`Scheduler::set_weight`] and [`Scheduler::set_limits`]: if the scheduler already
    /// holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::Action;
    /// use fairshare::config::TenantLimits;
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// let tight = TenantLimits::new().with_max_items(1);
    /// Action::SetLimits { limits: tight }.apply("acme", &mut s);
    /// assert_eq!(s.limits(&"acme"), tight);
    /// Action::ClearLimits.apply("acme", &mut s);
    /// assert_eq!(s.limits(&"acme"), TenantLimits::UNLIMITED);
    /// ```
    #[track_caller]
    pub fn apply<K, T, C, S>(self, key: K, scheduler: &mut Scheduler<K, T, C, S>)
    where
        K: Hash + Eq + Clone,
        C: Clock,
        S: BuildHasher,
    {
        match self {
            Action::SetWeight { weight } => scheduler.set_weight(key, weight),
            Action::ClearWeight => scheduler.clear_weight(&key),
            Action::SetLimits { limits } => scheduler.set_limits(key, limits),
            Action::ClearLimits => scheduler.clear_limits(&key),
        }
    }
}

/// A change in the noisy set, produced by [`Detector::poll`](super::Detector::poll).
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::detect::{Detector, DetectorConfig, NoisyEvent};
/// let mut d: Detector<&str> = Detector::new(DetectorConfig::new()).unwrap();
/// d.record_admitted(&"acme", 10, Nanos::ZERO);
/// let events = d.poll(Nanos::ZERO);
/// assert!(matches!(&events[..], [NoisyEvent::Became { key: "acme", .. }]));
/// assert_eq!(events[0].key(), &"acme");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NoisyEvent<K> {
    /// `key`'s share stayed above the enter share for `enter_after`: it is noisy from `at`.
    Became {
        /// The tenant.
        key: K,
        /// Its estimated share at this poll.
        share: f64,
        /// The poll's time.
        at: Nanos,
        /// The response to apply, if one is configured.
        action: Option<Action>,
    },
    /// `key`'s share stayed below the exit share for `exit_after`: it is no longer noisy.
    Cleared {
        /// The tenant.
        key: K,
        /// Its estimated share at this poll.
        share: f64,
        /// The poll's time.
        at: Nanos,
        /// What restores its settings from before the response, if one was applied.
        action: Option<Action>,
    },
}

impl<K> NoisyEvent<K> {
    /// The tenant.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// # let mut d: fairshare::detect::Detector<u8> = fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_admitted(&7, 1, Nanos::ZERO);
    /// assert_eq!(d.poll(Nanos::ZERO)[0].key(), &7);
    /// ```
    pub fn key(&self) -> &K {
        match self {
            NoisyEvent::Became { key, .. } | NoisyEvent::Cleared { key, .. } => key,
        }
    }

    /// The action to apply for this event, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// # let mut d: fairshare::detect::Detector<u8> = fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_admitted(&7, 1, Nanos::ZERO);
    /// assert_eq!(d.poll(Nanos::ZERO)[0].action(), None); // no response configured
    /// ```
    pub fn action(&self) -> Option<Action> {
        match self {
            NoisyEvent::Became { action, .. } | NoisyEvent::Cleared { action, .. } => *action,
        }
    }
}

/// A tenant in the noisy set.
///
/// # Examples
///
/// ```
/// # use fairshare::Nanos;
/// # let mut d: fairshare::detect::Detector<u8> = fairshare::detect::Detector::new(Default::default()).unwrap();
/// d.record_admitted(&7, 1, Nanos::ZERO);
/// d.poll(Nanos::from_millis(5));
/// let noisy = &d.stats(Nanos::from_millis(5)).noisy[0];
/// assert_eq!((noisy.key, noisy.since), (7, Nanos::from_millis(5)));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct NoisyTenant<K> {
    /// The tenant.
    pub key: K,
    /// Its estimated share at the last poll.
    pub share: f64,
    /// When it became noisy.
    pub since: Nanos,
}

/// A snapshot of the detector, for the host's stats.
///
/// # Examples
///
/// ```
/// # use fairshare::Nanos;
/// let mut d: fairshare::detect::Detector<u8> =
///     fairshare::detect::Detector::new(Default::default()).unwrap();
/// d.record_admitted(&1, 5, Nanos::ZERO);
/// d.record_refused(&2, 1, Nanos::ZERO);
/// let s = d.stats(Nanos::ZERO);
/// assert_eq!((s.admitted, s.served, s.refused, s.tracked), (5, 0, 1, 2));
/// assert!(s.noisy.is_empty()); // nothing polled yet
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DetectorStats<K> {
    /// The noisy set as of the last poll, noisiest first.
    pub noisy: Vec<NoisyTenant<K>>,
    /// Tenants above the enter share, waiting out `enter_after`.
    pub candidates: usize,
    /// Entries in use, summed over every stream's live sub-windows (at most `3 · N · k`).
    pub tracked: usize,
    /// Tenants tracked per sub-window (k).
    pub capacity: usize,
    /// The window's estimated admitted cost.
    pub admitted: u64,
    /// The window's estimated served cost.
    pub served: u64,
    /// The window's estimated refused cost (or count).
    pub refused: u64,
    /// The longest span the window covers.
    pub window: Nanos,
    /// The weight of one sampled unit in each stream (admitted, served, refused); 1 is exact.
    pub strides: [u64; 3],
}
