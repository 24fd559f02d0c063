#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Property tests of `fleet::PassAssigner`: a simulated durable queue served in pass order,
//! checked against the bounds stated in its `# Fairness` rustdoc, against the in-memory
//! `FairQueue`, and against `n` single assignments; plus unit tests of the extremes.

use std::collections::BTreeSet;
use std::num::{NonZeroU32, NonZeroU64};

use fairshare::FairQueue;
use fairshare::fleet::{PassAssigner, PassRange, TenantPass};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

#[track_caller]
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a non-zero test value")
}

#[track_caller]
fn nz64(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).expect("a non-zero test value")
}

// ===== the in-memory FairQueue (the one place this file uses its API) =====

/// Serves `jobs` (per tenant, in FIFO order, all queued up front tenant by tenant) through the
/// in-memory `FairQueue` with `weights`, for `pops` pops; returns `(tenant, cost)` per pop.
fn fair_queue_serve(weights: &[NonZeroU32], jobs: &[Vec<u32>], pops: usize) -> Vec<(usize, u32)> {
    let mut q: FairQueue<usize, (usize, u32)> = FairQueue::new();
    for (t, &w) in weights.iter().enumerate() {
        q.set_weight(t, w);
    }
    for (t, costs) in jobs.iter().enumerate() {
        for &c in costs {
            q.try_push_with_cost(t, (t, c), c)
                .expect("the queue accepts the job");
        }
    }
    (0..pops).map_while(|_| q.pop()).collect()
}

// ===== a simulated durable queue =====

/// One job row: ordered by pass, then write order (`ORDER BY pass, id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    pass: u64,
    seq: u64,
    tenant: usize,
    declared: u32,
    actual: u32,
}

/// A durable queue as a host would run it: tenant rows, job rows, workers serving in pass
/// order, the floor being the pass of the last job served.
#[derive(Debug, Clone)]
struct Sim {
    assigner: PassAssigner,
    tenants: Vec<TenantPass>,
    weights: Vec<NonZeroU32>,
    rows: BTreeSet<Row>,
    queued: Vec<usize>,
    floor: u64,
    seq: u64,
}

impl Sim {
    fn new(assigner: PassAssigner, weights: Vec<NonZeroU32>) -> Self {
        let n = weights.len();
        Sim {
            assigner,
            tenants: vec![TenantPass::default(); n],
            weights,
            rows: BTreeSet::new(),
            queued: vec![0; n],
            floor: 0,
            seq: 0,
        }
    }

    fn insert(&mut self, tenant: usize, pass: u64, declared: u32, actual: u32) {
        self.rows.insert(Row {
            pass,
            seq: self.seq,
            tenant,
            declared,
            actual,
        });
        self.seq += 1;
        self.queued[tenant] += 1;
    }

    /// Writes one job; returns its pass.
    fn write(&mut self, tenant: usize, declared: u32, actual: u32) -> u64 {
        let pass = self.assigner.assign(
            &mut self.tenants[tenant],
            self.weights[tenant],
            self.floor,
            declared,
        );
        self.insert(tenant, pass, declared, actual);
        pass
    }

    /// Writes `n` jobs of one cost in one batch.
    fn write_batch(&mut self, tenant: usize, cost: u32, n: u32) -> PassRange {
        let range = self.assigner.assign_batch(
            &mut self.tenants[tenant],
            self.weights[tenant],
            self.floor,
            cost,
            n,
        );
        for pass in range.iter() {
            self.insert(tenant, pass, cost, cost);
        }
        range
    }

    /// Serves the job with the smallest pass; the floor follows it.
    fn serve(&mut self) -> Option<Row> {
        let row = self.rows.pop_first()?;
        self.queued[row.tenant] -= 1;
        self.floor = row.pass;
        Some(row)
    }

    /// Reports the served job's actual cost.
    fn correct(&mut self, row: &Row) {
        self.assigner.correct(
            &mut self.tenants[row.tenant],
            self.weights[row.tenant],
            row.declared,
            row.actual,
        );
    }
}

// ===== (a) the fairness bound over every window where two tenants stay backlogged =====

#[derive(Debug, Clone)]
enum Op {
    /// `n` jobs of one cost: one `assign_batch`, or `n` calls to `assign` when `single`.
    Write {
        tenant: usize,
        cost: u32,
        n: u32,
        single: bool,
    },
    Serve(u32),
}

const TENANTS: usize = 5;
const MAX_COST: u32 = 16;

fn scale() -> impl Strategy<Value = NonZeroU64> {
    prop_oneof![Just(1u64), 1..=64u64, Just(1000), Just(1 << 16)].prop_map(nz64)
}

fn ops(len: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..TENANTS, 1..=MAX_COST, 1..=12u32, any::<bool>())
            .prop_map(|(tenant, cost, n, single)| Op::Write { tenant, cost, n, single }),
        2 => (1..=8u32).prop_map(Op::Serve),
    ];
    prop::collection::vec(op, 1..len)
}

