//! Stats snapshots: per-class lines, and with per-tenant detail on, each tenant's admission
//! counters (refusals by reason, items handed back) and waiting-time percentiles, checked
//! against hand-computed scenarios on a manual clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use common::nz;
use fairshare::{
    BlockReason, ClassId, ClassSpec, Classes, ManualClock, Nanos, PushOptions, RejectReason,
    Scheduler, SchedulerConfig,
    config::{Capacity, Quota, ShedPolicy, TenantLimits},
    stats::{AdmissionCounters, Stats, TenantStats},
};

fn tenant<'a>(stats: &'a Stats<&'static str>, key: &str) -> &'a TenantStats<&'static str> {
    stats
        .tenants
        .iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("{key} is not in the snapshot"))
}

/// The tenant's own admission counters (admitted, refused by reason, handed back).
fn admission(stats: &Stats<&'static str>, key: &str) -> AdmissionCounters {
    tenant(stats, key).admission.expect("tenant detail is on")
}

/// Admission counters with only `admitted` set.
fn only_admitted(admitted: u64) -> AdmissionCounters {
    let mut c = AdmissionCounters::default();
    c.admitted = admitted;
    c
}

/// The refusal scenario: every reason, each from its own tenant, with known counts.
fn refusal_scenario(detail: bool) -> Scheduler<&'static str, u32, ManualClock> {
    let cfg = SchedulerConfig::new()
        .with_tenant_detail(detail)
        .with_capacity(Capacity::new().with_max_items(4));
    let mut s = Scheduler::with_clock(cfg, ManualClock::new());
    s.set_classes(
        Classes::new([
            ClassSpec::new("default"),
            ClassSpec::new("api").with_tenant_quota(Some(Quota::per_second(nz(1)))),
        ])
        .unwrap(),
    )
    .unwrap();
    let api = s.classes().id("api").unwrap();
    let one_per_second = TenantLimits::new().with_quota(Quota::per_second(nz(1)));

    // "rl": its own rate limit admits one, refuses two.
    s.set_limits("rl", one_per_second);
    for i in 0..3 {
        let _ = s.try_push("rl", i);
    }
    // "blk": blocked, three refusals.
    s.block("blk", BlockReason::Abuse);
    for i in 0..3 {
        let _ = s.try_push("blk", i).unwrap_err();
    }
    // "full": an item cap of one, two refusals.
    s.set_limits("full", TenantLimits::new().with_max_items(1));
    for i in 0..3 {
        let _ = s.try_push("full", i);
    }
    // "big": never admissible (cost above its burst), zero cost, an unknown class and a
    // deadline already passed.
    s.set_limits(
        "big",
        TenantLimits::new().with_quota(Quota::per_second(nz(10)).allow_burst(nz(2))),
    );
    let _ = s
        .try_push_with("big", 0, PushOptions::new().with_cost(5))
        .unwrap_err();
    let _ = s
        .try_push_with("big", 1, PushOptions::new().with_cost(0))
        .unwrap_err();
    let _ = s
        .try_push_with("big", 2, PushOptions::new().with_class(ClassId::new(7)))
        .unwrap_err();
    let _ = s
        .try_push_with("big", 3, PushOptions::new().with_deadline(Nanos::ZERO))
        .unwrap_err();
    // "crl": the api class's per-tenant rate limit admits one, refuses one.
    for i in 0..2 {
        let _ = s.try_push_with("crl", i, PushOptions::new().with_class(api));
    }
    // "cap" (pinned, so it stays known): the fourth queued item fills the capacity; two more
    // are refused.
    let _pin = s.tenant("cap");
    for i in 0..3 {
        let _ = s.try_push("cap", i);
    }
    // "ghost": refused at a full capacity while unknown, so it is forgotten at once.
    let _ = s.try_push("ghost", 0).unwrap_err();
    s
}

