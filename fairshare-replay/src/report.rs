//! The whole replay (both runs) and its printed report: wait tables per tenant, group and
//! class, FIFO against fairshare side by side, and refusals by reason.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use fairshare::RejectReason;

use crate::setup::Setup;
use crate::sim::{Fate, Outcome, ReplayError, replay_fairshare, replay_fifo};
use crate::trace::Trace;

/// Count and waiting-time percentiles of a set of served jobs, ms.
///
/// # Examples
///
/// ```
/// let w = fairshare_replay::WaitStats::from_waits(vec![30, 10, 20]);
/// assert_eq!((w.count, w.p50, w.p99, w.max), (3, 20, 30, 30));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Jobs served.
    pub count: usize,
    /// Median wait (nearest rank), ms.
    pub p50: u64,
    /// 99th percentile wait (nearest rank), ms.
    pub p99: u64,
    /// Longest wait, ms.
    pub max: u64,
}

impl WaitStats {
    /// The stats of `waits` (any order).
    pub fn from_waits(mut waits: Vec<u64>) -> WaitStats {
        waits.sort_unstable();
        WaitStats {
            count: waits.len(),
            p50: percentile(&waits, 50),
            p99: percentile(&waits, 99),
            max: waits.last().copied().unwrap_or(0),
        }
    }
}

/// The `p`-th percentile (nearest rank) of `sorted`; 0 for no values.
fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1);
    sorted[rank as usize - 1]
}

/// A waiting time for people: `0 ms`, `168 ms`, `2.0 s`, `32 min`, `1.5 h`.
///
/// # Examples
///
/// ```
/// use fairshare_replay::human_ms;
/// assert_eq!(human_ms(168), "168 ms");
/// assert_eq!(human_ms(2_000), "2.0 s");
/// assert_eq!(human_ms(32 * 60_000), "32 min");
/// assert_eq!(human_ms(90 * 60_000), "1.5 h");
/// ```
pub fn human_ms(ms: u64) -> String {
    const MIN: u64 = 60_000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..10_000 => format!("{:.1} s", ms as f64 / 1e3),
        10_000..MIN => format!("{} s", ms / 1_000),
        MIN..3_600_000 => format!("{} min", ms / MIN),
        _ => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}

/// `n` with thousands separators: 140000 -> "140,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short stable name of a refusal reason, for the refusals table.
pub fn reason_name(reason: &RejectReason) -> &'static str {
    match reason {
        RejectReason::Blocked { .. } => "blocked",
        RejectReason::ZeroCost => "zero cost",
        RejectReason::StaleHandle => "stale handle",
        RejectReason::QueueFull { .. } => "queue full",
        RejectReason::RateLimited { .. } => "rate limited",
        RejectReason::ClassRateLimited { .. } => "class rate limited",
        RejectReason::TooLarge { .. } => "too large",
        RejectReason::TenantFull { .. } => "tenant queue full",
        RejectReason::CapacityFull { .. } => "at capacity",
        RejectReason::Evicted => "evicted",
        RejectReason::QueueDelay { .. } => "shed (queue delay)",
        RejectReason::Closed => "closed",
        RejectReason::UnknownClass { .. } => "unknown class",
        RejectReason::DeadlineExpired { .. } => "deadline expired",
        _ => "other",
    }
}

/// One row of a wait table: a tenant, group, class or aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRow {
    /// What the row is about.
    pub name: String,
    /// Trace rows it covers.
    pub rows: usize,
    /// Waits of its served rows under FIFO.
    pub fifo: WaitStats,
    /// Waits of its served rows under fairshare.
    pub fair: WaitStats,
    /// Its rows fairshare refused or handed back.
    pub fair_not_served: usize,
}

/// Both runs of one trace, and what the report needs of them.
#[derive(Debug, Clone)]
pub struct Replay {
    trace: Trace,
    workers: usize,
    fifo: Outcome,
    fair: Outcome,
}

/// The wait of each served row of `outcome` whose row passes `keep`, ms.
fn waits(trace: &Trace, outcome: &Outcome, keep: impl Fn(usize) -> bool) -> Vec<u64> {
    outcome
        .fates()
        .iter()
        .enumerate()
        .filter(|&(i, _)| keep(i))
        .filter_map(|(i, f)| match f {
            Fate::Served { start_ms } => Some(start_ms - trace.rows()[i].arrival_ms),
            _ => None,
        })
        .collect()
}

