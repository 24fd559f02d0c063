//! Cost correction through `complete` cannot be gamed: the difference between an item's
//! estimate and its actual cost is never forgiven. Debt (estimates too low) is repaid from
//! the tenant's later rounds, at most its whole quantum a round, however long it takes;
//! credit (estimates too high) comes back in later rounds, never in the round it was earned
//! and never while the tenant has nothing queued. Over a long backlogged stretch each
//! tenant's served *actual* cost per weight converges to its share, whatever it declared.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use std::collections::VecDeque;
use std::num::NonZeroU32;

use fairshare::config::{QueueConfig, SchedulerConfig};
use fairshare::{ClassSpec, Classes, FairQueue, PushOptions, SharedScheduler, Ticket};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn unit_queue() -> FairQueue<&'static str, (&'static str, u32)> {
    FairQueue::with_config(QueueConfig::new().with_quantum(nz(1)))
}

/// A debt of 10 (estimate 1, actual 11) is repaid in full, one quantum a round: the tenant's
/// next item waits ten rounds more than its normal turn, and the other tenant is served
/// exactly one item a round meanwhile (repaying takes nothing from anyone else).
#[test]
fn debt_is_repaid_in_full_one_quantum_a_round() {
    let mut q = unit_queue();
    let _pin = q.tenant("a");
    q.try_push("a", ("a", 1)).unwrap();
    for i in 0..20 {
        q.try_push("b", ("b", i)).unwrap();
    }
    let d = q.dispatch().unwrap();
    assert_eq!(d.item, ("a", 1));
    assert!(q.complete(d.ticket, 11));
    q.try_push("a", ("a", 2)).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| q.pop()).take(12).collect();
    let want: Vec<_> = (0..11).map(|i| ("b", i)).chain([("a", 2)]).collect();
    assert_eq!(order, want);
}

/// One wildly wrong estimate is not forgiven either: a debt of a million is still owed after
/// a thousand rounds, and the tenant is remembered while it owes, though it has nothing
/// queued or in flight and no settings.
#[test]
fn a_huge_debt_is_kept_while_the_tenant_is_idle() {
    let mut q = unit_queue();
    q.try_push("a", ("a", 1)).unwrap();
    let d = q.dispatch().unwrap();
    assert!(q.complete(d.ticket, 1_000_001));
    assert_eq!(q.known_tenants(), 1, "a tenant that owes is remembered");
    q.try_push("a", ("a", 2)).unwrap();
    for i in 0..1000 {
        q.try_push("b", ("b", i)).unwrap();
    }
    let served: Vec<_> = std::iter::from_fn(|| q.pop()).take(1000).collect();
    assert!(served.iter().all(|&(t, _)| t == "b"), "a owes 999,000 more");
    assert_eq!(
        q.pop(),
        Some(("a", 2)),
        "alone, it is served: work conservation"
    );
}

/// Credit earned by an overestimate comes back in the tenant's later rounds, not in the
/// round it was earned: a closed loop of dispatch and complete in which one tenant reports
/// every job as free cannot take every dispatch (a free job counts as cost 1).
#[test]
fn a_zero_actual_cost_cannot_monopolise() {
    let mut q = unit_queue();
    for i in 0..1000 {
        q.try_push("zero", ("zero", i)).unwrap();
        q.try_push("honest", ("honest", i)).unwrap();
    }
    let mut counts = [0u32; 2];
    for _ in 0..1000 {
        let d = q.dispatch().unwrap();
        let zero = d.item.0 == "zero";
        counts[usize::from(!zero)] += 1;
        assert!(q.complete(d.ticket, if zero { 0 } else { 1 }));
    }
    assert_eq!(counts, [500, 500]);
}

/// No credit is banked while idle: a tenant whose last job came in far under its estimate,
/// with nothing queued, starts its next backlog with a normal turn.
#[test]
fn credit_is_forfeited_when_idle() {
    let mut q: FairQueue<&str, (&str, u32)> =
        FairQueue::with_config(QueueConfig::new().with_quantum(nz(1)));
    let _pin = q.tenant("a");
    q.try_push_with("a", ("a", 0), PushOptions::new().with_cost(1000))
        .unwrap();
    let d = q.dispatch().unwrap();
    assert!(q.complete(d.ticket, 1)); // 999 of credit, earned with nothing queued
    for i in 1..=5 {
        q.try_push("a", ("a", i)).unwrap();
        q.try_push("b", ("b", i)).unwrap();
    }
    let order: Vec<&str> = std::iter::from_fn(|| q.pop())
        .map(|(t, _)| t)
        .take(6)
        .collect();
    assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
}

