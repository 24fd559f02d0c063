//! # Implementation details
//!
//! A stand-in for the core's `fairshare::fleet` module with the same names and signatures,
//! used only until that module is merged; it is replaced by a `use fairshare::fleet::*` then.

#![allow(dead_code)] // reason: mirrors the whole core API, of which the crate uses a part

use std::num::{NonZeroU32, NonZeroU64};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TenantPass {
    pub(crate) pass: u64,
    pub(crate) carry: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassRange {
    pub(crate) first: u64,
    pub(crate) stride: u64,
    pub(crate) len: u32,
}

impl PassRange {
    pub(crate) fn get(&self, i: u32) -> Option<u64> {
        (i < self.len).then(|| {
            self.first
                .saturating_add(self.stride.saturating_mul(u64::from(i)))
        })
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PassAssigner {
    scale: NonZeroU64,
}

impl PassAssigner {
    pub(crate) const fn new() -> Self {
        Self::with_scale(NonZeroU64::new(1 << 16).unwrap())
    }
    pub(crate) const fn with_scale(scale: NonZeroU64) -> Self {
        PassAssigner { scale }
    }
    pub(crate) fn stride(&self, cost: u32, weight: NonZeroU32) -> u64 {
        let s = u128::from(cost) * u128::from(self.scale.get());
        u64::try_from(s.div_ceil(u128::from(weight.get()))).unwrap_or(u64::MAX)
    }
    fn start(t: &mut TenantPass, floor: u64) -> u64 {
        let start = t.pass.max(floor);
        if t.carry > 0 {
            let debt = t.carry as u64;
            t.carry = 0;
            start.saturating_add(debt)
        } else {
            start
        }
    }
    pub(crate) fn assign(&self, t: &mut TenantPass, weight: NonZeroU32, floor: u64, cost: u32) -> u64 {
        let start = Self::start(t, floor);
        t.pass = start.saturating_add(self.stride(cost, weight));
        t.pass
    }
    pub(crate) fn assign_batch(
        &self,
        t: &mut TenantPass,
        weight: NonZeroU32,
        floor: u64,
        cost: u32,
        n: u32,
    ) -> PassRange {
        let start = Self::start(t, floor);
        let stride = self.stride(cost, weight);
        let first = start.saturating_add(stride);
        let range = PassRange { first, stride, len: n };
        if n > 0 {
            t.pass = range.get(n - 1).unwrap_or(t.pass);
        }
        range
    }
    pub(crate) fn correct(&self, t: &mut TenantPass, weight: NonZeroU32, declared: u32, actual: u32) {
        let d = i64::try_from(self.stride(declared, weight)).unwrap_or(i64::MAX);
        let a = i64::try_from(self.stride(actual, weight)).unwrap_or(i64::MAX);
        t.carry = t.carry.saturating_add(a.saturating_sub(d));
    }
}
