//! Model-based property test of conservation through admission (`Scheduler` on a manual
//! clock): over random pushes, reservations, pops, completions, purges, retains, limit changes
//! and time steps, every item pushed comes back exactly once (dispatched, refused, evicted,
//! expired or shed, purged, retained out) or is still queued.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fairshare::{
    BlockReason, Clock, ManualClock, Nanos, PushOptions, RejectReason, Rejected, Scheduler,
    SchedulerConfig, Ticket, config::QueueDelay,
};
use proptest::prelude::*;

use common::admission_model::{Op, Sched, TENANTS, capacity, op, policy, tenant_limits};
use common::{Ledger, Way, proptest_config};

#[derive(Debug, Clone)]
struct ConsSetup {
    target_ms: u64,
    interval_ms: u64,
    evict: bool,
    cap_items: Option<u64>,
    cap_cost: Option<u64>,
    quota: Option<(u32, u32)>,
    tenant_items: Option<u32>,
}

fn cons_setup() -> impl Strategy<Value = ConsSetup> {
    (
        1..=20u64,
        5..=80u64,
        prop::bool::weighted(0.75),
        prop::option::weighted(0.8, 3..=12u64),
        prop::option::weighted(0.4, 6..=40u64),
        prop::option::weighted(0.4, (5..=200u32, 1..=8u32)),
        prop::option::weighted(0.3, 1..=6u32),
    )
        .prop_map(
            |(target_ms, interval_ms, evict, cap_items, cap_cost, quota, tenant_items)| ConsSetup {
                target_ms,
                interval_ms,
                evict,
                cap_items,
                cap_cost,
                quota,
                tenant_items,
            },
        )
}

#[derive(Debug, Clone, Copy)]
struct Info {
    tenant: u8,
    deadline: Option<Nanos>,
}

/// The host: the shared ledger of every item it handed over and how each came back, plus what
/// it knows of each item and of time.
#[derive(Debug, Default)]
struct Host {
    book: Ledger,
    items: HashMap<u64, Info>,
    /// The time the scheduler has seen: the largest clock reading it took.
    now: Nanos,
    target: Nanos,
}

impl Host {
    /// Records that item `id` of `info` is about to be handed over.
    fn push(&mut self, id: u64, info: Info) {
        self.items.insert(id, info);
        self.book.pushed(id);
    }

    fn record(&mut self, id: u64, way: Way) -> Result<(), TestCaseError> {
        self.book.back(id, way);
        Ok(())
    }

    /// Records an item handed out by `pop`/`dispatch`: never one whose deadline has passed.
    fn dispatched(&mut self, id: u64) -> Result<(), TestCaseError> {
        let info = self.items[&id];
        if let Some(d) = info.deadline {
            prop_assert!(
                d > self.now,
                "item {id} dispatched at {} past its deadline {d}",
                self.now
            );
        }
        self.record(id, Way::Dispatched)
    }

    /// Records expired and shed items handed back by `take_returned` (the test takes evicted
    /// items right after the push that evicted them, in [`admitted`](Self::admitted)).
    fn expired(&mut self, back: Vec<Rejected<u64>>) -> Result<(), TestCaseError> {
        for r in back {
            let (id, reason) = r.into_parts();
            match reason {
                RejectReason::DeadlineExpired { deadline } => {
                    prop_assert_eq!(Some(deadline), self.items[&id].deadline);
                    prop_assert!(deadline <= self.now);
                    self.record(id, Way::Expired)?;
                }
                RejectReason::QueueDelay { sojourn } => {
                    prop_assert!(sojourn >= self.target, "item {id} shed after {sojourn}");
                    self.record(id, Way::Shed)?;
                }
                other => prop_assert!(false, "take_returned returned {other:?}"),
            }
        }
        Ok(())
    }

    /// Records item `id` as admitted for `pusher`, and what `take_returned` handed back right
    /// after its push: the items evicted to make room for it, along with any expired or shed
    /// items that were waiting there. Returns how many were evicted.
    fn admitted(
        &mut self,
        pusher: u8,
        back: Vec<Rejected<u64>>,
        id: u64,
    ) -> Result<u64, TestCaseError> {
        prop_assert_eq!(
            self.book.way(id),
            None,
            "item {} admitted after it came back",
            id
        );
        let (evicted, rest): (Vec<_>, Vec<_>) = back
            .into_iter()
            .partition(|r| r.reason() == RejectReason::Evicted);
        for r in &evicted {
            let e = *r.item();
            prop_assert_ne!(
                self.items[&e].tenant,
                pusher,
                "evicted from the pusher itself"
            );
            self.record(e, Way::Evicted)?;
        }
        self.expired(rest)?;
        Ok(evicted.len() as u64)
    }

