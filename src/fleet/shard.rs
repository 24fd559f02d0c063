//! [`ShuffleShard`]: a stable hand of nodes per tenant, from a small frozen hash.

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use crate::error::ConfigError;

// ===== ShuffleShard =====

/// Shuffle sharding: each tenant is placed on a *hand* of `k` distinct nodes out of `n`, chosen
/// by a hash of its id, so that a tenant that overloads (or poisons) its nodes hurts only the
/// tenants whose hands overlap its own, and two tenants share their whole hand with
/// probability `1 / C(n, k)`.
///
/// Hands are stable: the same tenant bytes give the same hand on every platform, in every
/// process and with every Rust version, because the hash is [`stable_hash`] (frozen, written
/// out in this crate), not the standard library's hasher. A change of the hand for a given
/// input is a breaking change of this crate.
///
/// The hash is not keyed: a tenant that chooses its own id can search for ids that land on a
/// chosen hand. If ids are chosen by untrusted parties and that matters, pass a keyed digest
/// of the id (an HMAC with a secret the fleet shares) as the tenant bytes.
///
/// # Examples
///
/// ```
/// use fairshare::fleet::ShuffleShard;
/// use std::num::NonZeroU32;
///
/// let shard = ShuffleShard::new(NonZeroU32::new(16).unwrap(), NonZeroU32::new(4).unwrap())?;
/// let hand = shard.hand_str("acme");
/// assert_eq!(hand.len(), 4);
/// assert!(hand.iter().all(|&node| node < 16));
/// assert_eq!(hand, shard.hand(b"acme")); // the same bytes, the same hand
/// # Ok::<(), fairshare::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShuffleShard {
    nodes: NonZeroU32,
    hand: NonZeroU32,
}

impl ShuffleShard {
    /// Hands of `hand` distinct nodes out of `nodes` (numbered `0..nodes`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] (field `hand`) if `hand > nodes`: a hand cannot hold more
    /// distinct nodes than there are. (Clamping would silently give every tenant every node,
    /// which is no isolation at all.)
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::fleet::ShuffleShard;
    /// use std::num::NonZeroU32;
    /// let n = |n| NonZeroU32::new(n).unwrap();
    /// assert!(ShuffleShard::new(n(8), n(2)).is_ok());
    /// assert!(ShuffleShard::new(n(8), n(8)).is_ok()); // every node, in a tenant's own order
    /// assert!(ShuffleShard::new(n(2), n(3)).is_err());
    /// ```
    pub const fn new(nodes: NonZeroU32, hand: NonZeroU32) -> Result<Self, ConfigError> {
        if hand.get() > nodes.get() {
            return Err(ConfigError::Invalid {
                field: "hand",
                problem: "the hand size must be at most the number of nodes",
            });
        }
        Ok(ShuffleShard { nodes, hand })
    }

    /// The number of nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::fleet::ShuffleShard;
    /// # use std::num::NonZeroU32;
    /// let s = ShuffleShard::new(NonZeroU32::new(8).unwrap(), NonZeroU32::MIN)?;
    /// assert_eq!(s.nodes().get(), 8);
    /// # Ok::<(), fairshare::ConfigError>(())
    /// ```
    pub const fn nodes(&self) -> NonZeroU32 {
        self.nodes
    }

    /// The number of nodes in each hand.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::fleet::ShuffleShard;
    /// # use std::num::NonZeroU32;
    /// let s = ShuffleShard::new(NonZeroU32::new(8).unwrap(), NonZeroU32::new(3).unwrap())?;
    /// assert_eq!(s.hand_size().get(), 3);
    /// # Ok::<(), fairshare::ConfigError>(())
    /// ```
    pub const fn hand_size(&self) -> NonZeroU32 {
        self.hand
    }

