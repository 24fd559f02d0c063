//! # Implementation details
//!
//! The tenant slots as the layer above the queue sees them: find or make a tenant's slot,
//! read it, keep its [`Attachment`] there, count a refusal the layer above decided, and let
//! the slot go once idle. The layer above writes nothing of the queue's but its attachment.

use std::hash::{BuildHasher, Hash};

use super::fair_queue::FairQueue;
use super::tenants::{Attachment, Tenant, TenantCounters, TenantHandle};
use crate::error::BlockReason;

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// The slot of `key`, made if it has none (`None` only when the table holds 2^30
    /// tenants). A slot made here and left idle must be let go with
    /// [`forget_if_idle`](Self::forget_if_idle).
    #[inline(always)]
    pub(crate) fn slot_of(&mut self, key: K) -> Option<u32> {
        self.tenants.find_or_insert(key)
    }

    /// The slot of a known tenant.
    #[inline]
    pub(crate) fn find_slot(&self, key: &K) -> Option<u32> {
        self.tenants.find(key)
    }

    /// The live slot a handle names, unless it is stale.
    #[inline(always)]
    pub(crate) fn resolve(&self, handle: TenantHandle) -> Option<u32> {
        self.tenants.resolve(handle)
    }

    /// The handle of live slot `idx`.
    #[inline]
    pub(crate) fn slot_handle(&self, idx: u32) -> TenantHandle {
        self.tenants.handle(idx)
    }

    /// Whether slot `idx` holds a tenant.
    #[inline]
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        self.tenants.is_live(idx)
    }

    /// Live slot `idx`, to read.
    #[inline(always)]
    pub(crate) fn slot(&self, idx: u32) -> &Tenant<K, A> {
        self.tenants.get(idx)
    }

    /// Why live slot `idx` is blocked, if it is.
    #[inline]
    pub(crate) fn slot_blocked(&self, idx: u32) -> Option<BlockReason> {
        self.tenants.blocked(idx)
    }

    /// The lifetime counters of live slot `idx`.
    #[inline]
    pub(crate) fn slot_counters(&self, idx: u32) -> TenantCounters {
        self.tenants.counters(idx)
    }

    /// The attachment of live slot `idx`.
    #[inline(always)]
    pub(crate) fn attached(&self, idx: u32) -> &A {
        &self.tenants.get(idx).attached
    }

    /// The attachment of live slot `idx`, to change.
    #[inline(always)]
    pub(crate) fn attached_mut(&mut self, idx: u32) -> &mut A {
        &mut self.tenants.get_mut(idx).attached
    }

    /// Live slots in index order (deterministic; never hash order).
    pub(crate) fn slots(&self) -> impl Iterator<Item = (u32, &K, &Tenant<K, A>)> {
        self.tenants.iter()
    }

    /// Forgets slot `idx` if nothing keeps it (see [`Attachment`]). Returns whether it did.
    #[inline(always)]
    pub(crate) fn forget_if_idle(&mut self, idx: u32) -> bool {
        self.tenants.release_if_idle(idx)
    }

    /// Counts a push of tenant `idx` that the layer above refused, in the queue's and the
    /// tenant's counters, and forgets the tenant if the push had made its slot.
    #[cold]
    pub(crate) fn count_refused(&mut self, idx: u32) {
        self.counters.rejected += 1;
        self.tenants.count_rejected(idx);
        self.tenants.release_if_idle(idx);
    }
}
