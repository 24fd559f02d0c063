//! # Implementation details
//!
//! The group table: groups of tenants by key, each with its settings, its totals and one
//! *group flow* per class it has work in. A group flow is the group's entry on its class's
//! DRR ring (the upper level of the round robin) and holds the inner ring of its members'
//! flows (the lower level). Ring entries name a group flow by [`GROUP`] `|` its id, which no
//! tenant flow id has (tenant slots and side flows are indexed below `2^30`).
//!
//! What a group's turn reads (its default-class flow, its weight, carry, totals and limit)
//! is one 64-byte slot; the key, the block reason, the member count and the flows of other
//! classes live apart, so serving a group costs one cache line beside its member's.

use super::items::NIL;
use crate::error::BlockReason;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

/// Ring entries with this bit set (and [`EXTRA`](super::flows::EXTRA) clear) name a group
/// flow.
pub(crate) const GROUP: u32 = 1 << 30;

/// Group flow ids with this bit set name a flow in the side slab (a class other than the
/// default); without it, the id is the group's slot (its default-class flow).
pub(crate) const SIDE: u32 = 1 << 29;

/// A group's place in one class: its deficit in the class's round robin of groups and
/// ungrouped tenants, and the ring of its members' backlogged flows in that class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupFlow {
    /// DRR deficit of the group in this class, in deficit units.
    pub(crate) deficit: i64,
    /// The inner ring of member flows, by the flow served next, and its length.
    pub(crate) front: u32,
    pub(crate) len: u32,
    /// Links on the class's ring (`NIL` while off it).
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl GroupFlow {
    const EMPTY: GroupFlow = GroupFlow {
        deficit: 0,
        front: NIL,
        len: 0,
        prev: NIL,
        next: NIL,
    };

    /// Whether the group flow is on its class's ring.
    #[inline(always)]
    pub(crate) fn in_ring(&self) -> bool {
        self.next != NIL
    }
}

/// A group's state that serving and admitting its members read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    /// The group flow of the default class.
    pub(crate) flow: GroupFlow,
    /// Cost correction of members' items not yet applied to the group's grants (see
    /// `Tenant::carry`).
    pub(crate) carry: i64,
    /// Cost and items queued by its members.
    pub(crate) queued_cost: u64,
    pub(crate) len: u32,
    pub(crate) in_flight: u32,
    /// In-flight limit over all members (`u32::MAX`: none). A group at its limit has its
    /// group flows parked: off their rings until a completion frees a slot.
    pub(crate) max_in_flight: u32,
    /// Group weight override (`None`: the queue's default weight).
    pub(crate) weight: Option<NonZeroU32>,
    /// Group flows with members backlogged: the group's quantum is split between them.
    pub(crate) active_flows: u16,
    /// Whether the group is blocked (the reason is kept apart).
    pub(crate) blocked: bool,
}

/// A group's state that only settings and membership changes read.
#[derive(Debug, Clone)]
struct GroupCold<K> {
    key: K,
    members: u32,
    reason: Option<BlockReason>,
    /// First side flow, or `NIL`.
    side: u32,
}

/// A group flow of a class other than the default.
#[derive(Debug, Clone, Copy)]
struct SideFlow {
    flow: GroupFlow,
    group: u32,
    class: u16,
    /// The group's next side flow, or the next free entry, or `NIL`.
    chain: u32,
}

/// Key -> group slot, the group slots and their side flows.
#[derive(Debug)]
pub(crate) struct Groups<K> {
    table: HashTable<(K, u32)>,
    hot: Vec<Group>,
    cold: Vec<Option<GroupCold<K>>>,
    free: Vec<u32>,
    side: Vec<SideFlow>,
    side_free: u32,
}

impl<K> Default for Groups<K> {
    fn default() -> Self {
        Groups {
            table: HashTable::new(),
            hot: Vec::new(),
            cold: Vec::new(),
            free: Vec::new(),
            side: Vec::new(),
            side_free: NIL,
        }
    }
}

impl<K> Groups<K> {
    /// Whether no group exists (then no ring holds a group flow and no tenant a group).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    #[inline(always)]
    pub(crate) fn get(&self, g: u32) -> &Group {
        &self.hot[g as usize]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, g: u32) -> &mut Group {
        &mut self.hot[g as usize]
    }

