//! Admission settings: [`SchedulerConfig`], [`TenantLimits`], [`Capacity`], [`ShedPolicy`],
//! [`QueueDelay`].

use super::queue::QueueConfig;
use crate::clock::Nanos;
use crate::detect::DetectorConfig;
use crate::pressure::PressureConfig;
use crate::rate::Quota;

/// Per-tenant admission limits: a rate quota and queue caps. `None` means unlimited.
///
/// The scheduler has default limits for every tenant ([`SchedulerConfig::with_tenant_limits`])
/// and per-tenant overrides ([`Scheduler::set_limits`](crate::Scheduler::set_limits)); an
/// override replaces the defaults as a whole.
///
/// # Examples
///
/// ```
/// use fairshare::config::{Quota, TenantLimits};
/// use std::num::NonZeroU32;
///
/// let limits = TenantLimits::new()
///     .with_quota(Quota::per_second(NonZeroU32::new(50).unwrap()))
///     .with_max_items(1_000)
///     .with_max_cost(10_000);
/// assert_eq!(limits.max_items(), Some(1_000));
/// assert!(TenantLimits::UNLIMITED.quota().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    quota: Option<Quota>,
    max_items: Option<u32>,
    max_cost: Option<u64>,
    max_in_flight: Option<u32>,
}

impl TenantLimits {
    /// No rate limit and no caps.
    pub const UNLIMITED: TenantLimits = TenantLimits {
        quota: None,
        max_items: None,
        max_cost: None,
        max_in_flight: None,
    };

    /// Same as [`TenantLimits::UNLIMITED`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new(), fairshare::config::TenantLimits::UNLIMITED);
    /// ```
    pub const fn new() -> Self {
        Self::UNLIMITED
    }

    /// Sets the rate quota (cost-weighted GCRA).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = fairshare::config::Quota::per_second(NonZeroU32::new(5).unwrap());
    /// assert_eq!(fairshare::config::TenantLimits::new().with_quota(q).quota(), Some(q));
    /// ```
    pub const fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Caps the number of the tenant's queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().with_max_items(3).max_items(), Some(3));
    /// ```
    pub const fn with_max_items(mut self, max: u32) -> Self {
        self.max_items = Some(max);
        self
    }

    /// Caps the sum of the tenant's queued costs.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().with_max_cost(9).max_cost(), Some(9));
    /// ```
    pub const fn with_max_cost(mut self, max: u64) -> Self {
        self.max_cost = Some(max);
        self
    }

    /// Caps how many of the tenant's items may be in flight (dispatched, not completed) at
    /// once. A tenant at its cap is skipped by dispatch, never blocking anyone behind it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().with_max_in_flight(2).max_in_flight(), Some(2));
    /// ```
    pub const fn with_max_in_flight(mut self, max: u32) -> Self {
        self.max_in_flight = Some(max);
        self
    }

    /// The in-flight cap, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().max_in_flight(), None);
    /// ```
    pub const fn max_in_flight(&self) -> Option<u32> {
        self.max_in_flight
    }

    /// The rate quota, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().quota(), None);
    /// ```
    pub const fn quota(&self) -> Option<Quota> {
        self.quota
    }

    /// The item cap, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().max_items(), None);
    /// ```
    pub const fn max_items(&self) -> Option<u32> {
        self.max_items
    }

    /// The cost cap, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::TenantLimits::new().max_cost(), None);
    /// ```
    pub const fn max_cost(&self) -> Option<u64> {
        self.max_cost
    }
}

/// The scheduler's global capacity: caps on all queued items and on their summed cost.
///
/// # Examples
///
/// ```
/// let cap = fairshare::config::Capacity::new().with_max_items(10_000).with_max_cost(1_000_000);
/// assert_eq!(cap.max_items(), Some(10_000));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    max_items: Option<u64>,
    max_cost: Option<u64>,
}

impl Capacity {
    /// Unbounded.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::Capacity::new().max_cost(), None);
    /// ```
    pub const fn new() -> Self {
        Capacity {
            max_items: None,
            max_cost: None,
        }
    }

    /// Caps the number of queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::Capacity::new().with_max_items(5).max_items(), Some(5));
    /// ```
    pub const fn with_max_items(mut self, max: u64) -> Self {
        self.max_items = Some(max);
        self
    }