/// Per-tenant running totals after each operation.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    cost: Vec<u64>,
    jobs: Vec<u64>,
    strides: Vec<u64>,
    queued: Vec<usize>,
}

/// Runs `ops` (no corrections), returning the snapshots between operations and the largest
/// cost written. Also checks the latency claim for every write by a tenant idle for at least
/// one stride.
fn run_and_record(
    assigner: PassAssigner,
    weights: &[NonZeroU32],
    ops: &[Op],
) -> (Vec<Snapshot>, u32) {
    let n = weights.len();
    let mut sim = Sim::new(assigner, weights.to_vec());
    let mut snap = Snapshot {
        cost: vec![0; n],
        jobs: vec![0; n],
        strides: vec![0; n],
        queued: vec![0; n],
    };
    let mut snaps = vec![snap.clone()];
    let mut max_cost = 0;
    // Jobs whose tenant was idle for a stride when written: (seq, served jobs per tenant then).
    let mut watched: Vec<(u64, Vec<u64>)> = Vec::new();
    for op in ops {
        match *op {
            Op::Write {
                tenant,
                cost,
                n: count,
                single,
            } => {
                max_cost = max_cost.max(cost);
                let s = assigner.stride(cost, weights[tenant]);
                let before = sim.tenants[tenant];
                let floor = sim.floor;
                let seq = sim.seq;
                let first = if single {
                    let first = sim.write(tenant, cost, cost);
                    for _ in 1..count {
                        sim.write(tenant, cost, cost);
                    }
                    first
                } else {
                    sim.write_batch(tenant, cost, count).first
                };
                if before.pass.saturating_add(s) <= floor {
                    assert_eq!(first, floor, "an idle tenant's job gets pass = floor");
                    watched.push((seq, snap.jobs.clone()));
                }
            }
            Op::Serve(k) => {
                for _ in 0..k {
                    let Some(row) = sim.serve() else { break };
                    let t = row.tenant;
                    snap.cost[t] += u64::from(row.actual);
                    snap.jobs[t] += 1;
                    snap.strides[t] += assigner.stride(row.actual, weights[t]);
                    if let Some(i) = watched.iter().position(|&(seq, _)| seq == row.seq) {
                        let (_, then) = watched.swap_remove(i);
                        for (j, (&now, &was)) in snap.jobs.iter().zip(&then).enumerate() {
                            if j != t {
                                assert!(
                                    now - was <= 1,
                                    "a newly active tenant waited for {} jobs of tenant {j}",
                                    now - was
                                );
                            }
                        }
                    }
                }
            }
        }
        snap.queued.clone_from(&sim.queued);
        snaps.push(snap.clone());
    }
    (snaps, max_cost)
}

