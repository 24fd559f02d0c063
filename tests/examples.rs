#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! The examples' key outcomes, asserted on the very simulation they print.
//!
//! `examples/noisy_neighbor.rs` prints the replay of incident 1 from
//! `examples/support/incident1.rs`; this file includes the same module and checks the numbers
//! the README quotes: fairshare keeps the other tenants' waits near their no-flood level while a
//! shared FIFO makes them wait for hours, the rate limit refuses the flood at the door with a
//! retry time, and block + purge hands back every flood job it does not serve.

#[path = "../examples/support/incident1.rs"]
mod incident1;

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
