//! # Implementation details
//!
//! What admission keeps per tenant, attached to the tenant's queue slot (so one lookup of the
//! key finds it): the rate limit's theoretical arrival time, which overrides of the limits
//! apply, and whether the tenant is cooling (remembered until its rate state equals a fresh
//! tenant's, so forgetting it never gives back burst it already used).

use crate::clock::Nanos;
use crate::queue::{Attachment, NIL};

/// A tenant's admission state (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TenantAdmission {
    /// GCRA theoretical arrival time of the tenant's rate limit.
    pub(crate) tat: Nanos,
    /// Index of the tenant's overrides in the scheduler's table, or `NIL` for the defaults.
    pub(crate) limits: u32,
    /// Some rate state of the tenant differs from a fresh one's until the cooling sweep
    /// finds it recovered.
    pub(crate) cooling: bool,
}

impl Default for TenantAdmission {
    fn default() -> Self {
        TenantAdmission {
            tat: Nanos::ZERO,
            limits: NIL,
            cooling: false,
        }
    }
}

impl Attachment for TenantAdmission {
    #[inline(always)]
    fn keeps_slot(&self) -> bool {
        self.cooling || self.limits != NIL
    }
}
