//! # Implementation details
//!
//! The embedded noisy-tenant [`Detector`]: what the scheduler records into it (admitted cost at
//! commit, dispatched cost at dispatch, one per refusal at the door), when it polls it (from
//! those same calls, once a quarter of a sub-window of its clock has passed, and on
//! [`Scheduler::poll_noisy`]), and how it applies a [`Response`](crate::detect::Response) and
//! restores what the tenant had. Off, each hook is one branch on `Option::is_some`.
//!
//! A response in force is remembered beside the detector ([`Applied`]): what was set and what
//! restores the tenant's own setting. It is restored only if the setting is still the one the
//! response made; an operator who changed it meanwhile keeps theirs.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::config::TenantLimits;
use crate::detect::{Action, Detector, DetectorConfig, NoisyEvent, Prior};
use crate::queue::{DefaultHashBuilder, NIL};

/// Events kept for [`Scheduler::poll_noisy`]; past this, the oldest are dropped, so a host
/// that never asks holds bounded memory.
pub(super) const MAX_EVENTS: usize = 1024;

/// The detector and the responses it put in force.
#[derive(Debug)]
pub(super) struct Detection<K> {
    pub(super) detector: Detector<K>,
    /// The next poll is due at or after this time.
    pub(super) next_poll: Nanos,
    /// Time between two polls: a quarter of a sub-window (at least 1 ns).
    every: Nanos,
    /// Responses in force (at most one per noisy tenant, so at most `k`).
    applied: Vec<Applied<K>>,
}

/// A response in force on `key`: the action that made it and the one that undoes it.
#[derive(Debug)]
struct Applied<K> {
    key: K,
    set: Action,
    restore: Action,
}

impl<K> Detection<K> {
    /// A detection with a config that [`DetectorConfig::validate`] accepts (as
    /// [`SchedulerConfig::with_detector`](crate::SchedulerConfig::with_detector) ensures).
    pub(super) fn new(config: DetectorConfig) -> Self {
        Detection {
            detector: Detector::from_valid(config, DefaultHashBuilder::default()),
            next_poll: Nanos::ZERO,
            every: Nanos::new((config.sub_window().as_u64() / 4).max(1)),
            applied: Vec::new(),
        }
    }
}

/// The action that restores what `prior` describes, for a response that made `set`.
fn restore_of(set: Action, prior: Prior) -> Action {
    match set {
        Action::SetWeight { .. } | Action::ClearWeight if prior.weight_override() => {
            Action::SetWeight {
                weight: prior.weight(),
            }
        }
        Action::SetWeight { .. } | Action::ClearWeight => Action::ClearWeight,
        Action::SetLimits { .. } | Action::ClearLimits => match prior.limits_override() {
            Some(limits) => Action::SetLimits { limits },
            None => Action::ClearLimits,
        },
    }
}

