//! # Implementation details
//!
//! Every call this crate makes into `fairshare` goes through this module, so that a change of
//! the core's API is adapted here and nowhere else. The rest of the crate sees [`Core`] (the
//! shared scheduler: admit, hand out slots, queries), [`InFlight`] (one held in-flight slot)
//! and the value types re-exported below.
//!
//! The queued item is a [`Token`]: a hand-off slot that the request's future waits on. The
//! invariant that keeps every slot in use: after every change that can make a queued token
//! dispatchable (a push, a completion, an operator's change through
//! [`Core::with_scheduler`]), the thread that made it calls [`Core::pump`], which dispatches
//! under the scheduler's lock until nothing more can go. Each dispatched token gets its
//! [`InFlight`]; a token whose request was cancelled refuses it, and the slot is freed on the
//! spot (and the pump goes on), so no slot is ever held for a request that is gone.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use fairshare::{
    ClassId, Classes, Clock, ConfigError, Nanos, Outcome, PressureLevel, PushOptions, RejectReason,
    Scheduler, SchedulerConfig, Stats, StdClock,
};
use fairshare::{Lease, SharedScheduler};

use crate::slot::{Grant, Slot, Token};

/// The scheduler this crate drives: tenants `K`, hand-off tokens, clock `C`.
pub(crate) type Handle<K, C> = SharedScheduler<K, Token<K, C>, C>;

/// The shared scheduler, and what the crate needs to know of its configuration.
pub(crate) struct Core<K, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    handle: Handle<K, C>,
    /// Whether the scheduler can hand queued items back on its own (a queue-delay target
    /// sheds them, a deadline expires them): then every pump collects them.
    may_return: bool,
    /// Whether a pressure gauge is configured (otherwise the level is always normal).
    has_pressure: bool,
    /// Class names by class index, for labels.
    class_names: Vec<String>,
}

impl<K, C> Clone for Core<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn clone(&self) -> Self {
        Core {
            handle: self.handle.clone(),
            may_return: self.may_return,
            has_pressure: self.has_pressure,
            class_names: self.class_names.clone(),
        }
    }
}

/// Why an admission failed, and when a retry can succeed (if the limit knows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    pub(crate) reason: RejectReason,
    pub(crate) retry_in: Option<Duration>,
}

impl<K, C> Core<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// A new scheduler on `clock` with `classes`.
    pub(crate) fn new(
        config: SchedulerConfig,
        classes: Option<Classes>,
        clock: C,
    ) -> Result<Self, ConfigError> {
        let mut scheduler: Scheduler<K, Token<K, C>, C> = Scheduler::with_clock(config, clock);
        if let Some(classes) = classes {
            scheduler.set_classes(classes)?;
        }
        let class_names = scheduler
            .classes()
            .iter()
            .map(|(_, spec)| spec.name().to_owned())
            .collect();
        Ok(Core {
            handle: SharedScheduler::from_scheduler(scheduler),
            may_return: config.queue_delay().is_some(),
            has_pressure: config.pressure().is_some(),
            class_names,
        })
    }

    /// How many classes the scheduler has.
    pub(crate) fn class_count(&self) -> usize {
        self.class_names.len()
    }

    /// The name of `class`, if it exists.
    #[cfg(feature = "metrics")]
    pub(crate) fn class_name(&self, class: ClassId) -> Option<&str> {
        self.class_names.get(class.index()).map(String::as_str)
    }

    /// Whether a pressure gauge is configured.
    pub(crate) fn has_pressure(&self) -> bool {
        self.has_pressure
    }

    /// Queues a token for `key` and hands out whatever can run now (this token, if nothing
    /// is ahead of it).
    pub(crate) fn admit(
        &self,
        key: K,
        class: ClassId,
        cost: u32,
    ) -> Result<Arc<Slot<K, C>>, Refused> {
        let (token, slot) = Slot::new_pair();
        let opts = PushOptions::new().class(class).cost(cost);
        match self.handle.try_push_with(key, token, opts) {
            Ok(admitted) => {
                for evicted in admitted.into_evicted() {
                    let reason = evicted.reason();
                    evicted.into_inner().refuse(reason);
                }
                self.pump();
                Ok(slot)
            }
            Err(rejected) => {
                let reason = rejected.reason();
                drop(rejected.into_inner());
                let retry_in = reason.retry_at().map(|at| {
                    let now = self.now();
                    Duration::from(at.saturating_since(now))
                });
                Err(Refused { reason, retry_in })
            }
        }
    }

    /// Dispatches until nothing more can run, handing each token its slot; collects what the
    /// scheduler handed back on its own.
    pub(crate) fn pump(&self) {
        while let Some(job) = self.handle.try_dispatch() {
            let flight = InFlight {
                lease: Some(job.lease),
                core: None,
            };
            if let Grant::Cancelled(mut flight) = job.item.grant(flight, self) {
                // The request is gone: free the slot now (no pump inside: this loop goes on).
                flight.release(Outcome::Dropped);
            }
        }
        if self.may_return {
            let returned = self.handle.with_scheduler(|s| s.take_expired());
            for r in returned {
                let reason = r.reason();
                r.into_inner().refuse(reason);
            }
        }
    }

    /// The scheduler clock's time.
    pub(crate) fn now(&self) -> Nanos {
        self.handle.with_scheduler(|s| s.clock().now())
    }

    /// The pressure level.
    pub(crate) fn pressure(&self) -> PressureLevel {
        self.handle.pressure()
    }

    /// Items queued.
    pub(crate) fn queued(&self) -> usize {
        self.handle.len()
    }

    /// Items in flight.
    pub(crate) fn in_flight(&self) -> u64 {
        self.handle.with_scheduler(|s| s.queue().total_in_flight())
    }

    /// A stats snapshot.
    pub(crate) fn stats(&self) -> Stats<K> {
        self.handle.with_scheduler(|s| s.stats())
    }

    /// Runs `f` on the scheduler (operator actions, queries), then hands out whatever the
    /// change let through. Queued tokens are opaque: `f` sees the scheduler's methods but
    /// can do nothing useful with the items, and any it removes are refused as closed.
    pub(crate) fn with_scheduler<R>(
        &self,
        f: impl FnOnce(&mut Scheduler<K, Token<K, C>, C>) -> R,
    ) -> R {
        let out = self.handle.with_scheduler(f);
        self.pump();
        out
    }
}

