//! Observability: a fixed-size [`WaitHistogram`] and the [`Stats`] snapshot a
//! [`Scheduler`](crate::Scheduler) reports (serde-serialisable with the `serde` feature).

pub use crate::queue::{ClassCounters, QueueCounters, TenantCounters};

use crate::clock::Nanos;
use crate::detect::DetectorStats;
use crate::error::RejectReason;
use crate::pressure::PressureLevel;

/// Sub-buckets per power of two: relative error of a reported percentile is at most 1/4.
const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;

/// Waiting times in a fixed number of log-linear buckets (powers of two, each split in four):
/// recording is O(1) and allocation-free, memory is 2 KiB whatever the traffic, and a
/// reported percentile is the upper edge of its bucket (at most 25% above the true value).
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::stats::WaitHistogram;
/// let mut h = WaitHistogram::new();
/// for ms in 1..=100 {
///     h.record(Nanos::from_millis(ms));
/// }
/// assert_eq!(h.count(), 100);
/// let p50 = h.percentile(50.0);
/// assert!(p50 >= Nanos::from_millis(50) && p50 <= Nanos::from_millis(63));
/// assert!(h.max() >= Nanos::from_millis(100));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WaitHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl std::fmt::Debug for WaitHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitHistogram")
            .field("count", &self.total)
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .finish_non_exhaustive()
    }
}

impl Default for WaitHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitHistogram {
    /// An empty histogram.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::stats::WaitHistogram::new().count(), 0);
    /// ```
    pub fn new() -> Self {
        WaitHistogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize; // >= 2
        let sub = ((ns >> (log - 2)) & (SUB as u64 - 1)) as usize;
        (log - 1) * SUB + sub
    }

    /// The largest value that falls in bucket `b`.
    fn upper(b: usize) -> u64 {
        if b < SUB {
            return b as u64;
        }
        let log = b / SUB + 1;
        let sub = (b % SUB) as u64;
        let base = 1u64 << log;
        let width = 1u64 << (log - 2);
        base.saturating_add((sub + 1) * width).saturating_sub(1)
    }

    /// Records one waiting time.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = fairshare::stats::WaitHistogram::new();
    /// h.record(fairshare::Nanos::new(7));
    /// assert_eq!(h.count(), 1);
    /// ```
    pub fn record(&mut self, wait: Nanos) {
        self.counts[Self::bucket(wait.as_u64())] += 1;
        self.total += 1;
    }

    /// Number of recorded values.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::stats::WaitHistogram::new().count(), 0);
    /// ```
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p`-th percentile (0..=100), as the upper edge of its bucket; zero when empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = fairshare::stats::WaitHistogram::new();
    /// h.record(fairshare::Nanos::new(3));
    /// assert_eq!(h.percentile(99.0), fairshare::Nanos::new(3));
    /// ```
    pub fn percentile(&self, p: f64) -> Nanos {
        if self.total == 0 {
            return Nanos::ZERO;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Nanos::new(Self::upper(b));
            }
        }
        Nanos::new(Self::upper(BUCKETS - 1))
    }

    /// Forgets every recorded value, keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }

    /// The upper edge of the highest non-empty bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::stats::WaitHistogram::new().max(), fairshare::Nanos::ZERO);
    /// ```
    pub fn max(&self) -> Nanos {
        self.percentile(100.0)
    }
}

/// Waiting-time percentiles, as reported in a [`Stats`] snapshot.
///
/// # Examples
///
/// ```
/// let mut h = fairshare::stats::WaitHistogram::new();
/// h.record(fairshare::Nanos::from_millis(1));
/// let w = fairshare::stats::WaitSummary::from(&h);
/// assert_eq!(w.count, 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct WaitSummary {
    /// Items measured.
    pub count: u64,
    /// Median wait.
    pub p50: Nanos,
    /// 90th percentile.
    pub p90: Nanos,
    /// 99th percentile.
    pub p99: Nanos,
    /// Longest wait (bucket upper edge).
    pub max: Nanos,
}