// ===== impl Scheduler: hooks =====

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Records an admission of `cost` by live tenant `idx`, and polls if a poll is due. Off,
    /// one branch: the rest is out of line, so the paths it rides on stay small.
    #[inline(always)]
    pub(super) fn detect_admitted(&mut self, idx: u32, cost: u32, now: Nanos) {
        if self.detect.is_some() {
            self.record_admitted(idx, cost, now);
        }
    }

    #[cold]
    #[inline(never)]
    fn record_admitted(&mut self, idx: u32, cost: u32, now: Nanos) {
        if let Some(d) = &mut self.detect {
            if let Some(key) = self.queue.key(self.queue.slot_handle(idx)) {
                d.detector.record_admitted(key, cost, now);
            }
            if now >= d.next_poll {
                self.poll_detector(now);
            }
        }
    }

    /// Records a dispatch of `cost` by live tenant `idx`; returns whether a poll is due (the
    /// caller polls once the dispatch is complete). Off, one branch.
    #[inline(always)]
    pub(super) fn detect_served(&mut self, idx: u32, cost: u32, now: Nanos) -> bool {
        self.detect.is_some() && self.record_served(idx, cost, now)
    }

    #[cold]
    #[inline(never)]
    fn record_served(&mut self, idx: u32, cost: u32, now: Nanos) -> bool {
        match &mut self.detect {
            None => false,
            Some(d) => {
                if let Some(key) = self.queue.key(self.queue.slot_handle(idx)) {
                    d.detector.record_served(key, cost, now);
                }
                now >= d.next_poll
            }
        }
    }

    /// Records a refusal of live tenant `idx` (counted as one, whatever the item's cost: a
    /// refused item was never charged, so its declared cost says nothing); returns whether a
    /// poll is due.
    #[inline]
    pub(super) fn detect_refused(&mut self, idx: u32) -> bool {
        let now = self.last_now;
        match &mut self.detect {
            None => false,
            Some(d) => {
                if let Some(key) = self.queue.key(self.queue.slot_handle(idx)) {
                    d.detector.record_refused(key, 1, now);
                }
                now >= d.next_poll
            }
        }
    }

    /// Polls the detector at `now`, applies and restores responses, and keeps the events.
    #[cold]
    #[inline(never)]
    pub(super) fn poll_detector(&mut self, now: Nanos) {
        let Some(mut d) = self.detect.take() else {
            return;
        };
        d.next_poll = Nanos::new(now.as_u64().saturating_add(d.every.as_u64()));
        let events = d.detector.poll_with(now, |key| self.prior(key));
        for event in events {
            let event = self.respond(&mut d, event);
            self.push_noisy_event(event);
        }
        self.detect = Some(d);
    }

    /// Applies a `Became` event's response, or restores a `Cleared` tenant's settings; returns
    /// the event with the action the scheduler took (`None` if it took none).
    fn respond(&mut self, d: &mut Detection<K>, event: NoisyEvent<K>) -> NoisyEvent<K> {
        match event {
            NoisyEvent::Became {
                key,
                share,
                at,
                action,
            } => {
                let action = action.filter(|&set| {
                    let restore = restore_of(set, self.prior(&key));
                    let done = self.apply_action(&key, set);
                    if done {
                        d.applied.push(Applied {
                            key: key.clone(),
                            set,
                            restore,
                        });
                    }
                    done
                });
                NoisyEvent::Became {
                    key,
                    share,
                    at,
                    action,
                }
            }
            NoisyEvent::Cleared { key, share, at, .. } => {
                let action = self.restore(d, &key);
                NoisyEvent::Cleared {
                    key,
                    share,
                    at,
                    action,
                }
            }
        }
    }

    /// Ends the response in force on `key`, if any: restores its settings if they are still
    /// the ones the response made, and returns the restoring action taken.
    fn restore(&mut self, d: &mut Detection<K>, key: &K) -> Option<Action> {
        let i = d.applied.iter().position(|a| a.key == *key)?;
        let Applied { set, restore, .. } = d.applied.swap_remove(i);
        let unchanged = match set {
            Action::SetWeight { weight } => self.weight_override(key) == Some(weight),
            Action::SetLimits { limits } => self.limits_override(key) == Some(limits),
            Action::ClearWeight => self.weight_override(key).is_none(),
            Action::ClearLimits => self.limits_override(key).is_none(),
        };
        (unchanged && self.apply_action(key, restore)).then_some(restore)
    }

    /// Makes `action`'s call for `key`; `false` (and nothing done) only if the tenant table is
    /// full, where a setter would panic.
    fn apply_action(&mut self, key: &K, action: Action) -> bool {
        if self.queue.slot_of(key.clone()).is_none() {
            return false;
        }
        action.apply(key.clone(), self);
        // A slot made here for a clearing action is let go again.
        if let Some(idx) = self.queue.find_slot(key) {
            self.queue.forget_if_idle(idx);
        }
        true
    }

    /// What `key` has before a response: the base of the response and what restores it.
    fn prior(&self, key: &K) -> Prior {
        let own = self.weight_override(key);
        let weight = own.unwrap_or(self.queue.config().default_weight());
        Prior::new(weight)
            .with_weight_override(own.is_some())
            .with_limits_override(self.limits_override(key))
    }

    fn push_noisy_event(&mut self, event: NoisyEvent<K>) {
        if self.noisy_events.len() == MAX_EVENTS {
            self.noisy_events.pop_front();
        }
        self.noisy_events.push_back(event);
    }

    /// Replaces the detector (a reconfiguration changed its settings): every response in
    /// force is restored and every noisy tenant reported cleared, then detection starts
    /// afresh with `config` (or stops, with `None`).
    pub(super) fn replace_detection(&mut self, config: Option<DetectorConfig>) {
        let now = self.now();
        if let Some(mut d) = self.detect.take() {
            for noisy in d.detector.stats(now).noisy {
                let action = self.restore(&mut d, &noisy.key);
                self.push_noisy_event(NoisyEvent::Cleared {
                    key: noisy.key,
                    share: noisy.share,
                    at: now,
                    action,
                });
            }
        }
        self.detect = config.map(|c| Box::new(Detection::new(c)));
    }
}

