//! # Implementation details
//!
//! The group table: groups of tenants by key, each with its settings, its totals and one
//! *group flow* per class it has work in. A group flow is the group's entry on its class's
//! DRR ring (the upper level of the round robin) and holds the inner ring of its members'
//! flows (the lower level). Ring entries name a group flow by [`GROUP`] `|` its index, which
//! no tenant flow id has (tenant slots and side flows are indexed below `2^30`).

use super::items::NIL;
use crate::error::BlockReason;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

/// Ring entries with this bit set (and [`EXTRA`](super::flows::EXTRA) clear) name a group
/// flow.
pub(crate) const GROUP: u32 = 1 << 30;

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
    /// The group's slot.
    pub(crate) group: u32,
}

impl GroupFlow {
    /// Whether the group flow is on its class's ring.
    #[inline(always)]
    pub(crate) fn in_ring(&self) -> bool {
        self.next != NIL
    }
}

/// One group: its settings and totals over its members.
#[derive(Debug, Clone)]
pub(crate) struct Group<K> {
    pub(crate) key: K,
    /// Group weight override (`None`: the queue's default weight).
    pub(crate) weight: Option<NonZeroU32>,
    pub(crate) members: u32,
    /// Items and cost queued by its members.
    pub(crate) len: u64,
    pub(crate) queued_cost: u64,
    pub(crate) in_flight: u32,
    /// In-flight limit over all members (`u32::MAX`: none). A group at its limit has its
    /// group flows parked: off their rings until a completion frees a slot.
    pub(crate) max_in_flight: u32,
    /// Cost correction of members' items not yet applied to the group's grants (see
    /// `Tenant::carry`).
    pub(crate) carry: i64,
    /// Group flows with members backlogged: the group's quantum is split between them.
    pub(crate) active_flows: u16,
    pub(crate) blocked: Option<BlockReason>,
    /// The group flow of each class (by class index), or `NIL`.
    pub(crate) flows: Vec<u32>,
}

impl<K> Group<K> {
    /// Whether nothing keeps this group: no member, no setting, nothing owed or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.members == 0
            && self.in_flight == 0
            && self.weight.is_none()
            && self.max_in_flight == u32::MAX
            && self.blocked.is_none()
            && self.carry <= 0
    }
}

/// Key -> group slot, the group slots and the group flows.
#[derive(Debug)]
pub(crate) struct Groups<K> {
    table: HashTable<(K, u32)>,
    slots: Vec<Option<Group<K>>>,
    free: Vec<u32>,
    pub(crate) flows: Vec<GroupFlow>,
    flows_free: Vec<u32>,
}

impl<K> Default for Groups<K> {
    fn default() -> Self {
        Groups {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            flows: Vec::new(),
            flows_free: Vec::new(),
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
    pub(crate) fn get(&self, g: u32) -> &Group<K> {
        match &self.slots[g as usize] {
            Some(group) => group,
            None => unreachable!("fairshare: group slot {g} is free"),
        }
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, g: u32) -> &mut Group<K> {
        match &mut self.slots[g as usize] {
            Some(group) => group,
            None => unreachable!("fairshare: group slot {g} is free"),
        }
    }

    /// Group flow `gf` (an index, without the [`GROUP`] bit).
    #[inline(always)]
    pub(crate) fn flow(&self, gf: u32) -> &GroupFlow {
        &self.flows[gf as usize]
    }

    #[inline(always)]
    pub(crate) fn flow_mut(&mut self, gf: u32) -> &mut GroupFlow {
        &mut self.flows[gf as usize]
    }

    /// Group `g`'s flow in class `class`, made if it has none.
    pub(crate) fn flow_or_insert(&mut self, g: u32, class: u16) -> u32 {
        let c = usize::from(class);
        let existing = self.get(g).flows.get(c).copied().unwrap_or(NIL);
        if existing != NIL {
            return existing;
        }
        let flow = GroupFlow {
            deficit: 0,
            front: NIL,
            len: 0,
            prev: NIL,
            next: NIL,
            group: g,
        };
        let gf = match self.flows_free.pop() {
            Some(gf) => {
                self.flows[gf as usize] = flow;
                gf
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as u32
            }
        };
        let flows = &mut self.get_mut(g).flows;
        if flows.len() <= c {
            flows.resize(c + 1, NIL);
        }
        flows[c] = gf;
        gf
    }

    /// Group `g`'s flow in `class`, if it has one.
    #[inline(always)]
    pub(crate) fn find_flow(&self, g: u32, class: usize) -> Option<u32> {
        self.get(g).flows.get(class).copied().filter(|&gf| gf != NIL)
    }

    /// Every group slot in use, in slot order (deterministic).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Group<K>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i as u32, g)))
    }

    /// Frees the group flows of classes `classes` and above (a shorter class list removed
    /// them; they are empty), so a class added later at the same index starts afresh.
    pub(crate) fn drop_classes_from(&mut self, classes: usize) {
        for slot in self.slots.iter_mut().flatten() {
            for gf in slot.flows.drain(classes.min(slot.flows.len())..) {
                if gf != NIL {
                    debug_assert!(self.flows[gf as usize].len == 0);
                    self.flows_free.push(gf);
                }
            }
        }
    }

    /// Bytes held (capacity, not length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Group<K>>>()
            + self
                .iter()
                .map(|(_, g)| g.flows.capacity() * 4)
                .sum::<usize>()
            + self.flows.capacity() * std::mem::size_of::<GroupFlow>()
            + (self.free.capacity() + self.flows_free.capacity()) * 4
            + self.table.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
    }
}

impl<K: Hash + Eq + Clone> Groups<K> {
    pub(crate) fn find(&self, hasher: &impl BuildHasher, key: &K) -> Option<u32> {
        let hash = hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|&(_, g)| g)
    }

    /// The slot of group `key`, made if it has none. `None` once `2^30` groups exist.
    pub(crate) fn find_or_insert(&mut self, hasher: &impl BuildHasher, key: K) -> Option<u32> {
        if let Some(g) = self.find(hasher, &key) {
            return Some(g);
        }
        // Host code (the key's `Clone`, its `Hash` when the table grows) runs before any
        // change, so a panic there leaves the table as it was.
        let stored = key.clone();
        self.table.reserve(1, |(k, _)| hasher.hash_one(k));
        let hash = hasher.hash_one(&key);
        let group = Group {
            key: stored,
            weight: None,
            members: 0,
            len: 0,
            queued_cost: 0,
            in_flight: 0,
            max_in_flight: u32::MAX,
            carry: 0,
            active_flows: 0,
            blocked: None,
            flows: Vec::new(),
        };
        let g = match self.free.pop() {
            Some(g) => {
                self.slots[g as usize] = Some(group);
                g
            }
            None => {
                let g = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&g| g < GROUP)?;
                self.slots.push(Some(group));
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
        if !self.get(g).is_idle() {
            return false;
        }
        // The host's `Hash` runs before any change.
        let hash = hasher.hash_one(&self.get(g).key);
        let Some(group) = self.slots[g as usize].take() else {
            return false;
        };
        if let Ok(entry) = self.table.find_entry(hash, |(_, i)| *i == g) {
            entry.remove();
        }
        for gf in group.flows.into_iter().filter(|&gf| gf != NIL) {
            debug_assert!(!self.flows[gf as usize].in_ring());
            self.flows_free.push(gf);
        }
        self.free.push(g);
        true
    }
}
