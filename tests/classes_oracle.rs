//! Class and tenant shares match an oracle: a reference computes the weighted max-min fair
//! share of `N` in-flight slots among classes with reservations, ceilings, priorities and
//! finite demand, and inside each class among tenants (a tenant backlogged in `k` classes
//! competes in each with weight `w / k`). A discrete simulation then runs a saturated
//! `FairQueue` with a global in-flight limit `N` in which every dispatched item completes
//! after the same service time, so a class's share of the slots is its share of the dispatched
//! items; each class's and tenant's achieved share must be within 1% (absolute) of the
//! oracle's.
//!
//! The reference follows the selection rule of `ClassSpec` / the classes API: a backlogged
//! class first gets its reservation `R_c = floor(N·r_c/100)` (at most its ceiling and demand);
//! then, priority by priority from the highest, the slots left are water-filled by weight
//! among that priority's classes, a class's total being `clamp(w_c·L, R_c, min(C_c, d_c))`
//! (the dispatch rule ranks classes by `in_flight / weight`, reserved slots included), with
//! `C_c = max(1, floor(N·ceil_c/100))`.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod common;

use common::class_oracle::{
    ClassCfg, Setup, check, class_oracle, close, expect_shares, oracle_shares, solo, window,
};

#[test]
fn oracle_sanity() {
    let inf = f64::INFINITY;
    // plain weights
    let a = class_oracle(
        100,
        &[ClassCfg::new(1), ClassCfg::new(2), ClassCfg::new(1)],
        &[inf; 3],
    );
    close(a[0], 25.0);
    close(a[1], 50.0);
    close(a[2], 25.0);
    // a 30% floor for a weight-1 class: the rest level out at 70/3 per unit of weight
    let a = class_oracle(
        100,
        &[
            ClassCfg::new(1).reserved(30),
            ClassCfg::new(2),
            ClassCfg::new(1),
        ],
        &[inf; 3],
    );
    close(a[0], 30.0);
    close(a[1], 140.0 / 3.0);
    close(a[2], 70.0 / 3.0);
    // a reservation below the weighted share does not bind
    let a = class_oracle(
        100,
        &[ClassCfg::new(2).reserved(10), ClassCfg::new(1)],
        &[inf; 2],
    );
    close(a[0], 200.0 / 3.0);
    close(a[1], 100.0 / 3.0);
    // a 25% ceiling
    let a = class_oracle(
        100,
        &[
            ClassCfg::new(3).ceiling(25),
            ClassCfg::new(1),
            ClassCfg::new(1),
        ],
        &[inf; 3],
    );
    close(a[0], 25.0);
    close(a[1], 37.5);
    close(a[2], 37.5);
    // priorities: reservations first, then the highest priority takes the rest
    let a = class_oracle(
        40,
        &[
            ClassCfg::new(1).priority(2),
            ClassCfg::new(1).priority(1).reserved(25),
            ClassCfg::new(5).reserved(10),
        ],
        &[inf; 3],
    );
    close(a[0], 26.0);
    close(a[1], 10.0);
    close(a[2], 4.0);
    // a capped high priority leaves the rest to the lower one
    let a = class_oracle(
        20,
        &[ClassCfg::new(1).priority(1).ceiling(30), ClassCfg::new(1)],
        &[inf; 2],
    );
    close(a[0], 6.0);
    close(a[1], 14.0);
    // finite demand: an idle class gets nothing, its reservation is lent out
    let a = class_oracle(
        10,
        &[ClassCfg::new(1).reserved(50), ClassCfg::new(1)],
        &[0.0, inf],
    );
    close(a[0], 0.0);
    close(a[1], 10.0);
    // a demand below the fair share is met, the rest goes to the others
    let a = class_oracle(
        12,
        &[ClassCfg::new(1), ClassCfg::new(1), ClassCfg::new(2)],
        &[2.0, inf, inf],
    );
    close(a[0], 2.0);
    close(a[1], 10.0 / 3.0);
    close(a[2], 20.0 / 3.0);
    // every ceiling binds: fewer than N slots are used
    let a = class_oracle(
        10,
        &[ClassCfg::new(1).ceiling(20), ClassCfg::new(4).ceiling(30)],
        &[inf; 2],
    );
    close(a[0], 2.0);
    close(a[1], 3.0);
    // ceilings are at least one slot
    let a = class_oracle(
        10,
        &[ClassCfg::new(1).ceiling(5), ClassCfg::new(1)],
        &[inf; 2],
    );
    close(a[0], 1.0);
    close(a[1], 9.0);

    // tenants: y is in both classes, so it competes with weight 1 in each
    let s = Setup {
        n: 20,
        classes: vec![ClassCfg::new(1), ClassCfg::new(1)],
        tenant_weights: vec![1, 2, 1],
        members: vec![vec![0, 1], vec![1, 2]],
    };
    let (cs, ts) = oracle_shares(&s);
    close(cs[0], 0.5);
    close(ts[0], 0.25);
    close(ts[1], 0.5);
    close(ts[2], 0.25);
}

#[test]
fn weights_1_2_1() {
    let s = solo(
        100,
        vec![ClassCfg::new(1), ClassCfg::new(2), ClassCfg::new(1)],
    );
    expect_shares(&s, &[0.25, 0.5, 0.25]);
}

