//! The optional automatic [`Response`] to a noisy tenant, and the [`Prior`] settings it
//! restores.

use std::num::NonZeroU32;

use crate::config::TenantLimits;

/// What the host does to a tenant while it is noisy, restored when it is cleared. The
/// detector only says so: each [`NoisyEvent`](super::NoisyEvent) carries the
/// [`Action`](super::Action) to apply; a [`Scheduler`](crate::Scheduler) with detection on
/// applies it itself ([`DetectorConfig::with_response`](super::DetectorConfig::with_response)).
///
/// With the `serde` feature it reads and writes as in a config file:
/// `{ "divide_weight": 4 }` or `{ "clamp_limits": { "max_items": 100 } }` (the limits in
/// the form of `config::LimitsConfig`; a clamped quota must be a whole
/// number per second to be written).
///
/// # Examples
///
/// ```
/// use fairshare::detect::Response;
/// use fairshare::config::{Quota, TenantLimits};
/// use std::num::NonZeroU32;
///
/// let halve = Response::DivideWeight { divisor: NonZeroU32::new(2).unwrap() };
/// let clamp = Response::ClampLimits {
///     limits: TenantLimits::new().with_quota(Quota::per_second(NonZeroU32::new(10).unwrap())),
/// };
/// assert_ne!(halve, clamp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// Divide the tenant's weight by `divisor` (rounding down, at least 1): applied with
    /// [`Scheduler::set_weight`](crate::Scheduler::set_weight).
    DivideWeight {
        /// The factor the weight is lowered by.
        divisor: NonZeroU32,
    },
    /// Replace the tenant's limits (a tighter quota, caps): applied with
    /// [`Scheduler::set_limits`](crate::Scheduler::set_limits).
    ClampLimits {
        /// The limits in force while it is noisy.
        limits: TenantLimits,
    },
}

/// A tenant's settings before a [`Response`], as the host reports them when it becomes
/// noisy: the base of the response and what its clearing restores.
///
/// # Examples
///
/// ```
/// use fairshare::detect::Prior;
/// use fairshare::config::TenantLimits;
/// use std::num::NonZeroU32;
///
/// let p = Prior::new(NonZeroU32::new(4).unwrap())
///     .with_weight_override(true)
///     .with_limits_override(Some(TenantLimits::new().with_max_items(10)));
/// assert_eq!(p.weight().get(), 4);
/// assert!(p.weight_override());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    weight: NonZeroU32,
    weight_override: bool,
    limits_override: Option<TenantLimits>,
}

impl Prior {
    /// A tenant with weight `weight` in force, taken as the default (cleared on restore) and
    /// no limits of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = fairshare::detect::Prior::new(std::num::NonZeroU32::MIN);
    /// assert!(!p.weight_override() && p.limits_override().is_none());
    /// ```
    pub const fn new(weight: NonZeroU32) -> Self {
        Prior {
            weight,
            weight_override: false,
            limits_override: None,
        }
    }

    /// Whether `weight` is the tenant's own override (restored by setting it again) rather
    /// than the default (restored by clearing the override).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = fairshare::detect::Prior::new(std::num::NonZeroU32::MIN).with_weight_override(true);
    /// assert!(p.weight_override());
    /// ```
    pub const fn with_weight_override(mut self, is_override: bool) -> Self {
        self.weight_override = is_override;
        self
    }

    /// The tenant's own limits, if it has an override (restored by setting them again);
    /// `None` restores the defaults by clearing the override.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::TenantLimits;
    /// let p = fairshare::detect::Prior::new(std::num::NonZeroU32::MIN)
    ///     .with_limits_override(Some(TenantLimits::UNLIMITED));
    /// assert_eq!(p.limits_override(), Some(TenantLimits::UNLIMITED));
    /// ```
    pub const fn with_limits_override(mut self, limits: Option<TenantLimits>) -> Self {
        self.limits_override = limits;
        self
    }

    /// The weight in force.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::detect::Prior::new(std::num::NonZeroU32::MIN).weight().get(), 1);
    /// ```
    pub const fn weight(&self) -> NonZeroU32 {
        self.weight
    }

    /// Whether the weight is an override.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!fairshare::detect::Prior::new(std::num::NonZeroU32::MIN).weight_override());
    /// ```
    pub const fn weight_override(&self) -> bool {
        self.weight_override
    }

    /// The tenant's own limits, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare::detect::Prior::new(std::num::NonZeroU32::MIN).limits_override().is_none());
    /// ```
    pub const fn limits_override(&self) -> Option<TenantLimits> {
        self.limits_override
    }
}
