//! [`PassAssigner`]: stride scheduling for a durable queue, as pure arithmetic on
//! [`TenantPass`] values the host stores.

use std::num::{NonZeroU32, NonZeroU64};

// ===== TenantPass =====

/// The pass state of one tenant, which the host stores (for example as two columns of a tenant
/// row) and hands to [`PassAssigner::assign`] and [`PassAssigner::correct`].
///
/// A fresh tenant starts at [`TenantPass::default`] (pass 0, no carry).
///
/// # Examples
///
/// ```
/// use fairshare::fleet::{PassAssigner, TenantPass};
/// use std::num::NonZeroU32;
///
/// let assigner = PassAssigner::new();
/// let mut acme = TenantPass::default();
/// let pass = assigner.assign(&mut acme, NonZeroU32::MIN, 0, 1);
/// assert_eq!(acme.pass, pass); // the row now holds the pass of its last job
/// assert_eq!(acme.carry, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TenantPass {
    /// The pass of the last job assigned to the tenant.
    pub pass: u64,
    /// Cost correction not yet applied, in pass units: positive is debt (the tenant used more
    /// than it declared), negative is credit.
    pub carry: i64,
}

impl TenantPass {
    /// A fresh tenant: pass 0, no carry (the same as [`Default`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::TenantPass;
    /// const FRESH: TenantPass = TenantPass::new();
    /// assert_eq!(FRESH, TenantPass::default());
    /// ```
    pub const fn new() -> Self {
        TenantPass { pass: 0, carry: 0 }
    }
}

// ===== PassRange =====

/// The passes of a batch of `len` jobs of equal cost: job `i` (from 0) gets
/// `first + i * stride`, saturating at `u64::MAX`.
///
/// Because the passes are an arithmetic sequence, a host can write the whole batch in one
/// statement (for example `first + (n - 1) * stride` over a numbered series in SQL).
///
/// # Examples
///
/// ```
/// use fairshare::fleet::PassRange;
///
/// let r = PassRange { first: 10, stride: 5, len: 3 };
/// assert_eq!(r.get(2), Some(20));
/// assert_eq!(r.get(3), None);
/// assert_eq!(r.last(), Some(20));
/// assert_eq!(r.iter().collect::<Vec<_>>(), [10, 15, 20]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PassRange {
    /// The pass of job 0.
    pub first: u64,
    /// The difference between the passes of consecutive jobs (at least 1).
    pub stride: u64,
    /// The number of jobs.
    pub len: u32,
}

impl PassRange {
    /// The pass of job `i`, or `None` if `i >= len`.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = fairshare::fleet::PassRange { first: u64::MAX - 1, stride: 4, len: 2 };
    /// assert_eq!(r.get(0), Some(u64::MAX - 1));
    /// assert_eq!(r.get(1), Some(u64::MAX)); // saturates
    /// ```
    pub fn get(&self, i: u32) -> Option<u64> {
        (i < self.len).then(|| saturate(self.first as u128 + i as u128 * self.stride as u128))
    }

    /// The pass of the last job, or `None` for an empty range.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = fairshare::fleet::PassRange { first: 7, stride: 3, len: 0 };
    /// assert_eq!(r.last(), None);
    /// ```
    pub fn last(&self) -> Option<u64> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Whether the range holds no job.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = fairshare::fleet::PassRange { first: 7, stride: 3, len: 0 };
    /// assert!(r.is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The passes in job order.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = fairshare::fleet::PassRange { first: 1, stride: 2, len: 3 };
    /// assert_eq!(r.iter().rev().collect::<Vec<_>>(), [5, 3, 1]);
    /// assert_eq!(r.iter().len(), 3);
    /// ```
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + use<> {
        let PassRange { first, stride, len } = *self;
        (0..len).map(move |i| saturate(first as u128 + i as u128 * stride as u128))
    }
}

// ===== PassAssigner =====