// ===== impl Scheduler: detection =====

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// Polls the noisy-tenant detector now and returns every change to the noisy set since
    /// the last call, oldest first (empty with detection off).
    ///
    /// With detection on ([`SchedulerConfig::with_detector`](crate::SchedulerConfig::with_detector)),
    /// the scheduler records the cost of each item it admits (at commit) and dispatches, and
    /// one for each push it refuses at the door, and polls the detector by itself: from those
    /// same calls, whenever a quarter of a sub-window
    /// ([`DetectorConfig::sub_window`]) has passed on its clock since the last poll. So a
    /// host gets detection and its responses without calling anything, and a quiet scheduler
    /// does no detection work; this call polls at once (to judge at a moment of the host's
    /// choosing, or after the clock moved with no traffic) and hands over the events.
    ///
    /// If the detector's config has a [`Response`](crate::detect::Response), the scheduler
    /// applies it when a tenant becomes noisy ([`NoisyEvent::Became`]) and restores the
    /// tenant's own setting exactly when it is cleared ([`NoisyEvent::Cleared`]): its weight
    /// override or none, its limits override or none. If the setting was changed meanwhile
    /// (an operator's [`set_weight`](Self::set_weight), say), the operator's setting stays.
    /// Each event's `action` is what the scheduler did, `None` if nothing.
    ///
    /// At most 1024 events wait here; past that, the oldest are dropped.
    ///
    /// # Performance
    ///
    /// A poll is O(N · k) (see [`Detector::poll_with`]); recording is O(1) on its fast path.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Scheduler, SchedulerConfig};
    /// use fairshare::detect::{Action, DetectorConfig, NoisyEvent, Response};
    /// use std::num::NonZeroU32;
    ///
    /// let halve = Response::DivideWeight { divisor: NonZeroU32::new(2).unwrap() };
    /// let config = SchedulerConfig::new()
    ///     .with_detector(Some(DetectorConfig::new().with_response(Some(halve))));
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(config, ManualClock::new());
    /// s.set_weight("acme", NonZeroU32::new(8).unwrap());
    /// for i in 0..10 {
    ///     s.try_push("acme", i).unwrap();
    /// }
    /// let events = s.poll_noisy();
    /// assert!(matches!(
    ///     &events[..],
    ///     [NoisyEvent::Became { key: "acme", action: Some(Action::SetWeight { .. }), .. }]
    /// ));
    /// assert_eq!(s.weight_override(&"acme"), NonZeroU32::new(4)); // halved while noisy
    /// ```
    pub fn poll_noisy(&mut self) -> Vec<NoisyEvent<K>> {
        let now = self.now();
        if self.detect.is_some() {
            self.poll_detector(now);
        }
        self.noisy_events.drain(..).collect()
    }

    /// The embedded noisy-tenant detector, if detection is on: for
    /// [`is_noisy`](Detector::is_noisy), its [`stats`](Detector::stats) and settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::detect::DetectorConfig;
    /// let s: Scheduler<&str, u32> = Scheduler::new(SchedulerConfig::new());
    /// assert!(s.detector().is_none());
    /// let on = SchedulerConfig::new().with_detector(Some(DetectorConfig::new()));
    /// let s: Scheduler<&str, u32> = Scheduler::new(on);
    /// assert!(!s.detector().unwrap().is_noisy(&"acme"));
    /// ```
    pub fn detector(&self) -> Option<&Detector<K>> {
        self.detect.as_deref().map(|d| &d.detector)
    }

    /// `key`'s own weight, if it has an override ([`set_weight`](Self::set_weight)); `None`
    /// when it has the default weight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.weight_override(&"gold"), None);
    /// s.set_weight("gold", NonZeroU32::new(3).unwrap());
    /// assert_eq!(s.weight_override(&"gold"), NonZeroU32::new(3));
    /// ```
    pub fn weight_override(&self, key: &K) -> Option<NonZeroU32> {
        let idx = self.queue.find_slot(key)?;
        self.queue.slot(idx).weight
    }

    /// `key`'s own limits, if it has an override ([`set_limits`](Self::set_limits)); `None`
    /// when the defaults apply (compare [`limits`](Self::limits), the limits in force).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::config::TenantLimits;
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.limits_override(&"trial"), None);
    /// s.set_limits("trial", TenantLimits::new().with_max_items(1));
    /// assert_eq!(s.limits_override(&"trial"), Some(TenantLimits::new().with_max_items(1)));
    /// ```
    pub fn limits_override(&self, key: &K) -> Option<TenantLimits> {
        let idx = self.queue.find_slot(key)?;
        let limits = self.queue.attached(idx).limits();
        (limits != NIL).then(|| self.overrides[limits as usize].limits)
    }
}
