//! The class-share oracle and the simulation it is checked against: a reference computes the
//! weighted max-min fair share of `N` in-flight slots among classes with reservations,
//! ceilings, priorities and finite demand (and among tenants inside each class), and a
//! discrete simulation runs a saturated `FairQueue` with a global in-flight limit `N` whose
//! items all take the same service time.

use std::collections::VecDeque;

use super::{in_flight_limit, nz, opts_in};
use fairshare::{ClassId, ClassSpec, Classes, FairQueue, config::QueueConfig};

// ===== the reference =====

/// One class as the oracle sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClassCfg {
    pub(crate) weight: u32,
    pub(crate) reserved: u8,
    pub(crate) ceiling: u8,
    pub(crate) priority: u8,
}

impl ClassCfg {
    pub(crate) fn new(weight: u32) -> Self {
        ClassCfg {
            weight,
            reserved: 0,
            ceiling: 100,
            priority: 0,
        }
    }
    pub(crate) fn reserved(mut self, r: u8) -> Self {
        self.reserved = r;
        self
    }
    pub(crate) fn ceiling(mut self, c: u8) -> Self {
        self.ceiling = c;
        self
    }
    pub(crate) fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    pub(crate) fn spec(&self, name: &str) -> ClassSpec {
        ClassSpec::new(name)
            .with_weight(nz(self.weight))
            .with_reserved_percent(self.reserved)
            .with_ceiling_percent(self.ceiling)
            .with_priority(self.priority)
    }
    /// `R_c`.
    pub(crate) fn reserved_slots(&self, n: u64) -> f64 {
        (n * u64::from(self.reserved) / 100) as f64
    }
    /// `C_c`.
    pub(crate) fn ceiling_slots(&self, n: u64) -> f64 {
        (n * u64::from(self.ceiling) / 100).max(1) as f64
    }
}

/// Water-filling with floors and caps: `alloc_i = clamp(w_i·L, lo_i, hi_i)` with the level `L`
/// chosen so the allocations sum to `total`, or every `hi_i` if even that is not enough.
/// Requires `lo_i <= hi_i` and `sum(lo) <= total`.
pub(crate) fn water_fill(total: f64, w: &[f64], lo: &[f64], hi: &[f64]) -> Vec<f64> {
    let at = |level: f64| -> Vec<f64> {
        (0..w.len())
            .map(|i| (w[i] * level).clamp(lo[i], hi[i]))
            .collect()
    };
    if hi.iter().sum::<f64>() <= total {
        return hi.to_vec();
    }
    // At level total/min(w) every uncapped class alone would exceed the total.
    let (mut a, mut b) = (0.0f64, 1.0f64);
    for i in 0..w.len() {
        b = b.max(total / w[i]);
        if hi[i].is_finite() {
            b = b.max(hi[i] / w[i]);
        }
    }
    for _ in 0..200 {
        let mid = (a + b) / 2.0;
        if at(mid).iter().sum::<f64>() < total {
            a = mid;
        } else {
            b = mid;
        }
    }
    at(b)
}

/// Slots each class gets out of `n`, for the given demands (in slots; `f64::INFINITY` for a
/// saturating class, 0 for an idle one).
pub(crate) fn class_oracle(n: u64, classes: &[ClassCfg], demand: &[f64]) -> Vec<f64> {
    let k = classes.len();
    let hi: Vec<f64> = (0..k)
        .map(|c| classes[c].ceiling_slots(n).min(demand[c]))
        .collect();
    // 1. reservations of the backlogged classes
    let lo: Vec<f64> = (0..k)
        .map(|c| classes[c].reserved_slots(n).min(hi[c]))
        .collect();
    let mut alloc = lo.clone();
    let mut left = n as f64 - lo.iter().sum::<f64>();
    assert!(left >= -1e-9, "reservations exceed the slots");
    // 2. priority by priority, water-fill what is left by weight
    let mut prios: Vec<u8> = classes.iter().map(|c| c.priority).collect();
    prios.sort_unstable_by(|a, b| b.cmp(a));
    prios.dedup();
    for p in prios {
        let group: Vec<usize> = (0..k).filter(|&c| classes[c].priority == p).collect();
        let w: Vec<f64> = group
            .iter()
            .map(|&c| f64::from(classes[c].weight))
            .collect();
        let glo: Vec<f64> = group.iter().map(|&c| lo[c]).collect();
        let ghi: Vec<f64> = group.iter().map(|&c| hi[c]).collect();
        let total = glo.iter().sum::<f64>() + left;
        let got = water_fill(total, &w, &glo, &ghi);
        for (j, &c) in group.iter().enumerate() {
            left -= got[j] - lo[c];
            alloc[c] = got[j];
        }
    }
    alloc
}

