//! # Implementation details
//!
//! A CoDel-style queue-delay controller (RFC 8289), evaluated at dequeue on the item about to
//! be dispatched. It enters a shedding state when the sojourn time of dispatched items has
//! stayed at or above `target` for a whole `interval`, and then sheds items at a rate that
//! grows with the square root of the number shed (`interval / sqrt(count)` apart) until an
//! item's sojourn drops below `target`. Only items that themselves waited at least `target`
//! are ever shed. The scheduler feeds it only items whose tenant still has a standing queue
//! behind them (in the spirit of FQ-CoDel's per-flow control), so a light tenant served
//! promptly can neither end a flood's shedding episode nor lose an item to it.

use crate::clock::Nanos;
use crate::config::QueueDelay;

#[derive(Debug, Clone)]
pub(crate) struct CoDel {
    target: Nanos,
    interval: Nanos,
    first_above: Option<Nanos>,
    dropping: bool,
    drop_next: Nanos,
    count: u32,
    last_count: u32,
}

impl CoDel {
    pub(crate) fn new(cfg: QueueDelay) -> Self {
        CoDel {
            target: cfg.target(),
            interval: cfg.interval(),
            first_above: None,
            dropping: false,
            drop_next: Nanos::ZERO,
            count: 0,
            last_count: 0,
        }
    }

    pub(crate) fn is_shedding(&self) -> bool {
        self.dropping
    }

    fn control_law(&self, t: Nanos) -> Nanos {
        let step = self.interval.as_u64() as f64 / f64::from(self.count.max(1)).sqrt();
        t + Nanos::new(step as u64)
    }

    /// Decides whether the item about to be dispatched, which waited `sojourn`, is shed.
    /// `queue_empty` says whether it is the last queued item.
    pub(crate) fn should_shed(&mut self, now: Nanos, sojourn: Nanos, queue_empty: bool) -> bool {
        let ok_to_drop = if sojourn < self.target || queue_empty {
            self.first_above = None;
            false
        } else {
            match self.first_above {
                None => {
                    self.first_above = Some(now + self.interval);
                    false
                }
                Some(t) => now >= t,
            }
        };
        if self.dropping {
            if !ok_to_drop {
                self.dropping = false;
                return false;
            }
            if now >= self.drop_next {
                self.count = self.count.saturating_add(1);
                self.drop_next = self.control_law(self.drop_next);
                return true;
            }
            return false;
        }
        if ok_to_drop {
            self.dropping = true;
            let delta = self.count.saturating_sub(self.last_count);
            let recent = now.saturating_since(self.drop_next).as_u64()
                < self.interval.as_u64().saturating_mul(16);
            self.count = if delta > 1 && recent { delta } else { 1 };
            self.last_count = self.count;
            self.drop_next = self.control_law(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codel() -> CoDel {
        CoDel::new(QueueDelay::new(
            Nanos::from_millis(5),
            Nanos::from_millis(100),
        ))
    }

    #[test]
    fn short_waits_are_never_shed() {
        let mut c = codel();
        for ms in 0..10_000 {
            assert!(!c.should_shed(Nanos::from_millis(ms), Nanos::from_millis(4), false));
        }
    }

    #[test]
    fn standing_delay_for_an_interval_starts_shedding() {
        let mut c = codel();
        let wait = Nanos::from_millis(50);
        assert!(!c.should_shed(Nanos::from_millis(0), wait, false));
        assert!(!c.should_shed(Nanos::from_millis(99), wait, false));
        assert!(c.should_shed(Nanos::from_millis(100), wait, false));
        assert!(c.is_shedding());
        // the next shed comes interval/sqrt(count) later, not at once
        assert!(!c.should_shed(Nanos::from_millis(101), wait, false));
        assert!(c.should_shed(Nanos::from_millis(200), wait, false));
        // a short wait ends the episode
        assert!(!c.should_shed(Nanos::from_millis(201), Nanos::from_millis(1), false));
        assert!(!c.is_shedding());
    }

    #[test]
    fn the_last_item_is_never_shed() {
        let mut c = codel();
        let wait = Nanos::from_secs(5);
        for ms in 0..1000 {
            assert!(!c.should_shed(Nanos::from_millis(ms), wait, true));
        }
    }
}
