//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! The scheduler records what it decides; the host installs a recorder (for example
//! `metrics-exporter-prometheus`) and chooses where the numbers go. Without a recorder every
//! call is a no-op. Names and labels:
//!
//! | name | kind | labels | meaning |
//! | --- | --- | --- | --- |
//! | `fairshare_admitted_total` | counter | `class` | items admitted into the queue |
//! | `fairshare_refused_total` | counter | `reason`, `class` | items refused or handed back with a reason |
//! | `fairshare_dispatched_total` | counter | `class` | items taken from the queue to run |
//! | `fairshare_completed_total` | counter | `class` | dispatched items completed (their slot freed) |
//! | `fairshare_wait_seconds` | histogram | `class` | queueing delay of each dispatched item |
//! | `fairshare_queued` | gauge | | items queued |
//! | `fairshare_in_flight` | gauge | | items dispatched and not yet completed |
//! | `fairshare_heavy_tenant_cost` | gauge | `tenant` | admitted cost of the heaviest tenants ([`HeavyTenants`]) |
//!
//! `class` is the class's name (`"unknown"` where the scheduler no longer knows it, as for an
//! evicted or expired item). `reason` is one of `blocked`, `zero_cost`, `stale_handle`,
//! `queue_full`, `rate_limited` (a tenant's quota or its quota in a class), `too_large`,
//! `tenant_full`, `capacity_full`, `evicted`, `queue_delay`, `closed`, `unknown_class`,
//! `deadline_expired`; a host adding its own refusals (the tower layer's `pressure`) uses the
//! same name. Refusals at the door match [`AdmissionCounters`](crate::stats::AdmissionCounters):
//! `rate_limited` is its `rate_limited`, and so on; `evicted`, `queue_delay` and
//! `deadline_expired` count its `evicted`, `shed` and `expired`.
//!
//! Tenant ids never become labels of the scheduler's own series: a host with a million
//! tenants would get a million series. [`HeavyTenants`] keeps a bounded top-k of the heaviest
//! tenants, and only those get a series.
//!
//! # Cost
//!
//! With the feature on, each admission, refusal, dispatch and completion makes one call into
//! the recorder with the class name as a label (an allocation per call); with it off, nothing
//! is compiled in.

use std::hash::{BuildHasher, Hash};

use crate::clock::Nanos;
use crate::error::RejectReason;
use crate::push::ClassId;
use crate::queue::{Attachment, FairQueue};

/// The `reason` label of a refusal.
pub(crate) fn reason_label(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Blocked { .. } => "blocked",
        RejectReason::ZeroCost => "zero_cost",
        RejectReason::StaleHandle => "stale_handle",
        RejectReason::QueueFull { .. } => "queue_full",
        RejectReason::RateLimited { .. } | RejectReason::ClassRateLimited { .. } => "rate_limited",
        RejectReason::TooLarge { .. } => "too_large",
        RejectReason::TenantFull { .. } => "tenant_full",
        RejectReason::GroupRateLimited { .. } => "group_rate_limited",
        RejectReason::GroupFull { .. } => "group_full",
        RejectReason::CapacityFull { .. } => "capacity_full",
        RejectReason::Evicted => "evicted",
        RejectReason::QueueDelay { .. } => "queue_delay",
        RejectReason::Closed => "closed",
        RejectReason::UnknownClass { .. } => "unknown_class",
        RejectReason::DeadlineExpired { .. } => "deadline_expired",
    }
}

fn class_label<K, T, S, A: Attachment>(
    queue: &FairQueue<K, T, S, A>,
    class: Option<ClassId>,
) -> String
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    class
        .and_then(|c| queue.classes().get(c))
        .map_or("unknown", |spec| spec.name())
        .to_owned()
}

fn gauges<K, T, S, A: Attachment>(queue: &FairQueue<K, T, S, A>)
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    metrics::gauge!("fairshare_queued").set(queue.len() as f64);
    metrics::gauge!("fairshare_in_flight").set(queue.total_in_flight() as f64);
}

/// An item of `class` was admitted.
pub(crate) fn admitted<K, T, S, A: Attachment>(queue: &FairQueue<K, T, S, A>, class: u16)
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    let class = class_label(queue, Some(ClassId::new(class)));
    metrics::counter!("fairshare_admitted_total", "class" => class).increment(1);
    gauges(queue);
}

/// `n` items (of `class`, where known) were refused or handed back for `reason`.
pub(crate) fn refused<K, T, S, A: Attachment>(
    queue: &FairQueue<K, T, S, A>,
    reason: RejectReason,
    class: Option<ClassId>,
    n: u64,
) where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    if n == 0 {
        return;
    }
    let class = class_label(queue, class);
    metrics::counter!("fairshare_refused_total", "reason" => reason_label(reason), "class" => class)
        .increment(n);
}

/// An item of `class` left the queue to run after waiting `wait`.
pub(crate) fn dispatched<K, T, S, A: Attachment>(
    queue: &FairQueue<K, T, S, A>,
    class: u16,
    wait: Nanos,
) where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    let class = class_label(queue, Some(ClassId::new(class)));
    metrics::counter!("fairshare_dispatched_total", "class" => class.clone()).increment(1);
    metrics::histogram!("fairshare_wait_seconds", "class" => class)
        .record(wait.as_u64() as f64 / 1e9);
    gauges(queue);
}