    fn cold(&self, g: u32) -> &GroupCold<K> {
        match &self.cold[g as usize] {
            Some(c) => c,
            None => unreachable!("fairshare: group slot {g} is free"),
        }
    }

    fn cold_mut(&mut self, g: u32) -> &mut GroupCold<K> {
        match &mut self.cold[g as usize] {
            Some(c) => c,
            None => unreachable!("fairshare: group slot {g} is free"),
        }
    }

    pub(crate) fn key(&self, g: u32) -> &K {
        &self.cold(g).key
    }

    pub(crate) fn members(&self, g: u32) -> u32 {
        self.cold(g).members
    }

    pub(crate) fn add_members(&mut self, g: u32, n: i32) {
        let c = self.cold_mut(g);
        c.members = c.members.wrapping_add_signed(n);
    }

    pub(crate) fn reason(&self, g: u32) -> Option<BlockReason> {
        self.cold(g).reason
    }

    pub(crate) fn set_reason(
        &mut self,
        g: u32,
        reason: Option<BlockReason>,
    ) -> Option<BlockReason> {
        self.hot[g as usize].blocked = reason.is_some();
        std::mem::replace(&mut self.cold_mut(g).reason, reason)
    }

    /// Group flow `gf` (an id without the [`GROUP`] bit).
    #[inline(always)]
    pub(crate) fn flow(&self, gf: u32) -> &GroupFlow {
        if gf & SIDE == 0 {
            &self.hot[gf as usize].flow
        } else {
            &self.side[(gf & !SIDE) as usize].flow
        }
    }

    #[inline(always)]
    pub(crate) fn flow_mut(&mut self, gf: u32) -> &mut GroupFlow {
        if gf & SIDE == 0 {
            &mut self.hot[gf as usize].flow
        } else {
            &mut self.side[(gf & !SIDE) as usize].flow
        }
    }

    /// The group whose flow `gf` is.
    #[inline(always)]
    pub(crate) fn group_of_flow(&self, gf: u32) -> u32 {
        if gf & SIDE == 0 {
            gf
        } else {
            self.side[(gf & !SIDE) as usize].group
        }
    }

    /// Group `g`'s flow in class `class`, if it has one.
    #[inline(always)]
    pub(crate) fn find_flow(&self, g: u32, class: usize) -> Option<u32> {
        if class == 0 {
            return Some(g);
        }
        let mut s = self.cold(g).side;
        while s != NIL {
            let e = &self.side[s as usize];
            if usize::from(e.class) == class {
                return Some(s | SIDE);
            }
            s = e.chain;
        }
        None
    }

    /// Group `g`'s flow in class `class`, made if it has none.
    #[inline(always)]
    pub(crate) fn flow_or_insert(&mut self, g: u32, class: u16) -> u32 {
        if let Some(gf) = self.find_flow(g, usize::from(class)) {
            return gf;
        }
        let entry = SideFlow {
            flow: GroupFlow::EMPTY,
            group: g,
            class,
            chain: self.cold(g).side,
        };
        let s = if self.side_free != NIL {
            let s = self.side_free;
            self.side_free = self.side[s as usize].chain;
            self.side[s as usize] = entry;
            s
        } else {
            self.side.push(entry);
            (self.side.len() - 1) as u32
        };
        self.cold_mut(g).side = s;
        s | SIDE
    }

    /// Group `g`'s flows with their classes: the default class's, then the side flows.
    pub(crate) fn flows_of(&self, g: u32) -> Vec<(usize, u32)> {
        let mut out = vec![(0, g)];
        let mut s = self.cold(g).side;
        while s != NIL {
            let e = &self.side[s as usize];
            out.push((usize::from(e.class), s | SIDE));
            s = e.chain;
        }
        out
    }

