//! File configuration (feature `serde`): [`Config`] deserialises from any serde format
//! (JSON, TOML, YAML, ...), and [`Config::validate`] turns it into the runtime types, naming
//! the field of anything that can never work.
//!
//! ```json
//! {
//!   "quantum": 1,
//!   "default_weight": 1,
//!   "tenant_defaults": { "rate": { "per_second": 100, "burst": 200 }, "max_items": 10000 },
//!   "capacity": { "max_items": 100000 },
//!   "shed_policy": "evict_over_share",
//!   "queue_delay": { "target_ms": 50, "interval_ms": 500 },
//!   "max_in_flight": 64,
//!   "classes": [
//!     { "name": "signin", "reserved_percent": 20, "priority": 1 },
//!     { "name": "api", "weight": 3, "tenant_rate": { "per_second": 50 } },
//!     { "name": "bulk", "ceiling_percent": 50 }
//!   ],
//!   "tenant_detail": true,
//!   "detector": {
//!     "enter_share": 0.25,
//!     "exit_share": 0.1,
//!     "response": { "divide_weight": 4 }
//!   },
//!   "tenants": {
//!     "gold-customer": { "weight": 4 },
//!     "acme": { "blocked": "abuse" }
//!   }
//! }
//! ```
//!
//! Every field is optional; a file without `classes` has the one class `"default"`, and one
//! without `detector` has noisy-tenant detection off. The `detector` object is
//! [`DetectorConfig`]'s serde form (every field optional, defaults as in its table; durations
//! such as `sub_window` in nanoseconds), its `response` is `{ "divide_weight": n }` or
//! `{ "clamp_limits": limits }` (limits as in `tenant_defaults`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::{Capacity, QueueConfig, QueueDelay, Quota, SchedulerConfig, ShedPolicy, TenantLimits};
use crate::admission::Scheduler;
use crate::clock::{Clock, Nanos};
use crate::detect::{DetectorConfig, Response};
use crate::error::{BlockReason, ConfigError};
use crate::pressure::PressureConfig;
use crate::queue::{ClassSpec, Classes};

/// A rate quota in a file: `per_second` units per second, up to `burst` at once (default:
/// `per_second`).
///
/// # Examples
///
/// ```
/// let r = fairshare::config::RateConfig { per_second: 10, burst: Some(20) };
/// assert_eq!(r.burst, Some(20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Units replenished per second (at least 1).
    pub per_second: u32,
    /// The burst (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Per-tenant limits in a file. Absent fields are unlimited.
///
/// # Examples
///
/// ```
/// let l = fairshare::config::LimitsConfig { max_items: Some(5), ..Default::default() };
/// assert_eq!(l.max_items, Some(5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Rate quota.
    pub rate: Option<RateConfig>,
    /// Queued item cap.
    pub max_items: Option<u32>,
    /// Queued cost cap.
    pub max_cost: Option<u64>,
    /// In-flight cap.
    pub max_in_flight: Option<u32>,
}

/// The global capacity in a file.
///
/// # Examples
///
/// ```
/// let c = fairshare::config::CapacityConfig { max_items: Some(10), max_cost: None };
/// assert_eq!(c.max_items, Some(10));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Queued item cap.
    pub max_items: Option<u64>,
    /// Queued cost cap.
    pub max_cost: Option<u64>,
}

/// The queue-delay target in a file, in milliseconds.
///
/// # Examples
///
/// ```
/// let d = fairshare::config::QueueDelayConfig { target_ms: 5, interval_ms: 100 };
/// assert_eq!(d.interval_ms, 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDelayConfig {
    /// Delay target (at least 1 ms).
    pub target_ms: u64,
    /// Interval the target must be exceeded for (at least 1 ms).
    pub interval_ms: u64,
}

/// The file form of the noisy-tenant detector's automatic [`Response`], which is how
/// `Response` (and so [`DetectorConfig`]'s `response`) serialises: `{ "divide_weight": 4 }`,
/// or `{ "clamp_limits": { "max_items": 100 } }` with a [`LimitsConfig`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ResponseForm {
    DivideWeight(u32),
    ClampLimits(LimitsConfig),
}

