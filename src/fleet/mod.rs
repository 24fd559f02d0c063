//! Fairness across many worker nodes: the pure building blocks a host combines with its own
//! storage and membership (no IO here).
//!
//! - [`PassAssigner`] gives each job of a shared durable queue (a PostgreSQL table, say) a
//!   *pass* when it is written, from per-tenant state the host stores ([`TenantPass`]); any
//!   number of workers serving jobs in ascending pass order share them fairly by weight, with
//!   post-hoc cost correction that is never forgiven. See its `# Fairness` section.
//! - [`ShuffleShard`] places each tenant on a stable hand of `k` of `n` nodes, so a noisy
//!   tenant's blast radius is its own hand.
//! - [`QuotaSplit`] divides a fleet-wide per-tenant [`Quota`](crate::Quota) among the healthy
//!   nodes, with a stated bound on what the fleet admits.
//!
//! # Examples
//!
//! ```
//! use fairshare::Quota;
//! use fairshare::fleet::{PassAssigner, QuotaSplit, ShuffleShard, TenantPass};
//! use std::num::NonZeroU32;
//!
//! let n = |n| NonZeroU32::new(n).unwrap();
//! // Which 2 of the 6 nodes serve acme's in-process work, and at what per-node rate.
//! let hand = ShuffleShard::new(n(6), n(2))?.hand_str("acme");
//! let per_node = QuotaSplit::new(Quota::per_second(n(600)), n(6)).per_node();
//! assert_eq!(hand.len(), 2);
//! assert_eq!(per_node.burst().get(), 100);
//!
//! // The pass of a job acme writes into the shared durable queue.
//! let mut acme = TenantPass::default();
//! let pass = PassAssigner::new().assign(&mut acme, n(1), 0, 1);
//! assert_eq!(acme.pass, pass);
//! # Ok::<(), fairshare::ConfigError>(())
//! ```

mod pass;
mod shard;
mod split;

pub use pass::{PassAssigner, PassRange, TenantPass};
pub use shard::{ShuffleShard, stable_hash};
pub use split::QuotaSplit;
