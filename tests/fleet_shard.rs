#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! Tests of `fleet::ShuffleShard`: hands are distinct, stable, frozen, and spread as the
//! combinatorics say.

use std::collections::HashSet;
use std::num::NonZeroU32;

use fairshare::ConfigError;
use fairshare::fleet::{ShuffleShard, stable_hash};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

#[track_caller]
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("a non-zero test value")
}

#[track_caller]
fn shard(nodes: u32, hand: u32) -> ShuffleShard {
    ShuffleShard::new(nz(nodes), nz(hand)).expect("a valid shard")
}

// ===== ShuffleShard =====

/// The algorithm as documented, written out again: FNV-1a 64, the SplitMix64 finalizer as the
/// seed of a SplitMix64 stream, Lemire's unbiased draw, Floyd's sampling, a Fisher-Yates pass.
fn reference_hand(nodes: u32, k: u32, tenant: &[u8]) -> Vec<u32> {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in tenant {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let mut state = mix(h);
    let mut below = |m: u32| -> u32 {
        let m = u64::from(m);
        let threshold = m.wrapping_neg() % m;
        loop {
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let x = u128::from(mix(state)) * u128::from(m);
            if x as u64 >= threshold {
                return (x >> 64) as u32;
            }
        }
    };
    let mut hand: Vec<u32> = Vec::new();
    for j in nodes - k..nodes {
        let t = below(j + 1);
        hand.push(if hand.contains(&t) { j } else { t });
    }
    for i in (1..k as usize).rev() {
        let j = below(i as u32 + 1) as usize;
        hand.swap(i, j);
    }
    hand
}

/// Frozen outputs: if any of these change, every host's placement changes. Do not update
/// them; a new placement needs a new, separately named function.
#[test]
fn golden_hands() {
    let golden: [(u32, u32, &str, &[u32]); 16] = [
        (8, 2, "acme", &[0, 7]),
        (8, 2, "globex", &[2, 7]),
        (8, 2, "", &[1, 6]),
        (8, 2, "tenant-42", &[4, 6]),
        (16, 4, "acme", &[0, 13, 10, 1]),
        (16, 4, "globex", &[12, 13, 5, 10]),
        (16, 4, "", &[3, 2, 11, 6]),
        (16, 4, "tenant-42", &[15, 0, 8, 12]),
        (100, 5, "acme", &[10, 11, 67, 2, 0]),
        (100, 5, "globex", &[38, 86, 70, 68, 89]),
        (100, 5, "", &[40, 14, 63, 19, 86]),
        (100, 5, "tenant-42", &[94, 2, 59, 99, 50]),
        (5, 5, "acme", &[0, 1, 2, 3, 4]),
        (5, 5, "globex", &[0, 3, 2, 4, 1]),
        (5, 5, "", &[2, 1, 4, 3, 0]),
        (5, 5, "tenant-42", &[0, 2, 1, 4, 3]),
    ];
    for (nodes, k, tenant, hand) in golden {
        assert_eq!(
            shard(nodes, k).hand_str(tenant),
            hand,
            "{tenant:?} on {k} of {nodes}"
        );
    }
    assert_eq!(shard(8, 2).hand_u64(7), [2, 7]);
    assert_eq!(shard(16, 4).hand_u64(7), [13, 4, 8, 11]);
    assert_eq!(shard(100, 5).hand_u64(7), [71, 55, 30, 34, 99]);
    assert_eq!(stable_hash(b""), 0xf52a15e9a9b5e89b);
    assert_eq!(stable_hash(b"a"), 0x02c0bdbf481420f8);
    assert_eq!(stable_hash(b"acme"), 0x130a76222d4427ef);
}

#[test]
fn new_rejects_a_hand_larger_than_the_fleet() {
    let err = ShuffleShard::new(nz(3), nz(4)).unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { field: "hand", .. }),
        "{err}"
    );
    assert!(ShuffleShard::new(nz(4), nz(4)).is_ok());
    assert_eq!(shard(1, 1).hand_str("anyone"), [0]);
}

