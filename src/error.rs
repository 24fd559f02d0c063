//! Refusals and configuration errors: [`Rejected`], [`RejectReason`], [`BlockReason`],
//! [`ConfigError`].

use std::fmt;

use crate::clock::Nanos;
use crate::push::ClassId;

/// Why an operator blocked a tenant. Carried back in [`RejectReason::Blocked`] so a host can
/// tell the tenant's client what happened.
///
/// # Examples
///
/// ```
/// use fairshare::BlockReason;
/// assert_eq!(BlockReason::Abuse.to_string(), "abuse");
/// assert_eq!(BlockReason::Code(42).to_string(), "code 42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum BlockReason {
    /// Blocked by an operator, no reason given.
    Operator,
    /// The tenant's traffic looked abusive or broken (the first incident: 140,000 invalid jobs).
    Abuse,
    /// Billing or plan limits.
    Billing,
    /// Planned maintenance for this tenant.
    Maintenance,
    /// A host-defined code.
    Code(u32),
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::Operator => f.write_str("operator"),
            BlockReason::Abuse => f.write_str("abuse"),
            BlockReason::Billing => f.write_str("billing"),
            BlockReason::Maintenance => f.write_str("maintenance"),
            BlockReason::Code(c) => write!(f, "code {c}"),
        }
    }
}

/// Why an item was refused. Every reason is data a host can act on: which limit was binding
/// and, where a retry can succeed, when.
///
/// [`is_retryable`](RejectReason::is_retryable) separates "not now" from "never".
///
/// # Examples
///
/// ```
/// use fairshare::{BlockReason, RejectReason};
/// let r = RejectReason::Blocked { reason: BlockReason::Abuse };
/// assert_eq!(r.to_string(), "tenant is blocked (abuse)");
/// assert!(!RejectReason::ZeroCost.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum RejectReason {
    /// An operator blocked the tenant; retry only after it is unblocked.
    #[error("tenant is blocked ({reason})")]
    Blocked {
        /// What the operator said.
        reason: BlockReason,
    },
    /// Items must cost at least 1: a zero-cost item would let its tenant be served forever.
    #[error("item cost must be at least 1")]
    ZeroCost,
    /// The [`TenantHandle`](crate::TenantHandle) was released or belongs to no live tenant.
    #[error("tenant handle is stale: it was released")]
    StaleHandle,
    /// The queue holds as many items as it can index (`u32::MAX - 1`).
    #[error("queue is at its hard item limit ({capacity})")]
    QueueFull {
        /// The limit that was reached.
        capacity: u64,
    },
    /// The tenant is over its rate quota; a retry at or after `retry_at` can succeed.
    #[error("tenant is over its rate quota (retry at {retry_at})")]
    RateLimited {
        /// The earliest time the same push can pass the rate limit.
        retry_at: Nanos,
    },
    /// The item costs more than a limit can ever allow (a rate burst or a cost cap, or a cap
    /// of zero items); it can never be admitted as it is.
    #[error(
        "item cost {cost} exceeds the largest a limit can ever allow ({max}); it can never be admitted"
    )]
    TooLarge {
        /// The item's cost.
        cost: u64,
        /// The largest cost the binding limit allows.
        max: u64,
    },
    /// The tenant's group is over its rate quota (see `Scheduler::set_group_limits`).
    #[error("tenant's group is over its rate quota (retry at {retry_at})")]
    GroupRateLimited {
        /// When the group's quota next allows an item of this cost.
        retry_at: Nanos,
    },
    /// The tenant's group holds its limit of queued items or cost.
    #[error("tenant's group queue is full ({limit})")]
    GroupFull {
        /// The limit reached.
        limit: Limit,
    },
    /// The tenant's own queue cap is reached.
    #[error("tenant queue is full ({limit})")]
    TenantFull {
        /// The cap that was reached.
        limit: Limit,
    },
    /// The scheduler's global capacity is reached, and the shedding policy refused the
    /// newcomer.
    #[error("scheduler is at capacity ({limit})")]
    CapacityFull {
        /// The capacity that was reached.
        limit: Limit,
    },
    /// The item was queued, then evicted to make room for another tenant's item because its
    /// tenant was the furthest over its fair share.
    #[error("evicted: its tenant was the furthest over its fair share of a full queue")]
    Evicted,
    /// The item was shed because queueing delay stayed above the target (CoDel-style).
    #[error("shed: queueing delay stayed above target (this item waited {sojourn})")]
    QueueDelay {
        /// How long the item had waited.
        sojourn: Nanos,
    },
    /// The scheduler was closed; nothing new is accepted.
    #[error("scheduler is closed")]
    Closed,
    /// The push named a class the queue does not have.
    #[error("no such class ({class})")]
    UnknownClass {
        /// The class the push named.
        class: ClassId,
    },
    /// The tenant is over the per-tenant rate quota of the class it pushed to.
    #[error("tenant is over its rate quota in {class} (retry at {retry_at})")]
    ClassRateLimited {
        /// The class whose `tenant_quota` refused the item.
        class: ClassId,
        /// The earliest time at which the same push can succeed.
        retry_at: Nanos,
    },
    /// The item's deadline passed while it was queued; it was never dispatched.
    #[error("item deadline passed while queued")]
    DeadlineExpired {
        /// The deadline it had.
        deadline: Nanos,
    },
}

