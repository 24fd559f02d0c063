//! The sample trace: a deterministic (seeded) model of the incident that made fairshare.
//!
//! About fifty tenants in a few groups submit steady normal traffic (Poisson arrivals, mostly
//! `jobs`, some `export`), users of every tenant sign in (`signin`, short jobs), and one
//! customer submits 140,000 `export` jobs in a short burst. The class names match the shipped
//! `samples/config.json`.

use crate::trace::{Fields, Trace, TraceBuilder};

/// A small deterministic generator (SplitMix64), so the sample needs no extra crate.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `mean ± jitter`.
    fn around(&mut self, mean: u64, jitter: u64) -> u64 {
        mean - jitter.min(mean) + self.next_u64() % (2 * jitter.min(mean) + 1)
    }

    /// The next arrival of a Poisson process with `per_s` events a second, after `t` ms.
    fn poisson_next(&mut self, t: f64, per_s: f64) -> f64 {
        t - (1.0 - self.unit()).ln() * 1000.0 / per_s
    }
}

/// Everything that shapes the sample trace. [`SampleSpec::incident`] is the demo's.
///
/// # Examples
///
/// ```
/// let spec = fairshare_replay::SampleSpec::incident();
/// assert_eq!(spec.flood_jobs, 140_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    /// Seed of the generator: the same spec gives the same trace, row for row.
    pub seed: u64,
    /// Normal tenants (`tenant-01`, ...), spread round-robin over the groups.
    pub normal_tenants: u32,
    /// The groups' names.
    pub groups: Vec<String>,
    /// Normal jobs per second from all normal tenants together (Poisson arrivals). Tenant `i`
    /// submits a share proportional to `1 + i % 4`, so some tenants are busier than others.
    pub normal_per_s: f64,
    /// The fraction of normal jobs that are `export` (the rest are `jobs`).
    pub export_share: f64,
    /// Service time of a `jobs` job: `job_service_ms ± job_jitter_ms`, uniform.
    pub job_service_ms: u64,
    /// See `job_service_ms`.
    pub job_jitter_ms: u64,
    /// Service time of an `export` job (the flood's type): `export_service_ms ±
    /// export_jitter_ms`.
    pub export_service_ms: u64,
    /// See `export_service_ms`.
    pub export_jitter_ms: u64,
    /// Sign-ins per second from all tenants together (Poisson arrivals).
    pub signin_per_s: f64,
    /// Service time of a sign-in: `signin_service_ms ± signin_jitter_ms`.
    pub signin_service_ms: u64,
    /// See `signin_service_ms`.
    pub signin_jitter_ms: u64,
    /// The flooding tenant's name...
    pub flood_tenant: String,
    /// ...its group (one of `groups`)...
    pub flood_group: String,
    /// ...the class of its jobs...
    pub flood_class: String,
    /// ...how many jobs it submits...
    pub flood_jobs: u64,
    /// ...starting at this time (ms)...
    pub flood_start_ms: u64,
    /// ...evenly spread over this long (ms).
    pub flood_span_ms: u64,
    /// Normal traffic and sign-ins arrive until this time (ms).
    pub horizon_ms: u64,
}

const MINUTE_MS: u64 = 60_000;

impl SampleSpec {
    /// The incident at full scale: 50 tenants in three groups submit 14 jobs a second (one
    /// in seven an export) and 4 sign-ins a second for five hours; at 0:10 one customer
    /// submits 140,000 export jobs within ten minutes. With the sample config's 8 workers (a
    /// job 200 ± 100 ms, an export 400 ± 200 ms, a sign-in 30 ± 20 ms), normal traffic uses
    /// about 40% of the pool, and the flood is over three hours of the rest's work.
    pub fn incident() -> Self {
        SampleSpec {
            seed: 0x5eed_0ff1_a500_0001,
            normal_tenants: 50,
            groups: ["enterprise", "pro", "free"].map(String::from).to_vec(),
            normal_per_s: 14.0,
            export_share: 1.0 / 7.0,
            job_service_ms: 200,
            job_jitter_ms: 100,
            export_service_ms: 400,
            export_jitter_ms: 200,
            signin_per_s: 4.0,
            signin_service_ms: 30,
            signin_jitter_ms: 20,
            flood_tenant: "acme".to_string(),
            flood_group: "pro".to_string(),
            flood_class: "export".to_string(),
            flood_jobs: 140_000,
            flood_start_ms: 10 * MINUTE_MS,
            flood_span_ms: 10 * MINUTE_MS,
            horizon_ms: 300 * MINUTE_MS,
        }
    }

