//! `fairshare-postgres`, the parts that run without a server: a server per fuzz execution
//! would take tens of milliseconds, so the SQL statements themselves are left to the crate's
//! tests and its soak example. What is fuzzed here, each against a simple reference:
//!
//! - the fleet-wide rate limit (`src/gcra.rs`, compiled in from the crate's source, since it
//!   is crate-private): the exact rule `passes iff now >= tat + T·n − T·b`, then
//!   `tat' = max(tat, now) + T·n`, in 128-bit arithmetic; the stored state must fit the
//!   `bigint` column;
//! - the pass encoding of the `bigint` column (`src/sql.rs`, compiled in the same way): a
//!   round trip, and the column's order equal to the pass order; durations in microseconds
//!   (capped at what PostgreSQL's interval and timestamp arithmetic takes);
//!   every statement naming only the configured schema;
//! - `QueueConfig::new` (schema names) and `QueueConfig::backoff` (`base · 2^(attempt−1)`, at
//!   most the maximum); `JobState` names;
//! - the passes an enqueue assigns, as `Queue::enqueue_batch` does (one `assign_batch` for a
//!   uniform batch, one `assign` per job otherwise) with cost corrections between batches:
//!   increasing per tenant, at or above the queue's floor, in the column's order, and a
//!   uniform batch equal to one `assign` per job whenever the core says it must be.

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fairshare-postgres/src/gcra.rs"]
mod gcra;
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../fairshare-postgres/src/sql.rs"]
mod sql;

use arbitrary::{Arbitrary, Unstructured};
use fairshare::config::Quota;
use fairshare::fleet::{PassAssigner, TenantPass};
use fairshare_postgres::{JobState, QueueConfig};
use gcra::{Gcra, Refusal};
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

/// A rate quota, from a constructor or raw columns.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum QuotaSpec {
    /// `per_second` / `per_minute` / `per_hour` (by `unit`) with an optional burst.
    Rate {
        rate: u32,
        unit: u8,
        burst: Option<u32>,
    },
    /// `with_period` of `secs` seconds and `nanos` nanoseconds, with a burst.
    Period { secs: u32, nanos: u32, burst: u32 },
    /// The two columns of a tenant row, as read back.
    Columns { interval_ns: i64, burst: i64 },
}

impl QuotaSpec {
    fn gcra(self) -> Option<Gcra> {
        let nz = |v: u32| NonZeroU32::new(v.max(1)).expect("non-zero");
        match self {
            QuotaSpec::Rate { rate, unit, burst } => {
                let q = match unit % 3 {
                    0 => Quota::per_second(nz(rate)),
                    1 => Quota::per_minute(nz(rate)),
                    _ => Quota::per_hour(nz(rate)),
                };
                let q = burst.map_or(q, |b| q.allow_burst(nz(b)));
                Some(Gcra::from_quota(&q))
            }
            QuotaSpec::Period { secs, nanos, burst } => {
                let q = Quota::with_period(Duration::new(u64::from(secs), nanos % 1_000_000_000))?;
                Some(Gcra::from_quota(&q.allow_burst(nz(burst))))
            }
            QuotaSpec::Columns { interval_ns, burst } => {
                let g = Gcra::from_columns(Some(interval_ns), Some(burst));
                assert_eq!(
                    g.is_some(),
                    interval_ns > 0 && burst > 0 && burst <= i64::from(u32::MAX),
                    "columns ({interval_ns}, {burst}) read wrongly"
                );
                g
            }
        }
    }
}

/// A cost biased towards a quota's burst.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum BatchCost {
    /// The whole burst.
    Burst,
    /// The burst minus a little.
    BelowBurst(u8),
    /// The burst plus a little.
    AboveBurst(u8),
    /// Any.
    Any(u64),
}

/// One enqueued batch's shape.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Batch {
    tenant: u8,
    len: u8,
    cost: u32,
    /// Uniform batches take the crate's one-range path; others one pass per job.
    mixed: bool,
}

/// One enqueue of the pass model: the batch, a cost correction after it (declared, actual),
/// and how far the queue's floor moves before it (in strides of one unit).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct PassStep {
    batch: Batch,
    correction: Option<(u32, u32)>,
    advance: u16,
}

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// A schema name through `QueueConfig::new`, and its statements.
    Schema(String),
    /// `QueueConfig::backoff`.
    Backoff {
        base: (u64, u32),
        max: (u64, u32),
        attempt: u32,
    },
    /// A sequence of rate-limit checks of one quota, the state carried as the row stores it.
    Rate {
        quota: QuotaSpec,
        start_ns: i64,
        steps: Vec<(u32, BatchCost)>,
    },
    /// Two passes through the column encoding.
    Pass(u64, u64),
    /// A duration in microseconds.
    Micros(u64, u32),
    /// A job state name.
    State(String),
    /// Enqueues of several tenants with cost corrections between them.
    Passes {
        scale: Option<u64>,
        weights: [u32; 4],
        steps: Vec<PassStep>,
    },
}

