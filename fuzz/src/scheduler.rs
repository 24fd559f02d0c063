//! `Scheduler`: every admission limit (quota, tenant caps, capacity with both shed policies,
//! deadlines, the queue-delay target, in-flight limits global, per class and per tenant),
//! reserve/commit, operators (block, purge, retain, refund, limits, reconfigure), and a
//! manual clock moved forwards and backwards, by milliseconds and by years.

use crate::common::{
    Class, Cost, Item, Ledger, Opts, Way, Weight, catch_host, classes, host_panic, reason,
};
use arbitrary::{Arbitrary, Unstructured};
use fairshare::config::{
    Capacity, QueueConfig, QueueDelay, Quota, SchedulerConfig, ShedPolicy, TenantLimits,
};
use fairshare::{ClassId, ManualClock, Nanos, RejectReason, Scheduler, TenantHandle, Ticket};
use std::num::NonZeroU32;
use std::time::Duration;

/// Nanoseconds in a (365-day) year.
pub const YEAR: u64 = 365 * 24 * 3600 * 1_000_000_000;

/// Tenant limits.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Limits {
    quota: Option<(u16, Option<u16>, u8)>,
    max_items: Option<u8>,
    max_cost: Option<u32>,
    max_in_flight: Option<u8>,
}

impl Limits {
    /// The limits.
    pub fn get(&self) -> TenantLimits {
        let mut l = TenantLimits::new();
        if let Some((rate, burst, unit)) = self.quota {
            let rate = NonZeroU32::new(u32::from(rate).max(1)).expect("non-zero");
            let mut q = match unit % 4 {
                0 => Quota::per_second(rate),
                1 => Quota::per_minute(rate),
                2 => Quota::per_hour(rate),
                _ => Quota::with_period(Duration::from_nanos(u64::from(rate.get())))
                    .unwrap_or(Quota::per_second(rate)),
            };
            if let Some(b) = burst {
                q = q.allow_burst(NonZeroU32::new(u32::from(b).max(1)).expect("non-zero"));
            }
            l = l.with_quota(q);
        }
        if let Some(m) = self.max_items {
            l = l.with_max_items(u32::from(m % 16));
        }
        if let Some(m) = self.max_cost {
            l = l.with_max_cost(u64::from(m));
        }
        if let Some(m) = self.max_in_flight {
            l = l.with_max_in_flight(u32::from(m % 6));
        }
        l
    }
}

/// A scheduler configuration.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Setup {
    quantum: Weight,
    default_weight: Weight,
    limits: Limits,
    capacity: (Option<u8>, Option<u32>),
    evict: bool,
    queue_delay: Option<(u16, u16)>,
    max_in_flight: Option<u8>,
    detail: bool,
}

impl Setup {
    /// The configuration.
    pub fn get(&self) -> SchedulerConfig {
        let mut cap = Capacity::new();
        if let Some(m) = self.capacity.0 {
            cap = cap.with_max_items(u64::from(m % 32));
        }
        if let Some(m) = self.capacity.1 {
            cap = cap.with_max_cost(u64::from(m));
        }
        SchedulerConfig::new()
            .with_queue(
                QueueConfig::new()
                    .with_quantum(self.quantum.get())
                    .with_default_weight(self.default_weight.get()),
            )
            .with_tenant_limits(self.limits.get())
            .with_capacity(cap)
            .with_shed_policy(if self.evict {
                ShedPolicy::EvictOverShare
            } else {
                ShedPolicy::RejectNew
            })
            .with_queue_delay(self.queue_delay.map(|(t, i)| {
                QueueDelay::new(
                    Nanos::from_millis(u64::from(t)),
                    Nanos::from_millis(u64::from(i)),
                )
            }))
            .with_max_in_flight(self.max_in_flight.map(|m| u32::from(m % 8)))
            .with_tenant_detail(self.detail)
    }
}