/// Assigns *passes* (virtual times) to jobs of a durable queue, so that serving the jobs in
/// ascending pass order shares the workers fairly between tenants by weight: stride scheduling,
/// with the state kept by the host.
///
/// The host stores a [`TenantPass`] per tenant and a pass with each job. When it writes a job,
/// it calls [`assign`](Self::assign) (or [`assign_batch`](Self::assign_batch) for many) with
/// the tenant's weight, the job's declared cost and the queue's *floor*; workers take jobs in
/// ascending pass order (ties by write order, e.g. `ORDER BY pass, id`). After a job ran, the
/// host may report its actual cost with [`correct`](Self::correct).
///
/// The *floor* is the queue's current virtual time: the pass of the last job served, or the
/// smallest pass still queued (with concurrent workers, the largest pass served so far, so
/// that it only moves forward). Every pass assigned is at least the floor, so a tenant that
/// was idle cannot bank credit and jump ahead of the others when it comes back.
///
/// # The rule
///
/// Let `P` and `c` be the tenant's stored pass and carry, `F` the floor, and
/// `s = stride(cost, weight)` = `⌈max(cost, 1) · scale / weight⌉` (at least 1). A job's pass is
///
/// - with debt (`c > 0`): `max(F, P + s) + d`, where `d = min(c, max_carry_per_job)` is taken
///   from the carry;
/// - with credit (`c < 0`) and `P >= F`: `P + s - r`, where `r = min(-c, max_carry_per_job,
///   s - 1)` is taken from the carry;
/// - otherwise `max(F, P + s)`.
///
/// A tenant whose stored pass is below the floor (`P < F`: all of its jobs are behind the
/// queue's virtual time, so it was idle) first loses its credit; debt is kept.
/// Arithmetic saturates at `u64::MAX` (and the carry at the `i64` bounds); no input panics.
///
/// Consequences: a tenant's passes strictly increase (so ascending pass order is per-tenant
/// FIFO); while it is not idle, consecutive passes differ by between 1 and
/// `s + max_carry_per_job`; every pass is at least the floor. A cost of 0 is charged as 1, so
/// zero-cost jobs cannot flood the queue with tiny strides. A weight change takes effect for
/// the jobs assigned after it: passes already written keep the weight they were assigned with.
///
/// # Fairness
///
/// Let `scale` be the assigner's scale, `A` its [`max_carry_per_job`](Self::max_carry_per_job),
/// and serve jobs in ascending pass order, passing as floor the pass of the last job served.
///
/// **Backlogged tenants.** Take a stretch of serving during which tenants `i` and `j` both stay
/// backlogged (each has at least one job queued at every moment), their weights do not change
/// and they have no correction pending or reported (carry 0). Let `C_i`, `n_i` be the cost and number of `i`'s jobs
/// served in the stretch (a cost of 0 counts as 1), `M` the largest cost among the jobs of `i`
/// and `j` served in it or queued next, and `S_i = stride(M, w_i)`. Then the strides charged
/// satisfy `|Σs_i − Σs_j| <= S_i + S_j`, and
///
/// ```text
/// | C_i / w_i  −  C_j / w_j |  <=  (S_i + S_j + max(n_i, n_j)) / scale
///                              <=  M / w_i  +  M / w_j  +  (2 + max(n_i, n_j)) / scale
/// ```
///
/// The `/ scale` terms are the rounding of strides up to whole pass units, at most one unit
/// per job (a relative error of at most `w / scale` of the served cost). When every weight
/// divides `scale` (for example powers of two up to `scale`), strides are exact and the bound
/// is `M / w_i + M / w_j`.
///
/// *Why:* let the stretch run from virtual time `V0` to `V1` and let `a..=b` be `i`'s jobs
/// served in it. While `i` has a job queued, that job's pass is at least the floor, so the next
/// job's pass is exactly the previous pass plus its stride (the floor never binds); hence the
/// strides of `a..=b` sum to `p_b − p_a + s_a`. Job `a` was queued at `V0`, so
/// `V0 <= p_a <= V0 + s_a`; job `b` was served by `V1` while job `b + 1` was not, so
/// `V1 − s_(b+1) <= p_b <= V1`. So `Σs_i` lies in `[V1 − V0 − S_i, V1 − V0 + S_i]`, the same
/// interval for `j` with `S_j`, which gives the first bound; each stride is
/// `cost · scale / w` rounded up by less than one unit, which gives the second.
///
/// **A newly active tenant.** A tenant without debt that writes a job of stride `s` while its
/// stored pass `P` satisfies `P + s <= F` (it was idle for at least one of its own strides of
/// virtual time) gets pass exactly `F`. Every job queued before it has a pass at least `F` and
/// each tenant's passes strictly increase, so it is served after at most one job of each other
/// backlogged tenant (the ones tied at `F`). If it was idle for less (`P <= F < P + s`), its
/// pass is `P + s <= F + s`: before it, each other tenant `j` is served at most one job plus
/// jobs whose strides sum to at most `s`, that is at most `M + s · w_j / scale` cost.
///
/// **Cost corrections.** [`correct`](Self::correct) adds
/// `stride(actual, w) − stride(declared, w)` to the carry, so once a job's correction has been
/// applied the tenant has been charged exactly what a correct declaration would have cost.
/// The carry is never forgiven: debt is applied to later jobs, at most `A` per job, the rest
/// carried forward until paid, and it survives idle periods. Credit is applied at most
/// `min(A, s − 1)` per job and is dropped when the tenant goes idle (no banking). Therefore:
///
/// - *Delay.* One correction delays each later job of its tenant by at most `A` pass units
///   over the previous one: while backlogged the tenant still gets a job at least every
///   `s + A` units of virtual time (it is never starved), and before its next job each other
///   tenant `j` is served at most `A · w_j / scale` more cost (plus one job). A correction of
///   `D` units shifts the tenant's `k`-th later job by `min(D, k · A)`: fully paid after
///   `⌈D / A⌉` jobs.
/// - *Convergence.* Over a stretch in which `i` and `j` stay backlogged, the bound above holds
///   for the served *actual* cost (`C_i` counted with actual costs), with `S_i` replaced by
///   `S_i + A` and plus, for each tenant, the size of its carry at both ends of the stretch and
///   of its corrections not yet reported at both ends, over `scale`. None of these grow with
///   the length of the stretch as long as the tenant's corrections are, on average, within
///   what its jobs absorb (`A` of debt, `s − 1` of credit per job), so the served actual cost
///   per weight of backlogged tenants converges to their weights.
///
/// Corrections only move passes assigned after them: jobs already written keep their passes,
/// so a tenant that writes a long backlog at once pays its debt on the jobs it writes later.
///
/// The property tests in `tests/fleet_pass.rs` check these statements on simulated queues.
///
/// # Choosing the scale
///
/// A larger `scale` makes the rounding term smaller but the virtual time run faster: with the
/// default `2^16`, the pass reaches `u64::MAX` after `2^48` units of cost per unit of weight
/// have been served (about 9 years at a million cost units per second per weight); then
/// passes saturate (no panic, but no more fairness). Pick `scale` at least the largest weight
/// (ideally a multiple of every weight).
///
/// # Examples
///
/// ```
/// use fairshare::fleet::{PassAssigner, TenantPass};
/// use std::num::NonZeroU32;
///
/// let assigner = PassAssigner::new();
/// let one = NonZeroU32::MIN;
/// let (mut acme, mut globex) = (TenantPass::default(), TenantPass::default());
///
/// // acme imports 140,000 jobs at once: one tenant-row update.
/// let flood = assigner.assign_batch(&mut acme, one, 0, 1, 140_000);
/// // globex writes one job: it is not queued behind the flood.
/// let share = assigner.assign(&mut globex, one, 0, 1);
/// assert_eq!(share, flood.first); // tied with acme's first job, behind it by write order
/// assert!(share < flood.get(1).unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PassAssigner {
    /// Pass units per unit of cost at weight 1.
    scale: NonZeroU64,
    /// The most carry (debt or credit) one job absorbs, in pass units.
    max_carry_per_job: NonZeroU64,
}

