//! Generators of the model-based `FairQueue` tests: the tenant and cost ranges shared by the
//! reference-model and fairness property tests.

use proptest::prelude::*;

pub(crate) const TENANTS: u8 = 6;
pub(crate) const MAX_COST: u32 = 8;

pub(crate) fn tenant() -> impl Strategy<Value = u8> {
    0..TENANTS
}