/// One operation.
#[derive(Debug, Arbitrary)]
pub enum Op {
    Push {
        tenant: u8,
        opts: Opts,
    },
    PushTo {
        handle: u8,
        opts: Opts,
    },
    Reserve {
        tenant: u8,
        opts: Opts,
        commit: bool,
    },
    Tenant {
        tenant: u8,
    },
    Release {
        handle: u8,
    },
    Pop,
    Dispatch,
    Complete {
        which: u8,
        actual: Cost,
    },
    TakeReturned,
    Advance {
        ms: u32,
    },
    Back {
        ms: u32,
    },
    Years {
        forward: bool,
        years: u8,
    },
    SetWeight {
        tenant: u8,
        weight: Weight,
    },
    ClearWeight {
        tenant: u8,
    },
    SetLimits {
        tenant: u8,
        limits: Limits,
    },
    ClearLimits {
        tenant: u8,
    },
    SetClasses {
        classes: Vec<Class>,
    },
    SetInFlightLimit {
        limit: Option<u8>,
    },
    Reconfigure {
        setup: Setup,
    },
    Block {
        tenant: u8,
        reason: u8,
    },
    Unblock {
        tenant: u8,
    },
    Purge {
        tenant: u8,
    },
    Retain {
        tenant: u8,
        modulo: u8,
        panic_at: Option<u8>,
    },
    Refund {
        tenant: u8,
        cost: Cost,
    },
    RefundClass {
        tenant: u8,
        class: u8,
        cost: Cost,
    },
    Stats,
    SetGroup {
        tenant: u8,
        group: u8,
    },
    SetGroupLimits {
        group: u8,
        limits: Limits,
    },
    BlockGroup {
        group: u8,
        reason: u8,
    },
    UnblockGroup {
        group: u8,
    },
    PurgeGroup {
        group: u8,
    },
}

fn tenant(t: u8) -> u8 {
    t % 8
}

/// Group keys live in their own namespace; three groups.
fn group(g: u8) -> u8 {
    g % 3
}

type Sched = Scheduler<u8, Item, ManualClock>;

/// Decodes and runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    run_ops(&setup, &ops);
}

/// Runs `ops` on a scheduler built from `setup`, checking every contract.
pub fn run_ops(setup: &Setup, ops: &[Op]) {
    let clock = ManualClock::new();
    clock.set(Nanos::from_secs(1));
    let mut s: Sched = Scheduler::with_clock(setup.get(), clock.clone());
    let mut ledger = Ledger::default();
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut handles: Vec<(TenantHandle, u8)> = Vec::new();
    let mut high = clock.now_nanos();
    for op in ops {
        high = high.max(clock.now_nanos());
        step(
            &mut s,
            &clock,
            &mut ledger,
            &mut tickets,
            &mut handles,
            high,
            op,
        );
        check(&s, &ledger, &tickets);
    }
    for t in tickets.drain(..) {
        assert!(s.complete(t, 1), "a held ticket was refused");
    }
    assert_eq!(s.queue().total_in_flight(), 0);
    s.set_in_flight_limit(None);
    s.reconfigure(SchedulerConfig::new());
    for t in 0..8 {
        s.clear_limits(&t);
        s.unblock(&t);
        for item in s.purge(&t) {
            ledger.back(item, Way::Purged);
        }
    }
    for r in s.take_returned() {
        ledger.back(r.into_inner(), Way::Returned);
    }
    assert!(s.queue().is_empty());
    assert_eq!(s.pending_returns(), 0);
    ledger.assert_empty();
}

fn pushed(
    high: Nanos,
    s: &Sched,
    ledger: &mut Ledger,
    t: u8,
    id: u64,
    r: Result<(), fairshare::Rejected<Item>>,
) {
    if let Err(e) = &r {
        match e.reason() {
            // A deadline already passed is refused at the door; time is the latest the clock
            // showed (a clock stepped back counts as no time passed).
            RejectReason::DeadlineExpired { deadline } if deadline <= high => {}
            RejectReason::Evicted
            | RejectReason::DeadlineExpired { .. }
            | RejectReason::QueueDelay { .. } => {
                panic!("a push was refused with {:?}", e.reason())
            }
            _ => {}
        }
    }
    let ok = r.is_ok();
    ledger.pushed(id, r);
    if ok {
        let limits = s.limits(&t);
        let q = s.queue();
        if let Some(m) = limits.max_items() {
            assert!(
                q.tenant_len(&t) <= m as usize,
                "tenant {t} above max_items {m}"
            );
        }
        if let Some(m) = limits.max_cost() {
            assert!(
                q.tenant_queued_cost(&t) <= m,
                "tenant {t} above max_cost {m}"
            );
        }
        if let Some(&g) = q.group(&t) {
            let limits = s.group_limits(&g);
            if let Some(m) = limits.max_items() {
                assert!(q.group_len(&g) <= m as usize, "group {g} above max_items {m}");
            }
            if let Some(m) = limits.max_cost() {
                assert!(q.group_queued_cost(&g) <= m, "group {g} above max_cost {m}");
            }
            assert!(
                q.group_blocked(&g).is_none(),
                "a blocked group's member was admitted"
            );
        }
        let cap = s.config().capacity();
        if let Some(m) = cap.max_items() {
            assert!(q.len() as u64 <= m, "queue above capacity max_items {m}");
        }
        if let Some(m) = cap.max_cost() {
            assert!(q.queued_cost() <= m, "queue above capacity max_cost {m}");
        }
    }
}

