//! # Implementation details
//!
//! An indexed max-heap of backlogged tenants ordered by queued cost per unit of weight, kept
//! only while a shedding policy needs to know "which tenant is furthest over its fair share".
//! A tenant's fair share of the queue is proportional to its weight, so the tenant with the
//! largest `queued_cost / weight` is always over its share if anyone is. Updates are
//! O(log backlogged tenants); ties go to the lower slot index, so the choice is deterministic.

use super::tenants::Attachment;
use std::num::NonZeroU32;

use super::items::NIL;
use super::tenants::Tenants;

#[derive(Debug, Default)]
pub(crate) struct OverShare {
    heap: Vec<u32>,
    /// Each slot's position in `heap`, or `NIL` (and slots past the end: `NIL`). Kept here,
    /// not in the slot, so tenants pay for it only while a policy sheds.
    pos: Vec<u32>,
}

impl OverShare {
    pub(crate) fn allocated_bytes(&self) -> usize {
        (self.heap.capacity() + self.pos.capacity()) * std::mem::size_of::<u32>()
    }

    fn pos_of(&self, idx: u32) -> u32 {
        self.pos.get(idx as usize).copied().unwrap_or(NIL)
    }

    fn set_pos(&mut self, idx: u32, pos: u32) {
        let i = idx as usize;
        if i >= self.pos.len() {
            self.pos.resize(i + 1, NIL);
        }
        self.pos[i] = pos;
    }

    pub(crate) fn top(&self) -> Option<u32> {
        self.heap.first().copied()
    }

    /// Re-positions tenant `idx` after its queued cost or weight changed (inserting or
    /// removing it as it became backlogged or empty).
    pub(crate) fn update<K, S, A: Attachment>(
        &mut self,
        tenants: &mut Tenants<K, S, A>,
        idx: u32,
        dw: NonZeroU32,
    ) {
        let (pos, backlogged) = (self.pos_of(idx), tenants.get(idx).len > 0);
        match (pos == NIL, backlogged) {
            (true, false) => {}
            (true, true) => {
                let pos = self.heap.len() as u32;
                self.heap.push(idx);
                self.set_pos(idx, pos);
                self.sift_up(tenants, pos, dw);
            }
            (false, false) => self.remove_at(tenants, pos, dw),
            (false, true) => {
                let pos = self.sift_up(tenants, pos, dw);
                self.sift_down(tenants, pos, dw);
            }
        }
    }

    /// Whether tenant `a` is further over its share than tenant `b`.
    fn above<K, S, A: Attachment>(
        tenants: &Tenants<K, S, A>,
        a: u32,
        b: u32,
        dw: NonZeroU32,
    ) -> bool {
        let (ta, tb) = (tenants.get(a), tenants.get(b));
        let wa = u128::from(ta.weight.unwrap_or(dw).get());
        let wb = u128::from(tb.weight.unwrap_or(dw).get());
        let (x, y) = (
            u128::from(ta.queued_cost) * wb,
            u128::from(tb.queued_cost) * wa,
        );
        x > y || (x == y && a < b)
    }

    fn place(&mut self, pos: u32, idx: u32) {
        self.heap[pos as usize] = idx;
        self.set_pos(idx, pos);
    }

    fn sift_up<K, S, A: Attachment>(
        &mut self,
        tenants: &mut Tenants<K, S, A>,
        mut pos: u32,
        dw: NonZeroU32,
    ) -> u32 {
        let idx = self.heap[pos as usize];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.heap[parent as usize];
            if !Self::above(tenants, idx, p, dw) {
                break;
            }
            self.place(pos, p);
            pos = parent;
        }
        self.place(pos, idx);
        pos
    }

    fn sift_down<K, S, A: Attachment>(
        &mut self,
        tenants: &mut Tenants<K, S, A>,
        mut pos: u32,
        dw: NonZeroU32,
    ) {
        let idx = self.heap[pos as usize];
        let len = self.heap.len() as u32;
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let mut child = left;
            if right < len
                && Self::above(
                    tenants,
                    self.heap[right as usize],
                    self.heap[left as usize],
                    dw,
                )
            {
                child = right;
            }
            let c = self.heap[child as usize];
            if !Self::above(tenants, c, idx, dw) {
                break;
            }
            self.place(pos, c);
            pos = child;
        }
        self.place(pos, idx);
    }

    fn remove_at<K, S, A: Attachment>(
        &mut self,
        tenants: &mut Tenants<K, S, A>,
        pos: u32,
        dw: NonZeroU32,
    ) {
        let idx = self.heap[pos as usize];
        self.set_pos(idx, NIL);
        let last = self
            .heap
            .pop()
            .expect("fairshare: heap position names an empty heap");
        if last != idx {
            self.place(pos, last);
            let pos = self.sift_up(tenants, pos, dw);
            self.sift_down(tenants, pos, dw);
        }
    }
}
