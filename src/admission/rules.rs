//! # Implementation details
//!
//! A tenant's limits as the admission check reads them, flattened once per change of the
//! limits or the capacity so that an admissible item passes with a few compares.

use crate::config::{Capacity, TenantLimits};
use crate::rate::Quota;
use crate::rate::gcra::Gcra;

/// A tenant's [`TenantLimits`] as the admission check reads them: caps as plain numbers
/// (`MAX` for none) and the largest cost the limits and the global [`Capacity`] can ever
/// allow, so an admissible item passes with a few compares. Rebuilt whenever the limits or the
/// capacity change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) limits: TenantLimits,
    pub(crate) max_items: u32,
    pub(crate) max_cost: u64,
    pub(crate) max_in_flight: u32,
    /// No item costing more is ever admissible (the check then finds which limit says so).
    pub(crate) never_above: u64,
    /// The quota, multiplied out for the check.
    pub(crate) rate: Option<Gcra>,
    /// The global capacity's caps (`MAX` for none), so a check with room to spare passes
    /// with two compares.
    pub(crate) capacity_items: u64,
    pub(crate) capacity_cost: u64,
}

impl Rules {
    pub(crate) fn new(limits: TenantLimits, capacity: Capacity) -> Self {
        let never_above = never_limits(&limits, &capacity, None)
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
        Rules {
            limits,
            max_items: limits.max_items().unwrap_or(u32::MAX),
            max_cost: limits.max_cost().unwrap_or(u64::MAX),
            max_in_flight: limits.max_in_flight().unwrap_or(u32::MAX),
            never_above,
            rate: limits.quota().map(|q| Gcra::new(&q)),
            capacity_items: capacity.max_items().unwrap_or(u64::MAX),
            capacity_cost: capacity.max_cost().unwrap_or(u64::MAX),
        }
    }
}

/// Every limit that bounds the cost of one item for ever, in the order a refusal names them:
/// the tenant's burst, its cost cap, the global cost cap, the class's per-tenant burst, and 0
/// if a cap of zero items (queued or in flight) admits nothing at all.
pub(crate) fn never_limits(
    limits: &TenantLimits,
    capacity: &Capacity,
    class_quota: Option<Quota>,
) -> [Option<u64>; 5] {
    let zero_cap = limits.max_items() == Some(0)
        || limits.max_in_flight() == Some(0)
        || capacity.max_items() == Some(0);
    [
        limits.quota().map(|q| u64::from(q.burst().get())),
        limits.max_cost(),
        capacity.max_cost(),
        class_quota.map(|q| u64::from(q.burst().get())),
        zero_cap.then_some(0),
    ]
}
