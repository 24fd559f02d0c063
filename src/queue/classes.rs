//! Classes of work: the level above tenants ([`ClassSpec`], [`Classes`], [`ClassId`]).

use std::num::NonZeroU32;

use crate::error::ConfigError;
use crate::push::ClassId;
use crate::rate::Quota;

/// The most classes one queue can have. Choosing a class scans them all, so the count is kept
/// small: classes are kinds of work (sign-in, api, bulk), not tenants. A queue keeps the state
/// of this many classes in one array (under 6 KB), so a dispatch reaches any of them directly.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassSpec, Classes};
/// use fairshare::queue::MAX_CLASSES;
/// let too_many = (0..=MAX_CLASSES).map(|i| ClassSpec::new(format!("c{i}")));
/// assert!(Classes::new(too_many).is_err());
/// ```
pub const MAX_CLASSES: usize = 64;

// The queue indexes its inline class states by `c & (MAX_CLASSES - 1)`.
const _: () = assert!(MAX_CLASSES.is_power_of_two());

/// How one class shares the scheduler with the others.
///
/// Shares are of the global in-flight limit `N` (the number of items dispatched and not yet
/// completed, [`FairQueue::set_in_flight_limit`](crate::FairQueue::set_in_flight_limit)):
///
/// - `weight` (default 1): classes of the same priority share service (dispatched cost) in
///   proportion to their weights (honoured up to 65,536; a larger class weight counts as
///   65,536); a class with a reservation gets the larger of its reservation and its weighted
///   share.
/// - `reserved_percent` (default 0): `floor(N × r / 100)` slots are the class's whenever it
///   has work waiting; other classes may borrow them while it is idle.
/// - `ceiling_percent` (default 100): the class never holds more than `floor(N × c / 100)`
///   slots (at least one), even if the others are idle.
/// - `priority` (default 0): higher priorities are served first, but only after every
///   backlogged class has its reservation.
/// - `max_in_flight` (default none): an absolute cap on the class's items in flight.
/// - `tenant_quota` (default none): a rate limit on each tenant's work in this class, applied
///   by the [`Scheduler`](crate::Scheduler) in addition to the tenant's own quota.
///
/// Reservations and ceilings bind only while a global in-flight limit is set; the `Config`
/// loader (feature `serde`) refuses them without one. `pop` (untracked) holds no slot,
/// so only priorities and weights apply to it.
///
/// # Choosing the class
///
/// Each dispatch first serves, among the classes with a dispatchable item (some tenant below
/// its in-flight limit) that are below their ceiling and cap, the one furthest below its
/// reservation (smallest `in_flight / reserved`); if every such class holds its reservation,
/// the highest priority, and within it the class with the least dispatched cost per weight
/// (a class returning from idle starts level with the busy ones, so idling banks nothing).
/// Inside the class, tenants are served by weighted deficit round robin as in a queue with one
/// class; a tenant backlogged in `k` classes competes in each with `1/k` of its weight, so
/// spreading its work over classes gains it nothing where they are contended.
///
/// *Limit of that guarantee:* work in a class no other tenant is using is served from that
/// class's share, so a tenant that adds work to an otherwise idle class gets that class's
/// share on top of its share elsewhere (classes share capacity first, tenants second).
/// Tests: `tests/classes_ceilings.rs` (`spreading_over_classes_gains_nothing_*`).
///
/// **Borrowing.** Nothing is held back for an idle class: its reserved slots serve the others
/// on the very next dispatch. When its work arrives, every slot that frees goes to it until it
/// holds its reservation, so it gets the reservation back after at most `reserved - in_flight`
/// completions.
///
/// # Examples
///
/// ```
/// use fairshare::ClassSpec;
/// let signin = ClassSpec::new("signin").with_reserved_percent(20).with_priority(1);
/// assert_eq!(signin.name(), "signin");
/// assert_eq!((signin.reserved_percent(), signin.ceiling_percent()), (20, 100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSpec {
    name: String,
    weight: NonZeroU32,
    reserved: u8,
    ceiling: u8,
    priority: u8,
    max_in_flight: Option<u32>,
    tenant_quota: Option<Quota>,
}