/// A dispatched item of `class` completed (`done`: its ticket was live).
pub(crate) fn completed<K, T, S, A: Attachment>(
    queue: &FairQueue<K, T, S, A>,
    class: ClassId,
    done: bool,
) where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    if !done {
        return;
    }
    let class = class_label(queue, Some(class));
    metrics::counter!("fairshare_completed_total", "class" => class).increment(1);
    gauges(queue);
}

/// A bounded tracker of the heaviest tenants by cost (the host chooses what it counts:
/// offered, admitted or served), so that per-tenant metric series exist only for them,
/// never one per tenant id.
///
/// It keeps at most `k` tenants (the Space-Saving algorithm): a tenant not tracked replaces
/// the tracked one with the smallest count and inherits that count as its possible
/// overcount. Every tenant whose true total exceeds `1/k` of all observed cost is guaranteed
/// to be tracked, and each tracked count overstates the truth by at most its `error`.
/// [`publish`](Self::publish) sets one gauge per tracked tenant to its guaranteed count
/// (`count - error`, a lower bound of its true total) where that is above zero, so at most
/// `k` series are written per publish and a tenant that only inherited a count is left out. Series of tenants that fall
/// out stay at their last value in the recorder; configure the exporter to drop idle gauges
/// (`metrics-exporter-prometheus`: `idle_timeout`) so the set of series stays bounded.
///
/// # Performance
///
/// [`observe`](Self::observe) is O(k): keep `k` small (tens). Memory is `k` entries.
///
/// # Examples
///
/// ```
/// use fairshare::metrics::HeavyTenants;
/// let mut heavy = HeavyTenants::new(2);
/// for _ in 0..100 { heavy.observe(&"flood", 1); }
/// heavy.observe(&"quiet-1", 1);
/// heavy.observe(&"quiet-2", 1);
/// let top = heavy.top();
/// assert_eq!(top[0].0, &"flood");
/// assert_eq!(top[0].1, 100);
/// assert_eq!(top.len(), 2);
/// heavy.publish("fairshare_heavy_tenant_cost", |k| k.to_string()); // no recorder: a no-op
/// ```
#[derive(Debug, Clone)]
pub struct HeavyTenants<K> {
    k: usize,
    /// `(tenant, count, error)`: `count - error` is a lower bound of the true total.
    entries: Vec<(K, u64, u64)>,
}

impl<K: Eq + Clone> HeavyTenants<K> {
    /// A tracker of at most `k` tenants (at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// let heavy: fairshare::metrics::HeavyTenants<u64> = fairshare::metrics::HeavyTenants::new(10);
    /// assert!(heavy.top().is_empty());
    /// ```
    pub fn new(k: usize) -> Self {
        let k = k.max(1);
        HeavyTenants {
            k,
            entries: Vec::with_capacity(k),
        }
    }

    /// Counts `cost` for `key` (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut heavy = fairshare::metrics::HeavyTenants::new(1);
    /// heavy.observe(&7u32, 5);
    /// assert_eq!(heavy.top(), [(&7, 5, 0)]);
    /// ```
    pub fn observe(&mut self, key: &K, cost: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == *key) {
            e.1 = e.1.saturating_add(cost);
            return;
        }
        if self.entries.len() < self.k {
            self.entries.push((key.clone(), cost, 0));
            return;
        }
        if let Some(min) = self.entries.iter_mut().min_by_key(|e| e.1) {
            let floor = min.1;
            *min = (key.clone(), floor.saturating_add(cost), floor);
        }
    }

    /// The tracked tenants, heaviest first: `(tenant, count, error)`, where the true total
    /// lies in `count - error ..= count`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut heavy = fairshare::metrics::HeavyTenants::new(4);
    /// heavy.observe(&"a", 1);
    /// heavy.observe(&"b", 3);
    /// assert_eq!(heavy.top(), [(&"b", 3, 0), (&"a", 1, 0)]);
    /// ```
    pub fn top(&self) -> Vec<(&K, u64, u64)> {
        let mut out: Vec<_> = self.entries.iter().map(|(k, c, e)| (k, *c, *e)).collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        out
    }

    /// Forgets every count (to start a new window).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut heavy = fairshare::metrics::HeavyTenants::new(4);
    /// heavy.observe(&"a", 1);
    /// heavy.reset();
    /// assert!(heavy.top().is_empty());
    /// ```
    pub fn reset(&mut self) {
        self.entries.clear();
    }

    /// Sets the gauge `name{tenant = label(key)}` to the guaranteed count (`count - error`)
    /// of each tracked tenant where that is above zero: at most `k` series.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut heavy = fairshare::metrics::HeavyTenants::new(4);
    /// heavy.observe(&"a", 1);
    /// heavy.publish("fairshare_heavy_tenant_cost", |k| k.to_string());
    /// ```
    pub fn publish(&self, name: &'static str, label: impl Fn(&K) -> String) {
        for (key, count, error) in &self.entries {
            if count > error {
                metrics::gauge!(name, "tenant" => label(key)).set((count - error) as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HeavyTenants;

    #[test]
    fn heavy_tenants_keeps_the_heavy_hitter_among_many_light_ones() {
        let mut heavy = HeavyTenants::new(4);
        for i in 0..10_000u32 {
            heavy.observe(&i, 1); // ten thousand distinct light tenants
            if i % 2 == 0 {
                heavy.observe(&u32::MAX, 1); // one tenant with a third of the cost
            }
        }
        let top = heavy.top();
        assert_eq!(top.len(), 4);
        assert_eq!(*top[0].0, u32::MAX);
        let (count, error) = (top[0].1, top[0].2);
        assert!(count - error <= 5_000 && 5_000 <= count);
    }
}
