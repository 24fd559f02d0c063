//! Class shorthands and generators for the classes tests: `ClassId`s by index, validated
//! `Classes`, random class specs (`Gen`) for the property tests, schedulers on a manual clock,
//! pushes into a class, per-(tenant, class) rate-limit setups and a shared handle with classes.

use fairshare::{
    ClassId, ClassSpec, Classes, FairQueue, ManualClock, PushOptions, Scheduler, SchedulerConfig,
    SharedScheduler,
    config::{Quota, TenantLimits},
};
use proptest::prelude::*;

use super::*;

pub(crate) fn cls(i: usize) -> ClassId {
    ClassId::new(i as u16)
}

pub(crate) fn classes(specs: impl IntoIterator<Item = ClassSpec>) -> Classes {
    Classes::new(specs).expect("valid test classes")
}

/// A class as the property tests generate it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gen {
    pub(crate) weight: u32,
    pub(crate) reserved: u8,
    pub(crate) ceiling: u8,
    pub(crate) priority: u8,
    pub(crate) max_in_flight: Option<u32>,
}

impl Gen {
    pub(crate) fn spec(&self, i: usize) -> ClassSpec {
        ClassSpec::new(format!("c{i}"))
            .with_weight(nz(self.weight))
            .with_reserved_percent(self.reserved)
            .with_ceiling_percent(self.ceiling)
            .with_priority(self.priority)
            .with_max_in_flight(self.max_in_flight)
    }
    /// `R_c` under a global limit of `n`.
    pub(crate) fn reserved_slots(&self, n: u64) -> u64 {
        n * u64::from(self.reserved) / 100
    }
    /// The most the class may hold in flight for `dispatch`, under the global limit `n`.
    pub(crate) fn cap(&self, n: Option<u64>) -> u64 {
        let own = self.max_in_flight.map_or(u64::MAX, u64::from);
        match n {
            Some(n) => (n * u64::from(self.ceiling) / 100).max(1).min(own),
            None => own,
        }
    }
}

pub(crate) fn to_classes(gens: &[Gen]) -> Classes {
    classes(gens.iter().enumerate().map(|(i, g)| g.spec(i)))
}

/// Random classes: reservations summing to at most 100, ceilings at least the reservation.
pub(crate) fn gens(
    count: std::ops::RangeInclusive<usize>,
    with_max: bool,
) -> impl Strategy<Value = Vec<Gen>> {
    let one = (
        1u32..=3,
        prop_oneof![Just(0u8), 0u8..=70],
        prop_oneof![Just(None), (1u8..=100).prop_map(Some)],
        0u8..=2,
        prop_oneof![3 => Just(None), 1 => (1u32..=4).prop_map(Some)],
    );
    prop::collection::vec(one, count).prop_map(move |raw| {
        let mut sum = 0u8;
        raw.into_iter()
            .map(|(weight, r, c, priority, m)| {
                let reserved = r.min(100 - sum);
                sum += reserved;
                Gen {
                    weight,
                    reserved,
                    ceiling: c.map_or(100, |c| c.max(reserved).max(1)),
                    priority,
                    max_in_flight: if with_max { m } else { None },
                }
            })
            .collect()
    })
}

pub(crate) fn manual(cfg: SchedulerConfig) -> (Scheduler<u8, u32, ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (Scheduler::with_clock(cfg, clock.clone()), clock)
}

pub(crate) fn push_in<K: std::hash::Hash + Eq + Clone, T>(
    q: &mut FairQueue<K, T>,
    k: K,
    c: usize,
    item: T,
) {
    if q.try_push_with(k, item, opts_in(cls(c), 1)).is_err() {
        panic!("push refused");
    }
}

// ===== per-(tenant, class) rate limits =====

pub(crate) fn per_second(n: u32) -> Quota {
    Quota::per_second(nz(n))
}

pub(crate) fn rate_scheduler(own: Option<Quota>) -> (Scheduler<u8, u32, ManualClock>, ManualClock) {
    let mut tl = TenantLimits::new();
    if let Some(q) = own {
        tl = tl.with_quota(q);
    }
    let (mut s, clock) = manual(SchedulerConfig::new().with_tenant_limits(tl));
    s.set_classes(classes([
        ClassSpec::new("bulk"),
        ClassSpec::new("api").with_tenant_quota(Some(per_second(2))), // 1 per 500 ms, burst 2
    ]))
    .unwrap();
    (s, clock)
}

pub(crate) const API: ClassId = ClassId::new(1);

pub(crate) fn api() -> PushOptions {
    PushOptions::new().with_class(API)
}

// ===== shared handle: leases of class items =====

pub(crate) fn shared(n: u32) -> SharedScheduler<u8, u32, ManualClock> {
    let s = Scheduler::with_clock(
        SchedulerConfig::new().with_max_in_flight(Some(n)),
        ManualClock::new(),
    );
    let h = SharedScheduler::from_scheduler(s);
    h.with_scheduler(|s| {
        s.set_classes(classes([
            ClassSpec::new("signin").with_reserved_percent(50),
            ClassSpec::new("bulk").with_ceiling_percent(50),
        ]))
    })
    .unwrap();
    h
}

pub(crate) fn class_if(h: &SharedScheduler<u8, u32, ManualClock>, c: usize) -> u32 {
    h.with_scheduler(|s| s.queue().class_in_flight(cls(c)))
}

/// `n` default classes named `c0`, `c1`, ...
pub(crate) fn numbered_classes(n: usize) -> fairshare::Classes {
    fairshare::Classes::new((0..n).map(|i| fairshare::ClassSpec::new(format!("c{i}")))).unwrap()
}

/// Push options for an item of `cost` in class `class`.
pub(crate) fn in_class(class: u16, cost: u32) -> PushOptions {
    PushOptions::new()
        .with_class(ClassId::new(class))
        .with_cost(cost)
}