/// Checks both forms of the backlogged bound for every pair of tenants over every window of
/// snapshots in which both had a job queued throughout.
fn check_backlogged_bound(
    assigner: PassAssigner,
    weights: &[NonZeroU32],
    snaps: &[Snapshot],
    max_cost: u32,
) -> Result<(), TestCaseError> {
    let scale = i128::from(assigner.scale().get());
    let n = weights.len();
    for i in 0..n {
        for j in i + 1..n {
            let (wi, wj) = (i128::from(weights[i].get()), i128::from(weights[j].get()));
            let si = i128::from(assigner.stride(max_cost, weights[i]));
            let sj = i128::from(assigner.stride(max_cost, weights[j]));
            let backlogged = |s: &Snapshot| s.queued[i] > 0 && s.queued[j] > 0;
            let mut start = 0;
            while start < snaps.len() {
                if !backlogged(&snaps[start]) {
                    start += 1;
                    continue;
                }
                let mut end = start;
                while end + 1 < snaps.len() && backlogged(&snaps[end + 1]) {
                    end += 1;
                }
                for a in start..=end {
                    for b in a + 1..=end {
                        let (x, y) = (&snaps[a], &snaps[b]);
                        let ds_i = i128::from(y.strides[i] - x.strides[i]);
                        let ds_j = i128::from(y.strides[j] - x.strides[j]);
                        prop_assert!(
                            (ds_i - ds_j).abs() <= si + sj,
                            "strides charged differ by {} > S_i + S_j = {} (tenants {i}, {j})",
                            (ds_i - ds_j).abs(),
                            si + sj
                        );
                        let ci = i128::from(y.cost[i] - x.cost[i]);
                        let cj = i128::from(y.cost[j] - x.cost[j]);
                        let ni = i128::from(y.jobs[i] - x.jobs[i]);
                        let nj = i128::from(y.jobs[j] - x.jobs[j]);
                        // |C_i/w_i − C_j/w_j| <= (S_i + S_j + max(n_i, n_j)) / scale, times
                        // scale·w_i·w_j.
                        let lhs = (scale * (ci * wj - cj * wi)).abs();
                        let rhs = (si + sj + ni.max(nj)) * wi * wj;
                        prop_assert!(
                            lhs <= rhs,
                            "served cost per weight differs by {lhs} > {rhs} (scaled; tenants \
                             {i}, {j}, weights {wi}, {wj}, costs {ci}, {cj})"
                        );
                        // The looser, cost-only form stated in the rustdoc.
                        let m = i128::from(max_cost);
                        let loose = m * scale * (wi + wj) + (2 + ni.max(nj)) * wi * wj;
                        prop_assert!(
                            lhs <= loose,
                            "the stated constant is broken: {lhs} > {loose}"
                        );
                    }
                }
                start = end + 1;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(96))]

    /// (a) Serving in pass order keeps backlogged tenants' served cost per weight within the
    /// stated bound over every window in which both stay backlogged; a tenant idle for one
    /// stride is served after at most one job of each other tenant.
    #[test]
    fn fairness_bound(
        scale in scale(),
        weights in prop::collection::vec(1..=8u32, TENANTS),
        ops in ops(60),
    ) {
        let assigner = PassAssigner::with_scale(scale);
        let weights: Vec<_> = weights.into_iter().map(nz).collect();
        let (snaps, max_cost) = run_and_record(assigner, &weights, &ops);
        check_backlogged_bound(assigner, &weights, &snaps, max_cost)?;
    }

    /// (b) The durable queue and the in-memory `FairQueue` give each tenant the same share: on
    /// the same backlog, every tenant's served cost per weight, measured from the mean, agrees
    /// within the sum of the two schedulers' bounds after every pop.
    #[test]
    fn matches_fair_queue(
        scale in scale(),
        weights in prop::collection::vec(1..=4u32, 2..=5),
        lens in prop::collection::vec(20..=50usize, 5),
        costs in prop::collection::vec(1..=8u32, 250),
    ) {
        let assigner = PassAssigner::with_scale(scale);
        let n = weights.len();
        let weights: Vec<_> = weights.into_iter().map(nz).collect();
        let mut it = costs.iter().copied().cycle();
        let jobs: Vec<Vec<u32>> =
            (0..n).map(|t| it.by_ref().take(lens[t]).collect()).collect();
        let max_cost = jobs.iter().flatten().copied().max().unwrap_or(1);

        let mut sim = Sim::new(assigner, weights.clone());
        for (t, costs) in jobs.iter().enumerate() {
            for &c in costs {
                sim.write(t, c, c);
            }
        }
        let total: usize = lens[..n].iter().sum();
        let fq = fair_queue_serve(&weights, &jobs, total);
        let mut pq = Vec::with_capacity(total);
        while let Some(row) = sim.serve() {
            pq.push((row.tenant, row.actual));
        }
        prop_assert_eq!(pq.len(), total);
        prop_assert_eq!(fq.len(), total);

        let w: Vec<f64> = weights.iter().map(|w| f64::from(w.get())).collect();
        let wsum: f64 = w.iter().sum();
        let scale_f = scale.get() as f64;
        let m = f64::from(max_cost);
        let (mut cp, mut cf) = (vec![0f64; n], vec![0f64; n]);
        let (mut np, mut nf) = (vec![0f64; n], vec![0f64; n]);
        let (mut left_p, mut left_f) = (lens[..n].to_vec(), lens[..n].to_vec());
        for k in 0..total {
            let (tp, c) = pq[k];
            cp[tp] += f64::from(c);
            np[tp] += 1.0;
            left_p[tp] -= 1;
            let (tf, c) = fq[k];
            cf[tf] += f64::from(c);
            nf[tf] += 1.0;
            left_f[tf] -= 1;
            // Every tenant still backlogged in both (the prefix is a backlogged window).
            if left_p.contains(&0) || left_f.contains(&0) {
                break;
            }
            let level_p: f64 = cp.iter().sum::<f64>() / wsum;
            let level_f: f64 = cf.iter().sum::<f64>() / wsum;
            for i in 0..n {
                // The pairwise bounds of each scheduler, worst over the partners of `i`.
                let stride = |t: usize| assigner.stride(max_cost, weights[t]) as f64;
                let bp = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (stride(i) + stride(j) + np[i].max(np[j])) / scale_f)
                    .fold(0f64, f64::max);
                let bf = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| 3.0 + m / w[i] + m / w[j])
                    .fold(0f64, f64::max);
                let ep = cp[i] / w[i] - level_p;
                let ef = cf[i] / w[i] - level_f;
                prop_assert!(
                    (ep - ef).abs() <= bp + bf + 1e-9,
                    "after {} pops tenant {i}'s excess share is {ep} by pass, {ef} in FairQueue \
                     (bounds {bp} + {bf})",
                    k + 1
                );
            }
        }
    }
}

// ===== (c) a batch against n single assignments =====

