//! # Implementation details
//!
//! The fleet-wide rate limit: the generic cell rate algorithm on the tenant row's
//! theoretical arrival time (`tat_ns`, nanoseconds on the database clock), in exact saturating
//! integer arithmetic. Same semantics as the core's in-process check (and governor's
//! `check_n`): with emission interval `T` and burst `b`, a batch of cost `n <= b` passes at
//! `now` iff `now >= tat + T·n - T·b`, and then `tat' = max(tat, now) + T·n`.

use fairshare::config::Quota;

/// A quota as the check reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds per unit of cost, at least 1.
    pub(crate) interval_ns: u64,
    pub(crate) burst: u32,
}

/// Why a batch did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Cost above the burst: can never pass.
    TooLarge { max: u32 },
    /// Passes from this instant (ns) on.
    NotUntil(u64),
}

impl Gcra {
    pub(crate) fn from_quota(quota: &Quota) -> Self {
        let ns = quota.replenish_interval().as_nanos();
        Gcra {
            interval_ns: u64::try_from(ns).unwrap_or(u64::MAX).max(1),
            burst: quota.burst().get(),
        }
    }

    /// Reads a quota stored on a tenant row (both columns set, both positive).
    pub(crate) fn from_columns(interval_ns: Option<i64>, burst: Option<i64>) -> Option<Self> {
        let interval_ns = u64::try_from(interval_ns?).ok().filter(|&t| t > 0)?;
        let burst = u32::try_from(burst?).ok().filter(|&b| b > 0)?;
        Some(Gcra { interval_ns, burst })
    }

    /// Checks a batch of total `cost` at `now`; the new `tat` to store if it passes.
    ///
    /// Exact, in 128 bits: `T·n` and `T·b` can exceed 64 bits (a quota of one a year with a
    /// burst of 600 does), and saturating them there would let every batch up to the burst
    /// pass. The new `tat` is capped at [`TAT_MAX`], what the row stores; a `tat` at the cap
    /// stands for one beyond it, so it refuses until then.
    pub(crate) fn check(self, tat: u64, now: u64, cost: u64) -> Result<u64, Refusal> {
        if cost > u64::from(self.burst) {
            return Err(Refusal::TooLarge { max: self.burst });
        }
        let interval = u128::from(self.interval_ns);
        let charge = interval * u128::from(cost);
        let window = interval * u128::from(self.burst);
        let mut earliest = (u128::from(tat) + charge).saturating_sub(window);
        if tat >= TAT_MAX {
            earliest = earliest.max(u128::from(TAT_MAX));
        }
        if u128::from(now) < earliest {
            return Err(Refusal::NotUntil(clamp(earliest)));
        }
        let next = u128::from(tat.max(now)) + charge;
        Ok(clamp(next.min(u128::from(TAT_MAX))))
    }
}

/// The largest theoretical arrival time a tenant row stores (`tat_ns` is a `bigint`), in
/// nanoseconds since the epoch: the year 2262.
pub(crate) const TAT_MAX: u64 = i64::MAX as u64;

fn clamp(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn g(rate: u32, burst: u32) -> Gcra {
        Gcra::from_quota(
            &Quota::per_second(NonZeroU32::new(rate).unwrap())
                .allow_burst(NonZeroU32::new(burst).unwrap()),
        )
    }

    #[test]
    fn burst_then_rate() {
        let q = g(10, 3); // one unit per 100 ms, 3 at once
        let now = 1_000_000_000;
        let mut tat = 0;
        for _ in 0..3 {
            tat = q.check(tat, now, 1).unwrap();
        }
        assert_eq!(
            q.check(tat, now, 1),
            Err(Refusal::NotUntil(now + 100_000_000))
        );
        assert!(q.check(tat, now + 100_000_000, 1).is_ok());
        assert!(q.check(tat, now + 99_999_999, 1).is_err());
    }

    #[test]
    fn batch_cost_counts_every_unit() {
        let q = g(10, 5);
        let now = 10_000_000_000;
        let tat = q.check(0, now, 5).unwrap();
        assert_eq!(tat, now + 500_000_000);
        // Two units back after 200 ms.
        assert_eq!(
            q.check(tat, now, 2),
            Err(Refusal::NotUntil(now + 200_000_000))
        );
        assert_eq!(q.check(0, now, 6), Err(Refusal::TooLarge { max: 5 }));
    }

    #[test]
    fn huge_values_saturate() {
        let q = Gcra {
            interval_ns: u64::MAX,
            burst: u32::MAX,
        };
        let r = q.check(u64::MAX, u64::MAX, u64::from(u32::MAX));
        assert!(matches!(r, Ok(TAT_MAX) | Err(Refusal::NotUntil(_))));
    }

    #[test]
    fn a_window_beyond_64_bits_still_limits() {
        // One a year, a burst of 600: T·b is above 2^64 ns.
        let q = Gcra::from_quota(
            &Quota::with_period(std::time::Duration::from_secs(365 * 86_400))
                .unwrap()
                .allow_burst(NonZeroU32::new(600).unwrap()),
        );
        let now = 1_700_000_000_000_000_000;
        let tat = q.check(0, now, 600).unwrap();
        assert_eq!(
            tat, TAT_MAX,
            "a burst's worth reaches past what the row stores"
        );
        assert_eq!(q.check(tat, now, 1), Err(Refusal::NotUntil(TAT_MAX)));
        // A sixth of the burst leaves the rest, and not one more.
        let part = q.check(0, now, 100).unwrap();
        assert_eq!(part, now + 100 * q.interval_ns);
        assert!(q.check(part, now, 500).is_ok());
        assert_eq!(
            q.check(part, now, 501),
            Err(Refusal::NotUntil(now + q.interval_ns))
        );
    }

    #[test]
    fn columns_must_be_positive() {
        assert_eq!(Gcra::from_columns(Some(0), Some(1)), None);
        assert_eq!(Gcra::from_columns(Some(5), Some(-1)), None);
        assert_eq!(Gcra::from_columns(None, Some(1)), None);
        assert_eq!(
            Gcra::from_columns(Some(5), Some(2)),
            Some(Gcra {
                interval_ns: 5,
                burst: 2
            })
        );
    }
}