/// Decodes and runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    for op in ops.iter().take(64) {
        step(op);
    }
}

fn step(op: &Op) {
    match op {
        Op::Schema(name) => schema(name),
        Op::Backoff { base, max, attempt } => {
            let d = |(s, n): (u64, u32)| Duration::new(s % (1 << 40), n % 1_000_000_000);
            backoff(d(*base), d(*max), *attempt);
        }
        Op::Rate {
            quota,
            start_ns,
            steps,
        } => {
            if let Some(g) = quota.gcra() {
                rate(g, *start_ns, steps);
            }
        }
        Op::Pass(a, b) => {
            for p in [*a, *b] {
                assert_eq!(sql::decode_pass(sql::encode_pass(p)), p);
            }
            assert_eq!(
                sql::encode_pass(*a).cmp(&sql::encode_pass(*b)),
                a.cmp(b),
                "the column's order differs from the pass order for {a} and {b}"
            );
        }
        Op::Micros(secs, nanos) => {
            let d = Duration::new(*secs, nanos % 1_000_000_000);
            let expected = i64::try_from(d.as_nanos() / 1_000)
                .unwrap_or(i64::MAX)
                .min(sql::MAX_MICROS);
            assert_eq!(sql::micros(d), expected);
        }
        Op::State(s) => match s.parse::<JobState>() {
            Ok(state) => {
                assert_eq!(state.as_str(), s);
                assert_eq!(state.to_string(), *s);
            }
            Err(_) => assert!(!matches!(
                s.as_str(),
                "queued" | "running" | "done" | "dead"
            )),
        },
        Op::Passes {
            scale,
            weights,
            steps,
        } => passes(*scale, weights, steps),
    }
}

fn schema(name: &str) {
    let reference = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    match QueueConfig::new(name) {
        Ok(config) => {
            assert!(reference, "schema name {name:?} accepted");
            assert_eq!(config.schema(), name);
            // Every statement addresses the schema quoted, and nothing else outside it.
            let s = sql::Sql::new(name);
            let quoted = format!("\"{name}\".");
            for text in [&s.migrate, &s.claim, &s.insert_jobs, &s.reap, &s.purge] {
                assert!(text.contains(&quoted), "a statement misses the schema");
                assert!(!text.contains(';') || std::ptr::eq(text, &s.migrate));
            }
        }
        Err(_) => assert!(!reference, "schema name {name:?} refused"),
    }
}

fn backoff(base: Duration, max: Duration, attempt: u32) {
    let config = QueueConfig::new("q")
        .expect("valid")
        .with_backoff(base, max);
    let got = config.backoff(attempt);
    // The reference: base · 2^(attempt − 1), at most `max`, in exact arithmetic.
    let doublings = attempt.saturating_sub(1);
    let exact = if base.is_zero() {
        Some(0)
    } else {
        2u128
            .checked_pow(doublings)
            .and_then(|f| base.as_nanos().checked_mul(f))
    };
    let expected = exact.map_or(max.as_nanos(), |n| n.min(max.as_nanos()));
    assert_eq!(
        got.as_nanos(),
        expected,
        "backoff({attempt}) with base {base:?}, max {max:?}"
    );
    if attempt > 1 {
        assert!(config.backoff(attempt - 1) <= got, "backoff not monotone");
    }
}

/// The rule, exact (128 bits, never clamped): `Ok(new tat)`, `Err(None)` for a cost above the
/// burst, `Err(Some(at))` for "not before `at`".
fn reference(g: Gcra, tat: u128, now: u64, cost: u64) -> Result<u128, Option<u128>> {
    if cost > u64::from(g.burst) {
        return Err(None);
    }
    let t = u128::from(g.interval_ns);
    let earliest = (tat + t * u128::from(cost)).saturating_sub(t * u128::from(g.burst));
    if u128::from(now) < earliest {
        return Err(Some(earliest));
    }
    Ok(tat.max(u128::from(now)) + t * u128::from(cost))
}

/// The largest time the row's `bigint` column stores.
const STORED_MAX: u128 = i64::MAX as u128;