fn tenant_state() -> impl Strategy<Value = TenantPass> {
    let pass = prop_oneof![
        0..1_000_000u64,
        Just(u64::MAX),
        u64::MAX - 1_000_000..=u64::MAX
    ];
    let carry = prop_oneof![
        3 => Just(0i64),
        2 => -(1i64 << 30)..(1i64 << 30),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ];
    (pass, carry).prop_map(|(pass, carry)| TenantPass { pass, carry })
}

proptest! {
    #![proptest_config(proptest_config(512))]

    /// (c) `assign_batch` equals `n` calls to `assign` whenever the carry left after the first
    /// job is zero or fills every later job's cap; otherwise it spreads that carry evenly
    /// (never later than the singles for debt, never earlier for credit) and keeps the
    /// rounding remainder, less than `n` units, in the carry.
    #[test]
    fn batch_equals_singles(
        tenant in tenant_state(),
        weight in prop_oneof![1..=16u32, Just(u32::MAX)],
        floor in prop_oneof![0..2_000_000u64, Just(u64::MAX)],
        cost in prop_oneof![0..=64u32, Just(u32::MAX)],
        n in 0..=40u32,
        scale in scale(),
        cap in prop_oneof![Just(None), (1..=1u64 << 20).prop_map(Some)],
    ) {
        let mut assigner = PassAssigner::with_scale(scale);
        if let Some(cap) = cap {
            assigner = assigner.with_max_carry_per_job(nz64(cap));
        }
        let weight = nz(weight);
        let mut batch = tenant;
        let range = assigner.assign_batch(&mut batch, weight, floor, cost, n);
        prop_assert_eq!(range.len, n);
        let mut singles = tenant;
        let passes: Vec<u64> =
            (0..n).map(|_| assigner.assign(&mut singles, weight, floor, cost)).collect();
        let batch_passes: Vec<u64> = range.iter().collect();
        if n == 0 {
            prop_assert_eq!(batch, tenant);
            return Ok(());
        }
        prop_assert!(range.stride >= 1);
        prop_assert!(range.first >= floor, "below the floor");
        prop_assert_eq!(batch_passes[0], passes[0]);
        for w in batch_passes.windows(2) {
            prop_assert!(w[1] > w[0] || w[1] == u64::MAX, "passes must increase");
        }
        // The carry left for the later jobs, as the singles saw it.
        let mut after_first = tenant;
        assigner.assign(&mut after_first, weight, floor, cost);
        let left = after_first.carry;
        let s = assigner.stride(cost, weight);
        let cap = assigner.max_carry_per_job().get();
        let limit = if left >= 0 { cap } else { cap.min(s - 1) };
        let rest = u128::from(n - 1);
        let exact = left == 0 || u128::from(left.unsigned_abs()) >= rest * u128::from(limit);
        if exact {
            prop_assert_eq!(&batch_passes, &passes);
            prop_assert_eq!(batch, singles);
        } else {
            for (b, s) in batch_passes.iter().zip(&passes) {
                if left > 0 {
                    prop_assert!(b <= s, "a batch pays debt no later than singles");
                } else {
                    prop_assert!(b >= s, "a batch spends credit no sooner than singles");
                }
            }
            // Debt or credit is never lost, only deferred by less than one unit per job.
            let remainder = (i128::from(batch.carry) - i128::from(singles.carry)).abs();
            prop_assert!(remainder < i128::from(n), "remainder {remainder} >= {n}");
            if singles.pass < u64::MAX {
                prop_assert_eq!(
                    i128::from(singles.pass) - i128::from(batch.pass),
                    i128::from(batch.carry) - i128::from(singles.carry),
                );
            }
        }
    }
}

// ===== (d) under- and over-declaring tenants; the delay of one correction =====

/// How a tenant declares its jobs' costs.
#[derive(Debug, Clone, Copy)]
enum Declares {
    Under(u32),
    Over(u32),
}

impl Declares {
    fn declared(self, actual: u32) -> u32 {
        match self {
            Declares::Under(f) => (actual / f).max(1),
            Declares::Over(f) => actual * f,
        }
    }
}

/// SplitMix64, so each tenant's job costs come from a stream of its own.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn cost(&mut self, max: u32) -> u32 {
        1 + (self.next() % u64::from(max)) as u32
    }
}

/// A closed-loop workload: each tenant keeps `depth` jobs queued, writing a new one each time
/// one of its jobs is served and corrected.
#[derive(Debug, Clone)]
struct ClosedLoop {
    sim: Sim,
    declares: Vec<Declares>,
    rngs: Vec<Rng>,
    max_actual: u32,
    /// Every pass written, per tenant, in order.
    passes: Vec<Vec<u64>>,
    /// Jobs served per tenant.
    served: Vec<u64>,
    /// `(tenant, n, extra)`: the job the tenant writes after its `n`-th serve actually costs
    /// `extra` more than it declares.
    bump: Option<(usize, u64, u32)>,
    /// The index in `passes` of the bumped job, once written.
    marked: Option<usize>,
}

