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
//!
//! The core API used, all of it here: `Scheduler::with_clock`, `set_classes`, `classes`,
//! `queue().total_in_flight()`, `queue().len()`, `stats`, `config`, `pending_returns`; `SharedScheduler::from_scheduler`,
//! `try_push_with` (with `PushOptions::with_class`/`with_cost`), `take_returned` (evicted,
//! expired and shed tokens), `try_dispatch` (`Job`), `with_scheduler`, `now`, `pressure`,
//! `len`; `Lease::cost`, `Lease::complete_with`; `RejectReason::retry_at`;
//! `metrics::HeavyTenants` (feature `metrics`).

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fairshare::SharedScheduler;
pub(crate) use fairshare::adaptive::Outcome;
pub(crate) use fairshare::pressure::PressureLevel;
use fairshare::shared::Lease;
pub(crate) use fairshare::stats::Stats;
pub(crate) use fairshare::{
    ClassId, Classes, Clock, ConfigError, Nanos, PushOptions, RejectReason, Scheduler,
    SchedulerConfig, StdClock,
};

use crate::slot::{Grant, Slot, Token};

/// The scheduler this crate drives: tenants `K`, hand-off tokens, clock `C`.
pub(crate) type Handle<K, C> = SharedScheduler<K, Token<K, C>, C>;

/// The shared scheduler, and what the crate needs to know of its configuration. Cloning is
/// one reference count: every held slot keeps a `Core` to hand its slot on.
pub(crate) struct Core<K, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    inner: Arc<CoreInner<K, C>>,
}

