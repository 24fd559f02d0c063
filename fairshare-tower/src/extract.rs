//! Which tenant and class a request belongs to: [`KeyExtractor`], [`Admission`].

use crate::core_glue::ClassId;

/// What the layer admits a request as: its tenant, its class and its cost.
///
/// # Examples
///
/// ```
/// use fairshare::ClassId;
/// use fairshare_tower::Admission;
/// let a = Admission::new("acme").class(ClassId::new(1)).cost(3);
/// assert_eq!((a.key(), a.class_id(), a.cost_units()), (&"acme", ClassId::new(1), 3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission<K> {
    key: K,
    class: ClassId,
    cost: u32,
}

impl<K> Admission<K> {
    /// Tenant `key`, the default class, cost 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = fairshare_tower::Admission::new(7u64);
    /// assert_eq!(a.cost_units(), 1);
    /// assert_eq!(a.class_id(), fairshare::ClassId::DEFAULT);
    /// ```
    pub const fn new(key: K) -> Self {
        Admission {
            key,
            class: ClassId::DEFAULT,
            cost: 1,
        }
    }

    /// In `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = fairshare_tower::Admission::new(7u64).class(fairshare::ClassId::new(2));
    /// assert_eq!(a.class_id().index(), 2);
    /// ```
    #[must_use]
    pub const fn class(mut self, class: ClassId) -> Self {
        self.class = class;
        self
    }

    /// With cost `cost` (the share of capacity the request is expected to use; 0 is refused
    /// by the scheduler).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_tower::Admission::new(7u64).cost(5).cost_units(), 5);
    /// ```
    #[must_use]
    pub const fn cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// The tenant.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_tower::Admission::new("a").key(), &"a");
    /// ```
    pub const fn key(&self) -> &K {
        &self.key
    }

    /// The class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_tower::Admission::new("a").class_id(), fairshare::ClassId::DEFAULT);
    /// ```
    pub const fn class_id(&self) -> ClassId {
        self.class
    }

    /// The cost.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_tower::Admission::new("a").cost_units(), 1);
    /// ```
    pub const fn cost_units(&self) -> u32 {
        self.cost
    }

    pub(crate) fn into_parts(self) -> (K, ClassId, u32) {
        (self.key, self.class, self.cost)
    }
}

/// Values a key extractor may return: an [`Admission`], `(key, class)` or
/// `(key, class, cost)`.
///
/// # Examples
///
/// ```
/// use fairshare::ClassId;
/// use fairshare_tower::{Admission, IntoAdmission};
/// assert_eq!(("a", ClassId::new(1)).into_admission(), Admission::new("a").class(ClassId::new(1)));
/// assert_eq!(("a", ClassId::DEFAULT, 4).into_admission().cost_units(), 4);
/// ```
pub trait IntoAdmission {
    /// The tenant key.
    type Key;
    /// The admission.
    fn into_admission(self) -> Admission<Self::Key>;
}

impl<K> IntoAdmission for Admission<K> {
    type Key = K;
    fn into_admission(self) -> Admission<K> {
        self
    }
}

impl<K> IntoAdmission for (K, ClassId) {
    type Key = K;
    fn into_admission(self) -> Admission<K> {
        Admission::new(self.0).class(self.1)
    }
}

impl<K> IntoAdmission for (K, ClassId, u32) {
    type Key = K;
    fn into_admission(self) -> Admission<K> {
        Admission::new(self.0).class(self.1).cost(self.2)
    }
}

/// Reads a request's tenant, class and cost. Implemented for every
/// `Fn(&Req) -> impl IntoAdmission`; implement it by hand for an extractor with state.
///
/// The extractor runs in [`Service::call`](tower_service::Service::call), before the
/// request is admitted: keep it cheap (read a header, a path prefix, an extension a previous
/// layer set after authentication). Tenant keys can be attacker-chosen; the scheduler bounds
/// what an unknown key costs, but an extractor should still key on authenticated identity
/// where there is one.
///
/// # Examples
///
/// ```
/// use fairshare::ClassId;
/// use fairshare_tower::KeyExtractor;
///
/// let by_header = |req: &http::Request<()>| {
///     let tenant = req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("anonymous");
///     let class = if req.uri().path().starts_with("/signin") { ClassId::new(1) } else { ClassId::DEFAULT };
///     (tenant.to_owned(), class)
/// };
/// let req = http::Request::builder().uri("/signin").header("x-tenant", "acme").body(()).unwrap();
/// let a = by_header.extract(&req);
/// assert_eq!((a.key().as_str(), a.class_id()), ("acme", ClassId::new(1)));
/// ```
pub trait KeyExtractor<Req> {
    /// The tenant key.
    type Key;
    /// The admission of `req`.
    fn extract(&self, req: &Req) -> Admission<Self::Key>;
}

impl<F, Req, A> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> A,
    A: IntoAdmission,
{
    type Key = A::Key;
    fn extract(&self, req: &Req) -> Admission<A::Key> {
        self(req).into_admission()
    }
}