impl ClosedLoop {
    fn new(
        assigner: PassAssigner,
        weights: Vec<NonZeroU32>,
        declares: Vec<Declares>,
        seed: u64,
        depth: usize,
        max_actual: u32,
    ) -> Self {
        let n = weights.len();
        let mut run = ClosedLoop {
            sim: Sim::new(assigner, weights),
            declares,
            rngs: (0..n as u64).map(|t| Rng(seed ^ (t << 48))).collect(),
            max_actual,
            passes: vec![Vec::new(); n],
            served: vec![0; n],
            bump: None,
            marked: None,
        };
        for _ in 0..depth {
            for t in 0..n {
                run.write(t, 0);
            }
        }
        run
    }

    fn write(&mut self, t: usize, extra: u32) {
        let actual = self.rngs[t].cost(self.max_actual);
        let declared = self.declares[t].declared(actual);
        let pass = self.sim.write(t, declared, actual.saturating_add(extra));
        self.passes[t].push(pass);
    }

    /// Serves one job, corrects it and lets its tenant write the next.
    fn step(&mut self) -> Row {
        let row = self.sim.serve().expect("the closed loop always has work");
        self.sim.correct(&row);
        let t = row.tenant;
        self.served[t] += 1;
        let extra = match self.bump {
            Some((victim, at, extra)) if victim == t && self.served[t] == at => extra,
            _ => 0,
        };
        self.write(t, extra);
        if extra > 0 {
            self.marked = Some(self.passes[t].len() - 1);
        }
        row
    }
}

fn declares() -> impl Strategy<Value = Declares> {
    prop_oneof![
        (1..=100u32).prop_map(Declares::Under),
        (1..=100u32).prop_map(Declares::Over),
    ]
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// (d) Tenants that under- or over-declare their costs by any factor up to 100 are served
    /// actual cost per weight within 5% of the mean once the initial passes have been served.
    #[test]
    fn corrections_converge(
        weights in prop::collection::vec(1..=4u32, 3..=5),
        declares in prop::collection::vec(declares(), 5),
        seed in any::<u64>(),
    ) {
        const MAX_ACTUAL: u32 = 4;
        let assigner = PassAssigner::new();
        let n = weights.len();
        let weights: Vec<_> = weights.into_iter().map(nz).collect();
        let mut run = ClosedLoop::new(
            assigner, weights.clone(), declares[..n].to_vec(), seed, 2, MAX_ACTUAL,
        );
        // Warm-up: until the initial passes (written before any correction) are all served.
        let initial = run.sim.rows.last().map_or(0, |r| r.pass);
        while run.sim.floor <= initial {
            run.step();
        }
        // Measure over a stretch of virtual time long against the largest stride.
        let scale = assigner.scale().get();
        let from = run.sim.floor;
        let span = 40 * u64::from(100 * MAX_ACTUAL) * scale;
        let mut actual = vec![0u64; n];
        while run.sim.floor - from < span {
            let row = run.step();
            actual[row.tenant] += u64::from(row.actual);
        }
        let per_weight: Vec<f64> = (0..n)
            .map(|t| actual[t] as f64 / f64::from(weights[t].get()))
            .collect();
        let mean = per_weight.iter().sum::<f64>() / n as f64;
        for (t, x) in per_weight.iter().enumerate() {
            prop_assert!(
                (x - mean).abs() <= 0.05 * mean,
                "tenant {t} ({:?}, weight {}) served {x:.1} actual cost per weight, mean {mean:.1}",
                run.declares[t],
                weights[t]
            );
        }
    }

    /// (d) One correction of `D` pass units delays its tenant's `k`-th later job by exactly
    /// `min(D, k·A)`: at most `A` more per job (never starved), and in the end all of `D`
    /// (never forgiven).
    #[test]
    fn one_correction_delays_by_the_cap(
        weights in prop::collection::vec(1..=4u32, 2..=4),
        seed in any::<u64>(),
        cap_costs in 1..=4u64,
        extra in 1..=40u32,
        victim_serves in 1..20u64,
    ) {
        let cap = cap_costs << 16;
        let assigner = PassAssigner::new().with_max_carry_per_job(nz64(cap));
        let n = weights.len();
        let weights: Vec<_> = weights.into_iter().map(nz).collect();
        let honest = vec![Declares::Under(1); n];
        let mut base = ClosedLoop::new(assigner, weights.clone(), honest, seed, 2, 8);
        let mut bumped = base.clone();
        let victim = 0;
        bumped.bump = Some((victim, victim_serves, extra));
        let until = |run: &ClosedLoop| run.passes[victim].len() >= 90;
        while !until(&base) {
            base.step();
        }
        while !until(&bumped) {
            bumped.step();
        }
        let marked = bumped.marked.expect("the victim was served");
        let shifts: Vec<i128> = base.passes[victim]
            .iter()
            .zip(&bumped.passes[victim])
            .map(|(b, x)| i128::from(*x) - i128::from(*b))
            .collect();
        // Nothing moves before the correction is applied.
        prop_assert!(shifts[..=marked].iter().all(|&s| s == 0), "shifted early: {shifts:?}");
        let later = &shifts[marked + 1..];
        let first_moved = later.iter().position(|&s| s != 0).unwrap_or(later.len());
        let moved = &later[first_moved..];
        prop_assert!(!moved.is_empty(), "the correction was never applied: {shifts:?}");
        // With two jobs queued, the marked job is served (and corrected) right after the
        // victim writes the job behind it: the next job written is the first to pay.
        prop_assert_eq!(first_moved, 1, "paid from the wrong job: {:?}", shifts);
        // The total shift approaches D = stride(a + extra) − stride(a), A per job.
        let total = *moved.last().expect("non-empty");
        let mut prev = 0i128;
        for (k, &s) in moved.iter().enumerate() {
            let k = k as i128 + 1;
            prop_assert_eq!(s, total.min(k * i128::from(cap)), "job {} after the correction", k);
            prop_assert!(s - prev <= i128::from(cap), "one job delayed by more than the cap");
            prev = s;
        }
        let w = i128::from(weights[victim].get());
        let scale = i128::from(assigner.scale().get());
        // D is `extra` cost units at the victim's weight, up to one unit of rounding.
        prop_assert!(
            (total * w - i128::from(extra) * scale).abs() <= w,
            "never forgiven: shifted {total}, owed {} / {w}", i128::from(extra) * scale
        );
    }
}

