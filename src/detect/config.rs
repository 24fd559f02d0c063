//! The detector's settings: [`DetectorConfig`] and the stream it judges ([`Basis`]).

use std::num::NonZeroU32;

use super::response::Response;
use crate::clock::Nanos;
use crate::error::ConfigError;

/// Which recorded stream a share is a share of.
///
/// # Examples
///
/// ```
/// use fairshare::detect::{Basis, DetectorConfig};
/// let config = DetectorConfig::new().with_basis(Basis::Served);
/// assert_eq!(config.basis(), Basis::Served);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Basis {
    /// Cost admitted into the queue ([`Detector::record_admitted`](super::Detector::record_admitted)).
    #[default]
    Admitted,
    /// Cost dispatched to run ([`Detector::record_served`](super::Detector::record_served)).
    Served,
    /// Refused cost or count ([`Detector::record_refused`](super::Detector::record_refused)).
    Refused,
}

impl Basis {
    pub(crate) const fn index(self) -> usize {
        match self {
            Basis::Admitted => 0,
            Basis::Served => 1,
            Basis::Refused => 2,
        }
    }
}

/// The detector's settings: a plain `Copy` value with `const` builders, checked by
/// [`validate`](Self::validate) (which [`Detector::new`](super::Detector::new) calls).
///
/// | setting | default | meaning |
/// | --- | --- | --- |
/// | `capacity` (k) | 64 | tenants tracked per sub-window; a share's error is at most `1/k` |
/// | `sub_windows` (N) | 8 | sub-windows in the window |
/// | `sub_window` (L) | 1 s | length of one sub-window; the window spans `(N-1)·L` to `N·L` |
/// | `basis` | [`Basis::Admitted`] | the stream [`poll`](super::Detector::poll) judges |
/// | `enter_share` | 0.20 | a tenant becomes noisy above this share... |
/// | `enter_after` | 0 | ...held at every poll for this long |
/// | `exit_share` | 0.10 | it stops being noisy below this share... |
/// | `exit_after` | 2 s | ...held at every poll for this long |
/// | `min_total` | 0 | no tenant is judged while the window's total is below this |
/// | `sampling` | 1024 | target samples per sub-window; `None` records every unit exactly |
/// | `seed` | fixed | the sampler's seed (the same seed gives the same decisions) |
/// | `response` | `None` | what a [`Scheduler`](crate::Scheduler) that embeds the detector does to a noisy tenant |
///
/// Two configs are equal when every setting is, the shares compared bit for bit (so that
/// equality is an equivalence and the type can be `Eq`; any share [`validate`](Self::validate)
/// accepts compares as a number would).
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::detect::DetectorConfig;
/// use std::num::NonZeroU32;
///
/// let config = DetectorConfig::new()
///     .with_capacity(NonZeroU32::new(32).unwrap())
///     .with_window(NonZeroU32::new(10).unwrap(), Nanos::from_millis(500))
///     .with_shares(0.25, 0.15)
///     .with_exit_after(Nanos::from_secs(5));
/// assert!(config.validate().is_ok());
/// assert_eq!(config.window(), Nanos::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct DetectorConfig {
    capacity: NonZeroU32,
    sub_windows: NonZeroU32,
    sub_window: Nanos,
    basis: Basis,
    enter_share: f64,
    enter_after: Nanos,
    exit_share: f64,
    exit_after: Nanos,
    min_total: u64,
    sampling: Option<NonZeroU32>,
    seed: u64,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    response: Option<Response>,
}

impl PartialEq for DetectorConfig {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let DetectorConfig {
            capacity,
            sub_windows,
            sub_window,
            basis,
            enter_share,
            enter_after,
            exit_share,
            exit_after,
            min_total,
            sampling,
            seed,
            response,
        } = *self;
        capacity == other.capacity
            && sub_windows == other.sub_windows
            && sub_window == other.sub_window
            && basis == other.basis
            && enter_share.to_bits() == other.enter_share.to_bits()
            && enter_after == other.enter_after
            && exit_share.to_bits() == other.exit_share.to_bits()
            && exit_after == other.exit_after
            && min_total == other.min_total
            && sampling == other.sampling
            && seed == other.seed
            && response == other.response
    }
}