    /// Every group slot in use, in slot order (deterministic).
    pub(crate) fn slots(&self) -> Vec<u32> {
        self.cold
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Every group flow's inner-ring front, for a caller that renames flows.
    pub(crate) fn fronts_mut(&mut self) -> impl Iterator<Item = &mut u32> {
        self.hot
            .iter_mut()
            .map(|g| &mut g.flow.front)
            .chain(self.side.iter_mut().map(|s| &mut s.flow.front))
    }

    /// Frees the side flows of classes `classes` and above (a shorter class list removed
    /// them; they are empty), so a class added later at the same index starts afresh.
    pub(crate) fn drop_classes_from(&mut self, classes: usize) {
        for g in self.slots() {
            let mut link = self.cold(g).side;
            let mut prev = NIL;
            while link != NIL {
                let entry = self.side[link as usize];
                if usize::from(entry.class) >= classes {
                    debug_assert!(entry.flow.len == 0 && !entry.flow.in_ring());
                    if prev == NIL {
                        self.cold_mut(g).side = entry.chain;
                    } else {
                        self.side[prev as usize].chain = entry.chain;
                    }
                    self.side[link as usize].chain = self.side_free;
                    self.side_free = link;
                } else {
                    prev = link;
                }
                link = entry.chain;
            }
        }
    }

    /// Bytes held (capacity, not length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.hot.capacity() * std::mem::size_of::<Group>()
            + self.cold.capacity() * std::mem::size_of::<Option<GroupCold<K>>>()
            + self.side.capacity() * std::mem::size_of::<SideFlow>()
            + self.free.capacity() * 4
            + self.table.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
    }

    /// Whether nothing keeps group `g`: no member, no setting, nothing owed or in flight.
    fn is_idle(&self, g: u32) -> bool {
        let h = self.get(g);
        self.members(g) == 0
            && h.in_flight == 0
            && h.weight.is_none()
            && h.max_in_flight == u32::MAX
            && !h.blocked
            && h.carry <= 0
    }
}

impl<K: Hash + Eq + Clone> Groups<K> {
    pub(crate) fn find(&self, hasher: &impl BuildHasher, key: &K) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let hash = hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|&(_, g)| g)
    }

    /// The slot of group `key`, made if it has none. `None` once `2^29` groups exist.
    pub(crate) fn find_or_insert(&mut self, hasher: &impl BuildHasher, key: K) -> Option<u32> {
        if let Some(g) = self.find(hasher, &key) {
            return Some(g);
        }
        // Host code (the key's `Clone`, its `Hash` when the table grows) runs before any
        // change, so a panic there leaves the table as it was.
        let stored = key.clone();
        self.table.reserve(1, |(k, _)| hasher.hash_one(k));
        let hash = hasher.hash_one(&key);
        let hot = Group {
            flow: GroupFlow::EMPTY,
            carry: 0,
            queued_cost: 0,
            len: 0,
            in_flight: 0,
            max_in_flight: u32::MAX,
            weight: None,
            active_flows: 0,
            blocked: false,
        };
        let cold = GroupCold {
            key: stored,
            members: 0,
            reason: None,
            side: NIL,
        };
        let g = match self.free.pop() {
            Some(g) => {
                self.hot[g as usize] = hot;
                self.cold[g as usize] = Some(cold);
                g
            }
            None => {
                let g = u32::try_from(self.hot.len()).ok().filter(|&g| g < SIDE)?;
                self.hot.push(hot);
                self.cold.push(Some(cold));
                g
            }
        };
        self.table
            .insert_unique(hash, (key, g), |(k, _)| hasher.hash_one(k));
        Some(g)
    }

    /// Forgets group `g` if nothing keeps it. Its group flows are empty and off their rings
    /// then (it has no members).
    pub(crate) fn release_if_idle(&mut self, hasher: &impl BuildHasher, g: u32) -> bool {
        if !self.is_idle(g) {
            return false;
        }
        // The host's `Hash` runs before any change.
        let hash = hasher.hash_one(self.key(g));
        if let Ok(entry) = self.table.find_entry(hash, |(_, i)| *i == g) {
            entry.remove();
        }
        let Some(cold) = self.cold[g as usize].take() else {
            return false;
        };
        let mut s = cold.side;
        while s != NIL {
            debug_assert!(!self.side[s as usize].flow.in_ring());
            let next = self.side[s as usize].chain;
            self.side[s as usize].chain = self.side_free;
            self.side_free = s;
            s = next;
        }
        debug_assert!(!self.hot[g as usize].flow.in_ring());
        self.free.push(g);
        true
    }
}
