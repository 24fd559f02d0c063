//! # Implementation details
//!
//! The generic cell rate algorithm as pure functions of `(tat, now)`: the state of a tenant's
//! rate limit is one "theoretical arrival time". A tenant whose `tat` is at or before `now` is
//! indistinguishable from a fresh one, which is what lets the scheduler forget it.
//!
//! Semantics match governor's `check_n`: with emission interval `T` and burst `b`, the burst
//! tolerance is `tau = T * (b - 1)`; an item of cost `n` passes at `now` iff
//! `now >= tat + T * (n - 1) - tau`, and then `tat' = max(tat, now) + T * n`.
//!
//! The arithmetic is exact: `T·b` reaches 2^126 (an interval of up to `Duration::MAX`, about
//! 2^94 ns, a burst of up to 2^32), so the window, the charge and the TAT itself are 128-bit
//! ([`Tat`]). Nothing
//! saturates but the retry time reported to the host, which says "never within the clock's
//! range" as `Nanos::MAX`.

use std::num::NonZeroU128;

use super::quota::Quota;
use crate::clock::Nanos;
#[cfg(test)]
use crate::error::RejectReason;

/// A theoretical arrival time, exact (up to 2^64 + 2^126 ns). A tenant whose TAT is at or
/// before `now` is in a fresh tenant's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tat(u128);

impl Tat {
    /// A fresh tenant's.
    pub(crate) const ZERO: Tat = Tat(0);

    /// Whether the state differs from a fresh tenant's at `now`.
    #[inline(always)]
    pub(crate) fn after(self, now: Nanos) -> bool {
        self.0 > u128::from(now.as_u64())
    }

    /// The instant, saturated to the clock's range (for the cooling sweep's order).
    pub(crate) fn saturated(self) -> Nanos {
        Nanos::new(u64::try_from(self.0).unwrap_or(u64::MAX))
    }
}

/// Checks an item of `cost` against `quota` without changing anything; returns the new TAT
/// to store if the item is admitted. The reference form: the scheduler runs [`Gcra::check`],
/// which the tests hold to this.
#[cfg(test)]
pub(crate) fn check(quota: &Quota, tat: Tat, now: Nanos, cost: u32) -> Result<Tat, RejectReason> {
    let burst = quota.burst().get();
    if cost > burst {
        return Err(RejectReason::TooLarge {
            cost: u64::from(cost),
            max: u64::from(burst),
        });
    }
    let t = quota.interval_nanos();
    let tau = t * u128::from(burst - 1);
    let now = u128::from(now.as_u64());
    // The classic form, in signed arithmetic: tat + T·(n - 1) - tau.
    let earliest = tat.0 as i128 + (t * u128::from(cost - 1)) as i128 - tau as i128;
    if (now as i128) < earliest {
        return Err(RejectReason::RateLimited {
            retry_at: Tat(earliest as u128).saturated(),
        });
    }
    Ok(Tat(tat.0.max(now) + t * u128::from(cost)))
}

/// A quota as the admission check reads it: the interval and the burst window `T·burst`,
/// multiplied out once per configuration instead of on every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds per unit of cost (at least 1, which also gives `Option<Gcra>` a niche).
    interval: NonZeroU128,
    /// `interval · burst`, exact.
    window: u128,
}

impl Gcra {
    pub(crate) const fn new(quota: &Quota) -> Self {
        let t = quota.interval_nanos();
        Gcra {
            interval: match NonZeroU128::new(t) {
                Some(t) => t,
                None => NonZeroU128::MIN,
            },
            window: t * quota.burst().get() as u128,
        }
    }

    /// [`check`] for a cost the caller already knows is within the burst (the admission check
    /// refuses larger costs as never admissible first): the same instants, from the
    /// precomputed window (`tat + T·n - T·b` is `tat + T·(n-1) - tau`). `Err` holds the
    /// earliest time a retry can pass.
    #[inline(always)]
    pub(crate) fn check(self, tat: Tat, now: Nanos, cost: u32) -> Result<Tat, Nanos> {
        let charge = self.interval.get() * u128::from(cost);
        // At most 2^64 + 2^126 + 2^126: no overflow.
        let earliest = (tat.0 + charge).saturating_sub(self.window);
        let now = u128::from(now.as_u64());
        if now < earliest {
            return Err(Tat(earliest).saturated());
        }
        Ok(Tat(tat.0.max(now) + charge))
    }
}

