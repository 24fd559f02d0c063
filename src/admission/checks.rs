//! # Implementation details
//!
//! The admission checks, in the documented order, before anything is committed: blocked,
//! zero cost, unknown class, passed deadline, never admissible, rate, caps, room. Each returns
//! the binding limit; nothing here changes state but a fresh tenant's slot.

use super::commit::Plan;
use super::rules::{Rules, never_limits};
use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::config::ShedPolicy;
use crate::error::{Limit, RejectReason};
use crate::push::ClassId;
use crate::push::PushOptions;
use crate::queue::NIL;
use crate::rate::Quota;
use crate::rate::gcra::{Gcra, Tat};
use std::hash::{BuildHasher, Hash};

/// What the checks decided for an admissible item.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checked {
    pub(super) class: u16,
    pub(super) new_tat: Option<Tat>,
    pub(super) new_class_tat: Option<Tat>,
    /// The tenant's group has a quota the item passes (its new TAT is worked out again when
    /// the plan is made: this value, which every check returns, stays small).
    pub(super) group_rated: bool,
    pub(super) evict_from: Option<u32>,
    pub(super) max_in_flight: u32,
}

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The rules of a slot's `limits` index (`NIL`: the defaults).
    #[inline(always)]
    pub(super) fn rules_of(&self, limits_idx: u32) -> &Rules {
        if limits_idx == NIL {
            &self.default_rules
        } else {
            &self.overrides[limits_idx as usize]
        }
    }

    pub(super) fn count_refusal(&mut self, reason: RejectReason) {
        self.counters.record(reason);
    }

    /// Runs every check for an item of `opts` from `key` at `now`; changes nothing but the
    /// tenant table (a fresh tenant's slot, released again on refusal).
    #[inline(always)]
    pub(super) fn plan(
        &mut self,
        key: K,
        opts: PushOptions,
        now: Nanos,
    ) -> Result<Plan, RejectReason> {
        self.sweep_cooling(now);
        let Some(idx) = self.queue.slot_of(key) else {
            let reason = RejectReason::QueueFull {
                capacity: u64::from(u32::MAX - 1),
            };
            self.count_refusal(reason);
            #[cfg(feature = "metrics")]
            crate::metrics::refused(&self.queue, reason, Some(opts.class()), 1);
            return Err(reason);
        };
        self.plan_slot(idx, opts, now)
    }

    /// [`plan`](Self::plan) for a tenant whose slot is known.
    #[inline(always)]
    pub(super) fn plan_slot(
        &mut self,
        idx: u32,
        opts: PushOptions,
        now: Nanos,
    ) -> Result<Plan, RejectReason> {
        let cost = opts.cost();
        let checked = self.check(idx, cost, opts.class(), opts.deadline(), now);
        match checked {
            Ok(c) => Ok(Plan {
                idx,
                class: c.class,
                class_rated: match c.new_class_tat {
                    Some(tat) => {
                        self.staged_class_tat = tat;
                        true
                    }
                    None => false,
                },
                cost,
                now,
                deadline: opts.deadline(),
                new_tat: c.new_tat.unwrap_or(Tat::ZERO),
                rated: c.new_tat.is_some(),
                group_rated: c.group_rated && self.stage_group_tat(idx, cost, now),
                evict_from: c.evict_from,
                max_in_flight: c.max_in_flight,
            }),
            Err(reason) => {
                #[cfg(feature = "metrics")]
                crate::metrics::refused(&self.queue, reason, Some(opts.class()), 1);
                Err(self.refused(idx, reason))
            }
        }
    }

    /// Counts a refusal of tenant `idx` and forgets the tenant if the check created it.
    #[cold]
    pub(super) fn refused(&mut self, idx: u32, reason: RejectReason) -> RejectReason {
        self.count_refusal(reason);
        if self.config.tenant_detail() {
            self.detail_mut(idx).admission.record(reason);
        }
        // Before `count_refused`, which may forget the tenant; a due poll after it.
        let poll = self.detect_refused(idx);
        self.queue.count_refused(idx);
        if poll {
            self.poll_detector(self.last_now);
        }
        reason
    }

    /// The checks, in the documented order. The rare refusals (blocked, zero cost, unknown
    /// class, deadline already passed, never admissible) and a class's per-tenant quota sit
    /// behind one branch, in [`check_rare`](Self::check_rare): an ordinary item pays for a
    /// few compares, then its rate, caps and room.
    #[inline(always)]
    pub(super) fn check(
        &self,
        idx: u32,
        cost: u32,
        class: ClassId,
        deadline: Option<Nanos>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        debug_assert_eq!(self.plain_classes, plain_classes(self.queue.classes()));
        let t = self.queue.slot(idx);
        let rules = self.rules_of(t.attached.limits());
        // A zero cost wraps to `u64::MAX`: one compare catches it with a cost above a bound.
        let rare = t.is_blocked()
            | (t.group != NIL)
            | (u64::from(cost).wrapping_sub(1) >= rules.never_above)
            | deadline.is_some_and(|d| d <= now);
        let plain_class = self
            .plain_classes
            .checked_shr(class.index() as u32)
            .is_some_and(|bits| bits & 1 != 0);
        if rare | !plain_class {
            return self.check_rare(idx, cost, class, deadline, now);
        }
        self.check_limits(idx, rules, cost, class, None, now)
    }

    /// [`check`](Self::check) when something rare is at stake: every check in order, from the
    /// first.
    #[cold]
    #[inline(never)]
    pub(super) fn check_rare(
        &self,
        idx: u32,
        cost: u32,
        class: ClassId,
        deadline: Option<Nanos>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        let t = self.queue.slot(idx);
        if let Some(reason) = self
            .queue
            .slot_blocked(idx)
            .or_else(|| self.queue.slot_group_blocked(idx))
        {
            return Err(RejectReason::Blocked { reason });
        }
        if cost == 0 {
            return Err(RejectReason::ZeroCost);
        }
        let Some(spec) = self.queue.classes().get(class) else {
            return Err(RejectReason::UnknownClass { class });
        };
        if let Some(deadline) = deadline.filter(|&d| d <= now) {
            // A deadline already passed can never be met: refuse it at the door.
            return Err(RejectReason::DeadlineExpired { deadline });
        }
        let rules = self.rules_of(t.attached.limits());
        let cost64 = u64::from(cost);
        let class_quota = spec.tenant_quota();
        // "Never" before "not now": a cost no limit can ever allow is reported as such.
        if cost64 > rules.never_above || class_quota.is_some_and(|q| cost > q.burst().get()) {
            return Err(self.too_large(rules, class_quota, cost64));
        }
        let group = self.group_rules(idx);
        if let Some(max) = group.and_then(|g| g.never_above()).filter(|&m| cost64 > m) {
            return Err(RejectReason::TooLarge { cost: cost64, max });
        }
        let class_rate = class_quota.map(|q| Gcra::new(&q));
        let mut checked = self.check_limits(idx, rules, cost, class, class_rate, now)?;
        if let Some(group) = group {
            checked.group_rated = self.check_group(idx, group, cost, now)?;
        }
        Ok(checked)
    }

    /// The "not now" checks of an item no limit refuses for ever (so its cost is within every
    /// burst): the tenant's rate, the class's per-tenant rate, the tenant's caps, the room.
    #[inline(always)]
    pub(super) fn check_limits(
        &self,
        idx: u32,
        rules: &Rules,
        cost: u32,
        class: ClassId,
        class_rate: Option<Gcra>,
        now: Nanos,
    ) -> Result<Checked, RejectReason> {
        let t = self.queue.slot(idx);
        let new_tat = match rules.rate {
            Some(rate) => Some(
                rate.check(t.attached.tat, now, cost)
                    .map_err(|retry_at| RejectReason::RateLimited { retry_at })?,
            ),
            None => None,
        };
        let class_idx = class.index() as u16;
        let new_class_tat = match class_rate {
            Some(rate) => {
                let tat = self.class_tat(idx, class_idx);
                Some(
                    rate.check(tat, now, cost)
                        .map_err(|retry_at| RejectReason::ClassRateLimited { class, retry_at })?,
                )
            }
            None => None,
        };
        let cost64 = u64::from(cost);
        if t.queued_cost.saturating_add(cost64) > rules.max_cost {
            return Err(RejectReason::TenantFull {
                limit: Limit::Cost(rules.max_cost),
            });
        }
        if t.len >= rules.max_items {
            return Err(RejectReason::TenantFull {
                limit: Limit::Items(u64::from(rules.max_items)),
            });
        }
        let room = (self.queue.len() as u64) < rules.capacity_items
            && self.queue.queued_cost().saturating_add(cost64) <= rules.capacity_cost;
        let evict_from = if room {
            None
        } else {
            self.check_capacity(idx, cost64)?
        };
        Ok(Checked {
            class: class_idx,
            new_tat,
            new_class_tat,
            group_rated: false,
            evict_from,
            max_in_flight: rules.max_in_flight,
        })
    }

    /// The refusal of an item whose `cost` some limit can never allow, naming the first such
    /// limit in the documented order.
    #[cold]
    pub(super) fn too_large(
        &self,
        rules: &Rules,
        class_quota: Option<Quota>,
        cost: u64,
    ) -> RejectReason {
        let never = never_limits(&rules.limits, &self.config.capacity(), class_quota);
        let max = never
            .into_iter()
            .flatten()
            .find(|&max| cost > max)
            .unwrap_or(rules.never_above);
        RejectReason::TooLarge { cost, max }
    }

    /// The global capacity check: `Ok(None)` if there is room, `Ok(Some(v))` to evict from
    /// tenant `v`, or the refusal. Out of line: [`check_limits`](Self::check_limits) calls it
    /// only when its quick test (the same bounds, from [`Rules`]) finds no room.
    #[cold]
    #[inline(never)]
    pub(super) fn check_capacity(&self, idx: u32, cost: u64) -> Result<Option<u32>, RejectReason> {
        let (need_items, need_cost) = self.shortfall(cost);
        if need_items == 0 && need_cost == 0 {
            return Ok(None);
        }
        self.make_room(idx, cost, need_items, need_cost)
    }

    /// [`check_capacity`](Self::check_capacity) when the capacity is full: the refusal, or
    /// the tenant to evict from.
    #[cold]
    pub(super) fn make_room(
        &self,
        idx: u32,
        cost: u64,
        need_items: u64,
        need_cost: u64,
    ) -> Result<Option<u32>, RejectReason> {
        let cap = self.config.capacity();
        let limit = if need_items > 0 {
            Limit::Items(cap.max_items().unwrap_or(0))
        } else {
            Limit::Cost(cap.max_cost().unwrap_or(0))
        };
        let refuse = Err(RejectReason::CapacityFull { limit });
        if self.config.shed_policy() != ShedPolicy::EvictOverShare {
            return refuse;
        }
        let Some(v) = self.queue.most_over_share() else {
            return refuse;
        };
        if v == idx {
            return refuse;
        }
        let (tv, tp) = (self.queue.slot(v), self.queue.slot(idx));
        let dw = self.queue.config().default_weight();
        let wv = u128::from(tv.weight.unwrap_or(dw).get());
        let wp = u128::from(tp.weight.unwrap_or(dw).get());
        // Evict only from a tenant strictly further over its share than the newcomer's
        // tenant would be, and only if that tenant alone can make the room.
        let victim_ratio = u128::from(tv.queued_cost) * wp;
        let newcomer_ratio = u128::from(tp.queued_cost + cost) * wv;
        if victim_ratio <= newcomer_ratio
            || u64::from(tv.len) < need_items
            || tv.queued_cost < need_cost
        {
            return refuse;
        }
        Ok(Some(v))
    }

    /// How many items and how much cost must leave before an item of `cost` fits.
    #[inline(always)]
    pub(super) fn shortfall(&self, cost: u64) -> (u64, u64) {
        let cap = self.config.capacity();
        let items = cap
            .max_items()
            .map_or(0, |max| (self.queue.len() as u64 + 1).saturating_sub(max));
        let cost = cap.max_cost().map_or(0, |max| {
            (self.queue.queued_cost() + cost).saturating_sub(max)
        });
        (items, cost)
    }
}