// ===== (e) an idle tenant cannot bank credit; debt survives idling =====

proptest! {
    #![proptest_config(proptest_config(64))]

    /// (e) A tenant that earned credit (over-declared), then went idle while the queue moved
    /// on, comes back at the floor with its credit gone: its new jobs are spaced by their full
    /// stride, and from then on it is served no more than the backlogged bound allows against
    /// a tenant that never stopped.
    #[test]
    fn idle_tenant_cannot_bank_credit(
        weights in (1..=4u32, 1..=4u32),
        over in 2..=50u32,
        jobs_before in 1..=20u32,
        idle_serves in 1..=60u32,
        cost in 1..=8u32,
        back in 2..=30u32,
    ) {
        let assigner = PassAssigner::new();
        let weights = vec![nz(weights.0), nz(weights.1)];
        let (x, y) = (0, 1);
        let mut sim = Sim::new(assigner, weights.clone());
        // `y` keeps a long backlog throughout.
        sim.write_batch(y, cost, 10_000);
        // `x` over-declares a few jobs, and each is corrected when served.
        for _ in 0..jobs_before {
            sim.write(x, cost * over, cost);
        }
        while sim.queued[x] > 0 {
            let row = sim.serve().expect("work is queued");
            sim.correct(&row);
        }
        prop_assert!(sim.tenants[x].carry < 0, "x has earned credit");
        // x idles while y is served.
        for _ in 0..idle_serves {
            sim.serve();
        }
        prop_assume!(sim.tenants[x].pass < sim.floor);
        let floor = sim.floor;
        let prev = sim.tenants[x].pass;
        let range = sim.write_batch(x, cost, back);
        let s = assigner.stride(cost, weights[x]);
        prop_assert_eq!(range.first, floor.max(prev + s), "no pass below the floor");
        prop_assert_eq!(range.stride, s, "no credit spent after idling");
        prop_assert_eq!(sim.tenants[x].carry, 0, "the credit is dropped");
        // From the return on, x gets no more than its share against y.
        let (wx, wy) = (i128::from(weights[x].get()), i128::from(weights[y].get()));
        let scale = i128::from(assigner.scale().get());
        let (sx, sy) = (i128::from(s), i128::from(assigner.stride(cost, weights[y])));
        let (mut cx, mut cy, mut nx, mut ny) = (0i128, 0i128, 0i128, 0i128);
        while sim.queued[x] > 1 {
            let row = sim.serve().expect("work is queued");
            if row.tenant == x {
                cx += i128::from(row.actual);
                nx += 1;
            } else {
                cy += i128::from(row.actual);
                ny += 1;
            }
            let excess = scale * (cx * wy - cy * wx);
            prop_assert!(
                excess <= (sx + sy + nx.max(ny)) * wx * wy,
                "x banked credit: {cx} cost at weight {wx} against {cy} at weight {wy}"
            );
        }
    }

    /// (e) Debt is not forgiven by idling: an idle tenant with debt gets the floor plus the
    /// debt it can absorb.
    #[test]
    fn idle_tenant_keeps_its_debt(
        debt in 1..=i64::MAX,
        prev in 0..1_000_000u64,
        idle_for in 0..1_000_000u64,
        cost in 0..=100u32,
        weight in 1..=100u32,
    ) {
        let assigner = PassAssigner::new();
        let mut t = TenantPass { pass: prev, carry: debt };
        let floor = prev + idle_for;
        let w = nz(weight);
        let cap = assigner.max_carry_per_job().get();
        let d = (debt as u64).min(cap);
        let pass = assigner.assign(&mut t, w, floor, cost);
        prop_assert_eq!(pass, floor.max(prev + assigner.stride(cost, w)) + d);
        prop_assert_eq!(t.carry, debt - d as i64);
    }
}