/// Bitwise equality of the shares is reflexive, symmetric and transitive.
impl Eq for DetectorConfig {}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self::new()
    }
}

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

impl DetectorConfig {
    /// The defaults in the table above.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = fairshare::detect::DetectorConfig::new();
    /// assert_eq!(config.capacity().get(), 64);
    /// assert!(config.validate().is_ok());
    /// ```
    pub const fn new() -> Self {
        DetectorConfig {
            capacity: nz(64),
            sub_windows: nz(8),
            sub_window: Nanos::from_secs(1),
            basis: Basis::Admitted,
            enter_share: 0.20,
            enter_after: Nanos::ZERO,
            exit_share: 0.10,
            exit_after: Nanos::from_secs(2),
            min_total: 0,
            sampling: Some(nz(1024)),
            seed: 0x5EED_F00D_CAFE_D00D,
            response: None,
        }
    }

    /// Tenants tracked per sub-window (k). Memory is `O(k · N)` whatever the number of tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let c = fairshare::detect::DetectorConfig::new().with_capacity(NonZeroU32::new(16).unwrap());
    /// assert_eq!(c.capacity().get(), 16);
    /// ```
    pub const fn with_capacity(mut self, k: NonZeroU32) -> Self {
        self.capacity = k;
        self
    }

    /// The window: `sub_windows` (N) sub-windows of `sub_window` (L) each.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// use fairshare::Nanos;
    /// let c = fairshare::detect::DetectorConfig::new()
    ///     .with_window(NonZeroU32::new(4).unwrap(), Nanos::from_secs(15));
    /// assert_eq!(c.window(), Nanos::from_secs(60));
    /// ```
    pub const fn with_window(mut self, sub_windows: NonZeroU32, sub_window: Nanos) -> Self {
        self.sub_windows = sub_windows;
        self.sub_window = sub_window;
        self
    }

    /// The stream [`poll`](super::Detector::poll) judges.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{Basis, DetectorConfig};
    /// assert_eq!(DetectorConfig::new().with_basis(Basis::Refused).basis(), Basis::Refused);
    /// ```
    pub const fn with_basis(mut self, basis: Basis) -> Self {
        self.basis = basis;
        self
    }

    /// The enter and exit shares (fractions of the window's total, `exit <= enter`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::detect::DetectorConfig::new().with_shares(0.3, 0.2);
    /// assert_eq!((c.enter_share(), c.exit_share()), (0.3, 0.2));
    /// ```
    pub const fn with_shares(mut self, enter: f64, exit: f64) -> Self {
        self.enter_share = enter;
        self.exit_share = exit;
        self
    }

    /// How long a tenant's share must stay above `enter_share` before it is noisy.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// let c = fairshare::detect::DetectorConfig::new().with_enter_after(Nanos::from_secs(1));
    /// assert_eq!(c.enter_after(), Nanos::from_secs(1));
    /// ```
    pub const fn with_enter_after(mut self, d: Nanos) -> Self {
        self.enter_after = d;
        self
    }

    /// How long a noisy tenant's share must stay below `exit_share` before it is cleared.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// let c = fairshare::detect::DetectorConfig::new().with_exit_after(Nanos::ZERO);
    /// assert_eq!(c.exit_after(), Nanos::ZERO);
    /// ```
    pub const fn with_exit_after(mut self, d: Nanos) -> Self {
        self.exit_after = d;
        self
    }

    /// No tenant is judged (none becomes noisy, none is cleared) while the window's total is
    /// below `total`, so that a quiet system's one active tenant is not "noisy".
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::detect::DetectorConfig::new().with_min_total(1_000);
    /// assert_eq!(c.min_total(), 1_000);
    /// ```
    pub const fn with_min_total(mut self, total: u64) -> Self {
        self.min_total = total;
        self
    }

