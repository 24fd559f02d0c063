//! The examples' key outcomes, asserted on the very simulation they print.
//!
//! `examples/noisy_neighbor.rs` prints the replay of incident 1 (one tenant floods a shared
//! queue) from `examples/support/incident1.rs`; this file includes the same module and checks
//! the numbers the README quotes: fairshare keeps the other tenants' waits near their no-flood
//! level while a shared FIFO makes them wait for hours, the rate limit refuses the flood at the
//! door with a retry time, and block + purge hands back every flood job it does not serve.
//!
//! `examples/signin_reservation.rs` prints the replay of incident 2 (a sign-in wave at the
//! morning peak) from `examples/support/incident2.rs`; the `incident2_*` tests check its
//! numbers: a reserved sign-in class that borrows idle slots serves sign-in where the
//! operators' dedicated pool starved it, page/API traffic pays at most a stated margin for it,
//! and the reservation holds whenever sign-in is backlogged.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

#[path = "../examples/support/incident1.rs"]
mod incident1;
#[path = "../examples/support/incident2.rs"]
mod incident2;
#[path = "../examples/support/replay_util.rs"]
mod replay_util;

use std::sync::OnceLock;

use incident1::{Outcome, Replay, Scenario};

/// The full-scale replay, run once and shared by the tests (about 3 s in debug, 0.2 s in
/// release).
fn replay() -> &'static Replay {
    static REPLAY: OnceLock<Replay> = OnceLock::new();
    REPLAY.get_or_init(|| incident1::replay(Scenario::incident()))
}

/// Every submitted job is accounted for exactly once: served, purged or refused.
fn assert_conserved(name: &str, o: &Outcome) {
    assert_eq!(
        o.normal_waits.len() as u64 + o.normal_refused,
        o.normal_jobs,
        "{name}: normal jobs served + refused"
    );
    assert_eq!(
        o.flood_served + o.flood_purged + o.flood_refused,
        o.flood_jobs,
        "{name}: flood jobs served + purged + refused"
    );
}

#[test]
fn every_run_accounts_for_every_job() {
    let r = replay();
    let runs = [
        ("no flood", &r.no_flood),
        ("no flood, fair queue", &r.no_flood_fair),
        ("shared FIFO", &r.shared_fifo),
        ("fair queue", &r.fair_queue),
        ("rate limited", &r.rate_limited),
        ("block and purge", &r.block_and_purge),
    ];
    for (name, o) in runs {
        assert_conserved(name, o);
    }
    // The flood runs replay the same normal load as the references, plus 140,000 flood jobs.
    assert_eq!(r.no_flood.flood_jobs, 0);
    assert_eq!(r.shared_fifo.normal_jobs, r.no_flood.normal_jobs);
    assert_eq!(r.shared_fifo.flood_jobs, 140_000);
}

#[test]
fn fair_queue_keeps_other_tenants_p99_near_their_no_flood_p99() {
    let r = replay();
    let service_ms = r.scenario.service_ms;
    for reference in [&r.no_flood, &r.no_flood_fair] {
        let before = reference.normal_wait_percentile(99);
        let during = r.fair_queue.normal_wait_percentile(99);
        // Within 1.5x, or at most one job's service time above: with every worker busy on the
        // flood, a newly arrived job still waits for some worker to finish its current job.
        let bound = (before * 3 / 2).max(before + service_ms);
        assert!(
            during <= bound,
            "fair queue p99 {during} ms under the flood vs {before} ms without (bound {bound} ms)"
        );
    }
    // The flood is still served in full with the spare capacity: the queue is work-conserving.
    assert_eq!(r.fair_queue.flood_served, 140_000);
}