impl Default for PassAssigner {
    /// [`PassAssigner::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// assert_eq!(PassAssigner::default(), PassAssigner::new());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

impl PassAssigner {
    /// The default scale: `2^16` pass units per unit of cost at weight 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// assert_eq!(PassAssigner::new().scale(), PassAssigner::DEFAULT_SCALE);
    /// ```
    pub const DEFAULT_SCALE: NonZeroU64 = NonZeroU64::new(1 << 16).unwrap();

    /// By default one job absorbs at most this many units of cost at weight 1 of carry
    /// (`max_carry_per_job = DEFAULT_CARRY_COSTS · scale`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// let a = PassAssigner::new();
    /// assert_eq!(a.max_carry_per_job().get(), PassAssigner::DEFAULT_CARRY_COSTS * a.scale().get());
    /// ```
    pub const DEFAULT_CARRY_COSTS: u64 = 1024;

    /// An assigner with [`DEFAULT_SCALE`](Self::DEFAULT_SCALE) and the default carry cap.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// use std::num::NonZeroU32;
    /// let a = PassAssigner::new();
    /// assert_eq!(a.stride(1, NonZeroU32::MIN), 1 << 16);
    /// ```
    pub const fn new() -> Self {
        Self::with_scale(Self::DEFAULT_SCALE)
    }