/// Gives back `cost` units (work admitted and then cancelled before it ran).
#[inline]
pub(crate) fn refund(quota: &Quota, tat: Tat, now: Nanos, cost: u64) -> Tat {
    let back = quota.interval_nanos().saturating_mul(u128::from(cost));
    Tat(tat.0.saturating_sub(back).max(u128::from(now.as_u64())))
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
        let mut tat = Tat::ZERO;
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
            check(&quota, Tat::ZERO, Nanos::from_secs(100), 4),
            Err(RejectReason::TooLarge { cost: 4, max: 3 })
        );
    }

    #[test]
    fn refund_restores_and_saturates() {
        let quota = q(10, 3);
        let now = Nanos::from_secs(1);
        let tat = check(&quota, Tat::ZERO, now, 3).unwrap();
        assert!(check(&quota, tat, now, 1).is_err());
        let tat = refund(&quota, tat, now, 3);
        assert_eq!(tat, Tat(u128::from(now.as_u64())));
        assert_eq!(
            check(&quota, tat, now, 3).unwrap(),
            Tat(u128::from((now + Nanos::from_millis(300)).as_u64()))
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
                for tat in instants.map(|t| Tat(u128::from(t))) {
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

    /// An unsaturated reference: the textbook GCRA in `i128`, one unit of cost at a time
    /// summed (no shortcut), so it shares no arithmetic with the code under test.
    fn reference_admits(quota: &Quota, arrivals: &[(u64, u32)]) -> Vec<bool> {
        let t = quota.interval_nanos() as i128;
        let tau = t * i128::from(quota.burst().get() - 1);
        let mut tat: i128 = 0;
        arrivals
            .iter()
            .map(|&(now, cost)| {
                let now = i128::from(now);
                let mut after = tat.max(now);
                for _ in 0..cost {
                    after += t;
                }
                // Admit iff the last unit's arrival is within the tolerance.
                let ok = after - t - tau <= now;
                if ok {
                    tat = after;
                }
                ok
            })
            .collect()
    }

    fn admits(quota: &Quota, arrivals: &[(u64, u32)]) -> Vec<bool> {
        let g = Gcra::new(quota);
        let mut tat = Tat::ZERO;
        arrivals
            .iter()
            .map(|&(now, cost)| match g.check(tat, Nanos::new(now), cost) {
                Ok(next) => {
                    tat = next;
                    true
                }
                Err(_) => false,
            })
            .collect()
    }

    #[test]
    fn a_window_beyond_u64_is_exact() {
        // One per hour with a burst of ten million: the window is about 2^65 ns. The burst
        // passes, and then nothing until an hour has replenished one unit.
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap())
            .allow_burst(NonZeroU32::new(10_000_000).unwrap());
        let g = Gcra::new(&quota);
        let now = Nanos::from_secs(1);
        let mut tat = Tat::ZERO;
        for _ in 0..10 {
            tat = g.check(tat, now, 1_000_000).expect("the burst passes");
        }
        assert!(g.check(tat, now, 1).is_err(), "the burst is spent");
        let hour = Nanos::from_secs(3600);
        assert!(g.check(tat, now + hour - Nanos::new(1), 1).is_err());
        let tat = g.check(tat, now + hour, 1).expect("one unit an hour later");
        assert!(g.check(tat, now + hour, 1).is_err());
    }

    #[test]
    fn extreme_quotas_match_the_unsaturated_reference() {
        let quotas = [
            Quota::with_period(std::time::Duration::MAX)
                .unwrap()
                .allow_burst(NonZeroU32::MAX),
            Quota::with_period(std::time::Duration::MAX).unwrap(),
            Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::MAX),
            Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX),
            Quota::per_second(NonZeroU32::new(1).unwrap()),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for quota in quotas {
            for _ in 0..20 {
                let mut now = 0u64;
                let arrivals: Vec<(u64, u32)> = (0..40)
                    .map(|_| {
                        now = now.saturating_add(match next() % 4 {
                            0 => 0,
                            1 => next() % 1_000,
                            2 => next() % 1_000_000_000_000,
                            _ => next() >> (next() % 64),
                        });
                        let cost = match next() % 3 {
                            0 => 1,
                            1 => (next() % 1000) as u32 + 1,
                            _ => (next() % u64::from(quota.burst().get())) as u32 + 1,
                        }
                        .min(quota.burst().get());
                        (now, cost)
                    })
                    .collect();
                // The reference sums cost units one by one; keep its costs small enough.
                let arrivals: Vec<(u64, u32)> = arrivals
                    .into_iter()
                    .map(|(t, c)| (t, c.min(5_000)))
                    .collect();
                assert_eq!(
                    admits(&quota, &arrivals),
                    reference_admits(&quota, &arrivals),
                    "{quota:?} {arrivals:?}"
                );
            }
        }
    }

    #[test]
    fn huge_values_never_panic() {
        let quota = Quota::with_period(std::time::Duration::from_secs(u64::MAX))
            .unwrap()
            .allow_burst(NonZeroU32::MAX);
        let tat = check(&quota, Tat(u128::from(u64::MAX)), Nanos::MAX, u32::MAX).unwrap();
        assert!(tat.after(Nanos::MAX));
        assert_eq!(tat.saturated(), Nanos::MAX);
        assert!(Gcra::new(&quota).check(tat, Nanos::MAX, 1).is_err());
    }
}