impl Replay {
    /// Replays `trace` twice, on FIFO and on fairshare, and checks conservation: every row
    /// is served, refused or handed back exactly once in each run (a broken invariant
    /// panics: it is a bug, not bad input).
    ///
    /// # Errors
    ///
    /// [`ReplayError::Trace`] if a row names a class the config lacks.
    pub fn run(trace: Trace, setup: &Setup) -> Result<Replay, ReplayError> {
        let fair = replay_fairshare(&trace, setup)?;
        let fifo = replay_fifo(&trace, setup.workers());
        let rows = trace.rows().len();
        assert_eq!(fifo.served(), rows, "FIFO serves every row");
        assert_eq!(
            fair.served() + fair.refused() + fair.returned(),
            rows,
            "fairshare: served + refused + returned = rows"
        );
        Ok(Replay {
            trace,
            workers: setup.workers(),
            fifo,
            fair,
        })
    }

    /// The trace replayed.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Workers in the pool.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The FIFO run.
    pub fn fifo(&self) -> &Outcome {
        &self.fifo
    }

    /// The fairshare run.
    pub fn fair(&self) -> &Outcome {
        &self.fair
    }

    /// The tenant with the most rows (the first such in tenant order): the flood, in an
    /// incident trace.
    pub fn heaviest_tenant(&self) -> u32 {
        let mut rows = vec![0usize; self.trace.tenant_count()];
        for r in self.trace.rows() {
            rows[r.tenant as usize] += 1;
        }
        (0..rows.len())
            .max_by_key(|&t| (rows[t], Reverse(t)))
            .map_or(0, |t| t as u32)
    }

    /// A wait row over the trace rows that pass `keep`.
    pub fn wait_row(&self, name: impl Into<String>, keep: impl Fn(usize) -> bool) -> WaitRow {
        let rows = (0..self.trace.rows().len()).filter(|&i| keep(i)).count();
        let fair_not_served = self
            .fair
            .fates()
            .iter()
            .enumerate()
            .filter(|&(i, f)| keep(i) && !matches!(f, Fate::Served { .. }))
            .count();
        WaitRow {
            name: name.into(),
            rows,
            fifo: WaitStats::from_waits(waits(&self.trace, &self.fifo, &keep)),
            fair: WaitStats::from_waits(waits(&self.trace, &self.fair, &keep)),
            fair_not_served,
        }
    }

    /// One wait row per tenant, in tenant order.
    pub fn tenant_rows(&self) -> Vec<WaitRow> {
        self.rows_by(
            self.trace.tenant_count(),
            |i| self.trace.rows()[i].tenant,
            |t| self.trace.tenant_name(t).to_string(),
        )
    }

    /// One wait row per group, in group order.
    pub fn group_rows(&self) -> Vec<WaitRow> {
        self.rows_by(
            self.trace.group_count(),
            |i| self.trace.rows()[i].group,
            |g| self.trace.group_name(g).to_string(),
        )
    }

    /// One wait row per class, in class order.
    pub fn class_rows(&self) -> Vec<WaitRow> {
        self.rows_by(
            self.trace.class_count(),
            |i| self.trace.rows()[i].class,
            |c| self.trace.class_name(c).to_string(),
        )
    }

    /// The wait row of every tenant but the heaviest.
    pub fn others_row(&self) -> WaitRow {
        let heavy = self.heaviest_tenant();
        self.wait_row("all other tenants", |i| {
            self.trace.rows()[i].tenant != heavy
        })
    }

    /// The wait row of the heaviest tenant.
    pub fn heaviest_row(&self) -> WaitRow {
        let heavy = self.heaviest_tenant();
        self.wait_row(self.trace.tenant_name(heavy), |i| {
            self.trace.rows()[i].tenant == heavy
        })
    }

    /// Groups rows by `key` in one pass.
    fn rows_by(
        &self,
        n: usize,
        key: impl Fn(usize) -> u32,
        name: impl Fn(u32) -> String,
    ) -> Vec<WaitRow> {
        let mut fifo = vec![Vec::new(); n];
        let mut fair = vec![Vec::new(); n];
        let mut rows = vec![0usize; n];
        let mut not_served = vec![0usize; n];
        for (i, r) in self.trace.rows().iter().enumerate() {
            let k = key(i) as usize;
            rows[k] += 1;
            if let Fate::Served { start_ms } = self.fifo.fates()[i] {
                fifo[k].push(start_ms - r.arrival_ms);
            }
            match self.fair.fates()[i] {
                Fate::Served { start_ms } => fair[k].push(start_ms - r.arrival_ms),
                _ => not_served[k] += 1,
            }
        }
        fifo.into_iter()
            .zip(fair)
            .enumerate()
            .map(|(k, (fifo, fair))| WaitRow {
                name: name(k as u32),
                rows: rows[k],
                fifo: WaitStats::from_waits(fifo),
                fair: WaitStats::from_waits(fair),
                fair_not_served: not_served[k],
            })
            .collect()
    }

