//! Every setting, in one place: the fair queue's [`QueueConfig`], the scheduler's
//! [`SchedulerConfig`] with its [`TenantLimits`], rate [`Quota`]s, global [`Capacity`],
//! [`ShedPolicy`] and [`QueueDelay`] target, and the pressure gauge's [`PressureConfig`].
//!
//! All of them are plain `Copy` values built with `const` builders, valid by construction.
//! With the `serde` feature, `Config` is the one file form of all of them: it deserialises
//! from any serde format and `Config::validate` turns it into these types, naming the field
//! of anything that can never work.
//!
//! # Examples
//!
//! ```
//! use fairshare::config::{Capacity, Quota, SchedulerConfig, ShedPolicy, TenantLimits};
//! use std::num::NonZeroU32;
//!
//! let config = SchedulerConfig::new()
//!     .with_tenant_limits(
//!         TenantLimits::new()
//!             .with_quota(Quota::per_second(NonZeroU32::new(100).unwrap()))
//!             .with_max_items(1_000),
//!     )
//!     .with_capacity(Capacity::new().with_max_items(100_000))
//!     .with_shed_policy(ShedPolicy::EvictOverShare)
//!     .with_max_in_flight(Some(64));
//! assert_eq!(config.max_in_flight(), Some(64));
//! ```

#[cfg(feature = "serde")]
mod file;
mod queue;
mod scheduler;

pub use crate::pressure::{Band, PressureConfig};
pub use crate::rate::Quota;
#[cfg(feature = "serde")]
pub use file::{
    CapacityConfig, ClassConfig, Config, LimitsConfig, QueueDelayConfig, RateConfig, TenantConfig,
    TenantSettings, ValidConfig,
};
pub use queue::QueueConfig;
pub use scheduler::{Capacity, QueueDelay, SchedulerConfig, ShedPolicy, TenantLimits};