impl From<&WaitHistogram> for WaitSummary {
    fn from(h: &WaitHistogram) -> Self {
        WaitSummary {
            count: h.count(),
            p50: h.percentile(50.0),
            p90: h.percentile(90.0),
            p99: h.percentile(99.0),
            max: h.max(),
        }
    }
}

/// How many admissions were decided, by outcome: items admitted, refused at the door by
/// reason, and admitted then handed back. The [`Scheduler`](crate::Scheduler) keeps one for
/// all tenants ([`Scheduler::counters`](crate::Scheduler::counters), [`Stats::admission`]) and,
/// with [`SchedulerConfig::with_tenant_detail`](crate::SchedulerConfig::with_tenant_detail),
/// one per tenant ([`TenantStats::admission`]), in the same categories.
///
/// # Examples
///
/// ```
/// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
/// use fairshare::config::TenantLimits;
/// let cfg = SchedulerConfig::new()
///     .with_tenant_detail(true)
///     .with_tenant_limits(TenantLimits::new().with_max_items(1));
/// let mut s: Scheduler<&str, u8> = Scheduler::new(cfg);
/// s.try_push("a", 1).unwrap();
/// s.try_push("a", 2).unwrap_err(); // over its item cap
/// s.block("b", BlockReason::Abuse);
/// s.try_push("b", 3).unwrap_err();
/// let all = s.counters();
/// assert_eq!((all.admitted, all.tenant_full, all.blocked, all.total()), (1, 1, 1, 2));
/// let a = s.stats().tenants[0].admission.unwrap();
/// assert_eq!((a.admitted, a.tenant_full, a.total()), (1, 1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct AdmissionCounters {
    /// Items admitted into the queue.
    pub admitted: u64,
    /// Refused: tenant blocked.
    pub blocked: u64,
    /// Refused: the tenant's rate limit, or its rate limit in a class.
    pub rate_limited: u64,
    /// Refused: never admissible (cost above a burst or cap).
    pub too_large: u64,
    /// Refused: a tenant cap.
    pub tenant_full: u64,
    /// Refused: global capacity.
    pub capacity_full: u64,
    /// Refused: anything else (zero cost, an unknown class, a deadline already passed, a full
    /// tenant table).
    pub other: u64,
    /// Admitted, then handed back: evicted to make room for a tenant further below its share.
    pub evicted: u64,
    /// Admitted, then handed back: its deadline passed while queued.
    pub expired: u64,
    /// Admitted, then handed back: shed by the queue-delay target.
    pub shed: u64,
}

impl AdmissionCounters {
    /// Counts one refusal in its category.
    pub(crate) fn record(&mut self, reason: RejectReason) {
        match reason {
            RejectReason::Blocked { .. } => self.blocked += 1,
            RejectReason::RateLimited { .. }
            | RejectReason::ClassRateLimited { .. }
            | RejectReason::GroupRateLimited { .. } => self.rate_limited += 1,
            RejectReason::TooLarge { .. } => self.too_large += 1,
            RejectReason::TenantFull { .. } | RejectReason::GroupFull { .. } => {
                self.tenant_full += 1
            }
            RejectReason::CapacityFull { .. } => self.capacity_full += 1,
            _ => self.other += 1,
        }
    }

    /// Refusals at the door, of every reason (not counting items handed back after
    /// admission; see [`returned`](Self::returned)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::stats::AdmissionCounters::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.blocked
            + self.rate_limited
            + self.too_large
            + self.tenant_full
            + self.capacity_full
            + self.other
    }

    /// Items admitted and later handed back without running: evicted, expired or shed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::stats::AdmissionCounters::default().returned(), 0);
    /// ```
    pub fn returned(&self) -> u64 {
        self.evicted + self.expired + self.shed
    }
}

