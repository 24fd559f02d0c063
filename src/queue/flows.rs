//! # Implementation details
//!
//! A tenant's FIFOs, one per class it has work in: the flow embedded in its slot (its *home*
//! class) and the flows of other classes in a side slab chained from the slot.

use super::items::NIL;
use super::tenants::*;
use std::hash::{BuildHasher, Hash};

/// One FIFO of a tenant inside one class, with its place on that class's DRR ring.
///
/// One flow per tenant is embedded in its slot: the flow of its *home* class
/// ([`Tenant::home`]). Flows in other classes live in [`Tenants`]' side slab, chained from the
/// slot, and are freed with it. A *flow id* is the tenant's slot index for the embedded flow,
/// and [`EXTRA`] `|` the side-slab index otherwise, so the id alone says where a flow lives.
/// With one class the home class is always the default class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flow {
    /// DRR deficit: positive = may be served now; carried debt while idle is <= 0.
    pub(crate) deficit: i64,
    /// FIFO of item nodes.
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: u32,
    /// Ring links (valid while on the ring).
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Flow {
    pub(super) const EMPTY: Flow = Flow {
        deficit: 0,
        head: NIL,
        tail: NIL,
        len: 0,
        prev: NIL,
        next: NIL,
    };

    /// Whether the flow is on its class's DRR ring.
    #[inline(always)]
    pub(crate) fn in_ring(&self) -> bool {
        self.next != NIL
    }
}

/// Flow ids with this bit set name a flow in the side slab.
pub(crate) const EXTRA: u32 = 1 << 31;

/// A flow outside the tenant's home class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtraFlow {
    pub(crate) flow: Flow,
    pub(crate) tenant: u32,
    pub(crate) class: u16,
    /// The tenant's next side flow, or the next free entry, or `NIL`.
    pub(crate) chain: u32,
}

/// `Tenant::home` of a slot whose embedded flow no class has claimed yet: it counts as the
/// default class's until a push to another class claims it (see [`Tenants::flow_or_insert`]).
pub(crate) const HOME_UNSET: u16 = u16::MAX;

impl<K, S, A: Attachment> Tenants<K, S, A> {
    /// Flow `fid` (see [`Flow`]).
    #[inline(always)]
    pub(crate) fn flow(&self, fid: u32) -> &Flow {
        if fid & EXTRA == 0 {
            &self.slots[fid as usize].flow
        } else {
            &self.extras[(fid & !EXTRA) as usize].flow
        }
    }

    #[inline(always)]
    pub(crate) fn flow_mut(&mut self, fid: u32) -> &mut Flow {
        if fid & EXTRA == 0 {
            &mut self.slots[fid as usize].flow
        } else {
            &mut self.extras[(fid & !EXTRA) as usize].flow
        }
    }

    /// The side entry of tenant `idx` for `class`, if any.
    #[inline(always)]
    pub(super) fn find_extra(&self, idx: u32, class: u16) -> Option<u32> {
        let mut e = self.slots[idx as usize].extra;
        while e != NIL {
            let x = &self.extras[e as usize];
            if x.class == class {
                return Some(e);
            }
            e = x.chain;
        }
        None
    }

    #[cold]
    pub(super) fn insert_extra(&mut self, idx: u32, class: u16) -> u32 {
        let entry = ExtraFlow {
            flow: Flow::EMPTY,
            tenant: idx,
            class,
            chain: self.slots[idx as usize].extra,
        };
        let e = if self.extras_free != NIL {
            let e = self.extras_free;
            self.extras_free = self.extras[e as usize].chain;
            self.extras[e as usize] = entry;
            e
        } else {
            self.extras.push(entry);
            (self.extras.len() - 1) as u32
        };
        self.slots[idx as usize].extra = e;
        e
    }

    /// Tenant `idx` and its flow `fid` at once: `None` when the flow is the embedded one
    /// (`fid == idx`: use `tenant.flow`), so hot paths index the slab once. With `ONE` (the
    /// queue has one class, whose flows are all embedded) the test folds away.
    #[inline(always)]
    pub(crate) fn tenant_and_flow<const ONE: bool>(
        &mut self,
        idx: u32,
        fid: u32,
    ) -> (&mut Tenant<K, A>, Option<&mut Flow>) {
        let t = &mut self.slots[idx as usize];
        if ONE || fid & EXTRA == 0 {
            debug_assert_eq!(fid, idx);
            (t, None)
        } else {
            (t, Some(&mut self.extras[(fid & !EXTRA) as usize].flow))
        }
    }

    /// The class whose flow is embedded in slot `idx`.
    #[inline(always)]
    pub(crate) fn home(&self, idx: u32) -> u16 {
        match self.slots[idx as usize].home {
            HOME_UNSET => 0,
            c => c,
        }
    }