#[test]
fn refusals_by_reason_per_tenant_match_the_scenario() {
    let s = refusal_scenario(true);
    let stats = s.stats();
    let expect = |admitted, blocked, rate_limited, too_large, tenant_full, capacity_full, other| {
        let mut r = only_admitted(admitted);
        r.blocked = blocked;
        r.rate_limited = rate_limited;
        r.too_large = too_large;
        r.tenant_full = tenant_full;
        r.capacity_full = capacity_full;
        r.other = other;
        r
    };
    assert_eq!(admission(&stats, "rl"), expect(1, 0, 2, 0, 0, 0, 0));
    assert_eq!(admission(&stats, "blk"), expect(0, 3, 0, 0, 0, 0, 0));
    assert_eq!(admission(&stats, "full"), expect(1, 0, 0, 0, 2, 0, 0));
    assert_eq!(admission(&stats, "big"), expect(0, 0, 0, 1, 0, 0, 3));
    assert_eq!(admission(&stats, "crl"), expect(1, 0, 1, 0, 0, 0, 0));
    assert_eq!(admission(&stats, "cap"), expect(1, 0, 0, 0, 0, 2, 0));
    assert!(stats.tenants.iter().all(|t| t.key != "ghost"));

    // Each tenant's refusals are its share of the global counters and of its own `rejected`.
    for t in &stats.tenants {
        assert_eq!(
            t.admission.unwrap().total(),
            t.counters.rejected,
            "{}",
            t.key
        );
        assert_eq!(
            t.admission.unwrap().admitted,
            t.counters.pushed,
            "{}",
            t.key
        );
    }
    let sum = |f: fn(&AdmissionCounters) -> u64| -> u64 {
        stats.tenants.iter().map(|t| f(&t.admission.unwrap())).sum()
    };
    let a = stats.admission;
    assert_eq!(sum(|r| r.admitted), a.admitted);
    assert_eq!(sum(|r| r.blocked), a.blocked);
    assert_eq!(sum(|r| r.rate_limited), a.rate_limited);
    assert_eq!(sum(|r| r.too_large), a.too_large);
    assert_eq!(sum(|r| r.tenant_full), a.tenant_full);
    assert_eq!(sum(|r| r.other), a.other);
    // The forgotten "ghost" is only in the global count.
    assert_eq!(sum(|r| r.capacity_full) + 1, a.capacity_full);
}

#[test]
fn without_tenant_detail_the_fields_are_empty_and_the_rest_is_unchanged() {
    let with = refusal_scenario(true);
    let without = refusal_scenario(false);
    let (a, b) = (with.stats(), without.stats());
    assert!(
        b.tenants
            .iter()
            .all(|t| t.admission.is_none() && t.wait.is_none())
    );
    assert_eq!(a.admission, b.admission);
    assert_eq!(a.queue, b.queue);
    assert_eq!(a.classes, b.classes);
    let keys = |s: &Stats<&'static str>| s.tenants.iter().map(|t| t.key).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
}

/// `reported` is `exact` rounded up to its histogram bucket: at most a quarter above.
fn within_resolution(reported: Nanos, exact: Nanos) -> bool {
    let (r, e) = (reported.as_u64(), exact.as_u64());
    e <= r && r <= e + e / 4
}

