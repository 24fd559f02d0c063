//! # Implementation details
//!
//! What admission keeps per tenant, attached to the tenant's queue slot (so one lookup of the
//! key finds it): the rate limit's theoretical arrival time, which overrides of the limits
//! apply, and whether the tenant is cooling (remembered until its rate state equals a fresh
//! tenant's, so forgetting it never gives back burst it already used).

use crate::queue::{Attachment, NIL};
use crate::rate::gcra::Tat;

/// The bit of `TenantAdmission::limits` that says the tenant is cooling; override indexes
/// stay below it (there are fewer than 2^31 tenants).
const COOLING: u32 = 1 << 31;

/// A tenant's admission state (see the module docs). Packed to 20 bytes: it sits in every
/// tenant slot of the scheduler's queue, where the TAT's 16-byte alignment would cost a slot
/// its padding.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub(crate) struct TenantAdmission {
    /// GCRA theoretical arrival time of the tenant's rate limit.
    pub(crate) tat: Tat,
    /// Index of the tenant's overrides in the scheduler's table (`NIL & !COOLING` for the
    /// defaults), with the cooling bit.
    limits: u32,
}

impl TenantAdmission {
    /// Index of the tenant's overrides in the scheduler's table, or `NIL` for the defaults.
    #[inline(always)]
    pub(crate) fn limits(&self) -> u32 {
        match self.limits & !COOLING {
            i if i == NIL & !COOLING => NIL,
            i => i,
        }
    }

    pub(crate) fn set_limits(&mut self, limits: u32) {
        debug_assert!(limits == NIL || limits < COOLING);
        self.limits = (limits & !COOLING) | (self.limits & COOLING);
    }

    /// Whether some rate state of the tenant differs from a fresh one's (until the cooling
    /// sweep finds it recovered).
    #[inline(always)]
    pub(crate) fn cooling(&self) -> bool {
        self.limits & COOLING != 0
    }

    pub(crate) fn set_cooling(&mut self, on: bool) {
        self.limits = if on {
            self.limits | COOLING
        } else {
            self.limits & !COOLING
        };
    }
}

impl Default for TenantAdmission {
    fn default() -> Self {
        TenantAdmission {
            tat: Tat::ZERO,
            limits: NIL & !COOLING,
        }
    }
}

impl Attachment for TenantAdmission {
    #[inline(always)]
    fn keeps_slot(&self) -> bool {
        self.limits != NIL & !COOLING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cooling_are_independent() {
        let mut a = TenantAdmission::default();
        assert_eq!(
            (a.limits(), a.cooling(), a.keeps_slot()),
            (NIL, false, false)
        );
        a.set_cooling(true);
        assert_eq!((a.limits(), a.cooling(), a.keeps_slot()), (NIL, true, true));
        a.set_limits(7);
        assert_eq!((a.limits(), a.cooling()), (7, true));
        a.set_cooling(false);
        assert_eq!((a.limits(), a.cooling(), a.keeps_slot()), (7, false, true));
        a.set_limits(NIL);
        assert_eq!(
            (a.limits(), a.cooling(), a.keeps_slot()),
            (NIL, false, false)
        );
    }

    #[test]
    fn the_attachment_costs_a_slot_no_more_than_its_fields() {
        use crate::queue::Tenant;
        use std::mem::size_of;
        assert_eq!(size_of::<TenantAdmission>(), 20);
        assert!(size_of::<Tenant<u64, TenantAdmission>>() <= size_of::<Tenant<u64, ()>>() + 24);
    }
}