impl ClassSpec {
    /// A class named `name` with weight 1, nothing reserved, no ceiling, priority 0.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("bulk").weight().get(), 1);
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        ClassSpec {
            name: name.into(),
            weight: NonZeroU32::MIN,
            reserved: 0,
            ceiling: 100,
            priority: 0,
            max_in_flight: None,
            tenant_quota: None,
        }
    }

    /// Sets the weight among classes of the same priority.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let c = fairshare::ClassSpec::new("api").with_weight(NonZeroU32::new(3).unwrap());
    /// assert_eq!(c.weight().get(), 3);
    /// ```
    pub fn with_weight(mut self, weight: NonZeroU32) -> Self {
        self.weight = weight;
        self
    }

    /// Reserves `percent` of the global in-flight slots (rounded down) for this class.
    /// Values above 100 are refused by [`Classes::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").with_reserved_percent(30).reserved_percent(), 30);
    /// ```
    pub fn with_reserved_percent(mut self, percent: u8) -> Self {
        self.reserved = percent;
        self
    }

    /// Caps the class at `percent` of the global in-flight slots (rounded down, at least one).
    /// Must be between 1 and 100 and at least the reservation.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").with_ceiling_percent(50).ceiling_percent(), 50);
    /// ```
    pub fn with_ceiling_percent(mut self, percent: u8) -> Self {
        self.ceiling = percent;
        self
    }

    /// Sets the strict priority (higher first, after reservations).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").with_priority(2).priority(), 2);
    /// ```
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Caps the class's items in flight at `max` (`None`: no cap of its own).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").with_max_in_flight(Some(4)).max_in_flight(), Some(4));
    /// ```
    pub fn with_max_in_flight(mut self, max: Option<u32>) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Rate-limits each tenant's work in this class (checked by the
    /// [`Scheduler`](crate::Scheduler) after the tenant's own quota).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassSpec;
    /// use fairshare::config::Quota;
    /// use std::num::NonZeroU32;
    /// let q = Quota::per_second(NonZeroU32::new(5).unwrap());
    /// assert_eq!(ClassSpec::new("a").with_tenant_quota(Some(q)).tenant_quota(), Some(q));
    /// ```
    pub fn with_tenant_quota(mut self, quota: Option<Quota>) -> Self {
        self.tenant_quota = quota;
        self
    }

    /// The class's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The weight among classes of the same priority.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").weight().get(), 1);
    /// ```
    pub fn weight(&self) -> NonZeroU32 {
        self.weight
    }

    /// The reserved share of in-flight slots, in percent.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").reserved_percent(), 0);
    /// ```
    pub fn reserved_percent(&self) -> u8 {
        self.reserved
    }

    /// The maximum share of in-flight slots, in percent.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").ceiling_percent(), 100);
    /// ```
    pub fn ceiling_percent(&self) -> u8 {
        self.ceiling
    }

    /// The strict priority.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").priority(), 0);
    /// ```
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The class's own in-flight cap.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").max_in_flight(), None);
    /// ```
    pub fn max_in_flight(&self) -> Option<u32> {
        self.max_in_flight
    }

    /// The per-tenant rate limit inside this class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassSpec::new("a").tenant_quota(), None);
    /// ```
    pub fn tenant_quota(&self) -> Option<Quota> {
        self.tenant_quota
    }

    /// In-flight slots reserved for the class under a global limit of `limit`.
    #[inline]
    pub(crate) fn reserved_slots(&self, limit: u64) -> u64 {
        limit / 100 * u64::from(self.reserved) + limit % 100 * u64::from(self.reserved) / 100
    }

    /// The most in-flight slots the class may hold under a global limit of `limit`.
    #[inline]
    pub(crate) fn ceiling_slots(&self, limit: u64) -> u64 {
        let share =
            limit / 100 * u64::from(self.ceiling) + limit % 100 * u64::from(self.ceiling) / 100;
        let own = self.max_in_flight.map_or(u64::MAX, u64::from);
        share.max(1).min(own)
    }
}