/// The dotted names of a clamped response's limits.
const RESPONSE_LIMIT_FIELDS: LimitFields = [
    "detector.response.clamp_limits.rate.per_second",
    "detector.response.clamp_limits.rate.burst",
    "detector.response.clamp_limits.max_items",
    "detector.response.clamp_limits.max_cost",
    "detector.response.clamp_limits.max_in_flight",
];

impl Serialize for Response {
    /// # Errors
    ///
    /// A clamped quota whose rate is not a whole number per second (from
    /// [`Quota::with_period`]) has no file form.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let form = match *self {
            Response::DivideWeight { divisor } => ResponseForm::DivideWeight(divisor.get()),
            Response::ClampLimits { limits } => ResponseForm::ClampLimits(LimitsConfig {
                rate: match limits.quota() {
                    None => None,
                    Some(q) => Some(rate_of(q).ok_or_else(|| {
                        serde::ser::Error::custom(
                            "a clamped quota whose rate is not a whole number per second \
                             has no file form",
                        )
                    })?),
                },
                max_items: limits.max_items(),
                max_cost: limits.max_cost(),
                max_in_flight: limits.max_in_flight(),
            }),
        };
        form.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Response {
    /// # Errors
    ///
    /// A zero divisor or limit, with its dotted field name
    /// (`detector.response.divide_weight`, `detector.response.clamp_limits.max_items`, ...).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let invalid = |field, problem| ConfigError::Invalid { field, problem };
        let response = match ResponseForm::deserialize(d)? {
            ResponseForm::DivideWeight(divisor) => nonzero(
                divisor,
                "detector.response.divide_weight",
                "must be at least 1 (1 leaves the weight as it is)",
            )
            .map(|divisor| Response::DivideWeight { divisor }),
            ResponseForm::ClampLimits(l) => limits(&l, &RESPONSE_LIMIT_FIELDS, invalid)
                .map(|limits| Response::ClampLimits { limits }),
        };
        response.map_err(serde::de::Error::custom)
    }
}

/// The file form of `q`, if its rate is a whole number per second.
fn rate_of(q: Quota) -> Option<RateConfig> {
    let interval = q.replenish_interval().as_nanos();
    let guess = 1_000_000_000u128.checked_div(interval)?;
    // `Quota::per_second` floors the interval, so the rate is the guess or one above it.
    [guess, guess + 1].into_iter().find_map(|r| {
        let rate = NonZeroU32::new(u32::try_from(r).ok()?)?;
        let burst = q.burst();
        (Quota::per_second(rate).allow_burst(burst) == q).then_some(RateConfig {
            per_second: rate.get(),
            burst: (burst != rate).then_some(burst.get()),
        })
    })
}

/// One tenant's settings in a file.
///
/// # Examples
///
/// ```
/// let t = fairshare::config::TenantConfig { weight: Some(3), ..Default::default() };
/// assert_eq!(t.weight, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Weight override (at least 1).
    pub weight: Option<u32>,
    /// Limits override (replaces the defaults as a whole).
    pub limits: Option<LimitsConfig>,
    /// Block the tenant with this reason.
    pub blocked: Option<BlockReason>,
}

/// One class of work in a file; see [`ClassSpec`] for what each setting does. Only `name` is
/// required. In the `classes` list, a class's position is its [`ClassId`](crate::ClassId)
/// (the first is the default class of pushes that name none).
///
/// # Examples
///
/// ```
/// let c: fairshare::config::ClassConfig =
///     serde_json::from_str(r#"{ "name": "signin", "reserved_percent": 20 }"#).unwrap();
/// assert_eq!(c, fairshare::config::ClassConfig { reserved_percent: 20, ..fairshare::config::ClassConfig::new("signin") });
/// assert_eq!((c.weight, c.ceiling_percent), (1, 100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The class's name (unique, not empty): pushes find the class by it, errors name it.
    pub name: String,
    /// Weight among classes of the same priority (at least 1; default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Percent of the global `max_in_flight` reserved for the class (0 to 100; default 0).
    /// The reservations of all classes add up to at most 100.
    #[serde(default)]
    pub reserved_percent: u32,
    /// Percent of the global `max_in_flight` the class may hold at most (1 to 100, at least
    /// `reserved_percent`; default 100).
    #[serde(default = "hundred")]
    pub ceiling_percent: u32,
    /// Strict priority, higher first after reservations (0 to 255; default 0).
    #[serde(default)]
    pub priority: u32,
    /// The class's own in-flight cap (at least 1; default none).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// A rate limit on each tenant's work in this class (default none).
    #[serde(default)]
    pub tenant_rate: Option<RateConfig>,
}