    /// Caps the summed cost of queued items.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::Capacity::new().with_max_cost(5).max_cost(), Some(5));
    /// ```
    pub const fn with_max_cost(mut self, max: u64) -> Self {
        self.max_cost = Some(max);
        self
    }

    /// The item cap.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::Capacity::new().max_items(), None);
    /// ```
    pub const fn max_items(&self) -> Option<u64> {
        self.max_items
    }

    /// The cost cap.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::Capacity::new().max_cost(), None);
    /// ```
    pub const fn max_cost(&self) -> Option<u64> {
        self.max_cost
    }
}

/// What happens when the global [`Capacity`] is full.
///
/// # Examples
///
/// ```
/// assert_eq!(fairshare::config::ShedPolicy::default(), fairshare::config::ShedPolicy::RejectNew);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ShedPolicy {
    /// Refuse the newcomer with [`RejectReason::CapacityFull`](crate::RejectReason::CapacityFull).
    #[default]
    RejectNew,
    /// Make room by evicting the oldest items of the tenant furthest over its fair share (the
    /// largest queued cost per unit of weight), handing them back as
    /// [`RejectReason::Evicted`](crate::RejectReason::Evicted). The newcomer is refused instead
    /// when its own tenant would be the furthest over, or when that tenant alone cannot make
    /// room. A flooding tenant pays for its flood.
    EvictOverShare,
}

/// A CoDel-style queueing-delay target: when the waiting time of items dispatched from
/// tenants with a standing queue stays at or above `target` for a whole `interval`, such items
/// that waited that long are shed (handed back through
/// [`Scheduler::take_returned`](crate::Scheduler::take_returned)) at a growing rate until the
/// delay falls below target. A tenant's last queued item is never shed and never counts, so a
/// flooding tenant's standing queue is shed while light tenants are untouched.
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::config::QueueDelay;
/// let d = QueueDelay::new(Nanos::from_millis(5), Nanos::from_millis(100));
/// assert_eq!(d.target(), Nanos::from_millis(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDelay {
    target: Nanos,
    interval: Nanos,
}

impl QueueDelay {
    /// A target and the interval over which it must be exceeded before shedding starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::config::QueueDelay;
    /// let d = QueueDelay::new(Nanos::from_millis(5), Nanos::from_millis(100));
    /// assert_eq!(d.interval(), Nanos::from_millis(100));
    /// ```
    pub const fn new(target: Nanos, interval: Nanos) -> Self {
        QueueDelay { target, interval }
    }

    /// The delay target.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// # use fairshare::config::QueueDelay;
    /// assert_eq!(QueueDelay::new(Nanos::new(1), Nanos::new(2)).target(), Nanos::new(1));
    /// ```
    pub const fn target(&self) -> Nanos {
        self.target
    }

    /// The interval.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// # use fairshare::config::QueueDelay;
    /// assert_eq!(QueueDelay::new(Nanos::new(1), Nanos::new(2)).interval(), Nanos::new(2));
    /// ```
    pub const fn interval(&self) -> Nanos {
        self.interval
    }
}

/// Everything a [`Scheduler`](crate::Scheduler) checks, built with `const` builders.
///
/// # Examples
///
/// ```
/// use fairshare::SchedulerConfig;
/// use fairshare::config::{Capacity, Quota, ShedPolicy, TenantLimits};
/// use std::num::NonZeroU32;
///
/// const CFG: SchedulerConfig = SchedulerConfig::new()
///     .with_tenant_limits(
///         TenantLimits::new()
///             .with_quota(Quota::per_second(NonZeroU32::new(100).unwrap()))
///             .with_max_items(10_000),
///     )
///     .with_capacity(Capacity::new().with_max_items(100_000))
///     .with_shed_policy(ShedPolicy::EvictOverShare);
/// assert_eq!(CFG.capacity().max_items(), Some(100_000));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerConfig {
    queue: QueueConfig,
    tenant: TenantLimits,
    capacity: Capacity,
    shed: ShedPolicy,
    queue_delay: Option<QueueDelay>,
    max_in_flight: Option<u32>,
    pressure: Option<PressureConfig>,
    tenant_detail: bool,
    detector: Option<DetectorConfig>,
}

