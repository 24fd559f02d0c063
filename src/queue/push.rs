//! # Implementation details
//!
//! Putting items in: the three pushes, the refusal order they share, tenant handles, and
//! linking an item into its tenant's flow.

use super::deadlines::DeadlineEntry;
use super::fair_queue::*;
use super::items::NIL;
use super::tenants::Attachment;
use super::tenants::{PINNED, TenantHandle};
use crate::clock::Nanos;
use crate::error::{RejectReason, Rejected};
use crate::push::PushOptions;
use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash};

impl Ticket {
    /// The tenant the item belonged to.
    ///
    /// # Examples
    ///
    /// ```
    /// # let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// # q.try_push("a", 1).unwrap();
    /// let d = q.dispatch().unwrap();
    /// assert_eq!(q.key(d.ticket.tenant()), Some(&"a"));
    /// # q.complete(d.ticket, 1);
    /// ```
    pub fn tenant(&self) -> TenantHandle {
        self.tenant
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Appends `item` to tenant `idx`'s FIFO in class `class`. The caller checked the class,
    /// the block and the room.
    #[inline(always)]
    pub(crate) fn link(
        &mut self,
        idx: u32,
        class: u16,
        item: T,
        cost: u32,
        now: Nanos,
        deadline: Option<Nanos>,
    ) {
        if self.single() && self.groups.is_empty() {
            debug_assert_eq!(class, 0);
            self.link_in::<true>(idx, 0, item, cost, now, deadline);
        } else {
            self.link_in::<false>(idx, class, item, cost, now, deadline);
        }
    }

    /// [`link`](Self::link), with `ONE` telling whether the queue has one class and no groups
    /// (see `pop_class`).
    #[inline(always)]
    pub(super) fn link_in<const ONE: bool>(
        &mut self,
        idx: u32,
        class: u16,
        item: T,
        cost: u32,
        now: Nanos,
        deadline: Option<Nanos>,
    ) {
        let fid = if ONE {
            idx
        } else {
            self.tenants.flow_or_insert(idx, class)
        };
        let c = usize::from(class);
        let node = self.items.alloc(item, cost, now);
        let default_weight = self.config.default_weight();
        let quantum = self.config.quantum();
        let credit_rounds = i64::from(self.config.max_credit_rounds());
        let single = ONE || self.single();
        let (t, mut extra) = self.tenants.tenant_and_flow::<ONE>(idx, fid);
        let f = match extra.as_deref_mut() {
            Some(f) => f,
            None => &mut t.flow,
        };
        if f.tail == NIL {
            f.head = node;
        } else {
            self.items.set_next(f.tail, node);
        }
        f.tail = node;
        let activated = if single {
            false // decided below, from the tenant's total
        } else {
            f.len += 1;
            f.len == 1
        };
        t.len += 1;
        t.queued_cost += u64::from(cost);
        t.counters.pushed += 1;
        let group = t.group;
        let tenant_activated = t.len == 1;
        let activated = if single {
            tenant_activated
        } else {
            if activated {
                t.active_flows += 1;
            }
            activated
        };
        if activated {
            // A newly backlogged flow starts its round with a fresh grant (a debt carried
            // over is kept), set while the flow is at hand.
            let q = split_quantum(quantum, t.weight.unwrap_or(default_weight), t.active_flows);
            let g = grant(&mut t.carry, q, q.saturating_mul(credit_rounds));
            let f = match extra {
                Some(f) => f,
                None => &mut t.flow,
            };
            f.deficit = f.deficit.min(0).saturating_add(g);
        }
        if tenant_activated {
            self.active_tenants += 1;
        }
        if !ONE && group != NIL {
            let g = self.groups.get_mut(group);
            g.len += 1;
            g.queued_cost += u64::from(cost);
        }
        self.queued_cost += u64::from(cost);
        self.counters.pushed += 1;
        if !single {
            let ring = self.ring_mut(c);
            ring.items += 1;
            ring.queued_cost += u64::from(cost);
            ring.counters.pushed += 1;
        }
        if activated {
            self.ring_push_back::<ONE>(c, fid);
        }
        if let Some(at) = deadline {
            // Entries of items that left before their deadline stay until it passes; compact
            // when they outnumber the live items, so the heap follows the backlog (amortised
            // O(1) per push).
            if self.deadlines.len() > 2 * self.items.len() as usize + 64 {
                let items = &self.items;
                self.deadlines
                    .retain(|Reverse(e)| items.holds(e.node, e.generation, e.enqueued));
            }
            self.deadlines.push(Reverse(DeadlineEntry {
                at,
                node,
                generation: self.items.generation(node),
                flow: fid,
                enqueued: now,
            }));
        }
        self.touch(idx);
    }

    #[cold]
    pub(crate) fn reject(&mut self, item: T, reason: RejectReason) -> Result<(), Rejected<T>> {
        self.counters.rejected += 1;
        Err(Rejected::new(item, reason))
    }
}

impl<K, T, S, A: Attachment> FairQueue<K, T, S, A>
where
    K: Hash + Eq + Clone,
    S: BuildHasher,
{
    /// Queues `item` for tenant `key` with the default [`PushOptions`] (cost 1, the default
    /// class, no deadline).
    ///
    /// # Errors
    ///
    /// See [`try_push_with`](Self::try_push_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// q.try_push("acme", 1).unwrap();
    /// assert_eq!(q.tenant_len(&"acme"), 1);
    /// ```
    #[inline(always)]
    pub fn try_push(&mut self, key: K, item: T) -> Result<(), Rejected<T>> {
        self.try_push_with(key, item, PushOptions::new())
    }

    /// Queues `item` for tenant `key` with its cost, class and deadline (report the actual
    /// cost later through [`dispatch`](Self::dispatch) and [`complete`](Self::complete)).
    ///
    /// The queue reads no clock: a deadline takes effect when the host calls
    /// [`take_expired`](Self::take_expired) (the [`Scheduler`](crate::Scheduler) does so before
    /// every dispatch).
    ///
    /// # Errors
    ///
    /// The item comes back inside [`Rejected`], checked in this order (the same as the
    /// [`Scheduler`](crate::Scheduler)'s first checks), with
    /// - [`RejectReason::Blocked`] if an operator blocked the tenant,
    /// - [`RejectReason::ZeroCost`] if the cost is 0,
    /// - [`RejectReason::UnknownClass`] if the queue has no such class,
    /// - [`RejectReason::QueueFull`] if the queue holds `u32::MAX - 1` items or 2^30 tenants.
    ///
    /// # Performance
    ///
    /// One hash of `key`; O(1); no allocation unless the backlog reaches a new high-water mark.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, FairQueue, PushOptions};
    /// let mut q: FairQueue<&str, &str> = FairQueue::new();
    /// q.set_classes(Classes::new([ClassSpec::new("api"), ClassSpec::new("bulk")]).unwrap())
    ///     .unwrap();
    /// let bulk = q.classes().id("bulk").unwrap();
    /// q.try_push_with("acme", "export", PushOptions::new().with_cost(50).with_class(bulk))
    ///     .unwrap();
    /// assert_eq!(q.tenant_queued_cost(&"acme"), 50);
    /// assert_eq!(q.class_len(bulk), 1);
    /// ```
    #[inline(always)]
    pub fn try_push_with(&mut self, key: K, item: T, opts: PushOptions) -> Result<(), Rejected<T>> {
        let Some(idx) = self.tenants.find_or_insert(key) else {
            return self.reject(item, full());
        };
        self.push_slot(idx, item, opts)
    }

    /// Pins tenant `key` and returns its handle, for pushes and queries without hashing.
    ///
    /// The tenant's slot, settings and counters are kept until [`release`](Self::release),
    /// even while it has nothing queued. Calling it again returns the same handle.
    ///
    /// # Panics
    ///
    /// If the queue already holds `u32::MAX - 1` tenants.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert_eq!(q.tenant("acme"), h);
    /// q.try_push_to(h, 5, fairshare::PushOptions::new()).unwrap();
    /// assert_eq!(q.pop(), Some(5));
    /// assert_eq!(q.known_tenants(), 1); // still pinned
    /// ```
    #[track_caller]
    pub fn tenant(&mut self, key: K) -> TenantHandle {
        let idx = self
            .tenants
            .find_or_insert(key)
            .expect("fairshare: the tenant table is full (2^30 tenants)");
        self.tenants.get_mut(idx).flags |= PINNED;
        self.tenants.handle(idx)
    }

    /// The handle of a known tenant, without pinning it.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// assert_eq!(q.handle_of(&"acme"), None);
    /// q.try_push("acme", 1).unwrap();
    /// assert!(q.handle_of(&"acme").is_some());
    /// ```
    pub fn handle_of(&self, key: &K) -> Option<TenantHandle> {
        self.tenants.find(key).map(|i| self.tenants.handle(i))
    }

    /// Unpins a tenant pinned by [`tenant`](Self::tenant). Its slot is forgotten once it also
    /// has nothing queued or in flight and no settings; the handle is then stale.
    /// Returns `false` if the handle was already stale.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut q: fairshare::FairQueue<&str, u32> = fairshare::FairQueue::new();
    /// let h = q.tenant("acme");
    /// assert!(q.release(h));
    /// assert_eq!(q.known_tenants(), 0);
    /// assert!(!q.release(h));
    /// ```
    pub fn release(&mut self, handle: TenantHandle) -> bool {
        let Some(idx) = self.tenants.resolve(handle) else {
            return false;
        };
        self.tenants.get_mut(idx).flags &= !PINNED;
        self.tenants.release_if_idle(idx);
        true
    }

    /// Queues `item` for the tenant behind `handle` (from [`tenant`](Self::tenant)), without
    /// hashing its key.
    ///
    /// # Errors
    ///
    /// As [`try_push_with`](Self::try_push_with), after [`RejectReason::StaleHandle`] if the
    /// handle's tenant was forgotten.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{FairQueue, PushOptions, RejectReason};
    /// let mut q: FairQueue<&str, u32> = FairQueue::new();
    /// let h = q.tenant("acme");
    /// q.try_push_to(h, 1, PushOptions::new()).unwrap();
    /// q.pop();
    /// q.release(h);
    /// let err = q.try_push_to(h, 2, PushOptions::new()).unwrap_err();
    /// assert_eq!(err.reason(), RejectReason::StaleHandle);
    /// ```
    #[inline(always)]
    pub fn try_push_to(
        &mut self,
        handle: TenantHandle,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let Some(idx) = self.tenants.resolve(handle) else {
            return self.reject(item, RejectReason::StaleHandle);
        };
        self.push_slot(idx, item, opts)
    }

    /// The push of every entry point, once the tenant's slot is found.
    #[inline(always)]
    pub(super) fn push_slot(
        &mut self,
        idx: u32,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let t = self.tenants.get(idx);
        let class = opts.class().index();
        // A group member takes the out-of-line path, which asks its group too.
        if t.is_blocked()
            | (t.group != NIL)
            | (opts.cost() == 0)
            | (class >= self.class_count())
            | self.items.is_full()
        {
            return self.push_checked(idx, item, opts);
        }
        // `class_count() <= MAX_CLASSES`, so a known class fits in a `u16`.
        self.link(
            idx,
            class as u16,
            item,
            opts.cost(),
            Nanos::ZERO,
            opts.deadline(),
        );
        Ok(())
    }

    /// The refusal of [`push_slot`](Self::push_slot), in the documented order.
    /// The refusal `push_slot` gives tenant `idx`'s item, in the order every layer checks:
    /// the tenant's block, its group's block, the cost, the class, the room.
    pub(crate) fn push_refusal(&self, idx: u32, opts: &PushOptions) -> Option<RejectReason> {
        Some(if let Some(reason) = self.tenants.blocked(idx) {
            RejectReason::Blocked { reason }
        } else if let Some(reason) = self.slot_group_blocked(idx) {
            RejectReason::Blocked { reason }
        } else if opts.cost() == 0 {
            RejectReason::ZeroCost
        } else if opts.class().index() >= self.class_count {
            RejectReason::UnknownClass {
                class: opts.class(),
            }
        } else if self.items.is_full() {
            full()
        } else {
            return None;
        })
    }

    /// `push_slot` for a group member, or for an item to refuse.
    #[cold]
    #[inline(never)]
    pub(super) fn push_checked(
        &mut self,
        idx: u32,
        item: T,
        opts: PushOptions,
    ) -> Result<(), Rejected<T>> {
        let Some(reason) = self.push_refusal(idx, &opts) else {
            let class = opts.class().index() as u16;
            self.link(idx, class, item, opts.cost(), Nanos::ZERO, opts.deadline());
            return Ok(());
        };
        self.tenants.count_rejected(idx);
        // A tenant the push itself created goes again.
        self.tenants.release_if_idle(idx);
        self.reject(item, reason)
    }
}