    /// The incident scaled down for tests (about a quarter of the rows): the same load
    /// shape, with a flood of 30,000 jobs within two minutes and 75 minutes of normal
    /// traffic.
    pub fn small() -> Self {
        SampleSpec {
            flood_jobs: 30_000,
            flood_start_ms: 5 * MINUTE_MS,
            flood_span_ms: 2 * MINUTE_MS,
            horizon_ms: 75 * MINUTE_MS,
            ..SampleSpec::incident()
        }
    }

    /// Generates the trace.
    ///
    /// # Panics
    ///
    /// If the spec cannot make a valid trace: no groups, `flood_group` not among them, no
    /// normal tenants, or a non-positive rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare_replay::SampleSpec;
    /// let spec = SampleSpec { flood_jobs: 100, horizon_ms: 60_000, ..SampleSpec::small() };
    /// let trace = spec.generate();
    /// assert_eq!(trace, spec.generate()); // deterministic
    /// assert!(trace.rows().len() > 100);
    /// ```
    #[track_caller]
    pub fn generate(&self) -> Trace {
        assert!(
            !self.groups.is_empty() && self.groups.contains(&self.flood_group),
            "the sample needs groups, and the flood's group among them"
        );
        assert!(self.normal_tenants > 0, "the sample needs normal tenants");
        assert!(
            self.normal_per_s > 0.0 && self.signin_per_s > 0.0,
            "the sample's rates must be positive"
        );
        let mut rng = SplitMix64(self.seed);
        let tenants: Vec<(String, &str)> = (1..=self.normal_tenants)
            .map(|i| {
                let group = &self.groups[(i as usize - 1) % self.groups.len()];
                (format!("tenant-{i:02}"), group.as_str())
            })
            .collect();
        // Tenant i's share of the normal traffic is proportional to 1 + i % 4.
        let shares: Vec<u64> = (0..tenants.len() as u64).map(|i| 1 + i % 4).collect();
        let total_share: u64 = shares.iter().sum();
        let pick = |rng: &mut SplitMix64| {
            let mut r = rng.next_u64() % total_share;
            for (i, &s) in shares.iter().enumerate() {
                if r < s {
                    return i;
                }
                r -= s;
            }
            unreachable!("r < total_share")
        };
        // (arrival, tenant, group, class, cost, service)
        let mut rows: Vec<(u64, String, String, &str, i64, u64)> = Vec::new();
        let cost_of = |service_ms: u64| service_ms.div_ceil(100).max(1) as i64;
        let mut t = rng.poisson_next(0.0, self.normal_per_s);
        while (t as u64) < self.horizon_ms {
            let (name, group) = &tenants[pick(&mut rng)];
            let (class, service) = if rng.unit() < self.export_share {
                let service = rng.around(self.export_service_ms, self.export_jitter_ms);
                ("export", service)
            } else {
                ("jobs", rng.around(self.job_service_ms, self.job_jitter_ms))
            };
            let row = (
                t as u64,
                name.clone(),
                group.to_string(),
                class,
                cost_of(service),
                service,
            );
            rows.push(row);
            t = rng.poisson_next(t, self.normal_per_s);
        }
        let mut t = rng.poisson_next(0.0, self.signin_per_s);
        while (t as u64) < self.horizon_ms {
            let (name, group) = &tenants[pick(&mut rng)];
            let service = rng.around(self.signin_service_ms, self.signin_jitter_ms);
            rows.push((
                t as u64,
                name.clone(),
                group.to_string(),
                "signin",
                1,
                service,
            ));
            t = rng.poisson_next(t, self.signin_per_s);
        }
        for i in 0..self.flood_jobs {
            let at = self.flood_start_ms + i * self.flood_span_ms / self.flood_jobs.max(1);
            let service = rng.around(self.export_service_ms, self.export_jitter_ms);
            rows.push((
                at,
                self.flood_tenant.clone(),
                self.flood_group.clone(),
                &self.flood_class,
                cost_of(service),
                service,
            ));
        }
        rows.sort_by_key(|r| r.0); // stable: ties keep generation order
        let mut builder = TraceBuilder::default();
        for (i, (at, tenant, group, class, cost, service)) in rows.iter().enumerate() {
            let fields = Fields {
                arrival_ms: *at as i64,
                tenant,
                group,
                class,
                cost: *cost,
                service_ms: *service as i64,
            };
            // Line numbers as in the CSV form (the header is line 1).
            builder
                .push(i as u64 + 2, fields)
                .expect("the generator writes valid rows");
        }
        builder.finish().expect("the sample has rows")
    }
}
