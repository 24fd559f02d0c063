//! # Implementation details
//!
//! Taking work out: pop and dispatch past expired and shed items, completion, the returned
//! items' outbox, and the pressure gauge fed on the way.

use super::scheduler::*;
use crate::clock::{Clock, Nanos};
use crate::error::{RejectReason, Rejected};
use crate::pressure::{PressureConfig, PressureLevel};
use crate::queue::{Dispatch, Ticket};
use crate::stats::{AdmissionCounters, ClassStats, Stats, TenantStats, WaitHistogram, WaitSummary};
use std::hash::{BuildHasher, Hash};

/// One tenant's refusals and waits, valid while its slot has `generation` (a slot reused by
/// another tenant starts from zero).
#[derive(Debug, Clone)]
pub(super) struct TenantDetail {
    pub(super) generation: u32,
    pub(super) admission: AdmissionCounters,
    pub(super) waits: WaitHistogram,
}

impl<K, T, C, S> Scheduler<K, T, C, S>
where
    K: Hash + Eq + Clone,
    C: Clock,
    S: BuildHasher,
{
    /// The detail of live tenant slot `idx`; fresh if the slot changed hands since it was
    /// last written. Only called with per-tenant detail on.
    #[inline(never)]
    pub(super) fn detail_mut(&mut self, idx: u32) -> &mut TenantDetail {
        let generation = self.queue.slot_handle(idx).generation;
        let i = idx as usize;
        if self.details.len() <= i {
            self.details.resize_with(i + 1, || None);
        }
        let d = self.details[i].get_or_insert_with(|| {
            Box::new(TenantDetail {
                generation,
                admission: AdmissionCounters::default(),
                waits: WaitHistogram::new(),
            })
        });
        if d.generation != generation {
            d.generation = generation;
            d.admission = AdmissionCounters::default();
            d.waits.clear();
        }
        d
    }

    /// Moves every item whose deadline passed to the outbox, counting it (per tenant too,
    /// with tenant detail on, for tenants still known).
    pub(super) fn expire(&mut self, now: Nanos) {
        let before = self.outbox.len();
        if self.config.tenant_detail() {
            let mut owners = Vec::new();
            self.queue
                .expire_due(now, &mut self.outbox, Some(&mut owners));
            for idx in owners {
                if self.queue.is_live(idx) {
                    self.detail_mut(idx).admission.expired += 1;
                }
            }
        } else {
            self.queue.expire_due(now, &mut self.outbox, None);
        }
        self.counters.expired += (self.outbox.len() - before) as u64;
        #[cfg(feature = "metrics")]
        crate::metrics::refused(
            &self.queue,
            RejectReason::DeadlineExpired { deadline: now },
            None,
            (self.outbox.len() - before) as u64,
        );
    }

    /// The next item in fair order, or `None`. Items whose deadline has passed are never
    /// returned (they wait in [`take_returned`](Self::take_returned)), nor are items the
    /// queue-delay target sheds.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.try_push("a", 1).unwrap();
    /// assert_eq!(s.pop(), Some(1));
    /// assert_eq!(s.pop(), None);
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.next(false).map(|(item, _)| item)
    }

    /// Like [`pop`](Self::pop), and tracks the item as in flight until its ticket is passed
    /// to [`complete`](Self::complete).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.try_push("a", 1).unwrap();
    /// let d = s.dispatch().unwrap();
    /// assert!(s.complete(d.ticket, 1));
    /// ```
    #[inline]
    pub fn dispatch(&mut self) -> Option<Dispatch<T>> {
        let (item, ticket) = self.next(true)?;
        Some(Dispatch {
            item,
            ticket: ticket?,
        })
    }

    #[inline]
    pub(super) fn next(&mut self, track: bool) -> Option<(T, Option<Ticket>)> {
        let now = self.now();
        self.next_at(track, now)
    }

    /// Pops (or with `track`, dispatches) at a time the caller read once for a whole batch.
    #[inline(always)]
    pub(crate) fn next_at(&mut self, track: bool, now: Nanos) -> Option<(T, Option<Ticket>)> {
        if self.queue.next_deadline().is_some_and(|d| d <= now) {
            self.expire(now);
        }
        loop {
            let p = self.queue.pop_inner(true, track)?;
            // Only a tenant with a standing queue (items left after this one in the same
            // class) feeds the queue-delay controller or is shed: a light tenant's lone item,
            // or a sign-in from an org with a page backlog, neither hides a flood's standing
            // queue nor is ever dropped for it.
            if let Some(codel) = &mut self.codel {
                let standing = self.queue.class_backlog(p.tenant, p.class) > 0;
                let sojourn = now.saturating_since(p.enqueued);
                if standing && codel.should_shed(now, sojourn, false) {
                    if self.config.tenant_detail() {
                        self.detail_mut(p.tenant).admission.shed += 1;
                    }
                    self.queue.count_removed(1);
                    self.queue.forget_if_idle(p.tenant);
                    self.outbox
                        .push(Rejected::new(p.item, RejectReason::QueueDelay { sojourn }));
                    self.counters.shed += 1;
                    #[cfg(feature = "metrics")]
                    crate::metrics::refused(
                        &self.queue,
                        RejectReason::QueueDelay { sojourn },
                        Some(crate::ClassId::new(p.class)),
                        1,
                    );
                    continue;
                }
            }
            let sojourn = now.saturating_since(p.enqueued);
            if self.config.tenant_detail() {
                // Before `finish_pop`, which may forget the tenant.
                self.detail_mut(p.tenant).waits.record(sojourn);
            }
            // Recorded before `finish_pop` too; a due poll (which may change settings) waits
            // until the pop is complete.
            let poll = self.detect_served(p.tenant, p.cost, now);
            let ticket = self.queue.finish_pop(p.tenant, p.class, p.cost, track);
            self.last_sojourn = sojourn;
            self.waits.record(sojourn);
            #[cfg(feature = "metrics")]
            crate::metrics::dispatched(&self.queue, p.class, sojourn);
            self.observe_pressure(now);
            if poll {
                self.poll_detector(now);
            }
            return Some((p.item, ticket));
        }
    }

    /// Feeds the pressure gauge the current load, if one is configured.
    #[inline]
    pub(super) fn observe_pressure(&mut self, now: Nanos) {
        if let Some(gauge) = &self.gauge {
            let load = self.load_permille(gauge.config(), now);
            if let Some(gauge) = &mut self.gauge {
                gauge.update(load);
            }
        }
    }

    /// The load the pressure gauge is fed at `now`.
    pub(super) fn load_permille(&self, config: &PressureConfig, now: Nanos) -> u32 {
        // The delay signal: nothing waits in an empty queue; otherwise the longer of the
        // last dispatched item's wait and the age of the item at the front of the ring, so
        // stalled workers show up as growing delay.
        let delay = if self.queue.is_empty() {
            Nanos::ZERO
        } else {
            let front_age = self
                .queue
                .front_enqueued()
                .map_or(Nanos::ZERO, |t| now.saturating_since(t));
            self.last_sojourn.max(front_age)
        };
        config.load_permille(self.queue.len() as u64, self.queue.queued_cost(), delay)
    }

    /// The current pressure level (always `Normal` without a
    /// [`PressureConfig`](crate::pressure::PressureConfig)): the level the current load gives
    /// from the gauge's state. The gauge is fed on every admission and dispatch with the queued
    /// items, the queued cost and the queueing delay (zero when nothing is queued; otherwise
    /// the longer of the last dispatched item's wait and the age of the oldest item of the
    /// tenant served next); hysteresis keeps it from flapping. This query moves nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Scheduler, SchedulerConfig};
    /// use fairshare::pressure::{PressureConfig, PressureLevel};
    /// let cfg = SchedulerConfig::new().with_pressure(Some(PressureConfig::new().with_max_items(10)));
    /// let mut s: Scheduler<u32, u32> = Scheduler::new(cfg);
    /// for i in 0..9 { s.try_push(i, i).unwrap(); }
    /// assert_eq!(s.pressure(), PressureLevel::Shedding); // 900 per mille
    /// ```
    pub fn pressure(&self) -> PressureLevel {
        let now = self.peek_now();
        self.gauge.as_ref().map_or(PressureLevel::Normal, |gauge| {
            gauge.peek(self.load_permille(gauge.config(), now))
        })
    }

    /// A snapshot of totals, admission outcomes by reason, waiting times, every class and
    /// every known tenant (in slot order: deterministic, not hash order). With per-tenant
    /// detail on ([`SchedulerConfig::with_tenant_detail`](crate::SchedulerConfig::with_tenant_detail)), each tenant's line also has its
    /// refusals by reason and its waiting-time percentiles. O(known tenants + classes).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, Scheduler, SchedulerConfig};
    /// let mut s: Scheduler<&str, u8> = Scheduler::new(SchedulerConfig::new().with_tenant_detail(true));
    /// s.try_push("a", 1).unwrap();
    /// s.block("b", BlockReason::Abuse);
    /// let _ = s.try_push("b", 2).unwrap_err();
    /// s.pop();
    /// let stats = s.stats();
    /// assert_eq!((stats.queue.dispatched, stats.admission.blocked), (1, 1));
    /// assert_eq!(stats.classes[0].counters.dispatched, 1);
    /// assert_eq!(stats.tenants.len(), 1); // "a" was forgotten once idle; "b" stays blocked
    /// assert_eq!(stats.tenants[0].admission.unwrap().blocked, 1);
    /// ```
    pub fn stats(&self) -> Stats<K> {
        let at = self.peek_now();
        let pressure = self.pressure();
        let detail = self.config.tenant_detail();
        let details = &self.details;
        let tenants = self
            .queue
            .slots()
            .map(|(idx, key, t)| {
                let d = details
                    .get(idx as usize)
                    .and_then(|d| d.as_deref())
                    .filter(|d| d.generation == t.generation);
                TenantStats {
                    key: key.clone(),
                    queued: u64::from(t.len),
                    queued_cost: t.queued_cost,
                    in_flight: t.in_flight,
                    counters: self.queue.slot_counters(idx),
                    admission: detail
                        .then(|| d.map_or_else(AdmissionCounters::default, |d| d.admission)),
                    wait: detail.then(|| {
                        d.map_or_else(WaitSummary::default, |d| WaitSummary::from(&d.waits))
                    }),
                }
            })
            .collect();
        let classes = self
            .queue
            .classes()
            .iter()
            .map(|(id, spec)| ClassStats {
                name: spec.name().to_string(),
                queued: self.queue.class_len(id) as u64,
                queued_cost: self.queue.class_queued_cost(id),
                in_flight: self.queue.class_in_flight(id),
                counters: self.queue.class_counters(id).unwrap_or_default(),
            })
            .collect();
        Stats {
            at,
            queued: self.queue.len() as u64,
            queued_cost: self.queue.queued_cost(),
            in_flight: self.queue.total_in_flight(),
            pressure,
            queue: self.queue.counters(),
            admission: self.counters,
            wait: WaitSummary::from(&self.waits),
            classes,
            tenants,
            detector: self.detect.as_ref().map(|d| d.detector.stats(at)),
        }
    }

    /// Waiting times (admission to dispatch) of every dispatched item so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let s: fairshare::Scheduler<u8, u8> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// assert_eq!(s.wait_histogram().count(), 0);
    /// ```
    pub fn wait_histogram(&self) -> &WaitHistogram {
        &self.waits
    }

    /// Reports a dispatched item's completion and actual cost (see
    /// [`FairQueue::complete`](crate::FairQueue::complete)).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s: fairshare::Scheduler<&str, u32> =
    ///     fairshare::Scheduler::new(fairshare::SchedulerConfig::new());
    /// s.try_push("a", 1).unwrap();
    /// let d = s.dispatch().unwrap();
    /// assert!(s.complete(d.ticket, 3));
    /// ```
    pub fn complete(&mut self, ticket: Ticket, actual_cost: u32) -> bool {
        #[cfg(feature = "metrics")]
        let class = ticket.class();
        let done = self.queue.complete(ticket, actual_cost);
        #[cfg(feature = "metrics")]
        crate::metrics::completed(&self.queue, class, done);
        done
    }

    /// Hands back every item that left the queue without being dispatched, oldest first: each
    /// inside a [`Rejected`] whose reason says why. These are items evicted to make room
    /// ([`RejectReason::Evicted`]), items whose deadline passed
    /// ([`RejectReason::DeadlineExpired`]) and items the queue-delay target shed
    /// ([`RejectReason::QueueDelay`]). This is the one way such items come back; the host
    /// decides when to look, and nothing is dropped in the meantime.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ManualClock, Nanos, PushOptions, RejectReason, Scheduler, SchedulerConfig};
    /// let clock = ManualClock::new();
    /// let mut s: Scheduler<&str, u32, _> = Scheduler::with_clock(SchedulerConfig::new(), clock.clone());
    /// s.try_push_with("a", 1, PushOptions::new().with_deadline(Nanos::from_secs(1))).unwrap();
    /// clock.set(Nanos::from_secs(2));
    /// let returned = s.take_returned();
    /// assert_eq!(returned[0].reason(), RejectReason::DeadlineExpired { deadline: Nanos::from_secs(1) });
    /// assert_eq!(s.pop(), None);
    /// ```
    pub fn take_returned(&mut self) -> Vec<Rejected<T>> {
        let now = self.now();
        self.expire(now);
        std::mem::take(&mut self.outbox)
    }
}