/// The scenario of a tenant that under-declares, under the default configuration: ten
/// tenants share a saturated queue through dispatch + complete, nine declare their true cost
/// (20), one declares 1 for every job and reports 20 at completion. Each is served the same
/// actual cost within one job.
#[test]
fn an_under_declaring_tenant_gets_its_share_of_actual_cost() {
    let mut q: FairQueue<u32, u32> = FairQueue::new();
    let declared = |t: u32| if t == 0 { 1 } else { 20 };
    for t in 0..10 {
        for _ in 0..2 {
            q.try_push_with(t, t, PushOptions::new().with_cost(declared(t)))
                .unwrap();
        }
    }
    let mut actual = [0u64; 10];
    for _ in 0..20_000 {
        let d = q.dispatch().unwrap();
        let t = d.item;
        actual[t as usize] += 20;
        assert!(q.complete(d.ticket, 20));
        q.try_push_with(t, t, PushOptions::new().with_cost(declared(t)))
            .unwrap();
    }
    let max = *actual.iter().max().unwrap();
    let min = *actual.iter().min().unwrap();
    assert!(max - min <= 2 * 20, "actual costs served: {actual:?}");
}

/// The same through the shared handle's leases and with two classes: the under-declaring
/// tenant's work spread over both classes is served the same actual cost as an honest
/// tenant's, within a job per class.
#[test]
fn leases_and_classes_correct_the_same_way() {
    let s: SharedScheduler<u32, u32> =
        SharedScheduler::new(SchedulerConfig::new().with_max_in_flight(Some(4)));
    s.with_scheduler(|s| {
        s.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap())
    })
    .unwrap();
    let classes = s.with_scheduler(|s| {
        [
            s.classes().id("api").unwrap(),
            s.classes().id("bulk").unwrap(),
        ]
    });
    let declared = |t: u32| if t == 0 { 1 } else { 20 };
    let push = |t: u32, n: u32| {
        let opts = PushOptions::new()
            .with_cost(declared(t))
            .with_class(classes[(n % 2) as usize]);
        s.try_push_with(t, t, opts).unwrap();
    };
    for t in 0..3 {
        for n in 0..6 {
            push(t, n);
        }
    }
    let mut actual = [0u64; 3];
    let mut leases = VecDeque::new();
    for n in 0..12_000u32 {
        let job = s
            .try_dispatch()
            .expect("four slots, three backlogged tenants");
        actual[job.item as usize] += 20;
        push(job.item, n);
        leases.push_back(job.lease);
        if leases.len() == 4 {
            leases.pop_front().unwrap().complete(20);
        }
    }
    let (max, min) = (*actual.iter().max().unwrap(), *actual.iter().min().unwrap());
    assert!(max - min <= 2 * 2 * 20, "actual costs served: {actual:?}");
}

// ===== convergence on random workloads =====

#[derive(Debug, Clone)]
struct Tenant {
    weight: u32,
    /// Declared = actual / factor (under) or actual * factor (over).
    factor: u32,
    under: bool,
    /// Actual costs of its jobs, cycled.
    costs: Vec<u32>,
}

fn tenants() -> impl Strategy<Value = Vec<Tenant>> {
    prop::collection::vec(
        (
            1..=3u32,
            1..=100u32,
            any::<bool>(),
            prop::collection::vec(1..=50u32, 1..=4),
        )
            .prop_map(|(weight, factor, under, costs)| Tenant {
                weight,
                factor,
                under,
                costs,
            }),
        2..=5,
    )
}