    /// The hand of the tenant with id `tenant`: [`hand_size`](Self::hand_size) distinct nodes,
    /// each below [`nodes`](Self::nodes), in an order of the tenant's own (every node is first
    /// in a hand equally often, so a host may treat the first as the tenant's primary).
    ///
    /// The hand is a uniformly random `k`-subset of the nodes in a uniformly random order, as
    /// far as [`stable_hash`] behaves like a random function.
    ///
    /// # Performance
    ///
    /// `2k` draws from a SplitMix64 stream seeded by [`stable_hash`] (a few more, rarely, for
    /// exact uniformity); O(k²) time for hands of at most 32 nodes and O(k log k) above; one
    /// allocation of `k` nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::fleet::ShuffleShard;
    /// # use std::num::NonZeroU32;
    /// let s = ShuffleShard::new(NonZeroU32::new(100).unwrap(), NonZeroU32::new(5).unwrap())?;
    /// let hand = s.hand(b"tenant-42");
    /// let mut distinct = hand.clone();
    /// distinct.sort_unstable();
    /// distinct.dedup();
    /// assert_eq!(distinct.len(), 5);
    /// # Ok::<(), fairshare::ConfigError>(())
    /// ```
    pub fn hand(&self, tenant: &[u8]) -> Vec<u32> {
        let n = self.nodes.get();
        let k = self.hand.get();
        let mut rng = SplitMix64(stable_hash(tenant));
        // Floyd's sampling: exactly k draws give a uniform k-subset.
        let mut hand = Vec::with_capacity(k as usize);
        let mut seen = BTreeSet::new();
        let large = k > 32;
        for j in n - k..n {
            let t = rng.below(j + 1);
            let taken = if large {
                seen.contains(&t)
            } else {
                hand.contains(&t)
            };
            let pick = if taken { j } else { t };
            hand.push(pick);
            if large {
                seen.insert(pick);
            }
        }
        // Floyd's order is not uniform; a Fisher-Yates pass makes it so.
        for i in (1..k).rev() {
            let j = rng.below(i + 1);
            hand.swap(i as usize, j as usize);
        }
        hand
    }

    /// The hand of a tenant whose id is a `u64`: the hand of its 8 little-endian bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::fleet::ShuffleShard;
    /// # use std::num::NonZeroU32;
    /// let s = ShuffleShard::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(2).unwrap())?;
    /// assert_eq!(s.hand_u64(7), s.hand(&7u64.to_le_bytes()));
    /// # Ok::<(), fairshare::ConfigError>(())
    /// ```
    pub fn hand_u64(&self, tenant: u64) -> Vec<u32> {
        self.hand(&tenant.to_le_bytes())
    }

    /// The hand of a tenant whose id is a string: the hand of its UTF-8 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::fleet::ShuffleShard;
    /// # use std::num::NonZeroU32;
    /// let s = ShuffleShard::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(2).unwrap())?;
    /// assert_eq!(s.hand_str("acme"), s.hand(b"acme"));
    /// # Ok::<(), fairshare::ConfigError>(())
    /// ```
    pub fn hand_str(&self, tenant: &str) -> Vec<u32> {
        self.hand(tenant.as_bytes())
    }
}

// ===== the frozen hash =====

/// The frozen 64-bit hash behind [`ShuffleShard`]: 64-bit FNV-1a over the bytes (offset basis
/// `0xcbf29ce484222325`, prime `0x100000001b3`), then the SplitMix64 finalizer (so that short,
/// similar ids spread over all bits).
///
/// It never changes between versions, platforms or processes, so a host may store it or
/// compare it across machines. It is not keyed and not collision resistant.
///
/// # Examples
///
/// ```
/// use fairshare::fleet::stable_hash;
/// assert_eq!(stable_hash(b"acme"), stable_hash(b"acme"));
/// assert_ne!(stable_hash(b"acme"), stable_hash(b"acmf"));
/// ```
pub const fn stable_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a64(bytes))
}

/// 64-bit FNV-1a.
const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The SplitMix64 output function (Steele, Lea and Flood, "Fast splittable pseudorandom
/// number generators").
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SplitMix64 generator: a Weyl sequence through [`mix`].
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..m` (`m >= 1`), by Lemire's multiply-and-reject method: no bias.
    fn below(&mut self, m: u32) -> u32 {
        let m = u64::from(m);
        let mut product = u128::from(self.next()) * u128::from(m);
        if (product as u64) < m {
            let threshold = m.wrapping_neg() % m;
            while (product as u64) < threshold {
                product = u128::from(self.next()) * u128::from(m);
            }
        }
        (product >> 64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published FNV-1a 64 test vectors: the hash is the one it claims to be.
    #[test]
    fn fnv1a64_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// The SplitMix64 reference stream from seed 1234567 (the first outputs of the public
    /// domain C reference implementation).
    #[test]
    fn splitmix64_reference() {
        let mut rng = SplitMix64(1_234_567);
        assert_eq!(rng.next(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_is_in_range() {
        let mut rng = SplitMix64(0);
        for m in [1, 2, 3, 7, 1000, u32::MAX] {
            for _ in 0..100 {
                assert!(rng.below(m) < m);
            }
        }
    }
}