    /// The tenant slot and class of flow `fid`.
    #[inline(always)]
    pub(crate) fn flow_owner(&self, fid: u32) -> (u32, u16) {
        if fid & EXTRA == 0 {
            (fid, self.home(fid))
        } else {
            let e = &self.extras[(fid & !EXTRA) as usize];
            (e.tenant, e.class)
        }
    }

    /// Tenant `idx`'s flow in `class`, if it has one.
    #[inline(always)]
    pub(crate) fn find_flow(&self, idx: u32, class: u16) -> Option<u32> {
        if self.home(idx) == class {
            return Some(idx);
        }
        self.find_extra(idx, class).map(|e| e | EXTRA)
    }

    /// Tenant `idx`'s flow in `class`, made if it has none. The first class to ask for a
    /// flow of a slot whose embedded flow is unclaimed and pristine (nothing queued, no
    /// carried debt, and nothing in flight that a completion would charge to it) claims it,
    /// unless it already has a side flow with state.
    #[inline(always)]
    pub(crate) fn flow_or_insert(&mut self, idx: u32, class: u16) -> u32 {
        let t = &self.slots[idx as usize];
        if t.home == class || (class == 0 && t.home == HOME_UNSET) {
            return idx;
        }
        self.flow_or_insert_slow(idx, class)
    }

    #[inline(never)]
    pub(super) fn flow_or_insert_slow(&mut self, idx: u32, class: u16) -> u32 {
        let existing = self.find_extra(idx, class);
        let t = &self.slots[idx as usize];
        let f = &t.flow;
        let pristine = |f: &Flow| f.len == 0 && f.deficit == 0 && !f.in_ring();
        if t.home == HOME_UNSET
            && t.in_flight == 0
            && pristine(f)
            && existing.is_none_or(|e| pristine(&self.extras[e as usize].flow))
        {
            self.slots[idx as usize].home = class;
            return idx;
        }
        match existing {
            Some(e) => e | EXTRA,
            None => self.insert_extra(idx, class) | EXTRA,
        }
    }

    /// Every flow of tenant `idx`: the embedded one first, then the side entries (newest
    /// first; a side entry of the home class, left from before the home was claimed, is always
    /// empty).
    pub(crate) fn flows_of(&self, idx: u32) -> impl Iterator<Item = u32> + '_ {
        let mut e = self.slots[idx as usize].extra;
        std::iter::once(idx).chain(std::iter::from_fn(move || {
            if e == NIL {
                return None;
            }
            let fid = e | EXTRA;
            e = self.extras[e as usize].chain;
            Some(fid)
        }))
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher, A: Attachment> Tenants<K, S, A> {
    /// Frees every tenant's side entries of classes `classes` and above: the classes a
    /// shorter class list removed. Their flows are empty (a class with work cannot be
    /// removed), so only carried debt goes, which a class added later at
    /// the same index must not inherit. An embedded flow of a removed class is cleared and
    /// the tenant's default-class flow moved into the slot: returned as `(slot, old flow id)`
    /// pairs, for the caller to fix the ring and deadline entries that name the old id.
    /// O(tenants + side entries); only on a change of classes.
    pub(crate) fn drop_classes_from(&mut self, classes: u16) -> Vec<(u32, u32)> {
        let mut moved = Vec::new();
        for idx in 0..self.slots.len() {
            if !self.slots[idx].live {
                continue;
            }
            let home = self.slots[idx].home;
            if home != HOME_UNSET && home >= classes {
                let t = &mut self.slots[idx];
                debug_assert!(t.flow.len == 0 && !t.flow.in_ring());
                t.flow = Flow::EMPTY;
                t.home = HOME_UNSET;
                if let Some(e) = self.find_extra(idx as u32, 0) {
                    let flow = std::mem::replace(&mut self.extras[e as usize].flow, Flow::EMPTY);
                    self.slots[idx].flow = flow;
                    moved.push((idx as u32, e | EXTRA));
                }
            }
            // Walk the chain through the link that points at each entry, unlinking as we go.
            let mut link = self.slots[idx].extra;
            let mut prev = NIL;
            while link != NIL {
                let entry = self.extras[link as usize];
                if entry.class >= classes {
                    debug_assert!(entry.flow.len == 0 && !entry.flow.in_ring());
                    if prev == NIL {
                        self.slots[idx].extra = entry.chain;
                    } else {
                        self.extras[prev as usize].chain = entry.chain;
                    }
                    self.free_extra(link);
                } else {
                    prev = link;
                }
                link = entry.chain;
            }
        }
        moved
    }

    /// Puts side entry `e`, already unlinked from its tenant's chain, on the free list.
    pub(super) fn free_extra(&mut self, e: u32) {
        self.extras[e as usize].chain = self.extras_free;
        self.extras_free = e;
    }
}