#[test]
fn extreme_fleet_sizes() {
    let big = shard(u32::MAX, 3);
    for t in 0..1000u64 {
        let hand = big.hand_u64(t);
        assert_eq!(hand.len(), 3);
        assert_eq!(hand.iter().collect::<HashSet<_>>().len(), 3);
        assert!(hand.iter().all(|&n| n < u32::MAX));
    }
    // A whole-fleet hand is a permutation (the large-hand path, above 32 nodes).
    let mut all = shard(1000, 1000).hand_str("acme");
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Every hand holds exactly `k` distinct nodes below `n`, equals the documented algorithm
    /// (on both the small- and the large-hand path), and is the same on every call.
    #[test]
    fn hand_is_k_distinct_nodes(
        nodes in 1..=200u32,
        k_frac in 0.0..=1.0f64,
        tenant in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let k = ((f64::from(nodes) * k_frac) as u32).clamp(1, nodes);
        let s = shard(nodes, k);
        let hand = s.hand(&tenant);
        prop_assert_eq!(hand.len(), k as usize);
        prop_assert_eq!(hand.iter().collect::<HashSet<_>>().len(), k as usize);
        prop_assert!(hand.iter().all(|&n| n < nodes));
        prop_assert_eq!(&hand, &reference_hand(nodes, k, &tenant));
        prop_assert_eq!(&hand, &s.hand(&tenant));
    }
}

/// Two tenants share their whole hand with probability `1 / C(n, k)`, and share exactly `j`
/// nodes with the hypergeometric probability `C(k, j)·C(n−k, k−j) / C(n, k)`.
#[test]
fn overlap_follows_the_combinatorics() {
    fn choose(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }
    const PAIRS: u64 = 200_000;
    for (nodes, k) in [(8u32, 2u32), (10, 3), (16, 4)] {
        let s = shard(nodes, k);
        let mut by_overlap = vec![0u64; k as usize + 1];
        for p in 0..PAIRS {
            let a: HashSet<u32> = s.hand_u64(2 * p).into_iter().collect();
            let b = s.hand_str(&format!("tenant-{}", 2 * p + 1));
            by_overlap[b.iter().filter(|n| a.contains(n)).count()] += 1;
        }
        let (n, k64) = (u64::from(nodes), u64::from(k));
        for (j, &count) in by_overlap.iter().enumerate() {
            let j = j as u64;
            let p = choose(k64, j) * choose(n - k64, k64 - j) / choose(n, k64);
            let expected = p * PAIRS as f64;
            // Five standard deviations of a binomial count, at least 1% of the expectation.
            let tolerance = (5.0 * (expected * (1.0 - p)).sqrt()).max(0.01 * expected);
            assert!(
                (count as f64 - expected).abs() <= tolerance,
                "{k} of {nodes}: {count} pairs share {j} nodes, expected {expected:.0} ± \
                 {tolerance:.0}"
            );
        }
        // The whole hand in particular (also checked above): within five standard deviations
        // of the binomial count around `1 / C(n, k)`.
        let bound = 1.0 / choose(n, k64);
        let full = by_overlap[k as usize] as f64;
        let sd = (PAIRS as f64 * bound * (1.0 - bound)).sqrt();
        assert!(
            (full - bound * PAIRS as f64).abs() <= 5.0 * sd,
            "{k} of {nodes}: whole hand shared by {} of pairs, 1/C(n,k) = {bound:.5}",
            full / PAIRS as f64
        );
    }
}

/// Every node is in about `k/n` of the hands, and first in about `1/n` of them.
#[test]
fn spread_is_uniform() {
    const TENANTS: u64 = 100_000;
    let (nodes, k) = (16u32, 4u32);
    let s = shard(nodes, k);
    let mut member = vec![0u64; nodes as usize];
    let mut first = vec![0u64; nodes as usize];
    for t in 0..TENANTS {
        let hand = s.hand_str(&format!("org-{t}"));
        first[hand[0] as usize] += 1;
        for n in hand {
            member[n as usize] += 1;
        }
    }
    let expected_member = (TENANTS * u64::from(k) / u64::from(nodes)) as f64;
    let expected_first = (TENANTS / u64::from(nodes)) as f64;
    for node in 0..nodes as usize {
        assert!(
            (member[node] as f64 - expected_member).abs() <= 0.03 * expected_member,
            "node {node} is in {} hands, expected {expected_member}",
            member[node]
        );
        assert!(
            (first[node] as f64 - expected_first).abs() <= 0.06 * expected_first,
            "node {node} is first in {} hands, expected {expected_first}",
            first[node]
        );
    }
}