// ===== unit tests: the rule and its extremes =====

#[test]
fn stride_rounds_up_and_saturates() {
    let a = PassAssigner::with_scale(nz64(10));
    assert_eq!(a.stride(1, nz(3)), 4); // ⌈10 / 3⌉
    assert_eq!(a.stride(3, nz(3)), 10);
    assert_eq!(a.stride(0, nz(3)), a.stride(1, nz(3)));
    assert_eq!(a.stride(1, NonZeroU32::MAX), 1);
    let huge = PassAssigner::with_scale(NonZeroU64::MAX);
    assert_eq!(huge.stride(u32::MAX, NonZeroU32::MIN), u64::MAX);
    assert_eq!(huge.stride(1, NonZeroU32::MIN), u64::MAX);
    assert_eq!(huge.max_carry_per_job(), NonZeroU64::MAX);
    assert_eq!(
        PassAssigner::new().stride(u32::MAX, NonZeroU32::MIN),
        u64::from(u32::MAX) << 16
    );
}

#[test]
fn zero_cost_cannot_monopolise() {
    let a = PassAssigner::new();
    let (mut flood, mut other) = (TenantPass::default(), TenantPass::default());
    let w = NonZeroU32::MIN;
    let zeros = a.assign_batch(&mut flood, w, 0, 0, 140_000);
    let one = a.assign(&mut other, w, 0, 1);
    // The single job is tied with the flood's first and ahead of its second.
    assert_eq!(one, zeros.first);
    assert!(one < zeros.get(1).unwrap());
    assert_eq!(zeros.stride, a.stride(1, w));
}