fn one() -> u32 {
    1
}

fn hundred() -> u32 {
    100
}

impl ClassConfig {
    /// A class named `name` with the defaults: weight 1, nothing reserved, no ceiling,
    /// priority 0, no caps.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::config::ClassConfig::new("bulk");
    /// assert_eq!((c.weight, c.reserved_percent, c.ceiling_percent), (1, 0, 100));
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        ClassConfig {
            name: name.into(),
            weight: 1,
            reserved_percent: 0,
            ceiling_percent: 100,
            priority: 0,
            max_in_flight: None,
            tenant_rate: None,
        }
    }
}

/// A whole scheduler configuration as read from a file.
///
/// # Examples
///
/// ```
/// let cfg: fairshare::config::Config = Default::default();
/// assert_eq!(cfg.quantum, 1);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cost per round per unit of weight (at least 1).
    pub quantum: u32,
    /// Weight of tenants without an override (at least 1).
    pub default_weight: u32,
    /// Quanta of credit from cost correction a tenant gets back per round.
    pub max_credit_rounds: u32,
    /// Limits of every tenant without an override.
    pub tenant_defaults: LimitsConfig,
    /// Global capacity.
    pub capacity: CapacityConfig,
    /// What happens when the capacity is full.
    pub shed_policy: ShedPolicy,
    /// Queue-delay target.
    pub queue_delay: Option<QueueDelayConfig>,
    /// Global in-flight limit.
    pub max_in_flight: Option<u32>,
    /// Pressure gauge.
    pub pressure: Option<PressureConfig>,
    /// Classes of work, in [`ClassId`](crate::ClassId) order (empty: the one class
    /// `"default"`). Reservations and ceilings need `max_in_flight`.
    pub classes: Vec<ClassConfig>,
    /// Keep per-tenant refusals by reason and waiting times for the stats (see
    /// [`SchedulerConfig::with_tenant_detail`]).
    pub tenant_detail: bool,
    /// Noisy-tenant detection (see [`SchedulerConfig::with_detector`]); absent: off.
    pub detector: Option<DetectorConfig>,
    /// Per-tenant settings, by tenant name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quantum: 1,
            default_weight: 1,
            max_credit_rounds: 128,
            tenant_defaults: LimitsConfig::default(),
            capacity: CapacityConfig::default(),
            shed_policy: ShedPolicy::RejectNew,
            queue_delay: None,
            max_in_flight: None,
            pressure: None,
            classes: Vec::new(),
            tenant_detail: false,
            detector: None,
            tenants: BTreeMap::new(),
        }
    }
}

/// One tenant's validated settings.
///
/// # Examples
///
/// ```
/// let t = fairshare::config::TenantSettings::default();
/// assert!(t.weight.is_none() && t.limits.is_none() && t.blocked.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantSettings {
    /// Weight override.
    pub weight: Option<NonZeroU32>,
    /// Limits override.
    pub limits: Option<TenantLimits>,
    /// Block reason.
    pub blocked: Option<BlockReason>,
}

/// A [`Config`] checked and converted into the runtime types.
///
/// # Examples
///
/// ```
/// let valid = fairshare::config::Config::default().validate().unwrap();
/// assert!(valid.tenants.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidConfig {
    /// The scheduler settings.
    pub scheduler: SchedulerConfig,
    /// The classes ([`Classes::single`] when the file names none).
    pub classes: Classes,
    /// Per-tenant settings, by name, in name order.
    pub tenants: Vec<(String, TenantSettings)>,
}

fn nonzero(v: u32, field: &'static str, problem: &'static str) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(v).ok_or(ConfigError::Invalid { field, problem })
}

