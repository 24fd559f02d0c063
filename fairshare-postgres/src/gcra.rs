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
    pub(crate) fn check(self, tat: u64, now: u64, cost: u64) -> Result<u64, Refusal> {
        if cost > u64::from(self.burst) {
            return Err(Refusal::TooLarge { max: self.burst });
        }
        let charge = self.interval_ns.saturating_mul(cost);
        let window = self.interval_ns.saturating_mul(u64::from(self.burst));
        let earliest = tat.saturating_add(charge).saturating_sub(window);
        if now < earliest {
            return Err(Refusal::NotUntil(earliest));
        }
        Ok(tat.max(now).saturating_add(charge))
    }
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
        assert!(matches!(r, Ok(u64::MAX) | Err(Refusal::NotUntil(_))));
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