struct CoreInner<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    handle: Handle<K, C>,
    /// Tokens pushed (or being pushed) and not yet dispatched or handed back; never below
    /// the true number (raised before a push, lowered after a token left the queue). A
    /// completion that reads 0 after freeing its slot skips the pump: nothing waits.
    waiting: AtomicUsize,
    /// Whether the scheduler can hand queued items back on its own (a queue-delay target
    /// sheds them, or a push evicts them to make room): then pushes and pumps collect them.
    /// Follows the configuration: an operator's `reconfigure` through
    /// [`Core::with_scheduler`] can turn either on.
    may_return: AtomicBool,
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
            inner: Arc::clone(&self.inner),
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
            inner: Arc::new(CoreInner {
                handle: SharedScheduler::from_scheduler(scheduler),
                waiting: AtomicUsize::new(0),
                may_return: AtomicBool::new(may_return(&config)),
                has_pressure: config.pressure().is_some(),
                class_names,
            }),
        })
    }

    /// How many classes the scheduler has.
    pub(crate) fn class_count(&self) -> usize {
        self.inner.class_names.len()
    }

    /// The name of `class`, if it exists.
    #[cfg(feature = "metrics")]
    pub(crate) fn class_name(&self, class: ClassId) -> Option<&str> {
        self.inner
            .class_names
            .get(class.index())
            .map(String::as_str)
    }

    /// Whether a pressure gauge is configured.
    pub(crate) fn has_pressure(&self) -> bool {
        self.inner.has_pressure
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
        let opts = PushOptions::new().with_class(class).with_cost(cost);
        // Counted before the push: a completion must never see 0 while this token can be
        // queued (see `InFlight::release`).
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        match self.inner.handle.try_push_with(key, token, opts) {
            Ok(()) => {
                // Tokens evicted to make room come back through the scheduler's outbox.
                self.collect_returns();
                self.pump_after_push();
                Ok(slot)
            }
            Err(rejected) => {
                self.left_queue(1);
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
    /// scheduler handed back on its own. After a completion or an operator's change: one
    /// freed slot can let several requests through (it may lift a class cap and a tenant
    /// cap at once).
    pub(crate) fn pump(&self) {
        while self.dispatch_one() {}
        self.collect_returns();
    }

    /// [`pump`](Self::pump) after a push. A push adds one item to one tenant's queue in one
    /// class, behind any it already had there; everything that could run before it already
    /// runs (every change pumps), and in-flight counts and limits are unchanged, so at most
    /// one more item can run now (the new one, or one a concurrent completion let through,
    /// whose own pump covers the rest). One delivered grant ends it, which saves a lock per
    /// request; a cancelled token's freed slot is passed on before stopping.
    fn pump_after_push(&self) {
        while let Some(job) = self.inner.handle.try_dispatch() {
            if self.hand_over(job) {
                break;
            }
        }
        self.collect_returns();
    }

    /// Dispatches one token, if one can run; `false` once nothing can.
    fn dispatch_one(&self) -> bool {
        match self.inner.handle.try_dispatch() {
            Some(job) => {
                self.hand_over(job);
                true
            }
            None => false,
        }
    }

    /// `n` tokens left the queue (dispatched, handed back, refused at the door).
    fn left_queue(&self, n: usize) {
        self.inner.waiting.fetch_sub(n, Ordering::SeqCst);
    }

    /// Whether any token may be queued.
    fn may_be_waiting(&self) -> bool {
        self.inner.waiting.load(Ordering::SeqCst) > 0
    }

    /// Hands a dispatched token its slot; `true` if its request took it, `false` if the
    /// request was gone (the slot is freed here).
    fn hand_over(&self, job: fairshare::shared::Job<K, Token<K, C>, C>) -> bool {
        self.left_queue(1);
        let flight = InFlight {
            lease: Some(job.lease),
            core: None,
        };
        match job.item.grant(flight, self) {
            Grant::Delivered => true,
            Grant::Cancelled(mut flight) => {
                // No pump inside: the caller's loop goes on.
                flight.release(Outcome::Dropped);
                false
            }
        }
    }

    /// Takes back what the scheduler handed back on its own (evictions, queue-delay shedding,
    /// deadlines) and answers those requests.
    fn collect_returns(&self) {
        if self.inner.may_return.load(Ordering::Relaxed) {
            let returned = self.inner.handle.take_returned();
            let n = returned.len();
            for r in returned {
                let reason = r.reason();
                r.into_inner().refuse(reason);
            }
            self.left_queue(n);
        }
    }

    /// The scheduler clock's time.
    pub(crate) fn now(&self) -> Nanos {
        self.inner.handle.now()
    }

    /// The pressure level.
    pub(crate) fn pressure(&self) -> PressureLevel {
        self.inner.handle.pressure()
    }

    /// Items queued.
    pub(crate) fn queued(&self) -> usize {
        self.inner.handle.len()
    }

    /// Items in flight.
    pub(crate) fn in_flight(&self) -> u64 {
        self.inner
            .handle
            .with_scheduler(|s| s.queue().total_in_flight())
    }

    /// A stats snapshot.
    pub(crate) fn stats(&self) -> Stats<K> {
        self.inner.handle.with_scheduler(|s| s.stats())
    }

    /// Runs `f` on the scheduler (operator actions, queries), then hands out whatever the
    /// change let through. Queued tokens are opaque: `f` sees the scheduler's methods but
    /// can do nothing useful with the items, and any it removes are refused as closed.
    pub(crate) fn with_scheduler<R>(
        &self,
        f: impl FnOnce(&mut Scheduler<K, Token<K, C>, C>) -> R,
    ) -> R {
        let (out, removed, added) = self.inner.handle.with_scheduler(|s| {
            let before = s.queue().len();
            let out = f(s);
            let after = s.queue().len();
            // `f` may have reconfigured the scheduler: whether it hands items back follows.
            // Set under the scheduler's lock, so no later push or pump misses it; a
            // configuration that no longer hands back still has its earlier returns
            // collected (the flag stays set while any are pending).
            self.inner.may_return.store(
                may_return(s.config()) || s.pending_returns() > 0,
                Ordering::Relaxed,
            );
            (
                out,
                before.saturating_sub(after),
                after.saturating_sub(before),
            )
        });
        // Tokens `f` removed (and answered when dropped) no longer wait; any it put back do.
        self.inner.waiting.fetch_add(added, Ordering::SeqCst);
        self.left_queue(removed);
        self.pump();
        out
    }
}

/// Whether a scheduler with `config` can hand queued items back on its own.
fn may_return(config: &SchedulerConfig) -> bool {
    config.queue_delay().is_some()
        || config.shed_policy() == fairshare::config::ShedPolicy::EvictOverShare
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
    ///
    /// # Memory ordering
    ///
    /// The pump is skipped when no token can be waiting. A pushing request raises `waiting`
    /// (SeqCst) before its push takes the scheduler's lock; this completion reads it
    /// (SeqCst) after its own lock is released. If the read sees 0, the push's lock came
    /// after this completion's (had it come before, the raise would happen-before the read
    /// through the lock), so the push's own pump sees the freed slot.
    pub(crate) fn release(&mut self, outcome: Outcome) {
        if let Some(lease) = self.lease.take() {
            let cost = lease.cost();
            lease.complete_with(cost, outcome);
            if let Some(core) = &self.core {
                if core.may_be_waiting() {
                    core.pump();
                }
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