#[test]
fn extremes_do_not_panic() {
    let assigners = [
        PassAssigner::new(),
        PassAssigner::with_scale(NonZeroU64::MIN),
        PassAssigner::with_scale(NonZeroU64::MAX),
        PassAssigner::new().with_max_carry_per_job(NonZeroU64::MIN),
        PassAssigner::new().with_max_carry_per_job(NonZeroU64::MAX),
    ];
    let states = [
        TenantPass::default(),
        TenantPass {
            pass: u64::MAX,
            carry: 0,
        },
        TenantPass {
            pass: u64::MAX,
            carry: i64::MAX,
        },
        TenantPass {
            pass: u64::MAX,
            carry: i64::MIN,
        },
        TenantPass {
            pass: 0,
            carry: i64::MIN,
        },
        TenantPass {
            pass: 0,
            carry: i64::MAX,
        },
    ];
    for a in assigners {
        for state in states {
            for w in [NonZeroU32::MIN, nz(7), NonZeroU32::MAX] {
                for floor in [0, 1 << 40, u64::MAX] {
                    for cost in [0, 1, u32::MAX] {
                        for n in [0, 1, 2, u32::MAX] {
                            let mut t = state;
                            let r = a.assign_batch(&mut t, w, floor, cost, n);
                            assert_eq!(r.len, n);
                            assert!(r.stride >= 1);
                            if n > 0 {
                                assert!(r.first >= floor);
                                assert_eq!(Some(t.pass), r.last());
                                assert!(t.pass >= r.first);
                                // The carry only moves towards zero.
                                assert!(t.carry.unsigned_abs() <= state.carry.unsigned_abs());
                            } else {
                                assert_eq!(t, state);
                            }
                            let mut single = state;
                            let p = a.assign(&mut single, w, floor, cost);
                            assert!(p >= floor);
                            assert!(p > state.pass || p == u64::MAX, "passes increase");
                            for (declared, actual) in
                                [(0, u32::MAX), (u32::MAX, 0), (u32::MAX, u32::MAX)]
                            {
                                let mut c = state;
                                a.correct(&mut c, w, declared, actual);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn passes_increase_per_tenant() {
    let a = PassAssigner::new();
    let w = nz(3);
    let mut t = TenantPass {
        pass: 1000,
        carry: -(1 << 40),
    };
    let mut last = t.pass;
    for cost in [0, 1, 5, 0, 2] {
        let p = a.assign(&mut t, w, 0, cost);
        assert!(p > last, "credit never reorders a tenant's own jobs");
        last = p;
    }
}

#[test]
fn correction_saturates_and_is_exact() {
    let a = PassAssigner::new();
    let w = nz(3);
    let mut t = TenantPass {
        pass: 0,
        carry: i64::MAX - 1,
    };
    a.correct(&mut t, w, 0, u32::MAX);
    assert_eq!(t.carry, i64::MAX);
    let mut t = TenantPass {
        pass: 0,
        carry: i64::MIN + 1,
    };
    a.correct(&mut t, w, u32::MAX, 0);
    assert_eq!(t.carry, i64::MIN);
    let mut t = TenantPass::default();
    a.correct(&mut t, w, 4, 10);
    assert_eq!(t.carry as u64, a.stride(10, w) - a.stride(4, w));
    a.correct(&mut t, w, 10, 4);
    assert_eq!(t.carry, 0);
}

#[test]
fn debt_is_paid_a_cap_at_a_time() {
    let a = PassAssigner::new().with_max_carry_per_job(nz64(100));
    let w = NonZeroU32::MIN;
    let s = a.stride(1, w);
    let mut t = TenantPass {
        pass: 0,
        carry: 250,
    };
    let passes: Vec<u64> = (0..4).map(|_| a.assign(&mut t, w, 0, 1)).collect();
    assert_eq!(passes, [s + 100, 2 * s + 200, 3 * s + 250, 4 * s + 250]);
    assert_eq!(t.carry, 0);
}

#[test]
fn credit_is_spent_a_cap_at_a_time_but_never_below_one_unit() {
    let a = PassAssigner::new().with_max_carry_per_job(nz64(100));
    let w = NonZeroU32::MIN;
    let s = a.stride(1, w);
    let mut t = TenantPass {
        pass: 10,
        carry: -250,
    };
    let passes: Vec<u64> = (0..4).map(|_| a.assign(&mut t, w, 0, 1)).collect();
    assert_eq!(
        passes,
        [
            10 + s - 100,
            10 + 2 * s - 200,
            10 + 3 * s - 250,
            10 + 4 * s - 250
        ]
    );
    // A stride of 1 cannot be shortened.
    let tiny = PassAssigner::with_scale(NonZeroU64::MIN);
    let mut t = TenantPass {
        pass: 5,
        carry: -1000,
    };
    assert_eq!(tiny.assign(&mut t, NonZeroU32::MAX, 0, 1), 6);
    assert_eq!(t.carry, -1000);
}

#[test]
fn weight_change_applies_to_later_jobs() {
    let a = PassAssigner::new();
    let mut t = TenantPass::default();
    let p1 = a.assign(&mut t, nz(1), 0, 4);
    let p2 = a.assign(&mut t, nz(4), 0, 4);
    let p3 = a.assign(&mut t, nz(4), 0, 4);
    assert_eq!(p1, a.stride(4, nz(1)));
    assert_eq!(p2 - p1, a.stride(4, nz(4)));
    assert_eq!(p3 - p2, a.stride(4, nz(4)));
}

#[test]
fn floor_at_the_end_of_time() {
    let a = PassAssigner::new();
    let mut t = TenantPass::default();
    assert_eq!(a.assign(&mut t, nz(1), u64::MAX, 1), u64::MAX);
    assert_eq!(a.assign(&mut t, nz(1), u64::MAX, 1), u64::MAX);
    let r = a.assign_batch(&mut t, nz(1), u64::MAX, u32::MAX, u32::MAX);
    assert_eq!((r.first, r.last()), (u64::MAX, Some(u64::MAX)));
}

#[test]
fn pass_range_accessors() {
    let r = PassRange {
        first: 3,
        stride: 2,
        len: 4,
    };
    assert_eq!(r.iter().collect::<Vec<_>>(), [3, 5, 7, 9]);
    assert_eq!(r.get(4), None);
    assert_eq!(r.last(), Some(9));
    let r = PassRange {
        first: u64::MAX - 3,
        stride: u64::MAX,
        len: u32::MAX,
    };
    assert_eq!(r.get(u32::MAX - 1), Some(u64::MAX));
    assert_eq!(r.iter().len(), u32::MAX as usize);
    assert_eq!(r.iter().next_back(), Some(u64::MAX));
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip() {
    let t = TenantPass {
        pass: u64::MAX,
        carry: i64::MIN,
    };
    let json = serde_json::to_string(&t).expect("serialises");
    assert_eq!(
        json,
        format!(r#"{{"pass":{},"carry":{}}}"#, u64::MAX, i64::MIN)
    );
    assert_eq!(
        serde_json::from_str::<TenantPass>(&json).expect("parses"),
        t
    );
    let a = PassAssigner::with_scale(nz64(1000)).with_max_carry_per_job(nz64(7));
    let json = serde_json::to_string(&a).expect("serialises");
    assert_eq!(
        serde_json::from_str::<PassAssigner>(&json).expect("parses"),
        a
    );
    // A zero cap or scale cannot be smuggled in.
    assert!(serde_json::from_str::<PassAssigner>(r#"{"scale":0,"max_carry_per_job":1}"#).is_err());
    assert!(serde_json::from_str::<PassAssigner>(r#"{"scale":1,"max_carry_per_job":0}"#).is_err());
    let r = PassRange {
        first: 1,
        stride: 2,
        len: 3,
    };
    let json = serde_json::to_string(&r).expect("serialises");
    assert_eq!(serde_json::from_str::<PassRange>(&json).expect("parses"), r);
}
