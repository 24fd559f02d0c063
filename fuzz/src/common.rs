//! The conservation ledger, the item type and small decoders shared by every target.

use arbitrary::Arbitrary;
use fairshare::{BlockReason, ClassSpec, Classes, Nanos, PushOptions};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// An item: a unique id, and where it was pushed (for the per-tenant FIFO check).
#[derive(Debug, PartialEq, Eq)]
pub struct Item {
    /// Unique, increasing in push order.
    pub id: u64,
    /// The tenant it was pushed for.
    pub tenant: u8,
    /// The class index it was pushed into.
    pub class: usize,
}

/// Where an item came back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// `pop`, `dispatch`, a batch or a lease.
    Dispatched,
    /// `purge`.
    Purged,
    /// `retain` (the removed ones).
    Retained,
    /// `drain`.
    Drained,
    /// `take_expired` / `take_returned`.
    Returned,
    /// `close`.
    Closed,
}

/// Every item pushed comes back exactly once: the ledger holds the ids the library owns.
#[derive(Debug, Default)]
pub struct Ledger {
    next: u64,
    /// Ids the library holds (queued, or waiting in a returned buffer).
    pub held: HashSet<u64>,
    /// Per (tenant, class): the id last dispatched, for per-tenant FIFO.
    last: HashMap<(u8, usize), u64>,
    /// Items pushed, accepted, refused and handed back (for the final report).
    pub pushed: u64,
    /// Accepted pushes.
    pub accepted: u64,
    /// Items that came back, by way.
    pub back: HashMap<&'static str, u64>,
}

impl Ledger {
    /// A fresh item for `tenant` in `class`.
    pub fn item(&mut self, tenant: u8, class: usize) -> Item {
        self.next += 1;
        self.pushed += 1;
        Item {
            id: self.next,
            tenant,
            class,
        }
    }

    /// Records the outcome of pushing item `id`.
    pub fn pushed<E: Into<Item>>(&mut self, id: u64, result: Result<(), E>) {
        match result {
            Ok(()) => {
                self.accepted += 1;
                assert!(self.held.insert(id), "item {id} accepted twice");
            }
            Err(e) => {
                let item = e.into();
                assert_eq!(item.id, id, "a refusal handed back another item");
                *self.back.entry("refused").or_default() += 1;
            }
        }
    }

    /// An item came back from the library.
    pub fn back(&mut self, item: Item, way: Way) {
        assert!(
            self.held.remove(&item.id),
            "item {} came back ({way:?}) but the library did not hold it (lost or duplicated)",
            item.id
        );
        if way == Way::Dispatched {
            let last = self.last.entry((item.tenant, item.class)).or_default();
            assert!(
                *last < item.id,
                "per-tenant FIFO broken: tenant {} class {} dispatched {} after {}",
                item.tenant,
                item.class,
                item.id,
                *last
            );
            *last = item.id;
        }
        let name = match way {
            Way::Dispatched => "dispatched",
            Way::Purged => "purged",
            Way::Retained => "retained",
            Way::Drained => "drained",
            Way::Returned => "returned",
            Way::Closed => "closed",
        };
        *self.back.entry(name).or_default() += 1;
    }

    /// Every item came back.
    pub fn assert_empty(&self) {
        assert!(
            self.held.is_empty(),
            "items never handed back: {:?}",
            self.held
        );
    }
}

impl From<fairshare::Rejected<Item>> for Item {
    fn from(r: fairshare::Rejected<Item>) -> Item {
        r.into_inner()
    }
}

/// A cost, biased towards the interesting values.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Cost {
    /// A small cost (0 included).
    Small(u8),
    /// Zero.
    Zero,
    /// `u32::MAX`.
    Max,
    /// Any.
    Any(u32),
}

impl Cost {
    /// The value.
    pub fn get(self) -> u32 {
        match self {
            Cost::Small(c) => u32::from(c % 8),
            Cost::Zero => 0,
            Cost::Max => u32::MAX,
            Cost::Any(c) => c,
        }
    }
}

