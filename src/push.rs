//! What a push says about its item: the [`ClassId`] it goes to, its cost and its deadline
//! ([`PushOptions`]). Every layer's push takes the same options.

use crate::clock::Nanos;

/// A class of work, by its position in the [`Classes`](crate::Classes) it was defined in.
///
/// [`ClassId::DEFAULT`] (position 0) is where `try_push` and every call without a class puts
/// work; a queue without configured classes has only that one.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassId, ClassSpec, Classes};
/// let classes = Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap();
/// assert_eq!(classes.id("bulk"), Some(ClassId::new(1)));
/// assert_eq!(ClassId::DEFAULT.index(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClassId(u16);

impl ClassId {
    /// The first class; the class of every push that names none.
    pub const DEFAULT: ClassId = ClassId(0);

    /// The class at position `index` of its [`Classes`](crate::Classes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassId::new(2).index(), 2);
    /// ```
    pub const fn new(index: u16) -> Self {
        ClassId(index)
    }

    /// The position of the class in its [`Classes`](crate::Classes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::ClassId::DEFAULT.index(), 0);
    /// ```
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ClassId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "class #{}", self.0)
    }
}

/// How to push one item: its estimated cost, its class and an optional deadline. Every layer
/// takes the same options ([`FairQueue::try_push_with`](crate::FairQueue::try_push_with),
/// [`Scheduler::try_push_with`](crate::Scheduler::try_push_with),
/// [`SharedScheduler::try_push_with`](crate::SharedScheduler::try_push_with) and the `try_push_to`
/// of each, by tenant handle).
///
/// - `cost` (default 1): the host's estimate of the capacity the item uses; report the actual
///   cost at completion and the tenant's share is corrected. A cost of 0 is refused.
/// - `class` (default [`ClassId::DEFAULT`]).
/// - `deadline` (default none): if the item is still queued at that time it is never dispatched
///   and comes back as [`RejectReason::DeadlineExpired`](crate::RejectReason::DeadlineExpired).
///
/// # Examples
///
/// ```
/// use fairshare::{ClassId, Nanos, PushOptions};
/// let o = PushOptions::new().with_cost(5).with_deadline(Nanos::from_secs(30));
/// assert_eq!((o.cost(), o.deadline()), (5, Some(Nanos::from_secs(30))));
/// assert_eq!(o.class(), ClassId::DEFAULT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOptions {
    cost: u32,
    deadline: Option<Nanos>,
    class: ClassId,
}

impl PushOptions {
    /// Cost 1, the default class, no deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::PushOptions::new(), fairshare::PushOptions::default());
    /// ```
    pub const fn new() -> Self {
        PushOptions {
            cost: 1,
            deadline: None,
            class: ClassId::DEFAULT,
        }
    }

    /// Sets the estimated cost.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::PushOptions::new().with_cost(3).cost(), 3);
    /// ```
    pub const fn with_cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Sets a deadline (a time of the layer's clock).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::{Nanos, PushOptions};
    /// let o = PushOptions::new().with_deadline(Nanos::new(9));
    /// assert_eq!(o.deadline(), Some(Nanos::new(9)));
    /// ```
    pub const fn with_deadline(mut self, at: Nanos) -> Self {
        self.deadline = Some(at);
        self
    }

    /// Puts the item in `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassId, PushOptions};
    /// assert_eq!(PushOptions::new().with_class(ClassId::new(2)).class(), ClassId::new(2));
    /// ```
    pub const fn with_class(mut self, class: ClassId) -> Self {
        self.class = class;
        self
    }

    /// The estimated cost.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::PushOptions::new().cost(), 1);
    /// ```
    pub const fn cost(&self) -> u32 {
        self.cost
    }

    /// The class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::PushOptions::new().class(), fairshare::ClassId::DEFAULT);
    /// ```
    pub const fn class(&self) -> ClassId {
        self.class
    }

    /// The deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::PushOptions::new().deadline(), None);
    /// ```
    pub const fn deadline(&self) -> Option<Nanos> {
        self.deadline
    }
}

impl Default for PushOptions {
    fn default() -> Self {
        Self::new()
    }
}