impl SchedulerConfig {
    /// No limits: the scheduler behaves as a plain [`FairQueue`](crate::FairQueue).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::SchedulerConfig::new();
    /// assert_eq!(c.shed_policy(), fairshare::config::ShedPolicy::RejectNew);
    /// ```
    pub const fn new() -> Self {
        SchedulerConfig {
            queue: QueueConfig::new(),
            tenant: TenantLimits::UNLIMITED,
            capacity: Capacity::new(),
            shed: ShedPolicy::RejectNew,
            queue_delay: None,
            max_in_flight: None,
            pressure: None,
            tenant_detail: false,
            detector: None,
        }
    }

    /// Sets (or with `None` removes) the global in-flight limit: how many items may be
    /// dispatched and not yet completed at once (the worker pool's size).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::SchedulerConfig::new().with_max_in_flight(Some(16));
    /// assert_eq!(c.max_in_flight(), Some(16));
    /// ```
    pub const fn with_max_in_flight(mut self, max: Option<u32>) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The global in-flight limit.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::SchedulerConfig::new().max_in_flight(), None);
    /// ```
    pub const fn max_in_flight(&self) -> Option<u32> {
        self.max_in_flight
    }

    /// Sets (or with `None` removes) the pressure gauge's configuration; see
    /// [`Scheduler::pressure`](crate::Scheduler::pressure).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::SchedulerConfig;
    /// use fairshare::pressure::PressureConfig;
    /// let c = SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(10)));
    /// assert!(c.pressure().is_some());
    /// ```
    pub const fn with_pressure(mut self, pressure: Option<PressureConfig>) -> Self {
        self.pressure = pressure;
        self
    }

    /// The pressure gauge's configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare::SchedulerConfig::new().pressure().is_none());
    /// ```
    pub const fn pressure(&self) -> Option<PressureConfig> {
        self.pressure
    }

    /// Sets the fair queue's settings.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// use fairshare::SchedulerConfig;
    /// use fairshare::config::QueueConfig;
    /// let c = SchedulerConfig::new()
    ///     .with_queue(QueueConfig::new().with_quantum(NonZeroU32::new(10).unwrap()));
    /// assert_eq!(c.queue().quantum().get(), 10);
    /// ```
    pub const fn with_queue(mut self, queue: QueueConfig) -> Self {
        self.queue = queue;
        self
    }

    /// Sets the default limits of every tenant without an override.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::SchedulerConfig;
    /// use fairshare::config::TenantLimits;
    /// let c = SchedulerConfig::new().with_tenant_limits(TenantLimits::new().with_max_items(5));
    /// assert_eq!(c.tenant_limits().max_items(), Some(5));
    /// ```
    pub const fn with_tenant_limits(mut self, limits: TenantLimits) -> Self {
        self.tenant = limits;
        self
    }

    /// Sets the global capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::SchedulerConfig;
    /// use fairshare::config::Capacity;
    /// let c = SchedulerConfig::new().with_capacity(Capacity::new().with_max_cost(100));
    /// assert_eq!(c.capacity().max_cost(), Some(100));
    /// ```
    pub const fn with_capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets what happens when the capacity is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::SchedulerConfig;
    /// use fairshare::config::ShedPolicy;
    /// let c = SchedulerConfig::new().with_shed_policy(ShedPolicy::EvictOverShare);
    /// assert_eq!(c.shed_policy(), ShedPolicy::EvictOverShare);
    /// ```
    pub const fn with_shed_policy(mut self, shed: ShedPolicy) -> Self {
        self.shed = shed;
        self
    }

    /// Sets (or with `None` removes) the queue-delay target.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Nanos, SchedulerConfig};
    /// use fairshare::config::QueueDelay;
    /// let d = QueueDelay::new(Nanos::from_millis(5), Nanos::from_millis(100));
    /// assert_eq!(SchedulerConfig::new().with_queue_delay(Some(d)).queue_delay(), Some(d));
    /// ```
    pub const fn with_queue_delay(mut self, delay: Option<QueueDelay>) -> Self {
        self.queue_delay = delay;
        self
    }

    /// The fair queue's settings.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::SchedulerConfig::new().queue().quantum().get(), 1);
    /// ```
    pub const fn queue(&self) -> QueueConfig {
        self.queue
    }

    /// The default tenant limits.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare::SchedulerConfig::new().tenant_limits().quota().is_none());
    /// ```
    pub const fn tenant_limits(&self) -> TenantLimits {
        self.tenant
    }

    /// The global capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::SchedulerConfig::new().capacity().max_items(), None);
    /// ```
    pub const fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The shedding policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::{SchedulerConfig, ShedPolicy};
    /// assert_eq!(SchedulerConfig::new().shed_policy(), ShedPolicy::RejectNew);
    /// ```
    pub const fn shed_policy(&self) -> ShedPolicy {
        self.shed
    }

    /// The queue-delay target.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::SchedulerConfig::new().queue_delay(), None);
    /// ```
    pub const fn queue_delay(&self) -> Option<QueueDelay> {
        self.queue_delay
    }

    /// Turns per-tenant detail on or off: with it on, the scheduler also counts each tenant's
    /// refusals by reason and keeps a [`WaitHistogram`](crate::stats::WaitHistogram) of each tenant's
    /// waiting times, reported in [`TenantStats::admission`](crate::stats::TenantStats::admission) and
    /// [`TenantStats::wait`](crate::stats::TenantStats::wait). Off by default.
    ///
    /// The detail lives in a side table beside the tenant table, so the hot path pays one
    /// predictable branch when it is off. When it is on, a tenant's detail costs a pointer
    /// while it has none, and about 2 KiB (its histogram) once it has been refused or served;
    /// like the tenant's counters it is kept while the tenant is known (see
    /// [`Scheduler::tenant`](crate::Scheduler::tenant) to keep it across idle periods) and
    /// forgotten with it (the memory goes to the slot's next tenant or is freed by the next
    /// [`stats`](crate::Scheduler::stats)). Turning it off by
    /// [`reconfigure`](crate::Scheduler::reconfigure) frees the table; turning it on starts
    /// every tenant from zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new().with_tenant_detail(true));
    /// s.block("acme", BlockReason::Abuse);
    /// let _ = s.try_push("acme", 1).unwrap_err();
    /// let stats = s.stats();
    /// assert_eq!(stats.tenants[0].admission.unwrap().blocked, 1);
    /// ```
    pub const fn with_tenant_detail(mut self, on: bool) -> Self {
        self.tenant_detail = on;
        self
    }

    /// Whether per-tenant detail is kept (see [`with_tenant_detail`](Self::with_tenant_detail)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!fairshare::SchedulerConfig::new().tenant_detail());
    /// ```
    pub const fn tenant_detail(&self) -> bool {
        self.tenant_detail
    }

    /// Turns noisy-tenant detection on (`Some`) or off (`None`, the default): the scheduler
    /// embeds a [`Detector`](crate::detect::Detector) with `detector`, records into it what it
    /// admits, dispatches and refuses, polls it on its own clock, applies the config's
    /// [`Response`](crate::detect::Response) if it has one, and reports every change as a
    /// [`NoisyEvent`](crate::detect::NoisyEvent) from
    /// [`Scheduler::poll_noisy`](crate::Scheduler::poll_noisy); see that method for the
    /// details. The detector's figures appear in
    /// [`Stats::detector`](crate::stats::Stats::detector).
    ///
    /// Set [`DetectorConfig::with_min_total`] to a few sub-windows' worth of traffic: with the
    /// default of 0, the first tenant of a quiet start has the whole window to itself and is
    /// judged noisy.
    ///
    /// Off, each admission, dispatch and refusal pays one predictable branch.
    ///
    /// # Panics
    ///
    /// If `detector` fails [`DetectorConfig::validate`] (at compile time in a `const`). A
    /// config read from a file (feature `serde`) is checked by `config::Config::validate`
    /// instead, which returns the error.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::SchedulerConfig;
    /// use fairshare::detect::DetectorConfig;
    /// let c = SchedulerConfig::new().with_detector(Some(DetectorConfig::new()));
    /// assert_eq!(c.detector(), Some(DetectorConfig::new()));
    /// ```
    #[track_caller]
    pub const fn with_detector(mut self, detector: Option<DetectorConfig>) -> Self {
        if let Some(d) = &detector {
            if let Some((_, _, message)) = d.problem() {
                panic!("{}", message);
            }
        }
        self.detector = detector;
        self
    }

    /// The noisy-tenant detector's settings, if detection is on (see
    /// [`with_detector`](Self::with_detector)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare::SchedulerConfig::new().detector().is_none());
    /// ```
    pub const fn detector(&self) -> Option<DetectorConfig> {
        self.detector
    }
}