/// The validated list of classes of a queue or scheduler; a [`ClassId`] is a position in it.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassSpec, Classes, ConfigError};
/// let ok = Classes::new([
///     ClassSpec::new("signin").with_reserved_percent(20),
///     ClassSpec::new("bulk").with_ceiling_percent(60),
/// ]);
/// assert!(ok.is_ok());
///
/// let too_much = Classes::new([
///     ClassSpec::new("a").with_reserved_percent(60),
///     ClassSpec::new("b").with_reserved_percent(50),
/// ]);
/// assert!(matches!(too_much, Err(ConfigError::InvalidClass { field: "reserved_percent", .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes {
    specs: Vec<ClassSpec>,
}

impl Classes {
    /// Validates `specs` (in [`ClassId`] order).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidClass`] naming the class and field when the list is empty or
    /// longer than [`MAX_CLASSES`], two classes share a name, a reservation or ceiling is
    /// above 100, a ceiling is 0 or below the class's reservation, a class's `max_in_flight`
    /// is 0, or the reservations add up to more than 100 percent.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes};
    /// let e = Classes::new([ClassSpec::new("a").with_reserved_percent(50).with_ceiling_percent(40)])
    ///     .unwrap_err();
    /// assert_eq!(e.to_string(), "invalid `classes.a.ceiling_percent`: must be at least the class's reserved_percent");
    /// ```
    pub fn new(specs: impl IntoIterator<Item = ClassSpec>) -> Result<Self, ConfigError> {
        let specs: Vec<ClassSpec> = specs.into_iter().collect();
        let bad = |spec: &ClassSpec, field: &'static str, problem: &'static str| {
            ConfigError::InvalidClass {
                class: spec.name.clone(),
                field,
                problem,
            }
        };
        let Some(last) = specs.last() else {
            return Err(ConfigError::Invalid {
                field: "classes",
                problem: "must name at least one class",
            });
        };
        if specs.len() > MAX_CLASSES {
            return Err(bad(last, "name", "at most 64 classes"));
        }
        let mut reserved_sum = 0u32;
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(bad(spec, "name", "two classes have this name"));
            }
            if spec.reserved > 100 {
                return Err(bad(spec, "reserved_percent", "must be at most 100"));
            }
            if spec.ceiling == 0 || spec.ceiling > 100 {
                return Err(bad(spec, "ceiling_percent", "must be between 1 and 100"));
            }
            if spec.ceiling < spec.reserved {
                return Err(bad(
                    spec,
                    "ceiling_percent",
                    "must be at least the class's reserved_percent",
                ));
            }
            if spec.max_in_flight == Some(0) {
                return Err(bad(
                    spec,
                    "max_in_flight",
                    "must be at least 1 (block the work instead)",
                ));
            }
            reserved_sum += u32::from(spec.reserved);
            if reserved_sum > 100 {
                return Err(bad(
                    spec,
                    "reserved_percent",
                    "the classes' reservations add up to more than 100 percent",
                ));
            }
        }
        Ok(Classes { specs })
    }

    /// One class, `"default"`, with no limits: what every queue starts with.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Classes::single().len(), 1);
    /// ```
    pub fn single() -> Self {
        Classes {
            specs: vec![ClassSpec::new("default")],
        }
    }

    /// Number of classes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::Classes::single().len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// The class at `id`, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassId, Classes};
    /// assert_eq!(Classes::single().get(ClassId::DEFAULT).unwrap().name(), "default");
    /// assert!(Classes::single().get(ClassId::new(1)).is_none());
    /// ```
    pub fn get(&self, id: ClassId) -> Option<&ClassSpec> {
        self.specs.get(id.index())
    }

    /// The id of the class named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassId, Classes};
    /// assert_eq!(Classes::single().id("default"), Some(ClassId::DEFAULT));
    /// ```
    pub fn id(&self, name: &str) -> Option<ClassId> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| ClassId::new(i as u16))
    }

    /// The classes with their ids, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let names: Vec<String> = fairshare::Classes::single()
    ///     .iter()
    ///     .map(|(_, spec)| spec.name().to_string())
    ///     .collect();
    /// assert_eq!(names, ["default"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (ClassId, &ClassSpec)> + '_ {
        self.specs
            .iter()
            .enumerate()
            .map(|(i, s)| (ClassId::new(i as u16), s))
    }

    pub(crate) fn specs(&self) -> &[ClassSpec] {
        &self.specs
    }
}