/// One held in-flight slot: released exactly once, by [`release`](Self::release) or on drop
/// (then as dropped, at the estimated cost). With a `core`, releasing hands the freed slot on
/// (pumps).
pub(crate) struct InFlight<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    lease: Option<Lease<K, Token<K, C>, C>>,
    core: Option<Core<K, C>>,
}

impl<K, C> InFlight<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// From now on, releasing this slot hands it on through `core`.
    pub(crate) fn attach(&mut self, core: &Core<K, C>) {
        self.core = Some(core.clone());
    }

    /// Releases the slot (at the estimated cost) with `outcome`, then hands it on.
    pub(crate) fn release(&mut self, outcome: Outcome) {
        if let Some(lease) = self.lease.take() {
            let cost = lease.cost();
            lease.complete_with(cost, outcome);
            if let Some(core) = &self.core {
                core.pump();
            }
        }
    }
}

impl<K, C> Drop for InFlight<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn drop(&mut self) {
        self.release(Outcome::Dropped);
    }
}

// ===== metrics =====

/// Turns a tenant key into the `tenant` label of its heavy-tenant gauge.
#[cfg(feature = "metrics")]
pub(crate) type Labeler<K> = Box<dyn Fn(&K) -> String + Send + Sync>;

/// The core's bounded heavy-tenant tracker, shared by the layer's requests.
#[cfg(feature = "metrics")]
pub(crate) struct Heavy<K> {
    tracker: parking_lot::Mutex<fairshare::metrics::HeavyTenants<K>>,
    label: Labeler<K>,
}

#[cfg(feature = "metrics")]
impl<K: Eq + Clone> Heavy<K> {
    pub(crate) fn new(k: usize, label: Labeler<K>) -> Self {
        Heavy {
            tracker: parking_lot::Mutex::new(fairshare::metrics::HeavyTenants::new(k)),
            label,
        }
    }

    pub(crate) fn observe(&self, key: &K, cost: u32) {
        self.tracker.lock().observe(key, u64::from(cost));
    }

    pub(crate) fn publish(&self) {
        self.tracker
            .lock()
            .publish("fairshare_heavy_tenant_cost", &self.label);
    }
}

/// Counts a refusal the layer made for pressure, beside the core's own refusals
/// (`fairshare_refused_total{reason = "pressure"}`).
#[cfg(feature = "metrics")]
pub(crate) fn count_pressure_refusal<K, C>(core: &Core<K, C>, class: ClassId)
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    let class = core.class_name(class).unwrap_or("unknown").to_owned();
    metrics::counter!("fairshare_refused_total", "reason" => "pressure", "class" => class)
        .increment(1);
}