fn declared(t: &Tenant, actual: u32) -> u32 {
    if t.under {
        (actual / t.factor).max(1)
    } else {
        actual * t.factor
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Tenants under- and over-declare by random factors (1x to 100x) on a saturated queue
    /// with a random number of jobs in flight (completed oldest first). After a warm-up, every
    /// pair of tenants meets the bound in actual costs of `FairQueue`'s `# Fairness`, with
    /// each carry below `Q·w + (⌈Q·w / e⌉ + L + 1)·D` and the unreported corrections at most
    /// `L·D` (`L` jobs in flight, `e` the tenant's smallest estimate and `D` its largest
    /// `|estimate - actual|`). That bound does not
    /// grow with the stretch, so the stretch runs until it is at most 5% of the mean service
    /// per weight (or for 500,000 dispatches, whichever comes first), and each tenant is then
    /// within 5% of the mean: a bug that forgives or banks corrections makes the error grow
    /// with the stretch and fails both.
    #[test]
    fn actual_cost_per_weight_converges(tenants in tenants(), in_flight in 1..=8usize, quantum in 1..=20u32) {
        let mut q: FairQueue<usize, (usize, u32)> =
            FairQueue::with_config(QueueConfig::new().with_quantum(nz(quantum)));
        let mut next = vec![0usize; tenants.len()];
        let push = |q: &mut FairQueue<usize, (usize, u32)>, i: usize, next: &mut Vec<usize>| {
            let t = &tenants[i];
            let actual = t.costs[next[i] % t.costs.len()];
            next[i] += 1;
            q.try_push_with(i, (i, actual), PushOptions::new().with_cost(declared(t, actual)))
                .unwrap();
        };
        for (i, t) in tenants.iter().enumerate() {
            q.set_weight(i, nz(t.weight));
            for _ in 0..in_flight + 1 {
                push(&mut q, i, &mut next);
            }
        }
        let (quantum, flight_len) = (f64::from(quantum), in_flight as f64);
        let largest_estimate = f64::from(
            tenants
                .iter()
                .flat_map(|t| t.costs.iter().map(|&a| declared(t, a)))
                .max()
                .unwrap(),
        );
        // Each tenant's own terms of the bound, per weight: M/w + (|C| + |C'| + F)/w.
        let own: Vec<f64> = tenants
            .iter()
            .map(|t| {
                let w = f64::from(t.weight);
                let d = f64::from(t.costs.iter().map(|&a| declared(t, a).abs_diff(a)).max().unwrap());
                let e = f64::from(t.costs.iter().map(|&a| declared(t, a)).min().unwrap());
                let carry = quantum * w + ((quantum * w / e).ceil() + flight_len + 1.0) * d;
                (largest_estimate + 2.0 * carry + flight_len * d) / w
            })
            .collect();
        let bound = |i: usize, j: usize| 3.0 * quantum + own[i] + own[j];
        let widest = (0..tenants.len())
            .flat_map(|i| (0..tenants.len()).map(move |j| (i, j)))
            .map(|(i, j)| bound(i, j))
            .fold(0.0, f64::max);
        let warm_up = 12_000;
        let max_steps = 500_000;
        let total_weight: f64 = tenants.iter().map(|t| f64::from(t.weight)).sum();
        let mut flight: VecDeque<(Ticket, usize, u32)> = VecDeque::new();
        let mut served = vec![0u64; tenants.len()];
        let mut step = 0;
        while step < warm_up || (served.iter().sum::<u64>() as f64) / total_weight < 20.0 * widest {
            if step == max_steps {
                break;
            }
            let d = q.dispatch().expect("saturated: every tenant keeps work queued");
            let (i, actual) = d.item;
            flight.push_back((d.ticket, i, actual));
            push(&mut q, i, &mut next);
            if flight.len() >= in_flight {
                let (ticket, i, actual) = flight.pop_front().unwrap();
                prop_assert!(q.complete(ticket, actual));
                if step >= warm_up {
                    served[i] += u64::from(actual);
                }
            }
            step += 1;
        }
        let per_weight: Vec<f64> = served
            .iter()
            .zip(&tenants)
            .map(|(&s, t)| s as f64 / f64::from(t.weight))
            .collect();
        for i in 0..tenants.len() {
            for j in 0..tenants.len() {
                prop_assert!(
                    (per_weight[i] - per_weight[j]).abs() < bound(i, j),
                    "tenants {i} and {j} got {:.0} and {:.0} per weight, bound {:.0}: {per_weight:?}",
                    per_weight[i], per_weight[j], bound(i, j)
                );
            }
        }
        let mean = per_weight.iter().sum::<f64>() / per_weight.len() as f64;
        // Most cases reach a stretch where the bound is 5% of the mean within the budget;
        // there the bound implies this, and it is checked.
        if step < max_steps {
            for (i, &p) in per_weight.iter().enumerate() {
                prop_assert!(
                    (p - mean).abs() <= 0.05 * mean,
                    "tenant {i} ({:?}) got {p:.0} per weight, mean {mean:.0}: {per_weight:?}",
                    tenants[i]
                );
            }
        }
    }
}