#[test]
fn wait_percentiles_per_tenant_match_hand_computed_values() {
    let clock = ManualClock::new();
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_detail(true),
        clock.clone(),
    );
    let _a = s.tenant("a");
    let _b = s.tenant("b");
    // "a": 100 items queued at 0, one popped each millisecond: waits 1, 2, ..., 100 ms.
    for i in 0..100 {
        s.try_push("a", i).unwrap();
    }
    for _ in 0..100 {
        clock.advance(Duration::from_millis(1));
        assert!(s.pop().is_some());
    }
    // "b": 4 items queued at once, dispatched 10, 20, 30 and 40 ms later.
    for i in 0..4 {
        s.try_push("b", i).unwrap();
    }
    for _ in 0..4 {
        clock.advance(Duration::from_millis(10));
        let d = s.dispatch().unwrap();
        assert!(s.complete(d.ticket, 1));
    }
    let stats = s.stats();
    let ms = Nanos::from_millis;

    let a = tenant(&stats, "a").wait.unwrap();
    assert_eq!(a.count, 100);
    // Rank ceil(p/100 · 100): the 50th, 90th, 99th and 100th of 1..=100 ms.
    for (got, exact) in [(a.p50, 50), (a.p90, 90), (a.p99, 99), (a.max, 100)] {
        assert!(within_resolution(got, ms(exact)), "{got:?} vs {exact} ms");
    }

    let b = tenant(&stats, "b").wait.unwrap();
    assert_eq!(b.count, 4);
    // Ranks ceil(2) = 2, ceil(3.6) = 4, ceil(3.96) = 4: 20, 40, 40 and 40 ms.
    for (got, exact) in [(b.p50, 20), (b.p90, 40), (b.p99, 40), (b.max, 40)] {
        assert!(within_resolution(got, ms(exact)), "{got:?} vs {exact} ms");
    }
    // Each tenant's histogram holds only its own items; the global one holds both.
    assert_eq!(stats.wait.count, 104);
    assert!(b.max < ms(50) && a.max >= ms(100));
}

#[test]
fn a_reused_tenant_slot_starts_from_zero() {
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_detail(true),
        ManualClock::new(),
    );
    s.block("x", BlockReason::Abuse);
    let _ = s.try_push("x", 1).unwrap_err();
    let _ = s.try_push("x", 2).unwrap_err();
    assert_eq!(admission(&s.stats(), "x").blocked, 2);
    // Unblocked, "x" has nothing left and is forgotten; "y" takes its slot.
    s.unblock(&"x");
    assert_eq!(s.queue().known_tenants(), 0);
    s.try_push("y", 3).unwrap();
    let stats = s.stats();
    assert_eq!(stats.tenants.len(), 1);
    assert_eq!(admission(&stats, "y"), only_admitted(1));
    assert_eq!(tenant(&stats, "y").wait.unwrap().count, 0);
    // A tenant known again starts from zero too.
    s.block("x", BlockReason::Billing);
    assert_eq!(admission(&s.stats(), "x"), AdmissionCounters::default());
}

#[test]
fn reconfiguring_turns_tenant_detail_off_and_on() {
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_tenant_detail(true),
        ManualClock::new(),
    );
    s.block("x", BlockReason::Abuse);
    let _ = s.try_push("x", 1).unwrap_err();
    assert_eq!(admission(&s.stats(), "x").blocked, 1);
    s.reconfigure(SchedulerConfig::new());
    let _ = s.try_push("x", 2).unwrap_err();
    assert_eq!(tenant(&s.stats(), "x").admission, None);
    s.reconfigure(SchedulerConfig::new().with_tenant_detail(true));
    assert_eq!(admission(&s.stats(), "x"), AdmissionCounters::default());
    let _ = s.try_push("x", 3).unwrap_err();
    assert_eq!(admission(&s.stats(), "x").blocked, 1);
}