    /// Target samples per sub-window (`None`: record every unit of cost exactly). See the
    /// [module docs](super#sampling) for the cost and the error it adds.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::detect::DetectorConfig::new().with_sampling(None);
    /// assert_eq!(c.sampling(), None);
    /// ```
    pub const fn with_sampling(mut self, target: Option<NonZeroU32>) -> Self {
        self.sampling = target;
        self
    }

    /// The sampler's seed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().with_seed(7).seed(), 7);
    /// ```
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets (or with `None` removes) the automatic [`Response`] to a noisy tenant. A
    /// [`Detector`](super::Detector) built from this config starts with it (as
    /// [`Detector::set_response`](super::Detector::set_response)); a
    /// [`Scheduler`](crate::Scheduler) that embeds the detector
    /// ([`SchedulerConfig::with_detector`](crate::SchedulerConfig::with_detector)) applies it
    /// while the tenant is noisy and restores the tenant's own settings when it is cleared.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{DetectorConfig, Response};
    /// use std::num::NonZeroU32;
    /// let halve = Response::DivideWeight { divisor: NonZeroU32::new(2).unwrap() };
    /// let c = DetectorConfig::new().with_response(Some(halve));
    /// assert_eq!(c.response(), Some(halve));
    /// ```
    pub const fn with_response(mut self, response: Option<Response>) -> Self {
        self.response = response;
        self
    }

    /// Tenants tracked per sub-window (k).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().capacity().get(), 64);
    /// ```
    pub const fn capacity(&self) -> NonZeroU32 {
        self.capacity
    }

    /// Sub-windows in the window (N).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().sub_windows().get(), 8);
    /// ```
    pub const fn sub_windows(&self) -> NonZeroU32 {
        self.sub_windows
    }

    /// Length of one sub-window (L).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// assert_eq!(fairshare::detect::DetectorConfig::new().sub_window(), Nanos::from_secs(1));
    /// ```
    pub const fn sub_window(&self) -> Nanos {
        self.sub_window
    }

    /// The longest span the window covers, `N · L` (it covers more than `(N-1) · L`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// assert_eq!(fairshare::detect::DetectorConfig::new().window(), Nanos::from_secs(8));
    /// ```
    pub const fn window(&self) -> Nanos {
        Nanos::new(
            self.sub_window
                .as_u64()
                .saturating_mul(self.sub_windows.get() as u64),
        )
    }

    /// The stream [`poll`](super::Detector::poll) judges.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{Basis, DetectorConfig};
    /// assert_eq!(DetectorConfig::new().basis(), Basis::Admitted);
    /// ```
    pub const fn basis(&self) -> Basis {
        self.basis
    }

    /// The share above which a tenant becomes noisy.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().enter_share(), 0.2);
    /// ```
    pub const fn enter_share(&self) -> f64 {
        self.enter_share
    }

    /// The share below which a noisy tenant is cleared.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().exit_share(), 0.1);
    /// ```
    pub const fn exit_share(&self) -> f64 {
        self.exit_share
    }

    /// How long the enter condition must hold.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().enter_after(), fairshare::Nanos::ZERO);
    /// ```
    pub const fn enter_after(&self) -> Nanos {
        self.enter_after
    }

    /// How long the exit condition must hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// assert_eq!(fairshare::detect::DetectorConfig::new().exit_after(), Nanos::from_secs(2));
    /// ```
    pub const fn exit_after(&self) -> Nanos {
        self.exit_after
    }

    /// The smallest window total at which tenants are judged.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().min_total(), 0);
    /// ```
    pub const fn min_total(&self) -> u64 {
        self.min_total
    }

    /// Target samples per sub-window, or `None` for exact recording.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().sampling().unwrap().get(), 1024);
    /// ```
    pub const fn sampling(&self) -> Option<NonZeroU32> {
        self.sampling
    }

