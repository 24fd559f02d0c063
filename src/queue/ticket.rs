//! # Implementation details
//!
//! What a dispatch hands out: the item and the ticket its completion is reported with.

use super::tenants::TenantHandle;
use crate::push::ClassId;

/// A dispatched item and the [`Ticket`] to report its completion with.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<&str, &str> = FairQueue::new();
/// q.try_push_with("acme", "report", fairshare::PushOptions::new().with_cost(10)).unwrap();
/// let d = q.dispatch().unwrap();
/// assert_eq!(d.item, "report");
/// assert_eq!(d.ticket.cost(), 10);
/// assert!(q.complete(d.ticket, 25)); // it was costlier than estimated
/// ```
#[derive(Debug)]
#[must_use = "report completion with FairQueue::complete, or the tenant stays in flight"]
#[non_exhaustive]
pub struct Dispatch<T> {
    /// The item, now the host's to run.
    pub item: T,
    /// Hand this back to [`FairQueue::complete`](crate::FairQueue::complete) with the actual cost.
    pub ticket: Ticket,
}

/// Proof that an item was dispatched; [`FairQueue::complete`](crate::FairQueue::complete) consumes it exactly once.
///
/// Not `Clone`: a completion cannot be reported twice.
///
/// # Examples
///
/// ```
/// use fairshare::FairQueue;
/// let mut q: FairQueue<&str, u32> = FairQueue::new();
/// q.try_push("acme", 7).unwrap();
/// let d = q.dispatch().unwrap();
/// assert_eq!(q.key(d.ticket.tenant()), Some(&"acme"));
/// assert_eq!(q.in_flight(&"acme"), 1);
/// q.complete(d.ticket, 1);
/// assert_eq!(q.in_flight(&"acme"), 0);
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "report completion with FairQueue::complete, or the tenant stays in flight"]
pub struct Ticket {
    pub(super) tenant: TenantHandle,
    pub(super) cost: u32,
    pub(super) class: ClassId,
}

impl Ticket {
    /// The cost the item was pushed with (the estimate).
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push_with("a", 1, fairshare::PushOptions::new().with_cost(3)).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(d.ticket.cost(), 3);
    /// # q.complete(d.ticket, 3);
    /// ```
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The class the item was pushed to.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(d.ticket.class(), fairshare::ClassId::DEFAULT);
    /// # q.complete(d.ticket, 1);
    /// ```
    pub fn class(&self) -> ClassId {
        self.class
    }
}