#[test]
fn shared_fifo_p99_is_orders_of_magnitude_worse() {
    let r = replay();
    let before = r.no_flood.normal_wait_percentile(99);
    let fifo = r.shared_fifo.normal_wait_percentile(99);
    let fair = r.fair_queue.normal_wait_percentile(99);
    assert!(before > 0);
    assert!(
        fifo >= 100 * before,
        "FIFO p99 {fifo} ms vs {before} ms without the flood"
    );
    assert!(
        fifo >= 100 * fair,
        "FIFO p99 {fifo} ms vs fair queue {fair} ms"
    );
    // The incident's "waited for hours": the worst FIFO wait is over an hour.
    assert!(r.shared_fifo.normal_wait_max() > 3_600_000);
}

#[test]
fn rate_limit_refuses_most_of_the_flood_with_a_retry_time() {
    let r = replay();
    let rl = &r.rate_limited;
    // Most of the flood is refused, every refusal as RateLimited with a retry time.
    assert!(
        rl.flood_rate_limited * 100 >= rl.flood_jobs * 99,
        "{} of {} refused",
        rl.flood_rate_limited,
        rl.flood_jobs
    );
    assert_eq!(rl.flood_refused, rl.flood_rate_limited);
    assert_eq!(rl.retry_after_ms.len() as u64, rl.flood_rate_limited);
    // At 1 job/s the retry time is never more than one replenish interval away.
    let longest = *rl.retry_after_ms.last().unwrap();
    assert!(longest <= 1_000, "retry after {longest} ms");
    // What was admitted is at most the burst plus the rate over the flood's 10 minutes.
    let s = &r.scenario;
    let allowed = u64::from(s.quota_burst) + u64::from(s.quota_per_s) * s.flood_span_ms / 1000;
    assert!(rl.flood_served <= allowed + 1);
    // Nobody else is refused, and their waits stay near the no-flood reference.
    assert_eq!(rl.normal_refused, 0);
    let before = r.no_flood.normal_wait_percentile(99);
    assert!(rl.normal_wait_percentile(99) <= before * 3 / 2);
}

#[test]
fn block_and_purge_conserves_every_flood_job() {
    let r = replay();
    let bp = &r.block_and_purge;
    assert_eq!(
        bp.flood_served + bp.flood_purged + bp.flood_refused,
        140_000
    );
    assert!(bp.flood_purged > 0, "purge handed back nothing");
    assert!(
        bp.flood_refused > 0,
        "nothing was submitted after the block"
    );
    assert_eq!(
        bp.flood_refused, bp.flood_blocked,
        "refusals are all Blocked"
    );
    // Nothing of the flood is served after the operators acted.
    let s = &r.scenario;
    let longest_job = s.service_ms + s.service_jitter_ms;
    assert!(bp.flood_done_ms.unwrap() <= s.operators_act_ms + longest_job);
    assert_eq!(bp.normal_refused, 0);
}

#[test]
fn report_shows_every_policy() {
    let report = replay().report();
    for row in [
        "no flood (reference)",
        "shared FIFO (the incident)",
        "fairshare FairQueue",
        "fairshare Scheduler",
        "fairshare + block & purge",
        "Worst wait of other tenants' jobs",
    ] {
        assert!(report.contains(row), "missing {row:?} in\n{report}");
    }
}

#[test]
fn replay_is_deterministic() {
    // A smaller incident, run twice: same arrivals, same decisions, same report.
    let small = Scenario {
        normal_tenants: 40,
        normal_per_s: 6.0,
        workers: 2,
        flood_jobs: 5_000,
        horizon_ms: 30 * 60_000,
        ..Scenario::incident()
    };
    let first = incident1::replay(small);
    let second = incident1::replay(small);
    assert_eq!(first, second);
    assert_eq!(first.report(), second.report());
    assert_conserved("small fair queue", &first.fair_queue);
}

// ===== incident 2: sign-in on a dedicated pool against a reserved class =====

/// The full replay of incident 2, run once and shared by its tests (well under a second in
/// debug).
fn replay2() -> &'static incident2::Replay {
    static REPLAY: OnceLock<incident2::Replay> = OnceLock::new();
    REPLAY.get_or_init(|| incident2::replay(incident2::Scenario::incident()))
}