    /// Refusals (at the door) and hand-backs (after admission) by reason, largest first.
    pub fn refusals(&self) -> Vec<(&'static str, &'static str, usize)> {
        let mut counts: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
        for f in self.fair.fates() {
            match f {
                Fate::Refused(r) => *counts.entry(("refused", reason_name(r))).or_default() += 1,
                Fate::Returned(r) => {
                    *counts.entry(("handed back", reason_name(r))).or_default() += 1
                }
                Fate::Served { .. } => {}
            }
        }
        let mut out: Vec<_> = counts.into_iter().map(|((k, r), n)| (k, r, n)).collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)).then(a.1.cmp(b.1)));
        out
    }

    /// The printed report: summary, headline, wait tables (tenants: the `top` with the
    /// longest waits, then one row for the others), refusals by reason, and conservation.
    pub fn report(&self, top: usize) -> String {
        let mut out = String::new();
        let t = &self.trace;
        let rows = t.rows();
        let span = rows.last().map_or(0, |r| r.arrival_ms) - rows[0].arrival_ms;
        let work: u64 = rows.iter().map(|r| r.service_ms).sum();
        let offered = work as f64 / (self.workers as f64 * span.max(1) as f64);
        let _ = writeln!(
            out,
            "Trace: {} jobs from {} tenants in {} groups, {} classes, arriving over {}; {} workers.",
            thousands(rows.len()),
            t.tenant_count(),
            t.group_count(),
            t.class_count(),
            human_ms(span),
            self.workers,
        );
        let _ = writeln!(
            out,
            "Offered work: {:.0}% of the pool over that span. Wait = start on a worker - arrival.",
            offered * 100.0
        );
        let heavy = self.heaviest_row();
        let others = self.others_row();
        let _ = writeln!(out);
        let ratio = |fifo: u64, fair: u64| {
            if fair == 0 {
                "fairshare's is 0 ms".to_string()
            } else if fifo >= 2 * fair {
                format!("{:.0}x lower under fairshare", fifo as f64 / fair as f64)
            } else if fair >= 2 * fifo {
                format!(
                    "{:.1}x higher under fairshare",
                    fair as f64 / fifo.max(1) as f64
                )
            } else {
                "about the same".to_string()
            }
        };
        let _ = writeln!(
            out,
            "Heaviest tenant: {} ({} of {} jobs). Every other tenant's p99 wait: FIFO {}, fairshare {} ({}).",
            heavy.name,
            thousands(heavy.rows),
            thousands(rows.len()),
            human_ms(others.fifo.p99),
            human_ms(others.fair.p99),
            ratio(others.fifo.p99, others.fair.p99),
        );
        let _ = writeln!(
            out,
            "{}'s own jobs: FIFO served {} (p99 wait {}); fairshare served {} (p99 wait {}), refused or handed back {}.",
            heavy.name,
            thousands(heavy.fifo.count),
            human_ms(heavy.fifo.p99),
            thousands(heavy.fair.count),
            human_ms(heavy.fair.p99),
            thousands(heavy.fair_not_served),
        );
        let heavy_id = self.heaviest_tenant();
        let done = |o: &Outcome| {
            rows.iter()
                .zip(o.fates())
                .filter(|(r, _)| r.tenant == heavy_id)
                .filter_map(|(r, f)| match f {
                    Fate::Served { start_ms } => Some(start_ms + r.service_ms - rows[0].arrival_ms),
                    _ => None,
                })
                .max()
                .map_or_else(|| "never".to_string(), human_ms)
        };
        let _ = writeln!(
            out,
            "{}'s last job done (from the first arrival): FIFO at {}, fairshare at {}.",
            heavy.name,
            done(&self.fifo),
            done(&self.fair),
        );

        let tenants = self.tenant_rows();
        let worst = |r: &WaitRow| r.fifo.p99.max(r.fair.p99);
        let mut order: Vec<usize> = (0..tenants.len()).collect();
        order.sort_by(|&a, &b| {
            worst(&tenants[b])
                .cmp(&worst(&tenants[a]))
                .then_with(|| tenants[a].name.cmp(&tenants[b].name))
        });
        // Show every tenant when the "others" row would stand for one tenant only.
        let shown_count = if order.len() > top + 1 {
            top
        } else {
            order.len()
        };
        let mut shown: Vec<WaitRow> = Vec::new();
        let mut groups: Vec<Option<String>> = Vec::new();
        for &i in &order[..shown_count] {
            shown.push(tenants[i].clone());
            groups.push(Some(t.group_name(t.group_of(i as u32)).to_string()));
        }
        if shown_count < order.len() {
            let mut rest = vec![false; tenants.len()];
            for &i in &order[shown_count..] {
                rest[i] = true;
            }
            let label = format!("others ({} tenants)", order.len() - shown_count);
            shown.push(self.wait_row(label, |i| rest[rows[i].tenant as usize]));
            groups.push(None);
        }
        shown.push(self.wait_row("all tenants", |_| true));
        groups.push(None);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Per tenant (the {shown_count} with the longest p99 wait under either policy):"
        );
        table(&mut out, "tenant", &shown, &groups);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Per group (capacity is shared among groups first, then among each group's tenants):"
        );
        table(&mut out, "group", &self.group_rows(), &[]);
        let _ = writeln!(out);
        let _ = writeln!(out, "Per class:");
        table(&mut out, "class", &self.class_rows(), &[]);

        let _ = writeln!(out);
        let refusals = self.refusals();
        if refusals.is_empty() {
            let _ = writeln!(out, "fairshare refused nothing and handed nothing back.");
        } else {
            let _ = writeln!(
                out,
                "fairshare's refusals and hand-backs by reason (FIFO refuses nothing):"
            );
            let _ = writeln!(
                out,
                "{:<12} {:<22} {:>10} {:>8}",
                "", "reason", "jobs", "share"
            );
            for (kind, reason, n) in &refusals {
                let _ = writeln!(
                    out,
                    "{:<12} {:<22} {:>10} {:>7.1}%",
                    kind,
                    reason,
                    thousands(*n),
                    *n as f64 * 100.0 / rows.len() as f64
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Conservation: FIFO served {} of {} jobs; fairshare served {} + refused {} + handed back {} = {} of {}, each exactly once.",
            thousands(self.fifo.served()),
            thousands(rows.len()),
            thousands(self.fair.served()),
            thousands(self.fair.refused()),
            thousands(self.fair.returned()),
            thousands(self.fair.served() + self.fair.refused() + self.fair.returned()),
            thousands(rows.len()),
        );
        out
    }
}