/// Weighted max-min fair split of `capacity` among tenants with `weights` and `demands`.
pub(crate) fn max_min_fair(capacity: f64, weights: &[f64], demands: &[f64]) -> Vec<f64> {
    let lo = vec![0.0; weights.len()];
    water_fill(capacity, weights, &lo, demands)
}

/// A full workload: classes, tenants (weights) and which tenants are backlogged in which class.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) n: u64,
    pub(crate) classes: Vec<ClassCfg>,
    pub(crate) tenant_weights: Vec<u32>,
    /// `members[c]`: the tenants with saturating demand in class `c` (distinct, ascending).
    pub(crate) members: Vec<Vec<usize>>,
}

/// Oracle shares (fractions of everything dispatched) of each class and each tenant, for
/// saturating demand of every member.
pub(crate) fn oracle_shares(s: &Setup) -> (Vec<f64>, Vec<f64>) {
    let k = s.classes.len();
    let demand: Vec<f64> = (0..k)
        .map(|c| {
            if s.members[c].is_empty() {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let alloc = class_oracle(s.n, &s.classes, &demand);
    let total: f64 = alloc.iter().sum();
    let class_share: Vec<f64> = alloc.iter().map(|a| a / total).collect();
    // A tenant backlogged in k classes competes in each with weight w / k.
    let nt = s.tenant_weights.len();
    let mut spread = vec![0usize; nt];
    for m in &s.members {
        for &t in m {
            spread[t] += 1;
        }
    }
    let mut tenant_share = vec![0.0; nt];
    for (m, &share) in s.members.iter().zip(&class_share) {
        let w: Vec<f64> = m
            .iter()
            .map(|&t| f64::from(s.tenant_weights[t]) / spread[t] as f64)
            .collect();
        let d = vec![f64::INFINITY; m.len()];
        let split = max_min_fair(share, &w, &d);
        for (j, &t) in m.iter().enumerate() {
            tenant_share[t] += split[j];
        }
    }
    (class_share, tenant_share)
}

#[track_caller]
pub(crate) fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

// ===== the simulation =====

pub(crate) const QUANTUM: u32 = 12; // divisible by every tenant's class count (1..=4): w/k is exact

/// Per class and per tenant, how many of the `measure` dispatches after `warmup` went to it.
///
/// Every member keeps at least two items queued in each of its classes (one is pushed back
/// for every one dispatched), so everyone stays backlogged; completions come back one per
/// step in dispatch order, so every item is in flight for the same number of steps (the pool
/// size) and a class's share of the slots is its share of the dispatches.
pub(crate) fn simulate(s: &Setup, warmup: u64, measure: u64) -> (Vec<u64>, Vec<u64>) {
    let k = s.classes.len();
    let mut q: FairQueue<usize, (usize, usize)> =
        FairQueue::with_config(QueueConfig::new().with_quantum(nz(QUANTUM)));
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    q.set_classes(
        Classes::new(s.classes.iter().enumerate().map(|(i, c)| c.spec(names[i]))).unwrap(),
    )
    .unwrap();
    q.set_in_flight_limit(Some(in_flight_limit(s.n)));
    for (t, &w) in s.tenant_weights.iter().enumerate() {
        q.set_weight(t, nz(w));
    }
    for (c, m) in s.members.iter().enumerate() {
        for &t in m {
            for _ in 0..3 {
                q.try_push_with(t, (t, c), opts_in(ClassId::new(c as u16), 1))
                    .unwrap();
            }
        }
    }
    let mut per_class = vec![0u64; k];
    let mut per_tenant = vec![0u64; s.tenant_weights.len()];
    let mut in_flight = VecDeque::new();
    let mut dispatched = 0u64;
    // The window covers whole cycles: with completions in dispatch order the in-flight mix
    // repeats every M dispatches (M items in flight, N or less when ceilings bind), and a
    // partial cycle would be skewed towards whichever class its stretch of slots held.
    let mut end = u64::MAX;
    while dispatched < end {
        if end == u64::MAX && dispatched >= warmup {
            // One item has just completed: the refill brings the mix back to M in flight.
            let m = in_flight.len() as u64 + 1;
            end = dispatched + measure.div_ceil(m) * m;
        }
        while let Some(d) = q.dispatch() {
            let (t, c) = d.item;
            assert_eq!(d.ticket.class(), ClassId::new(c as u16));
            q.try_push_with(t, (t, c), opts_in(ClassId::new(c as u16), 1))
                .unwrap();
            if end != u64::MAX && dispatched < end {
                per_class[c] += 1;
                per_tenant[t] += 1;
            }
            dispatched += 1;
            in_flight.push_back(d.ticket);
        }
        assert!(
            in_flight.len() as u64 <= s.n,
            "{} in flight over the limit {}",
            in_flight.len(),
            s.n
        );
        let ticket = in_flight
            .pop_front()
            .expect("saturating demand, yet nothing was dispatched");
        assert!(q.complete(ticket, 1));
    }
    (per_class, per_tenant)
}

/// Runs `s` and checks every class's and tenant's share against the oracle, within `tol`.
pub(crate) fn check(s: &Setup, warmup: u64, measure: u64, tol: f64) -> Result<(), String> {
    let (oc, ot) = oracle_shares(s);
    let (pc, pt) = simulate(s, warmup, measure);
    let total = pc.iter().sum::<u64>() as f64;
    let mut errors = Vec::new();
    for c in 0..s.classes.len() {
        let got = pc[c] as f64 / total;
        if (got - oc[c]).abs() > tol {
            errors.push(format!(
                "class {c} ({:?}): achieved {got:.4}, oracle {:.4}",
                s.classes[c], oc[c]
            ));
        }
    }
    for t in 0..s.tenant_weights.len() {
        let got = pt[t] as f64 / total;
        if (got - ot[t]).abs() > tol {
            errors.push(format!(
                "tenant {t} (w={}): achieved {got:.4}, oracle {:.4}",
                s.tenant_weights[t], ot[t]
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "N={} classes={:?} members={:?} weights={:?}\n  class oracle {:?}\n  {}",
            s.n,
            s.classes,
            s.members,
            s.tenant_weights,
            oc,
            errors.join("\n  ")
        ))
    }
}

/// Warm-up and measured dispatches for a pool of `n`.
pub(crate) fn window(n: u64) -> (u64, u64) {
    (20 * n + 2_000, 30_000)
}

// ===== scenarios with hand-computed shares =====

/// One tenant per class, so class and tenant shares coincide.
pub(crate) fn solo(n: u64, classes: Vec<ClassCfg>) -> Setup {
    let k = classes.len();
    Setup {
        n,
        classes,
        tenant_weights: vec![1; k],
        members: (0..k).map(|c| vec![c]).collect(),
    }
}

#[track_caller]
pub(crate) fn expect_shares(s: &Setup, expected: &[f64]) {
    let (oc, _) = oracle_shares(s);
    for (o, e) in oc.iter().zip(expected) {
        close(*o, *e);
    }
    let (w, m) = window(s.n);
    if let Err(e) = check(s, w, m, 0.01) {
        panic!("{e}");
    }
}