/// The dotted names of a [`LimitsConfig`]'s fields where it appears in a file: rate per
/// second, rate burst, max items, max cost, max in flight.
type LimitFields = [&'static str; 5];

const DEFAULT_LIMIT_FIELDS: LimitFields = [
    "tenant_defaults.rate.per_second",
    "tenant_defaults.rate.burst",
    "tenant_defaults.max_items",
    "tenant_defaults.max_cost",
    "tenant_defaults.max_in_flight",
];

const TENANT_LIMIT_FIELDS: LimitFields = [
    "limits.rate.per_second",
    "limits.rate.burst",
    "limits.max_items",
    "limits.max_cost",
    "limits.max_in_flight",
];

/// Converts `rate`, reporting a bad value through `field(per_second_f or burst_f, problem)`.
fn quota(
    rate: &RateConfig,
    [per_second_f, burst_f]: [&'static str; 2],
    field: &impl Fn(&'static str, &'static str) -> ConfigError,
) -> Result<Quota, ConfigError> {
    let per_second = NonZeroU32::new(rate.per_second).ok_or_else(|| {
        field(
            per_second_f,
            "must be at least 1; block the tenant to stop it",
        )
    })?;
    let mut quota = Quota::per_second(per_second);
    if let Some(burst) = rate.burst {
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| field(burst_f, "must be at least 1 (the largest item cost)"))?;
        quota = quota.allow_burst(burst);
    }
    Ok(quota)
}

/// Converts `l`, reporting a bad value through `field(names[i], problem)`.
fn limits(
    l: &LimitsConfig,
    names: &LimitFields,
    field: impl Fn(&'static str, &'static str) -> ConfigError,
) -> Result<TenantLimits, ConfigError> {
    let [per_second_f, burst_f, items_f, cost_f, in_flight_f] = *names;
    let mut out = TenantLimits::new();
    if let Some(rate) = &l.rate {
        out = out.with_quota(quota(rate, [per_second_f, burst_f], &field)?);
    }
    if let Some(m) = l.max_items {
        if m == 0 {
            return Err(field(
                items_f,
                "must be at least 1; block the tenant instead",
            ));
        }
        out = out.with_max_items(m);
    }
    if let Some(m) = l.max_cost {
        if m == 0 {
            return Err(field(
                cost_f,
                "must be at least 1; block the tenant instead",
            ));
        }
        out = out.with_max_cost(m);
    }
    if let Some(m) = l.max_in_flight {
        if m == 0 {
            return Err(field(
                in_flight_f,
                "must be at least 1; block the tenant instead",
            ));
        }
        out = out.with_max_in_flight(m);
    }
    Ok(out)
}

/// Converts one class; `global_limit` says whether `max_in_flight` is set.
fn class(c: &ClassConfig, global_limit: bool) -> Result<ClassSpec, ConfigError> {
    if c.name.is_empty() {
        return Err(ConfigError::Invalid {
            field: "classes.name",
            problem: "must not be empty (errors and pushes name the class by it)",
        });
    }
    let bad = |field: &'static str, problem: &'static str| ConfigError::InvalidClass {
        class: c.name.clone(),
        field,
        problem,
    };
    let weight = NonZeroU32::new(c.weight).ok_or_else(|| bad("weight", "must be at least 1"))?;
    let reserved = u8::try_from(c.reserved_percent)
        .ok()
        .filter(|&r| r <= 100)
        .ok_or_else(|| bad("reserved_percent", "must be at most 100"))?;
    let ceiling = u8::try_from(c.ceiling_percent)
        .ok()
        .filter(|&p| (1..=100).contains(&p))
        .ok_or_else(|| bad("ceiling_percent", "must be between 1 and 100"))?;
    let priority = u8::try_from(c.priority).map_err(|_| bad("priority", "must be at most 255"))?;
    if !global_limit && reserved > 0 {
        return Err(bad(
            "reserved_percent",
            "must be 0 without a global `max_in_flight` (a reservation is a share of it)",
        ));
    }
    if !global_limit && ceiling < 100 {
        return Err(bad(
            "ceiling_percent",
            "must be 100 without a global `max_in_flight` (a ceiling is a share of it)",
        ));
    }
    let tenant_quota = match &c.tenant_rate {
        None => None,
        Some(rate) => Some(quota(
            rate,
            ["tenant_rate.per_second", "tenant_rate.burst"],
            &bad,
        )?),
    };
    Ok(ClassSpec::new(c.name.clone())
        .with_weight(weight)
        .with_reserved_percent(reserved)
        .with_ceiling_percent(ceiling)
        .with_priority(priority)
        .with_max_in_flight(c.max_in_flight)
        .with_tenant_quota(tenant_quota))
}

/// A detector field's dotted name in a file.
fn detector_field(field: &'static str) -> &'static str {
    match field {
        "sub_window" => "detector.sub_window",
        "enter_share" => "detector.enter_share",
        "exit_share" => "detector.exit_share",
        _ => "detector",
    }
}

impl Config {
    /// Checks every field and converts to the runtime types.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field (with a dotted path such as
    /// `tenant_defaults.rate.burst`), [`ConfigError::InvalidTenant`] for a tenant's field, or
    /// [`ConfigError::InvalidClass`] for a class's field (`classes.signin.reserved_percent`;
    /// reported there, too, when the reservations add up to more than 100 percent, and when a
    /// reservation or ceiling is set without a global `max_in_flight`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ConfigError;
    /// use fairshare::config::Config;
    /// let mut cfg = Config::default();
    /// cfg.quantum = 0;
    /// let err = cfg.validate().unwrap_err();
    /// assert!(matches!(err, ConfigError::Invalid { field: "quantum", .. }));
    /// ```
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        let quantum = nonzero(
            self.quantum,
            "quantum",
            "must be at least 1 (about the typical item cost)",
        )?;
        let default_weight = nonzero(
            self.default_weight,
            "default_weight",
            "must be at least 1; block a tenant instead of giving it weight 0",
        )?;
        let queue = QueueConfig::new()
            .with_quantum(quantum)
            .with_default_weight(default_weight)
            .with_max_credit_rounds(self.max_credit_rounds);
        let defaults = limits(
            &self.tenant_defaults,
            &DEFAULT_LIMIT_FIELDS,
            |field, problem| ConfigError::Invalid { field, problem },
        )?;
        let mut capacity = Capacity::new();
        if let Some(m) = self.capacity.max_items {
            if m == 0 {
                return Err(ConfigError::Invalid {
                    field: "capacity.max_items",
                    problem: "must be at least 1; omit it for no cap",
                });
            }
            capacity = capacity.with_max_items(m);
        }
        if let Some(m) = self.capacity.max_cost {
            if m == 0 {
                return Err(ConfigError::Invalid {
                    field: "capacity.max_cost",
                    problem: "must be at least 1; omit it for no cap",
                });
            }
            capacity = capacity.with_max_cost(m);
        }
        let queue_delay = match self.queue_delay {
            None => None,
            Some(d) if d.target_ms == 0 => {
                return Err(ConfigError::Invalid {
                    field: "queue_delay.target_ms",
                    problem: "must be at least 1 ms; omit queue_delay to turn it off",
                });
            }
            Some(d) if d.interval_ms == 0 => {
                return Err(ConfigError::Invalid {
                    field: "queue_delay.interval_ms",
                    problem: "must be at least 1 ms (100 is typical)",
                });
            }
            Some(d) => Some(QueueDelay::new(
                Nanos::from_millis(d.target_ms),
                Nanos::from_millis(d.interval_ms),
            )),
        };
        if self.max_in_flight == Some(0) {
            return Err(ConfigError::Invalid {
                field: "max_in_flight",
                problem: "must be at least 1; omit it for no limit",
            });
        }
        let classes = if self.classes.is_empty() {
            Classes::single()
        } else {
            let specs = self
                .classes
                .iter()
                .map(|c| class(c, self.max_in_flight.is_some()))
                .collect::<Result<Vec<_>, _>>()?;
            Classes::new(specs)?
        };
        if let Some((field, problem, _)) = self.detector.as_ref().and_then(DetectorConfig::problem)
        {
            return Err(ConfigError::Invalid {
                field: detector_field(field),
                problem,
            });
        }
        let scheduler = SchedulerConfig::new()
            .with_queue(queue)
            .with_tenant_limits(defaults)
            .with_capacity(capacity)
            .with_shed_policy(self.shed_policy)
            .with_queue_delay(queue_delay)
            .with_max_in_flight(self.max_in_flight)
            .with_pressure(self.pressure)
            .with_tenant_detail(self.tenant_detail)
            .with_detector(self.detector);
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for (name, t) in &self.tenants {
            let invalid = |field: &'static str, problem: &'static str| ConfigError::InvalidTenant {
                tenant: name.clone(),
                field,
                problem,
            };
            let weight = match t.weight {
                None => None,
                Some(w) => Some(NonZeroU32::new(w).ok_or_else(|| {
                    invalid("weight", "must be at least 1; block the tenant instead")
                })?),
            };
            let limits = match &t.limits {
                None => None,
                Some(l) => Some(limits(l, &TENANT_LIMIT_FIELDS, invalid)?),
            };
            tenants.push((
                name.clone(),
                TenantSettings {
                    weight,
                    limits,
                    blocked: t.blocked,
                },
            ));
        }
        Ok(ValidConfig {
            scheduler,
            classes,
            tenants,
        })
    }
}

impl ValidConfig {
    /// A new scheduler on `clock` with this configuration (its classes and the settings of
    /// every tenant the file names).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, PushOptions, Scheduler};
    /// use fairshare::config::{ClassConfig, Config};
    /// let mut cfg = Config::default();
    /// cfg.max_in_flight = Some(10);
    /// cfg.classes = vec![
    ///     ClassConfig { reserved_percent: 20, ..ClassConfig::new("signin") },
    ///     ClassConfig::new("api"),
    /// ];
    /// let mut s: Scheduler<String, u8, _> = cfg.validate().unwrap().build(ManualClock::new());
    /// let signin = s.classes().id("signin").unwrap();
    /// s.try_push_with("alice".into(), 1, PushOptions::new().with_class(signin)).unwrap();
    /// assert_eq!(s.queue().class_len(signin), 1);
    /// ```
    pub fn build<K, T, C>(&self, clock: C) -> Scheduler<K, T, C>
    where
        K: std::hash::Hash + Eq + Clone + From<String>,
        C: Clock,
    {
        let mut scheduler = Scheduler::with_clock(self.scheduler, clock);
        // Setting classes is refused only when a class with work in it would be removed; a
        // new scheduler has no work.
        self.apply(&mut scheduler)
            .expect("fairshare: a new scheduler accepts any validated classes");
        scheduler
    }

    /// Applies this configuration to a running scheduler: its classes
    /// ([`Scheduler::set_classes`], if they changed), [`Scheduler::reconfigure`], and the
    /// settings of every tenant the file names. Queued and in-flight items are kept (work
    /// queued in class `i` stays in class `i`, under its new settings). Tenants the file does
    /// not name keep their settings: removing a tenant from the file does not unblock it or
    /// clear its overrides; name it with empty settings to do that.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`] if the file has fewer classes than the scheduler and a
    /// class it would remove still holds queued or in-flight work. Nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::config::{Config, TenantConfig};
    /// let mut cfg = Config::default();
    /// cfg.tenants.insert("gold".into(), TenantConfig { weight: Some(4), ..Default::default() });
    /// let mut s: Scheduler<String, u8> = Scheduler::new(SchedulerConfig::new());
    /// s.try_push("gold".into(), 1).unwrap();
    /// cfg.validate().unwrap().apply(&mut s).unwrap();
    /// assert_eq!(s.queue().weight(&"gold".to_string()).get(), 4);
    /// assert_eq!(s.queue().len(), 1);
    /// ```
    pub fn apply<K, T, C, S>(
        &self,
        scheduler: &mut Scheduler<K, T, C, S>,
    ) -> Result<(), ConfigError>
    where
        K: std::hash::Hash + Eq + Clone + From<String>,
        C: Clock,
        S: std::hash::BuildHasher,
    {
        if *scheduler.classes() != self.classes {
            scheduler.set_classes(self.classes.clone())?;
        }
        scheduler.reconfigure(self.scheduler);
        for (name, t) in &self.tenants {
            let key = K::from(name.clone());
            match t.weight {
                Some(w) => scheduler.set_weight(key.clone(), w),
                None => scheduler.clear_weight(&key),
            }
            match t.limits {
                Some(l) => scheduler.set_limits(key.clone(), l),
                None => scheduler.clear_limits(&key),
            }
            match t.blocked {
                Some(reason) => scheduler.block(key, reason),
                None => {
                    scheduler.unblock(&key);
                }
            }
        }
        Ok(())
    }
}