#[test]
fn reservation_30_percent_for_a_low_weight_class() {
    // Without the reservation the weight-1 class would get 25%; with it, 30%, and the other
    // two split the remaining 70 slots 2:1.
    let s = solo(
        100,
        vec![
            ClassCfg::new(1).reserved(30),
            ClassCfg::new(2),
            ClassCfg::new(1),
        ],
    );
    expect_shares(&s, &[0.30, 0.70 * 2.0 / 3.0, 0.70 / 3.0]);
}

#[test]
fn reservation_below_the_weighted_share_does_not_bind() {
    let s = solo(60, vec![ClassCfg::new(2).reserved(10), ClassCfg::new(1)]);
    expect_shares(&s, &[2.0 / 3.0, 1.0 / 3.0]);
}

#[test]
fn ceiling_25_percent() {
    // The weight-3 class would get 60% but is capped at 25%; the others split the rest.
    let s = solo(
        100,
        vec![
            ClassCfg::new(3).ceiling(25),
            ClassCfg::new(1),
            ClassCfg::new(1),
        ],
    );
    expect_shares(&s, &[0.25, 0.375, 0.375]);
}

#[test]
fn every_ceiling_binds_so_the_pool_is_not_full() {
    // 2 and 3 slots of 10: shares of what is dispatched are 2/5 and 3/5.
    let s = solo(
        10,
        vec![ClassCfg::new(1).ceiling(20), ClassCfg::new(4).ceiling(30)],
    );
    expect_shares(&s, &[0.4, 0.6]);
}

#[test]
fn strict_priority_after_reservations() {
    // N = 40: the priority-1 class reserves 10 slots, the priority-0 class 4; the priority-2
    // class takes everything else.
    let s = solo(
        40,
        vec![
            ClassCfg::new(1).priority(2),
            ClassCfg::new(1).priority(1).reserved(25),
            ClassCfg::new(5).reserved(10),
        ],
    );
    expect_shares(&s, &[26.0 / 40.0, 10.0 / 40.0, 4.0 / 40.0]);
}

#[test]
fn capped_high_priority_leaves_the_rest_to_lower_priorities() {
    let s = solo(
        20,
        vec![
            ClassCfg::new(1).priority(1).ceiling(30),
            ClassCfg::new(1),
            ClassCfg::new(3),
        ],
    );
    // 6 slots for the capped priority class, the other 14 split 1:3.
    expect_shares(&s, &[0.3, 0.7 / 4.0, 0.7 * 3.0 / 4.0]);
}

#[test]
fn tenants_inside_classes_split_by_weight_over_class_count() {
    // Classes 1:1. Tenant 1 (weight 2) is in both classes, so it competes with weight 1 in
    // each: class 0 is split 1:1 between tenants 0 and 1, class 1 1:1 between 1 and 2.
    let s = Setup {
        n: 20,
        classes: vec![ClassCfg::new(1), ClassCfg::new(1)],
        tenant_weights: vec![1, 2, 1],
        members: vec![vec![0, 1], vec![1, 2]],
    };
    let (_, ot) = oracle_shares(&s);
    close(ot[0], 0.25);
    close(ot[1], 0.5);
    close(ot[2], 0.25);
    let (w, m) = window(s.n);
    check(&s, w, m, 0.01).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn tenants_with_a_reserved_class_and_a_weighted_class() {
    // N = 50. Class 0 (weight 1, 40% reserved) holds tenants 0 (w 3) and 1 (w 1); class 1
    // (weight 3) holds tenants 1 and 2 (w 1). Class 0: max(20, L), class 1: 3L, 20 + 3L = 50
    // gives L = 10 < 20, so class 0 gets 20 slots (0.4) and class 1 30 (0.6). Tenant 1 is
    // in two classes: weight 1/2 in each. Class 0 splits 3 : 1/2, class 1 splits 1/2 : 1.
    let s = Setup {
        n: 50,
        classes: vec![ClassCfg::new(1).reserved(40), ClassCfg::new(3)],
        tenant_weights: vec![3, 1, 1],
        members: vec![vec![0, 1], vec![1, 2]],
    };
    let (oc, ot) = oracle_shares(&s);
    close(oc[0], 0.4);
    close(oc[1], 0.6);
    close(ot[0], 0.4 * 3.0 / 3.5);
    close(ot[1], 0.4 * 0.5 / 3.5 + 0.6 * 0.5 / 1.5);
    close(ot[2], 0.6 / 1.5);
    let (w, m) = window(s.n);
    check(&s, w, m, 0.01).unwrap_or_else(|e| panic!("{e}"));
}

/// With a small pool the fair share of a class is a fraction of a slot; only the long-run
/// share of dispatches can match it. Weights 1:3 of 10 slots: 2.5 and 7.5 slots.
#[test]
fn small_pool_fractional_share_1_3_of_10() {
    let s = solo(10, vec![ClassCfg::new(1), ClassCfg::new(3)]);
    expect_shares(&s, &[0.25, 0.75]);
}

/// Weights 4:1:1:1 of 11 slots: the weight-4 class's fair share is 44/7 = 6.29 slots (57%).
#[test]
fn small_pool_fractional_share_4_1_1_1_of_11() {
    let s = solo(
        11,
        vec![
            ClassCfg::new(4),
            ClassCfg::new(1),
            ClassCfg::new(1),
            ClassCfg::new(1),
        ],
    );
    expect_shares(&s, &[4.0 / 7.0, 1.0 / 7.0, 1.0 / 7.0, 1.0 / 7.0]);
}