/// Every request is accounted for exactly once, overall and per phase: served, or answered
/// with a 503 (refused, evicted or timed out) that carries a Retry-After.
fn assert_accounted(name: &str, o: &incident2::Outcome) {
    for (kind, t) in [("sign-in", &o.signin), ("page/API", &o.normal)] {
        assert_eq!(t.served() + t.shed(), t.submitted, "{name}: {kind}");
        let submitted: u64 = t.by_phase.iter().map(|p| p.0).sum();
        let served: u64 = t.by_phase.iter().map(|p| p.1).sum();
        assert_eq!(
            (submitted, served),
            (t.submitted, t.served()),
            "{name}: {kind} by phase"
        );
    }
    assert_eq!(
        o.retry_after_s.len() as u64,
        o.signin.shed() + o.normal.shed(),
        "{name}: one Retry-After per 503"
    );
}

#[test]
fn incident2_every_request_is_served_or_answered_with_a_503() {
    let r = replay2();
    for (name, o) in r.runs() {
        assert_accounted(&name, o);
        // Every setup replays the very same requests.
        assert_eq!(o.signin.submitted, r.shared.signin.submitted, "{name}");
        assert_eq!(o.normal.submitted, r.shared.normal.submitted, "{name}");
    }
    assert!(r.shared.signin.submitted > 4_000 && r.shared.normal.submitted > 25_000);
}

#[test]
fn incident2_reservation_serves_signin_where_the_dedicated_pool_starves_it() {
    let r = replay2();
    let (pool, reserved) = (&r.dedicated, &r.reserved);
    // With the reservation, (nearly) every sign-in is served within the client's timeout...
    assert!(
        reserved.signin.success_percent() >= 99.0,
        "reserved: {:.1}% of sign-ins served",
        reserved.signin.success_percent()
    );
    // ...and promptly: its p99 wait is a small part of the timeout.
    let p99 = reserved.signin.wait_percentile(99);
    assert!(
        p99 <= r.scenario.deadline_ms / 4,
        "reserved: sign-in p99 {p99} ms"
    );
    // The operators' dedicated pool starves sign-in: a quarter is lost, over 40% in the wave.
    assert!(
        pool.signin.success_percent() <= 80.0,
        "dedicated pool: {:.1}% of sign-ins served",
        pool.signin.success_percent()
    );
    assert!(pool.signin.phase_success_percent(1) <= 60.0);
    assert!(reserved.signin.phase_success_percent(1) >= 99.0);
    // A dedicated pool as large as the reservation, or no isolation at all, is still clearly
    // worse for sign-in than the reservation.
    for other in [&r.dedicated_large, &r.shared] {
        assert!(
            other.signin.success_percent() + 5.0 <= reserved.signin.success_percent(),
            "{:?}: {:.1}% of sign-ins served",
            other.setup,
            other.signin.success_percent()
        );
    }
}

#[test]
fn incident2_the_dedicated_pool_idles_while_signin_waits() {
    let r = replay2();
    let wave = 1;
    // During the wave sign-ins queue in their small pool while the other pool has room...
    assert!(r.dedicated.signin_waiting_ms[wave] > 0);
    assert!(
        r.dedicated.idle_slots_while_signin_waited(wave) >= 3.0,
        "{:.1} idle slots",
        r.dedicated.idle_slots_while_signin_waited(wave)
    );
    // ...while one shared fleet (with or without classes) never leaves a slot idle while a
    // sign-in waits: dispatch is work-conserving.
    for o in [&r.shared, &r.reserved] {
        assert_eq!(o.idle_slot_ms_while_signin_waited, [0; 4], "{:?}", o.setup);
    }
}