/// A non-zero weight, biased towards the extremes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Weight {
    /// 1..=8.
    Small(u8),
    /// `u32::MAX`.
    Max,
    /// Any non-zero.
    Any(u32),
}

impl Weight {
    /// The value.
    pub fn get(self) -> NonZeroU32 {
        let w = match self {
            Weight::Small(w) => u32::from(w % 8) + 1,
            Weight::Max => u32::MAX,
            Weight::Any(w) => w.max(1),
        };
        NonZeroU32::new(w).expect("non-zero by construction")
    }
}

/// Push options: cost, class index (maybe unknown), deadline.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Opts {
    /// The estimated cost.
    pub cost: Cost,
    /// The class index (taken modulo 5, so 4 is often unknown).
    pub class: u8,
    /// A deadline in milliseconds of the clock, if any.
    pub deadline_ms: Option<u16>,
}

impl Opts {
    /// The class index.
    pub fn class(&self) -> usize {
        usize::from(self.class % 5)
    }

    /// The options, with the deadline `deadline_ms` after `now`.
    pub fn at(&self, now: Nanos) -> PushOptions {
        let o = PushOptions::new()
            .with_cost(self.cost.get())
            .with_class(fairshare::ClassId::new(self.class() as u16));
        match self.deadline_ms {
            Some(d) => o.with_deadline(Nanos::new(
                now.as_u64().saturating_add(u64::from(d) * 1_000_000),
            )),
            None => o,
        }
    }

    /// The options, with the deadline `deadline_ms` after time zero.
    pub fn get(&self) -> PushOptions {
        let mut o = PushOptions::new()
            .with_cost(self.cost.get())
            .with_class(fairshare::ClassId::new(self.class() as u16));
        if let Some(d) = self.deadline_ms {
            o = o.with_deadline(Nanos::from_millis(u64::from(d)));
        }
        o
    }
}

/// One class of a class set.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Class {
    weight: Weight,
    reserved: u8,
    ceiling: u8,
    priority: u8,
    max_in_flight: Option<u8>,
}

/// Builds a class set (it may be invalid: reservations above 100 percent).
pub fn classes(specs: &[Class]) -> Result<Classes, fairshare::ConfigError> {
    Classes::new(specs.iter().take(4).enumerate().map(|(i, c)| {
        ClassSpec::new(format!("c{i}"))
            .with_weight(c.weight.get())
            .with_reserved_percent(c.reserved % 60)
            .with_ceiling_percent(c.ceiling % 101)
            .with_priority(c.priority % 3)
            .with_max_in_flight(c.max_in_flight.map(|m| u32::from(m % 6)))
    }))
}

/// A block reason.
pub fn reason(code: u8) -> BlockReason {
    match code % 5 {
        0 => BlockReason::Operator,
        1 => BlockReason::Abuse,
        2 => BlockReason::Billing,
        3 => BlockReason::Maintenance,
        _ => BlockReason::Code(u32::from(code)),
    }
}

thread_local! {
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// The panic a host callback raises on purpose.
#[derive(Debug)]
pub struct HostPanic;

/// Raises a [`HostPanic`] (not reported, not a crash).
pub fn host_panic() -> ! {
    panic::panic_any(HostPanic)
}

/// Runs `f`, in which a host callback may panic on purpose: that panic is caught (libFuzzer's
/// hook would abort on any panic, so the hook skips [`HostPanic`]s); any other panic is a bug
/// and propagates.
pub fn catch_host<R>(f: impl FnOnce() -> R) -> Option<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !(EXPECTED.get() && info.payload().is::<HostPanic>()) {
                prev(info);
            }
        }));
    });
    EXPECTED.set(true);
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    EXPECTED.set(false);
    match out {
        Ok(r) => Some(r),
        Err(p) if p.is::<HostPanic>() => None,
        Err(p) => panic::resume_unwind(p),
    }
}