impl Default for Classes {
    fn default() -> Self {
        Classes::single()
    }
}

/// Lifetime counters of one class.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassId, FairQueue};
/// let mut q: FairQueue<&str, u32> = FairQueue::new();
/// q.try_push("a", 1).unwrap();
/// q.pop();
/// let c = q.class_counters(ClassId::DEFAULT).unwrap();
/// assert_eq!((c.pushed, c.dispatched, c.served_cost), (1, 1, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ClassCounters {
    /// Items accepted into the class.
    pub pushed: u64,
    /// Items of the class handed out by `pop` or `dispatch`.
    pub dispatched: u64,
    /// Cost handed out, corrected by the actual costs reported to `complete`.
    pub served_cost: u64,
}

/// The scheduling state of one class inside a queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClassState {
    /// The class's DRR ring of flows, by its front; the last is the front's `prev`.
    pub(crate) front: u32,
    pub(crate) ring_len: u32,
    /// Items queued in the class and their cost.
    pub(crate) items: u64,
    pub(crate) queued_cost: u64,
    /// Items dispatched and not yet completed.
    pub(crate) in_flight: u32,
    /// Served cost divided by weight, scaled by 2^16 (start-time fair queueing between
    /// classes of the same priority).
    pub(crate) vtime: u64,
    /// `2^16 / weight` (at least 1): the virtual time one unit of cost adds.
    pub(crate) vstep: u64,
    /// Settings resolved against the global in-flight limit (see `resolve`).
    pub(crate) priority: u8,
    /// `(255 - priority) << 56`: the priority part of [`pick_key`](Self::pick_key).
    pub(crate) rank: u64,
    /// The most items the class may have in flight for a dispatch to serve it.
    pub(crate) cap: u64,
    /// In-flight slots reserved for it (0 without a global limit).
    pub(crate) reserved: u64,
    pub(crate) counters: ClassCounters,
}

impl ClassState {
    /// The pick order, smaller first: the higher priority, then the lower virtual time.
    /// Exact because virtual times stay below 2^56: the queue renormalises them once one
    /// passes 2^55, one charge adds less than 2^48, and the shift always brings the leader
    /// back to 2^54 or less (see `FairQueue::renormalize_vtimes`).
    #[inline(always)]
    pub(crate) fn pick_key(&self) -> u64 {
        debug_assert!(
            self.vtime < 1 << 56,
            "virtual time {} not renormalised",
            self.vtime
        );
        self.rank | self.vtime
    }

    pub(crate) fn new() -> Self {
        ClassState {
            front: super::items::NIL,
            vstep: 1 << 16,
            rank: u64::from(u8::MAX) << 56,
            cap: u64::MAX,
            ..ClassState::default()
        }
    }

    /// Caches `spec`'s settings under the global in-flight limit `limit` (`u64::MAX`: none).
    pub(crate) fn resolve(&mut self, spec: &ClassSpec, limit: u64) {
        // Class weights are honoured up to 2^16 (a larger weight counts as 2^16).
        self.vstep = ((1u64 << 16) / u64::from(spec.weight().get())).max(1);
        self.priority = spec.priority();
        self.rank = u64::from(u8::MAX - self.priority) << 56;
        if limit == u64::MAX {
            self.cap = spec.max_in_flight().map_or(u64::MAX, u64::from);
            self.reserved = 0;
        } else {
            self.cap = spec.ceiling_slots(limit);
            self.reserved = spec.reserved_slots(limit);
        }
    }
}