    /// An assigner with `scale` pass units per unit of cost at weight 1, and a carry cap of
    /// [`DEFAULT_CARRY_COSTS`](Self::DEFAULT_CARRY_COSTS) times `scale` (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// use std::num::{NonZeroU32, NonZeroU64};
    /// let a = PassAssigner::with_scale(NonZeroU64::new(1000).unwrap());
    /// assert_eq!(a.stride(3, NonZeroU32::new(2).unwrap()), 1500);
    /// assert_eq!(a.max_carry_per_job().get(), 1024 * 1000);
    /// ```
    pub const fn with_scale(scale: NonZeroU64) -> Self {
        let cap = scale.get().saturating_mul(Self::DEFAULT_CARRY_COSTS);
        PassAssigner {
            scale,
            max_carry_per_job: match NonZeroU64::new(cap) {
                Some(cap) => cap,
                None => NonZeroU64::MIN,
            },
        }
    }

    /// The same assigner with a different cap on the carry one job absorbs, in pass units.
    ///
    /// A smaller cap spreads a large correction over more jobs (a shorter delay for each);
    /// a larger cap lets larger per-job errors be paid as they occur.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::{PassAssigner, TenantPass};
    /// use std::num::{NonZeroU32, NonZeroU64};
    ///
    /// let a = PassAssigner::new().with_max_carry_per_job(NonZeroU64::new(10).unwrap());
    /// let mut t = TenantPass { pass: 0, carry: 25 };
    /// let w = NonZeroU32::MIN;
    /// assert_eq!(a.assign(&mut t, w, 0, 1), a.stride(1, w) + 10);
    /// assert_eq!(t.carry, 15); // the rest is carried forward, never forgiven
    /// ```
    pub const fn with_max_carry_per_job(mut self, cap: NonZeroU64) -> Self {
        self.max_carry_per_job = cap;
        self
    }

    /// Pass units per unit of cost at weight 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// assert_eq!(PassAssigner::new().scale().get(), 1 << 16);
    /// ```
    pub const fn scale(&self) -> NonZeroU64 {
        self.scale
    }

    /// The most carry (debt or credit) one job absorbs, in pass units.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// assert_eq!(PassAssigner::new().max_carry_per_job().get(), 1024 << 16);
    /// ```
    pub const fn max_carry_per_job(&self) -> NonZeroU64 {
        self.max_carry_per_job
    }

    /// The pass units a job of `cost` charges a tenant of `weight`:
    /// `⌈max(cost, 1) · scale / weight⌉`, at least 1, saturating at `u64::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::PassAssigner;
    /// use std::num::NonZeroU32;
    /// let a = PassAssigner::new();
    /// let w = |w| NonZeroU32::new(w).unwrap();
    /// assert_eq!(a.stride(2, w(1)), 2 << 16);
    /// assert_eq!(a.stride(2, w(2)), 1 << 16); // twice the weight, half the stride
    /// assert_eq!(a.stride(0, w(1)), a.stride(1, w(1))); // a job is never free
    /// assert_eq!(a.stride(1, NonZeroU32::MAX), 1); // rounded up to one unit
    /// ```
    pub const fn stride(&self, cost: u32, weight: NonZeroU32) -> u64 {
        let cost = if cost == 0 { 1 } else { cost as u128 };
        let weight = weight.get() as u128;
        // At most 2^32 · 2^64 < 2^128: no overflow.
        saturate((cost * self.scale.get() as u128).div_ceil(weight))
    }

    /// Assigns the pass of one job of `cost` for a tenant of `weight`, with the queue at
    /// virtual time `floor`, and updates `tenant` (see the rule in the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::{PassAssigner, TenantPass};
    /// use std::num::NonZeroU32;
    ///
    /// let a = PassAssigner::new();
    /// let w = NonZeroU32::MIN;
    /// let mut t = TenantPass::default();
    /// let p1 = a.assign(&mut t, w, 0, 1);
    /// let p2 = a.assign(&mut t, w, 0, 1);
    /// assert_eq!(p2 - p1, a.stride(1, w));
    ///
    /// // Idle while the queue moved on: the next pass starts at the floor, not behind it.
    /// assert_eq!(a.assign(&mut t, w, 1 << 40, 1), 1 << 40);
    /// ```
    pub fn assign(
        &self,
        tenant: &mut TenantPass,
        weight: NonZeroU32,
        floor: u64,
        cost: u32,
    ) -> u64 {
        self.assign_batch(tenant, weight, floor, cost, 1).first
    }