fn step(
    s: &mut Sched,
    clock: &ManualClock,
    ledger: &mut Ledger,
    tickets: &mut Vec<Ticket>,
    handles: &mut Vec<(TenantHandle, u8)>,
    high: Nanos,
    op: &Op,
) {
    let now = clock.now_nanos();
    match *op {
        Op::Push { tenant: t, opts } => {
            let t = tenant(t);
            let item = ledger.item(t, opts.class());
            let id = item.id;
            let r = s.try_push_with(t, item, opts.at(now));
            pushed(high, s, ledger, t, id, r);
        }
        Op::PushTo { handle, opts } => {
            if handles.is_empty() {
                return;
            }
            let (h, t) = handles[usize::from(handle) % handles.len()];
            let item = ledger.item(t, opts.class());
            let id = item.id;
            let r = s.try_push_to(h, item, opts.at(now));
            pushed(high, s, ledger, t, id, r);
        }
        Op::Reserve {
            tenant: t,
            opts,
            commit,
        } => {
            let t = tenant(t);
            let item = ledger.item(t, opts.class());
            let id = item.id;
            let committed = match s.try_reserve(t, opts.at(now)) {
                Ok(permit) => {
                    assert_eq!(permit.cost(), opts.cost.get());
                    if commit {
                        permit.commit(item);
                        true
                    } else {
                        drop(permit);
                        false
                    }
                }
                Err(reason) => {
                    assert!(
                        !matches!(reason, RejectReason::Evicted)
                            && !matches!(reason, RejectReason::DeadlineExpired { deadline } if deadline > high),
                        "a reservation was refused with {reason:?}"
                    );
                    false
                }
            };
            if committed {
                pushed(high, s, ledger, t, id, Ok(()));
            }
        }
        Op::Tenant { tenant: t } => {
            if handles.len() < 16 {
                let t = tenant(t);
                handles.push((s.tenant(t), t));
            }
        }
        Op::Release { handle } => {
            if !handles.is_empty() {
                let (h, _) = handles.swap_remove(usize::from(handle) % handles.len());
                s.release(h);
            }
        }
        Op::Pop => {
            if let Some(item) = s.pop() {
                ledger.back(item, Way::Dispatched);
            }
        }
        Op::Dispatch => {
            let q = s.queue();
            let global_before = q.total_in_flight();
            let class_before: Vec<u32> = (0..q.classes().len())
                .map(|c| q.class_in_flight(ClassId::new(c as u16)))
                .collect();
            let tenant_before: Vec<u32> = (0..8).map(|t| q.in_flight(&t)).collect();
            if let Some(d) = s.dispatch() {
                if let Some(l) = s.queue().in_flight_limit() {
                    assert!(
                        global_before < u64::from(l),
                        "dispatched at the global limit {l}"
                    );
                }
                let c = d.ticket.class();
                if let Some(m) = s.classes().get(c).and_then(|c| c.max_in_flight()) {
                    assert!(
                        class_before[c.index()] < m,
                        "dispatched at class {c}'s cap {m}"
                    );
                }
                let t = d.item.tenant;
                if let Some(m) = s.limits(&t).max_in_flight() {
                    assert!(
                        tenant_before[usize::from(t)] < m,
                        "dispatched tenant {t} at its in-flight limit {m}"
                    );
                }
                assert_eq!(c.index(), d.item.class);
                ledger.back(d.item, Way::Dispatched);
                tickets.push(d.ticket);
            }
        }
        Op::Complete { which, actual } => {
            if !tickets.is_empty() {
                let t = tickets.swap_remove(usize::from(which) % tickets.len());
                assert!(s.complete(t, actual.get()), "a live ticket was refused");
            }
        }
        Op::TakeReturned => {
            for r in s.take_returned() {
                match r.reason() {
                    RejectReason::Evicted => {}
                    RejectReason::DeadlineExpired { deadline } => {
                        assert!(
                            deadline <= high.max(clock.now_nanos()),
                            "expired before its deadline"
                        )
                    }
                    RejectReason::QueueDelay { .. } => {}
                    other => panic!("take_returned handed back {other:?}"),
                }
                ledger.back(r.into_inner(), Way::Returned);
            }
        }
        Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
        Op::Back { ms } => clock.set(Nanos::new(
            now.as_u64().saturating_sub(u64::from(ms) * 1_000_000),
        )),
        Op::Years { forward, years } => {
            let by = u64::from(years).saturating_mul(YEAR);
            clock.set(Nanos::new(if forward {
                now.as_u64().saturating_add(by)
            } else {
                now.as_u64().saturating_sub(by)
            }));
        }
        Op::SetWeight { tenant: t, weight } => s.set_weight(tenant(t), weight.get()),
        Op::ClearWeight { tenant: t } => s.clear_weight(&tenant(t)),
        Op::SetLimits { tenant: t, limits } => {
            s.set_limits(tenant(t), limits.get());
            assert_eq!(s.limits(&tenant(t)), limits.get());
        }
        Op::ClearLimits { tenant: t } => s.clear_limits(&tenant(t)),
        Op::SetClasses { classes: ref specs } => {
            if let Ok(c) = classes(specs) {
                let len = s.queue().len();
                let _ = s.set_classes(c);
                assert_eq!(s.queue().len(), len, "set_classes changed the backlog");
            }
        }
        Op::SetInFlightLimit { limit } => s.set_in_flight_limit(limit.map(|l| u32::from(l % 8))),
        Op::Reconfigure { setup } => {
            let len = s.queue().len() + s.pending_returns();
            s.reconfigure(setup.get());
            assert_eq!(
                s.queue().len() + s.pending_returns(),
                len,
                "reconfigure lost or added items"
            );
        }
        Op::Block {
            tenant: t,
            reason: r,
        } => s.block(tenant(t), reason(r)),
        Op::Unblock { tenant: t } => {
            s.unblock(&tenant(t));
        }
        Op::SetGroup { tenant: t, group: g } => s.set_group(tenant(t), group(g)),
        Op::SetGroupLimits { group: g, limits } => {
            s.set_group_limits(group(g), limits.get());
            assert_eq!(s.group_limits(&group(g)), limits.get());
        }
        Op::BlockGroup { group: g, reason: r } => s.block_group(group(g), reason(r)),
        Op::UnblockGroup { group: g } => {
            s.unblock_group(&group(g));
        }
        Op::PurgeGroup { group: g } => {
            let g = group(g);
            let n = s.queue().group_len(&g);
            let out = s.purge_group(&g);
            assert_eq!(out.len(), n);
            for item in out {
                assert_eq!(s.queue().group(&item.tenant), Some(&g));
                ledger.back(item, Way::Purged);
            }
            assert_eq!(s.queue().group_len(&g), 0);
        }
        Op::Purge { tenant: t } => {
            let t = tenant(t);
            for item in s.purge(&t) {
                assert_eq!(item.tenant, t);
                ledger.back(item, Way::Purged);
            }
            assert_eq!(s.queue().tenant_len(&t), 0);
        }
        Op::Retain {
            tenant: t,
            modulo,
            panic_at,
        } => {
            let t = tenant(t);
            let m = u64::from(modulo.max(1));
            let len = s.queue().len();
            let mut calls = 0u8;
            let out = catch_host(|| {
                s.retain(&t, |item| {
                    if Some(calls) == panic_at {
                        host_panic();
                    }
                    calls = calls.wrapping_add(1);
                    item.id % m != 0
                })
            });
            match out {
                Some(out) => {
                    for item in out {
                        assert_eq!((item.tenant, item.id % m), (t, 0));
                        ledger.back(item, Way::Retained);
                    }
                }
                None => assert_eq!(
                    s.queue().len(),
                    len,
                    "a panicking predicate changed the queue"
                ),
            }
        }
        Op::Refund { tenant: t, cost } => s.refund(&tenant(t), cost.get()),
        Op::RefundClass {
            tenant: t,
            class,
            cost,
        } => s.refund_class(&tenant(t), ClassId::new(u16::from(class % 5)), cost.get()),
        Op::Stats => {
            let st = s.stats();
            assert_eq!(st.queued, s.queue().len() as u64);
            assert_eq!(st.queued_cost, s.queue().queued_cost());
            assert_eq!(st.in_flight, s.queue().total_in_flight());
            let _ = s.pressure();
        }
    }
}

fn check(s: &Sched, ledger: &Ledger, tickets: &[Ticket]) {
    let q = s.queue();
    assert_eq!(
        q.len() + s.pending_returns(),
        ledger.held.len(),
        "queued + pending returns differ from the ledger"
    );
    assert_eq!(q.total_in_flight(), tickets.len() as u64);
    let by_tenant: usize = q.tenants().map(|(k, _, _)| q.tenant_len(k)).sum();
    assert_eq!(by_tenant, q.len(), "per-tenant lengths do not add up");
    let cost: u64 = q.tenants().map(|(k, _, _)| q.tenant_queued_cost(k)).sum();
    assert_eq!(cost, q.queued_cost(), "per-tenant costs do not add up");
}

trait NowNanos {
    fn now_nanos(&self) -> Nanos;
}

impl NowNanos for ManualClock {
    fn now_nanos(&self) -> Nanos {
        fairshare::Clock::now(self)
    }
}