/// Writes one wait table; `groups` gives each row's group column (none if empty).
fn table(out: &mut String, what: &str, rows: &[WaitRow], groups: &[Option<String>]) {
    let extras: Vec<Option<String>> = (0..rows.len())
        .map(|i| groups.get(i).cloned().flatten())
        .collect();
    let with_extra = extras.iter().any(Option::is_some);
    let name_width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(what.len());
    let extra_width = extras
        .iter()
        .flatten()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(5);
    let head = if with_extra {
        format!("{what:<name_width$} {:<extra_width$}", "group")
    } else {
        format!("{what:<name_width$}")
    };
    let _ = writeln!(
        out,
        "{:<w$} {:>9} | {:^32} | {:^32} {:>9}",
        "",
        "",
        "FIFO wait",
        "fairshare wait",
        "fairshare",
        w = head.len()
    );
    let _ = writeln!(
        out,
        "{head} {:>9} | {:>8} {:>7} {:>7} {:>7} | {:>8} {:>7} {:>7} {:>7} {:>9}",
        "jobs", "served", "p50", "p99", "max", "served", "p50", "p99", "max", "not run"
    );
    for (r, e) in rows.iter().zip(&extras) {
        let lead = if with_extra {
            format!(
                "{:<name_width$} {:<extra_width$}",
                r.name,
                e.as_deref().unwrap_or("")
            )
        } else {
            format!("{:<name_width$}", r.name)
        };
        let _ = writeln!(
            out,
            "{lead} {:>9} | {:>8} {:>7} {:>7} {:>7} | {:>8} {:>7} {:>7} {:>7} {:>9}",
            thousands(r.rows),
            thousands(r.fifo.count),
            human_ms(r.fifo.p50),
            human_ms(r.fifo.p99),
            human_ms(r.fifo.max),
            thousands(r.fair.count),
            human_ms(r.fair.p50),
            human_ms(r.fair.p99),
            human_ms(r.fair.max),
            thousands(r.fair_not_served),
        );
    }
}