    /// Assigns the passes of `n` jobs of equal `cost` at once, with one update of `tenant`.
    ///
    /// Job 0 gets what [`assign`](Self::assign) would give; the others follow at a constant
    /// stride. When the tenant has no carry, or the first job absorbs all of it, or the carry
    /// is at least `n` jobs' worth of the cap, the passes and the final state equal those of `n`
    /// calls to `assign`. Otherwise `assign` would apply the carry left after job 0 to the next
    /// jobs in turn, which is not an arithmetic sequence: the batch spreads it evenly over
    /// them instead (the same cap per job), so each pass is at most that of `n` calls to
    /// `assign` for debt (at least, for credit), and the rounding remainder, less than `n`
    /// units, stays in the carry. `n = 0` gives an empty range and leaves `tenant` unchanged.
    ///
    /// # Performance
    ///
    /// O(1), whatever `n`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::{PassAssigner, TenantPass};
    /// use std::num::NonZeroU32;
    ///
    /// let a = PassAssigner::new();
    /// let w = NonZeroU32::new(4).unwrap();
    /// let (mut batch, mut singles) = (TenantPass::default(), TenantPass::default());
    /// let range = a.assign_batch(&mut batch, w, 100, 3, 1000);
    /// for expected in range.iter() {
    ///     assert_eq!(a.assign(&mut singles, w, 100, 3), expected);
    /// }
    /// assert_eq!(batch, singles);
    /// ```
    pub fn assign_batch(
        &self,
        tenant: &mut TenantPass,
        weight: NonZeroU32,
        floor: u64,
        cost: u32,
        n: u32,
    ) -> PassRange {
        let s = self.stride(cost, weight) as u128;
        let cap = self.max_carry_per_job.get() as u128;
        let prev = tenant.pass as u128;
        let floor = floor as u128;
        let mut carry = tenant.carry as i128;
        if prev < floor && carry < 0 {
            // Idle: credit is not banked.
            carry = 0;
        }
        // The jobs after job 0.
        let rest = n.saturating_sub(1) as u128;
        let (first, stride) = if carry >= 0 {
            let debt = carry as u128;
            let d0 = debt.min(cap);
            let q = cap.min((debt - d0).checked_div(rest).unwrap_or(0));
            carry -= (d0 + q * rest) as i128;
            ((prev + s).max(floor) + d0, s + q)
        } else {
            // Not idle: `prev >= floor`, and `s - limit >= 1` keeps passes increasing.
            let credit = carry.unsigned_abs();
            let limit = cap.min(s - 1);
            let r0 = credit.min(limit);
            let q = limit.min((credit - r0).checked_div(rest).unwrap_or(0));
            carry += (r0 + q * rest) as i128;
            ((prev + s - r0).max(floor), s - q)
        };
        let range = PassRange {
            first: saturate(first),
            stride: saturate(stride),
            len: n,
        };
        if let Some(last) = range.last() {
            tenant.pass = last;
            // The carry only moved towards zero: it still fits.
            tenant.carry = carry as i64;
        }
        range
    }

    /// Reports that a job declared at cost `declared` actually cost `actual`: adds
    /// `stride(actual, weight) − stride(declared, weight)` (about
    /// `(actual − declared) · scale / weight`) to `tenant.carry`, saturating at the `i64`
    /// bounds. Later assignments apply it (see the type's `# Fairness` section); passes
    /// already assigned do not change. Pass the tenant's current weight.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::{PassAssigner, TenantPass};
    /// use std::num::NonZeroU32;
    ///
    /// let a = PassAssigner::new();
    /// let w = NonZeroU32::MIN;
    /// let mut t = TenantPass::default();
    /// let p1 = a.assign(&mut t, w, 0, 1);
    /// a.correct(&mut t, w, 1, 5); // it cost 5, not 1
    /// assert_eq!(t.carry, 4 << 16);
    /// let p2 = a.assign(&mut t, w, 0, 1);
    /// assert_eq!(p2 - p1, a.stride(5, w)); // charged as if declared right
    /// assert_eq!(t.carry, 0);
    /// ```
    pub fn correct(&self, tenant: &mut TenantPass, weight: NonZeroU32, declared: u32, actual: u32) {
        let delta = self.stride(actual, weight) as i128 - self.stride(declared, weight) as i128;
        let carry = tenant.carry as i128 + delta;
        tenant.carry = carry.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    }
}

/// `x` clamped to `u64::MAX`.
const fn saturate(x: u128) -> u64 {
    if x > u64::MAX as u128 {
        u64::MAX
    } else {
        x as u64
    }
}