#[test]
fn incident2_page_traffic_pays_at_most_one_point_for_the_reservation() {
    let r = replay2();
    let (pool, reserved) = (&r.dedicated, &r.reserved);
    // The stated margin: page/API success with the reservation is within 1 percentage point
    // of the dedicated pool's. At the peak sign-in needs 4.5 slots, more than the pool's 4, and
    // the reservation serves those sign-ins from slots page/API would otherwise have had;
    // everything else sign-in gained came from slots that stood idle.
    assert!(
        reserved.normal.success_percent() + 1.0 >= pool.normal.success_percent(),
        "page/API served: reserved {:.1}% vs dedicated pool {:.1}%",
        reserved.normal.success_percent(),
        pool.normal.success_percent()
    );
    let lost = pool
        .normal
        .served()
        .saturating_sub(reserved.normal.served());
    let gained = reserved.signin.served() - pool.signin.served();
    assert!(
        lost * 5 <= gained,
        "{lost} page/API requests lost for {gained} sign-ins"
    );
    // Growing the dedicated pool to the reservation's size costs page/API more than the
    // reservation does.
    assert!(reserved.normal.success_percent() > r.dedicated_large.normal.success_percent());
}

#[test]
fn incident2_reserved_class_holds_its_reservation_whenever_backlogged() {
    let r = replay2();
    let c = &r.reserved;
    let reserved = u64::from(r.scenario.reserved_slots());
    assert_eq!(reserved, 6);
    // No free slot ever went to page/API while sign-ins waited below the reservation...
    assert_eq!(c.reservation_violations, 0);
    // ...so after borrowing every slot page/API gives the reservation back within at most
    // `reserved` of its completions.
    assert!(
        c.below_reservation_most_completions <= reserved,
        "{} completions",
        c.below_reservation_most_completions
    );
    // Borrowing works both ways: sign-in above its reservation in the wave, page/API on
    // every slot when sign-in is idle.
    assert!(c.signin_max_in_flight > reserved);
    assert_eq!(c.normal_max_in_flight, u64::from(r.scenario.slots));
    // Nothing of sign-in was shed at all.
    assert_eq!(c.signin.shed(), 0);
}

#[test]
fn incident2_every_503_carries_a_retry_after_within_the_timeout() {
    let r = replay2();
    let timeout_s = r.scenario.deadline_ms.div_ceil(1000);
    for (name, o) in r.runs() {
        // No rate limit is configured, so every Retry-After is the drain-time estimate: at
        // least 1 s, and at most the timeout (a full queue is one timeout's worth of work).
        assert_eq!(o.with_retry_at, 0, "{name}");
        assert!(
            o.retry_after_s
                .iter()
                .all(|&s| (1..=timeout_s).contains(&s)),
            "{name}: {:?}",
            o.retry_after_histogram()
        );
    }
    // The small pool's queue fills: sign-ins are refused or evicted at the door, not only
    // timed out.
    let pool = &r.dedicated.signin;
    assert!(pool.refused > 0 && pool.evicted > 0 && pool.expired > 0);
}

#[test]
fn incident2_report_shows_every_setup() {
    let report = replay2().report();
    for row in [
        "(a) one shared fleet, no isolation",
        "(b) dedicated sign-in pool, 4 of 40",
        "(b') dedicated sign-in pool, 6 of 40",
        "(c) fairshare: sign-in 15% reserved",
        "Sign-ins served within 2.0 s, by phase",
        "Retry-After",
    ] {
        assert!(report.contains(row), "missing {row:?} in\n{report}");
    }
}

#[test]
fn incident2_replay_is_deterministic() {
    // A shorter peak, run twice: same arrivals, same decisions, same report.
    let mut small = incident2::Scenario::incident();
    for phase in &mut small.phases {
        phase.until_ms /= 5;
    }
    let first = incident2::replay(small);
    let second = incident2::replay(small);
    assert_eq!(first, second);
    assert_eq!(first.report(), second.report());
    for (name, o) in first.runs() {
        assert_accounted(&name, o);
    }
}