#[test]
fn class_lines_match_the_queue() {
    let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(
        SchedulerConfig::new().with_max_in_flight(Some(10)),
        ManualClock::new(),
    );
    // One class: a single "default" line.
    s.try_push("a", 0).unwrap();
    let stats = s.stats();
    assert_eq!(stats.classes.len(), 1);
    assert_eq!(stats.classes[0].name, "default");
    assert_eq!(
        (stats.classes[0].queued, stats.classes[0].counters.pushed),
        (1, 1)
    );
    assert_eq!(s.pop(), Some(0));

    s.set_classes(
        Classes::new([
            ClassSpec::new("api"),
            ClassSpec::new("signin").with_reserved_percent(20),
            ClassSpec::new("bulk").with_ceiling_percent(50),
        ])
        .unwrap(),
    )
    .unwrap();
    let bulk = s.classes().id("bulk").unwrap();
    let signin = s.classes().id("signin").unwrap();
    for i in 0..3 {
        s.try_push_with("t", i, PushOptions::new().with_class(bulk).with_cost(2))
            .unwrap();
    }
    s.try_push_with("u", 10, PushOptions::new().with_class(signin))
        .unwrap();
    let first = s.dispatch().unwrap();
    assert_eq!(first.ticket.class(), signin);
    let second = s.dispatch().unwrap();
    assert_eq!(second.ticket.class(), bulk);
    assert!(s.complete(second.ticket, 5)); // actual cost 5, estimated 2

    let stats = s.stats();
    let names: Vec<&str> = stats.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "signin", "bulk"]);
    let b = &stats.classes[bulk.index()];
    assert_eq!((b.queued, b.queued_cost, b.in_flight), (2, 4, 0));
    assert_eq!(
        (
            b.counters.pushed,
            b.counters.dispatched,
            b.counters.served_cost
        ),
        (3, 1, 5)
    );
    let si = &stats.classes[signin.index()];
    assert_eq!((si.queued, si.in_flight, si.counters.dispatched), (0, 1, 1));
    for (id, c) in s.classes().iter() {
        let line = &stats.classes[id.index()];
        assert_eq!(line.name, c.name());
        assert_eq!(line.queued, s.queue().class_len(id) as u64);
        assert_eq!(line.in_flight, s.queue().class_in_flight(id));
        assert_eq!(Some(line.counters), s.queue().class_counters(id));
    }
    assert!(s.complete(first.ticket, 1));
}

#[cfg(feature = "serde")]
#[test]
fn a_detailed_snapshot_serialises_to_json_and_back() {
    let mut s = refusal_scenario(true);
    let clock = s.clock().clone();
    clock.advance(Duration::from_millis(7));
    let _ = s.pop().unwrap();
    let stats = s.stats();
    let json = serde_json::to_string(&stats).unwrap();
    let back: Stats<String> = serde_json::from_str(&json).unwrap();
    assert_eq!(back.tenants.len(), stats.tenants.len());
    for (t, u) in stats.tenants.iter().zip(&back.tenants) {
        assert_eq!(t.key, u.key);
        assert_eq!((t.admission, t.wait), (u.admission, u.wait));
    }
    assert_eq!(back.classes, stats.classes);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let big = value["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "big")
        .unwrap();
    assert_eq!(big["admission"]["other"], 3);
    assert_eq!(big["admission"]["too_large"], 1);
    assert_eq!(value["classes"][1]["name"], "api");
    let served = value["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["wait"]["count"] == 1)
        .expect("the popped item's tenant has one wait");
    assert!(served["wait"]["p50"].as_u64().unwrap() >= 7_000_000);
}

#[test]
fn items_handed_back_after_admission_are_counted_per_tenant() {
    let clock = ManualClock::new();
    let cfg = SchedulerConfig::new()
        .with_tenant_detail(true)
        .with_capacity(Capacity::new().with_max_items(4))
        .with_shed_policy(ShedPolicy::EvictOverShare);
    let mut s: Scheduler<&'static str, u32, _> = Scheduler::with_clock(cfg, clock.clone());
    // "flood" fills the queue; "light" arrives and evicts two of its items.
    for i in 0..4 {
        s.try_push("flood", i).unwrap();
    }
    for i in 0..2 {
        s.try_push("light", 10 + i).unwrap();
        let back = s.take_returned();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].reason(), RejectReason::Evicted);
    }
    // "late" pushes an item with a deadline that passes while queued ("light" keeps room).
    let _ = s.pop();
    s.try_push_with(
        "late",
        20,
        PushOptions::new().with_deadline(Nanos::from_millis(5)),
    )
    .unwrap();
    // Pinned, so the tenant is still known (and listed) once its only item has expired.
    let _pin = s.tenant("late");
    clock.advance(Duration::from_millis(10));
    assert_eq!(s.take_returned().len(), 1);
    let stats = s.stats();
    let flood = admission(&stats, "flood");
    assert_eq!((flood.evicted, flood.returned(), flood.total()), (2, 2, 0));
    assert_eq!(admission(&stats, "light").returned(), 0);
    let late = admission(&stats, "late");
    assert_eq!((late.expired, late.returned()), (1, 1));
}