fn rate(g: Gcra, start_ns: i64, steps: &[(u32, BatchCost)]) {
    // The row's state as stored, and the rule's own state, never clamped. While the rule's
    // state fits the column the check must decide exactly as the rule does; beyond it (a
    // quota whose window reaches past the year 2262) it may refuse more, never admit more.
    let mut tat: i64 = 0;
    let mut exact: u128 = 0;
    let mut now = u64::try_from(start_ns).unwrap_or(0);
    for &(advance_ms, cost) in steps.iter().take(32) {
        // The database clock is an `int8` of nanoseconds: it ends where the column does (the
        // capped state refuses until then, and nothing is after it).
        now = now
            .saturating_add(u64::from(advance_ms) * 1_000_000)
            .min(i64::MAX as u64 - 1);
        let b = u64::from(g.burst);
        let cost = match cost {
            BatchCost::Burst => b,
            BatchCost::BelowBurst(d) => b.saturating_sub(u64::from(d)).max(1),
            BatchCost::AboveBurst(d) => b + u64::from(d),
            BatchCost::Any(c) => c,
        };
        let stored = u64::try_from(tat).unwrap_or(0);
        let got = g.check(stored, now, cost);
        let want = reference(g, exact, now, cost);
        let exact_fits = exact < STORED_MAX;
        let context = || {
            format!(
                "quota {g:?}, tat {stored} (exact {exact}), now {now}, cost {cost}: got {got:?}, the rule says {want:?}"
            )
        };
        match (got, want) {
            (Ok(next), Ok(next_exact)) => {
                // As `enqueue_batch` stores it.
                let next = i64::try_from(next).unwrap_or(i64::MAX);
                if exact_fits {
                    assert_eq!(
                        u128::try_from(next).unwrap_or(0),
                        next_exact.min(STORED_MAX),
                        "{}",
                        context()
                    );
                }
                tat = next;
                exact = next_exact;
            }
            (Err(Refusal::TooLarge { max }), Err(None)) => assert_eq!(max, g.burst),
            (Err(Refusal::NotUntil(at)), Err(Some(earliest))) => {
                assert!(u128::from(at) > u128::from(now), "{}", context());
                if exact_fits {
                    assert_eq!(
                        u128::from(at),
                        earliest.min(u128::from(u64::MAX)),
                        "{}",
                        context()
                    );
                }
            }
            // Beyond the column's range: refusing is allowed (the batch is not counted).
            (Err(Refusal::NotUntil(at)), Ok(_)) if !exact_fits => {
                assert!(u128::from(at) > u128::from(now), "{}", context());
            }
            _ => panic!("{}", context()),
        }
    }
}

fn passes(scale: Option<u64>, weights: &[u32; 4], steps: &[PassStep]) {
    let assigner = match scale.and_then(NonZeroU64::new) {
        Some(s) => PassAssigner::with_scale(s),
        None => PassAssigner::new(),
    };
    let weight = |t: usize| NonZeroU32::new(weights[t].max(1)).expect("non-zero");
    let mut tenants = [TenantPass::default(); 4];
    // The floor as the crate computes it, modelled: the next ready job's pass, here the
    // smallest last pass of the tenants still behind, moved on by `advance`.
    let mut floor = 0u64;
    for &PassStep {
        batch,
        correction,
        advance,
    } in steps.iter().take(32)
    {
        let t = usize::from(batch.tenant % 4);
        let w = weight(t);
        let n = u32::from(batch.len % 16) + 1;
        let cost = batch.cost.max(1);
        floor = floor.saturating_add(u64::from(advance).saturating_mul(assigner.stride(1, w)));
        let before = tenants[t];
        let mut singles = before;
        let one_by_one: Vec<u64> = (0..n)
            .map(|_| assigner.assign(&mut singles, w, floor, cost))
            .collect();
        let got: Vec<u64> = if batch.mixed {
            one_by_one.clone()
        } else {
            let mut state = before;
            let range = assigner.assign_batch(&mut state, w, floor, cost, n);
            let got: Vec<u64> = range.iter().collect();
            assert_eq!(got.len(), n as usize);
            assert_eq!(state.pass, *got.last().expect("n >= 1"));
            let carry_free = before.carry == 0 || (before.carry < 0 && before.pass < floor);
            if carry_free {
                assert_eq!(
                    got, one_by_one,
                    "a uniform batch differs from one pass per job"
                );
                assert_eq!(state, singles);
            } else if before.carry > 0 {
                for (b, s) in got.iter().zip(&one_by_one) {
                    assert!(b <= s, "a batch charged more debt than one job at a time");
                }
            } else {
                for (b, s) in got.iter().zip(&one_by_one) {
                    assert!(b >= s, "a batch gave more credit than one job at a time");
                }
            }
            // The carry moved only towards zero.
            assert!(
                state.carry.unsigned_abs() <= before.carry.unsigned_abs(),
                "carry grew in an assignment"
            );
            tenants[t] = state;
            got
        };
        if batch.mixed {
            tenants[t] = singles;
        }
        for p in &got {
            assert!(*p >= floor, "pass {p} below the floor {floor}");
        }
        for pair in got.windows(2) {
            assert!(
                pair[0] < pair[1] || pair[1] == u64::MAX,
                "passes of one batch not increasing: {pair:?}"
            );
            assert!(sql::encode_pass(pair[0]) <= sql::encode_pass(pair[1]));
        }
        if let Some(&first) = got.first() {
            assert!(
                first > before.pass || before.pass == u64::MAX || first >= floor,
                "a tenant's new pass {first} went back behind its last {}",
                before.pass
            );
        }
        if let Some((declared, actual)) = correction {
            assigner.correct(&mut tenants[t], w, declared, actual);
        }
    }
}