    /// Reads the clock the way the scheduler does before a call that reads time.
    fn tick(&mut self, clock: &ManualClock) {
        self.now = self.now.max(clock.now());
    }
}

proptest! {
    #![proptest_config(proptest_config(384))]

    #[test]
    fn conservation_across_admission(
        setup in cons_setup(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let target = Nanos::from_millis(setup.target_ms);
        let cfg = SchedulerConfig::new()
            .with_tenant_limits(tenant_limits(setup.quota, setup.tenant_items, None))
            .with_capacity(capacity(setup.cap_items, setup.cap_cost))
            .with_shed_policy(policy(setup.evict))
            .with_queue_delay(Some(QueueDelay::new(target, Nanos::from_millis(setup.interval_ms))));
        let clock = ManualClock::new();
        let mut s: Sched = Scheduler::with_clock(cfg, clock.clone());
        let mut host = Host { target, ..Host::default() };
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut blocked: HashSet<u8> = HashSet::new();
        let mut next_id = 0u64;
        let (mut admitted, mut evicted_n) = (0u64, 0u64);

        for op in ops {
            match op {
                Op::Push { tenant, cost, deadline_ms } | Op::Reserve { tenant, cost, deadline_ms, commit: true } => {
                    host.tick(&clock);
                    let id = next_id;
                    next_id += 1;
                    let deadline = deadline_ms.map(|ms| host.now + Nanos::from_millis(ms));
                    host.push(id, Info { tenant, deadline });
                    let mut opts = PushOptions::new().with_cost(cost);
                    if let Some(d) = deadline {
                        opts = opts.with_deadline(d);
                    }
                    let evicted_before = s.counters().evicted;
                    let result = if matches!(op, Op::Push { .. }) {
                        s.try_push_with(tenant, id, opts)
                    } else {
                        let reserved = s
                            .try_reserve(tenant, opts)
                            .map(|permit| (permit.cost(), permit.commit(id)));
                        match reserved {
                            Ok((reserved_cost, ())) => {
                                prop_assert_eq!(reserved_cost, cost);
                                Ok(())
                            }
                            Err(reason) => {
                                // The item was never handed over; it is still the host's.
                                prop_assert!(!matches!(reason, RejectReason::Evicted));
                                host.record(id, Way::Refused)?;
                                continue_after_op(&s, &host)?;
                                continue;
                            }
                        }
                    };
                    match result {
                        Ok(()) => {
                            // Items evicted for this push wait in the outbox: take them now,
                            // so each is checked against its pusher.
                            let evicted_now = s.counters().evicted - evicted_before;
                            let back = if evicted_now > 0 { s.take_returned() } else { Vec::new() };
                            let ev = host.admitted(tenant, back, id)?;
                            prop_assert_eq!(ev, evicted_now, "every eviction comes back");
                            evicted_n += ev;
                            admitted += 1;
                        }
                        Err(e) => {
                            prop_assert_eq!(*e.item(), id);
                            let returned_kind = matches!(
                                e.reason(),
                                RejectReason::Evicted | RejectReason::QueueDelay { .. }
                            );
                            prop_assert!(!returned_kind, "refused at push with {:?}", e.reason());
                            // Only a deadline that has already passed is refused at the door.
                            if let RejectReason::DeadlineExpired { deadline: d } = e.reason() {
                                prop_assert_eq!(Some(d), deadline);
                                prop_assert!(d <= host.now, "deadline {} refused at {}", d, host.now);
                            }
                            // Blocked is checked first, then zero cost.
                            if blocked.contains(&tenant) {
                                prop_assert!(
                                    matches!(e.reason(), RejectReason::Blocked { .. }),
                                    "blocked tenant {} refused with {:?}", tenant, e.reason()
                                );
                            } else if cost == 0 {
                                prop_assert_eq!(e.reason(), RejectReason::ZeroCost);
                            }
                            host.record(id, Way::Refused)?;
                        }
                    }
                }
                Op::Reserve { tenant, cost, deadline_ms, commit: false } => {
                    host.tick(&clock);
                    let before = (s.queue().len(), s.queue().queued_cost(), s.counters().admitted);
                    let mut opts = PushOptions::new().with_cost(cost);
                    if let Some(ms) = deadline_ms {
                        opts = opts.with_deadline(host.now + Nanos::from_millis(ms));
                    }
                    if let Ok(permit) = s.try_reserve(tenant, opts) {
                        drop(permit);
                    }
                    let after = (s.queue().len(), s.queue().queued_cost(), s.counters().admitted);
                    prop_assert_eq!(before, after, "a dropped permit changed the queue");
                }
                Op::Pop => {
                    host.tick(&clock);
                    if let Some(id) = s.pop() {
                        host.dispatched(id)?;
                    }
                }
                Op::Dispatch => {
                    host.tick(&clock);
                    if let Some(d) = s.dispatch() {
                        host.dispatched(d.item)?;
                        tickets.push(d.ticket);
                    }
                }
                Op::Complete { which, actual } => {
                    if !tickets.is_empty() {
                        let t = tickets.swap_remove(which % tickets.len());
                        prop_assert!(s.complete(t, actual));
                    }
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                Op::ClockBack { ms } => {
                    let now = clock.now();
                    clock.set(now.saturating_since(Nanos::from_millis(ms)));
                }
                Op::Purge { tenant } => {
                    host.tick(&clock);
                    for id in s.purge(&tenant) {
                        prop_assert_eq!(host.items[&id].tenant, tenant);
                        host.record(id, Way::Purged)?;
                    }
                }
                Op::Retain { tenant, modulus } => {
                    host.tick(&clock);
                    for id in s.retain(&tenant, |&id| id % modulus != 0) {
                        prop_assert_eq!(host.items[&id].tenant, tenant);
                        prop_assert_eq!(id % modulus, 0, "retain removed a kept item");
                        host.record(id, Way::RetainedOut)?;
                    }
                }
                Op::Block { tenant } => {
                    s.block(tenant, BlockReason::Code(u32::from(tenant)));
                    blocked.insert(tenant);
                }
                Op::Unblock { tenant } => {
                    let was = s.unblock(&tenant);
                    prop_assert_eq!(was.is_some(), blocked.remove(&tenant));
                }
                Op::TakeReturned => {
                    host.tick(&clock);
                    let back = s.take_returned();
                    host.expired(back)?;
                }
                Op::Refund { tenant, cost } => {
                    host.tick(&clock);
                    s.refund(&tenant, cost);
                }
            }
            continue_after_op(&s, &host)?;
        }

        // Hand back everything still held: expired and shed items, then each tenant's queue.
        host.tick(&clock);
        let back = s.take_returned();
        host.expired(back)?;
        for tenant in 0..TENANTS {
            for id in s.purge(&tenant) {
                prop_assert_eq!(host.items[&id].tenant, tenant);
                host.record(id, Way::Purged)?;
            }
        }
        let back = s.take_returned();
        host.expired(back)?;
        prop_assert!(s.queue().is_empty());
        prop_assert_eq!(s.pending_returns(), 0);
        host.book.assert_all_back();
        for t in tickets {
            prop_assert!(s.complete(t, 1));
        }

        // Item for item: each pushed id has exactly one outcome.
        prop_assert_eq!(host.book.pushed_count(), host.items.len());
        host.book.assert_all_back();
        let count = |o: Way| host.book.count(o) as u64;
        let c = s.counters();
        prop_assert_eq!(c.admitted, admitted);
        prop_assert_eq!(c.evicted, evicted_n);
        prop_assert_eq!(c.evicted, count(Way::Evicted));
        prop_assert_eq!(c.expired, count(Way::Expired));
        prop_assert_eq!(c.shed, count(Way::Shed));
    }
}

/// After every op: what the scheduler holds (queued plus waiting to be taken) is exactly what
/// the host is still owed.
fn continue_after_op(s: &Sched, host: &Host) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        s.queue().len() + s.pending_returns(),
        host.book.owed(),
        "queued {} + pending {} != owed {}",
        s.queue().len(),
        s.pending_returns(),
        host.book.owed()
    );
    Ok(())
}