impl RejectReason {
    /// Whether the same push can succeed later without the host changing anything but time or
    /// load.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::RejectReason;
    /// assert!(RejectReason::QueueFull { capacity: 10 }.is_retryable());
    /// assert!(!RejectReason::StaleHandle.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            RejectReason::QueueFull { .. }
            | RejectReason::RateLimited { .. }
            | RejectReason::ClassRateLimited { .. }
            | RejectReason::TenantFull { .. }
            | RejectReason::GroupRateLimited { .. }
            | RejectReason::GroupFull { .. }
            | RejectReason::CapacityFull { .. }
            | RejectReason::Evicted
            | RejectReason::QueueDelay { .. } => true,
            RejectReason::Blocked { .. }
            | RejectReason::ZeroCost
            | RejectReason::StaleHandle
            | RejectReason::TooLarge { .. }
            | RejectReason::Closed
            | RejectReason::UnknownClass { .. }
            | RejectReason::DeadlineExpired { .. } => false,
        }
    }

    /// The earliest time a retry can succeed, where the limit knows it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::RejectReason::ZeroCost.retry_at(), None);
    /// ```
    pub fn retry_at(&self) -> Option<Nanos> {
        match self {
            RejectReason::RateLimited { retry_at }
            | RejectReason::ClassRateLimited { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }
}

/// Which quantity a cap counts, and the cap.
///
/// # Examples
///
/// ```
/// use fairshare::Limit;
/// assert_eq!(Limit::Items(10).to_string(), "10 items");
/// assert_eq!(Limit::Cost(500).to_string(), "cost 500");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Limit {
    /// A cap on the number of queued items.
    Items(u64),
    /// A cap on the sum of queued costs.
    Cost(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Items(n) => write!(f, "{n} items"),
            Limit::Cost(c) => write!(f, "cost {c}"),
        }
    }
}

/// A refused item, handed back with the reason. Nothing is ever dropped: take the item back
/// with [`into_inner`](Rejected::into_inner).
///
/// `Debug` does not print the item, so `Rejected<T>` is an [`std::error::Error`] for every `T`.
///
/// # Examples
///
/// ```
/// use fairshare::{FairQueue, RejectReason};
/// let mut q: FairQueue<&str, String> = FairQueue::new();
/// let err = q.try_push_with("acme", "job".to_string(), fairshare::PushOptions::new().with_cost(0)).unwrap_err();
/// assert_eq!(err.reason(), RejectReason::ZeroCost);
/// assert_eq!(err.into_inner(), "job");
/// ```
#[derive(thiserror::Error)]
#[error("{reason}")]
pub struct Rejected<T> {
    item: T,
    reason: RejectReason,
}

impl<T> Rejected<T> {
    pub(crate) fn new(item: T, reason: RejectReason) -> Self {
        Rejected { item, reason }
    }

    /// Why the item was refused.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{FairQueue, RejectReason};
    /// # let mut q: FairQueue<u32, u32> = FairQueue::new();
    /// let err = q.try_push_with(1, 7, fairshare::PushOptions::new().with_cost(0)).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::ZeroCost);
    /// ```
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The refused item, by reference.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::FairQueue;
    /// # let mut q: FairQueue<u32, u32> = FairQueue::new();
    /// let err = q.try_push_with(1, 7, fairshare::PushOptions::new().with_cost(0)).unwrap_err();
    /// assert_eq!(*err.item(), 7);
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Takes the refused item back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::FairQueue;
    /// # let mut q: FairQueue<u32, u32> = FairQueue::new();
    /// let err = q.try_push_with(1, 7, fairshare::PushOptions::new().with_cost(0)).unwrap_err();
    /// assert_eq!(err.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.item
    }

    /// The item and the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{FairQueue, RejectReason};
    /// # let mut q: FairQueue<u32, u32> = FairQueue::new();
    /// let (item, reason) = q.try_push_with(1, 7, fairshare::PushOptions::new().with_cost(0)).unwrap_err().into_parts();
    /// assert_eq!((item, reason), (7, RejectReason::ZeroCost));
    /// ```
    pub fn into_parts(self) -> (T, RejectReason) {
        (self.item, self.reason)
    }

    /// Shorthand for `self.reason().is_retryable()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::FairQueue;
    /// # let mut q: FairQueue<u32, u32> = FairQueue::new();
    /// assert!(!q.try_push_with(1, 7, fairshare::PushOptions::new().with_cost(0)).unwrap_err().is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.reason.is_retryable()
    }
}

impl<T> fmt::Debug for Rejected<T> {
    // Elide the item so that no `T: Debug` bound is needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// A configuration value that can never work, naming the field and how to fix it.
///
/// # Examples
///
/// ```
/// use fairshare::ConfigError;
/// let e = ConfigError::Invalid { field: "quantum", problem: "must be at least 1" };
/// assert_eq!(e.to_string(), "invalid `quantum`: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The field's value is out of its valid range.
    #[error("invalid `{field}`: {problem}")]
    Invalid {
        /// The offending field, as spelled in the configuration.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
    /// A per-tenant field is out of its valid range.
    #[error("invalid `tenants.{tenant}.{field}`: {problem}")]
    InvalidTenant {
        /// The tenant, as named in the configuration.
        tenant: String,
        /// The offending field of that tenant.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
    /// A field of one class is out of its valid range.
    #[error("invalid `classes.{class}.{field}`: {problem}")]
    InvalidClass {
        /// The class, by name.
        class: String,
        /// The offending field of that class.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
}
