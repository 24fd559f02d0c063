//! # Implementation details
//!
//! The generic cell rate algorithm as pure functions of `(tat, now)`: the state of a tenant's
//! rate limit is one "theoretical arrival time". A tenant whose `tat` is at or before `now` is
//! indistinguishable from a fresh one, which is what lets the scheduler forget it.
//!
//! Semantics match governor's `check_n`: with emission interval `T` and burst `b`, the burst
//! tolerance is `tau = T * (b - 1)`; an item of cost `n` passes at `now` iff
//! `now >= tat + T * (n - 1) - tau`, and then `tat' = max(tat, now) + T * n`.

use std::num::NonZeroU64;

use super::quota::Quota;
use crate::clock::Nanos;
#[cfg(test)]
use crate::error::RejectReason;

/// Checks an item of `cost` against `quota` without changing anything; returns the new `tat`
/// to store if the item is admitted. The reference form: the scheduler runs [`Gcra::check`],
/// which the tests hold to this.
#[cfg(test)]
pub(crate) fn check(
    quota: &Quota,
    tat: Nanos,
    now: Nanos,
    cost: u32,
) -> Result<Nanos, RejectReason> {
    let burst = quota.burst().get();
    if cost > burst {
        return Err(RejectReason::TooLarge {
            cost: u64::from(cost),
            max: u64::from(burst),
        });
    }
    let t = quota.interval().as_u64();
    // The classic form is `tat + t·(cost - 1) - t·(burst - 1)`; the same instant as
    // `tat + t·cost - t·burst`, with one multiplication fewer on the hot path.
    let charge = t.saturating_mul(u64::from(cost));
    let window = t.saturating_mul(u64::from(burst));
    let earliest = tat.as_u64().saturating_add(charge).saturating_sub(window);
    if now.as_u64() < earliest {
        return Err(RejectReason::RateLimited {
            retry_at: Nanos::new(earliest),
        });
    }
    Ok(Nanos::new(tat.max(now).as_u64().saturating_add(charge)))
}

/// A quota as the admission check reads it: the interval and the burst window `T·burst`,
/// multiplied out once per configuration instead of on every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds per unit of cost (at least 1, which also gives `Option<Gcra>` a niche).
    interval: NonZeroU64,
    /// `interval · burst`, saturated.
    window: u64,
}

impl Gcra {
    pub(crate) const fn new(quota: &Quota) -> Self {
        let t = quota.interval().as_u64();
        Gcra {
            interval: match NonZeroU64::new(t) {
                Some(t) => t,
                None => NonZeroU64::MIN,
            },
            window: t.saturating_mul(quota.burst().get() as u64),
        }
    }

    /// [`check`] for a cost the caller already knows is within the burst (the admission check
    /// refuses larger costs as never admissible first): the same instants, from the
    /// precomputed window. `Err` holds the earliest time a retry can pass.
    #[inline(always)]
    pub(crate) fn check(self, tat: Nanos, now: Nanos, cost: u32) -> Result<Nanos, Nanos> {
        let charge = self.interval.get().saturating_mul(u64::from(cost));
        let earliest = tat
            .as_u64()
            .saturating_add(charge)
            .saturating_sub(self.window);
        if now.as_u64() < earliest {
            return Err(Nanos::new(earliest));
        }
        Ok(Nanos::new(tat.max(now).as_u64().saturating_add(charge)))
    }
}

/// Gives back `cost` units (work admitted and then cancelled before it ran).
#[inline]
pub(crate) fn refund(quota: &Quota, tat: Nanos, now: Nanos, cost: u64) -> Nanos {
    let back = quota.interval().as_u64().saturating_mul(cost);
    Nanos::new(tat.as_u64().saturating_sub(back)).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn q(rate: u32, burst: u32) -> Quota {
        Quota::per_second(NonZeroU32::new(rate).unwrap())
            .allow_burst(NonZeroU32::new(burst).unwrap())
    }

    #[test]
    fn burst_then_rate() {
        let quota = q(10, 3); // one unit per 100 ms, 3 at once
        let mut tat = Nanos::ZERO;
        let now = Nanos::from_secs(1);
        for _ in 0..3 {
            tat = check(&quota, tat, now, 1).unwrap();
        }
        let err = check(&quota, tat, now, 1).unwrap_err();
        assert_eq!(
            err,
            RejectReason::RateLimited {
                retry_at: now + Nanos::from_millis(100)
            }
        );
        assert!(check(&quota, tat, now + Nanos::from_millis(100), 1).is_ok());
    }

    #[test]
    fn cost_above_burst_is_never_admissible() {
        let quota = q(10, 3);
        assert_eq!(
            check(&quota, Nanos::ZERO, Nanos::from_secs(100), 4),
            Err(RejectReason::TooLarge { cost: 4, max: 3 })
        );
    }

    #[test]
    fn refund_restores_and_saturates() {
        let quota = q(10, 3);
        let now = Nanos::from_secs(1);
        let tat = check(&quota, Nanos::ZERO, now, 3).unwrap();
        assert!(check(&quota, tat, now, 1).is_err());
        let tat = refund(&quota, tat, now, 3);
        assert_eq!(tat, now);
        assert_eq!(
            check(&quota, tat, now, 3).unwrap(),
            tat + Nanos::from_millis(300)
        );
    }

    #[test]
    fn precomputed_window_matches_check() {
        let quotas = [
            q(10, 3),
            q(1_000_000_000, 1),
            q(1, 1_000_000),
            Quota::with_period(std::time::Duration::from_secs(u64::MAX))
                .unwrap()
                .allow_burst(NonZeroU32::MAX),
        ];
        let instants = [0, 1, 99, 100_000_000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for quota in quotas {
            let g = Gcra::new(&quota);
            for cost in [1, 2, 3, quota.burst().get()] {
                if cost > quota.burst().get() {
                    continue;
                }
                for tat in instants.map(Nanos::new) {
                    for now in instants.map(Nanos::new) {
                        let want = match check(&quota, tat, now, cost) {
                            Ok(tat) => Ok(tat),
                            Err(RejectReason::RateLimited { retry_at }) => Err(retry_at),
                            Err(other) => panic!("unexpected {other:?}"),
                        };
                        assert_eq!(
                            g.check(tat, now, cost),
                            want,
                            "{quota:?} {cost} {tat:?} {now:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn huge_values_saturate() {
        let quota = Quota::with_period(std::time::Duration::from_secs(u64::MAX))
            .unwrap()
            .allow_burst(NonZeroU32::MAX);
        let tat = check(&quota, Nanos::MAX, Nanos::MAX, u32::MAX);
        assert!(tat.is_ok() || matches!(tat, Err(RejectReason::RateLimited { .. })));
    }
}
