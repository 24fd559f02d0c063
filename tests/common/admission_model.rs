//! Generators of the model-based admission tests: tenant limits, capacity and shedding policy
//! from generated numbers, and the random operations (`Op`) run on a `Scheduler`.

use fairshare::{
    ManualClock, Scheduler,
    config::{Capacity, Quota, ShedPolicy, TenantLimits},
};
use proptest::prelude::*;

use super::*;

pub(crate) type Sched = Scheduler<u8, u64, ManualClock>;

pub(crate) const TENANTS: u8 = 5;

pub(crate) fn tenant_limits(
    quota: Option<(u32, u32)>,
    items: Option<u32>,
    cost: Option<u64>,
) -> TenantLimits {
    let mut l = TenantLimits::new();
    if let Some((rate, burst)) = quota {
        l = l.with_quota(Quota::per_second(nz(rate)).allow_burst(nz(burst)));
    }
    if let Some(m) = items {
        l = l.with_max_items(m);
    }
    if let Some(m) = cost {
        l = l.with_max_cost(m);
    }
    l
}

pub(crate) fn capacity(items: Option<u64>, cost: Option<u64>) -> Capacity {
    let mut c = Capacity::new();
    if let Some(m) = items {
        c = c.with_max_items(m);
    }
    if let Some(m) = cost {
        c = c.with_max_cost(m);
    }
    c
}

pub(crate) fn policy(evict: bool) -> ShedPolicy {
    if evict {
        ShedPolicy::EvictOverShare
    } else {
        ShedPolicy::RejectNew
    }
}

// ===== random operations on a scheduler =====

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Push {
        tenant: u8,
        cost: u32,
        deadline_ms: Option<u64>,
    },
    Reserve {
        tenant: u8,
        cost: u32,
        deadline_ms: Option<u64>,
        commit: bool,
    },
    Pop,
    Dispatch,
    Complete {
        which: usize,
        actual: u32,
    },
    Advance {
        ms: u64,
    },
    ClockBack {
        ms: u64,
    },
    Purge {
        tenant: u8,
    },
    Retain {
        tenant: u8,
        modulus: u64,
    },
    Block {
        tenant: u8,
    },
    Unblock {
        tenant: u8,
    },
    TakeReturned,
    Refund {
        tenant: u8,
        cost: u32,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let tenant = 0..TENANTS;
    let cost = prop_oneof![12 => 1..=6u32, 1 => Just(0u32)];
    let deadline = prop::option::weighted(0.4, 0..60u64);
    prop_oneof![
        12 => (tenant.clone(), cost.clone(), deadline.clone())
            .prop_map(|(tenant, cost, deadline_ms)| Op::Push { tenant, cost, deadline_ms }),
        3 => (tenant.clone(), cost, deadline, any::<bool>()).prop_map(
            |(tenant, cost, deadline_ms, commit)| Op::Reserve { tenant, cost, deadline_ms, commit }
        ),
        4 => Just(Op::Pop),
        3 => Just(Op::Dispatch),
        2 => (any::<usize>(), 0..=8u32).prop_map(|(which, actual)| Op::Complete { which, actual }),
        4 => (0..40u64).prop_map(|ms| Op::Advance { ms }),
        1 => (0..30u64).prop_map(|ms| Op::ClockBack { ms }),
        1 => tenant.clone().prop_map(|tenant| Op::Purge { tenant }),
        1 => (tenant.clone(), 2..=4u64).prop_map(|(tenant, modulus)| Op::Retain { tenant, modulus }),
        1 => tenant.clone().prop_map(|tenant| Op::Block { tenant }),
        1 => tenant.clone().prop_map(|tenant| Op::Unblock { tenant }),
        2 => Just(Op::TakeReturned),
        1 => (tenant, 1..=4u32).prop_map(|(tenant, cost)| Op::Refund { tenant, cost }),
    ]
}