/// One class's line in a [`Stats`] snapshot (in [`ClassId`](crate::ClassId) order).
///
/// # Examples
///
/// ```
/// use fairshare::{ClassSpec, Classes, PushOptions, Scheduler, SchedulerConfig};
/// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new());
/// s.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap()).unwrap();
/// let bulk = s.classes().id("bulk").unwrap();
/// s.try_push_with("a", 1, PushOptions::new().with_class(bulk).with_cost(3)).unwrap();
/// let stats = s.stats();
/// assert_eq!(stats.classes[1].name, "bulk");
/// assert_eq!((stats.classes[1].queued, stats.classes[1].queued_cost), (1, 3));
/// assert_eq!(stats.classes[1].counters.pushed, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ClassStats {
    /// The class's name.
    pub name: String,
    /// Items queued in the class.
    pub queued: u64,
    /// Cost queued in the class.
    pub queued_cost: u64,
    /// Items of the class in flight.
    pub in_flight: u32,
    /// Lifetime counters (pushed, dispatched, served cost).
    pub counters: ClassCounters,
}

/// One tenant's line in a [`Stats`] snapshot.
///
/// # Examples
///
/// ```
/// use fairshare::{Scheduler, SchedulerConfig};
/// let mut s: Scheduler<String, u8> = Scheduler::new(SchedulerConfig::new());
/// s.try_push("a".into(), 1).unwrap();
/// let stats = s.stats();
/// assert_eq!(stats.tenants[0].key, "a");
/// assert_eq!(stats.tenants[0].queued, 1);
/// assert!(stats.tenants[0].wait.is_none()); // per-tenant detail is off
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TenantStats<K> {
    /// The tenant.
    pub key: K,
    /// Items queued.
    pub queued: u64,
    /// Cost queued.
    pub queued_cost: u64,
    /// Items in flight.
    pub in_flight: u32,
    /// Lifetime counters (kept while the tenant is known).
    pub counters: TenantCounters,
    /// Admissions, refusals by reason and items handed back since the tenant became known;
    /// `None` unless per-tenant detail is on ([`SchedulerConfig::with_tenant_detail`](crate::SchedulerConfig::with_tenant_detail)).
    pub admission: Option<AdmissionCounters>,
    /// Waiting times (admission to dispatch) of the tenant's dispatched items since it became
    /// known; `None` unless per-tenant detail is on.
    pub wait: Option<WaitSummary>,
}

/// A point-in-time snapshot of a scheduler: totals, admission outcomes by reason, waiting
/// times, the classes, the known tenants (in a deterministic order) and, with noisy-tenant
/// detection on, the detector's figures.
///
/// `PartialEq` only: the detector's shares are `f64`.
///
/// # Examples
///
/// ```
/// use fairshare::{Scheduler, SchedulerConfig};
/// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new());
/// s.try_push("a", 1).unwrap();
/// s.pop();
/// let stats = s.stats();
/// assert_eq!((stats.admission.admitted, stats.queue.dispatched), (1, 1));
/// assert_eq!(stats.wait.count, 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Stats<K> {
    /// When the snapshot was taken, on the scheduler's clock.
    pub at: Nanos,
    /// Items queued.
    pub queued: u64,
    /// Cost queued.
    pub queued_cost: u64,
    /// Items in flight.
    pub in_flight: u64,
    /// The pressure level.
    pub pressure: PressureLevel,
    /// Queue counters (pushed, rejected, dispatched, removed).
    pub queue: QueueCounters,
    /// Admission outcomes by reason.
    pub admission: AdmissionCounters,
    /// Waiting time of dispatched items, from admission to dispatch.
    pub wait: WaitSummary,
    /// Every class, in [`ClassId`](crate::ClassId) order.
    pub classes: Vec<ClassStats>,
    /// Every known tenant.
    pub tenants: Vec<TenantStats<K>>,
    /// The noisy-tenant detector's snapshot (its noisy set as of its last poll, the window's
    /// totals); `None` with detection off
    /// ([`SchedulerConfig::with_detector`](crate::SchedulerConfig::with_detector)).
    #[cfg_attr(feature = "serde", serde(default))]
    pub detector: Option<DetectorStats<K>>,
}