    /// The sampler's seed.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::detect::DetectorConfig::new();
    /// assert_eq!(c.seed(), c.with_seed(c.seed()).seed());
    /// ```
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// The automatic response, if any (see [`with_response`](Self::with_response)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare::detect::DetectorConfig::new().response().is_none());
    /// ```
    pub const fn response(&self) -> Option<Response> {
        self.response
    }

    /// The most a share estimate can overstate the truth when recording is exact: `1/k`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::DetectorConfig::new().error_bound(), 1.0 / 64.0);
    /// ```
    pub fn error_bound(&self) -> f64 {
        1.0 / f64::from(self.capacity.get())
    }

    /// The detection latency bound of the [module docs](super#detection-latency), in units of
    /// cost: with recording exact and traffic steady at `window_cost` per window length
    /// ([`window`](Self::window)), a tenant whose share of every later unit of cost is at
    /// least `share` (above `enter_share`) has a window share above `enter_share` once this
    /// much cost has been recorded. A poll after that flags it (after `enter_after`).
    /// `u64::MAX` if `share` is not above `enter_share`.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::detect::DetectorConfig::new(); // enter at 20%, N = 8
    /// assert_eq!(c.latency_bound(0.3, 8_000), 5_334); // ceil(0.2 / 0.3 * 8000)
    /// assert_eq!(c.latency_bound(0.21, 8_000), 8_000); // the whole window must turn over
    /// assert_eq!(c.latency_bound(0.1, 8_000), u64::MAX);
    /// ```
    pub fn latency_bound(&self, share: f64, window_cost: u64) -> u64 {
        // Ratio of the shares, and the part of the window always inside it (N-1 of N).
        let ratio = self.enter_share / share;
        if share.is_nan() || share <= self.enter_share {
            return u64::MAX;
        }
        let n = f64::from(self.sub_windows.get());
        if ratio <= (n - 1.0) / n {
            (ratio * window_cost as f64).ceil() as u64
        } else {
            window_cost
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field: `sub_window` if zero; `enter_share` unless
    /// above 0 and at most 1; `exit_share` unless above 0 and at most `enter_share`, or if not
    /// above `1/capacity` (a tenant no longer tracked is known only to be below `1/k`, so it
    /// could never be cleared).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::DetectorConfig;
    /// assert!(DetectorConfig::new().with_shares(0.1, 0.2).validate().is_err());
    /// let e = DetectorConfig::new().with_shares(0.2, 0.01).validate().unwrap_err();
    /// assert!(e.to_string().contains("exit_share"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problem() {
            Some((field, problem, _)) => Err(ConfigError::Invalid { field, problem }),
            None => Ok(()),
        }
    }

    /// The first setting [`validate`](Self::validate) refuses: its field, the problem, and
    /// both in one message. A `const fn`, so that a `const` scheduler config with a bad
    /// detector fails to compile.
    pub(crate) const fn problem(&self) -> Option<(&'static str, &'static str, &'static str)> {
        macro_rules! bad {
            ($field:literal, $problem:literal) => {
                Some((
                    $field,
                    $problem,
                    concat!("fairshare: detector config: `", $field, "` ", $problem),
                ))
            };
        }
        if self.sub_window.as_u64() == 0 {
            return bad!("sub_window", "must be at least 1 ns");
        }
        if !(self.enter_share > 0.0 && self.enter_share <= 1.0) {
            return bad!("enter_share", "must be above 0 and at most 1");
        }
        if !(self.exit_share > 0.0 && self.exit_share <= self.enter_share) {
            return bad!("exit_share", "must be above 0 and at most `enter_share`");
        }
        if self.exit_share * (self.capacity.get() as f64) <= 1.0 {
            return bad!(
                "exit_share",
                "must be above 1/capacity so an untracked tenant can clear; \
                 raise `capacity` or `exit_share`"
            );
        }
        None
    }
}
