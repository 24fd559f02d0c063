//! The discrete-event simulation: a pool of workers takes the next job from the host's queue
//! whenever one is free, and each job holds its worker for the trace's service time.
//!
//! Time is simulated milliseconds. At each instant the simulation first completes the jobs
//! that finish then, then submits the jobs that arrive then (in trace order), then collects
//! what the scheduler handed back, then fills free workers (lowest-numbered first). So every
//! run is deterministic, and both policies see exactly the same jobs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use fairshare::{
    ClassId, ManualClock, Nanos, PushOptions, RejectReason, Scheduler, TenantHandle, Ticket,
};

use crate::setup::{Setup, assign_group};
use crate::trace::{Trace, TraceError};

/// What became of one trace row in one run.
///
/// Exhaustive on purpose: these are the only ways a row can leave the replay, and a match
/// over them is a conservation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Started on a worker at `start_ms` (so it waited `start_ms - arrival_ms`).
    Served {
        /// When a worker took it.
        start_ms: u64,
    },
    /// Refused at the door; the reason says which limit.
    Refused(RejectReason),
    /// Admitted, then handed back without running (evicted, expired or shed).
    Returned(RejectReason),
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The trace names a class the config lacks.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// One run's result: the fate of every row (in [`Trace::rows`] order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    fates: Vec<Fate>,
    /// When the last job finished, ms.
    finished_ms: u64,
}

impl Outcome {
    /// The fate of each row, in [`Trace::rows`] order.
    pub fn fates(&self) -> &[Fate] {
        &self.fates
    }

    /// When the last served job finished, ms.
    pub fn finished_ms(&self) -> u64 {
        self.finished_ms
    }

    /// Rows served.
    pub fn served(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f, Fate::Served { .. }))
            .count()
    }

    /// Rows refused at the door.
    pub fn refused(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f, Fate::Refused(_)))
            .count()
    }

    /// Rows admitted, then handed back.
    pub fn returned(&self) -> usize {
        self.fates
            .iter()
            .filter(|f| matches!(f, Fate::Returned(_)))
            .count()
    }
}

/// What the host puts between its producers and its workers.
trait Policy {
    /// Job `row` arrives; queue it or refuse it.
    fn submit(&mut self, row: usize, now: u64) -> Result<(), RejectReason>;
    /// The next job for a free worker, with its ticket if the policy tracks completions.
    fn next(&mut self, now: u64) -> Option<(usize, Option<Ticket>)>;
    /// A dispatched job finished.
    fn complete(&mut self, ticket: Ticket, cost: u32, now: u64);
    /// Jobs handed back since the last call.
    fn take_returned(&mut self, now: u64) -> Vec<(usize, RejectReason)>;
    /// Whether jobs are queued.
    fn has_queued(&self) -> bool;
}

/// The operator's setup today: one FIFO shared by every tenant and class.
#[derive(Debug, Default)]
struct Fifo(VecDeque<usize>);

impl Policy for Fifo {
    fn submit(&mut self, row: usize, _now: u64) -> Result<(), RejectReason> {
        self.0.push_back(row);
        Ok(())
    }
    fn next(&mut self, _now: u64) -> Option<(usize, Option<Ticket>)> {
        self.0.pop_front().map(|row| (row, None))
    }
    fn complete(&mut self, _ticket: Ticket, _cost: u32, _now: u64) {}
    fn take_returned(&mut self, _now: u64) -> Vec<(usize, RejectReason)> {
        Vec::new()
    }
    fn has_queued(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A `fairshare::Scheduler` built from the config, on simulated time.
struct Fair<'a> {
    trace: &'a Trace,
    scheduler: Scheduler<String, usize, ManualClock>,
    clock: ManualClock,
    /// The scheduler's handle of each trace tenant.
    handles: Vec<TenantHandle>,
    /// The config's class of each trace class.
    classes: Vec<ClassId>,
}

impl Fair<'_> {
    fn tick(&self, now: u64) {
        self.clock.set(Nanos::from_millis(now));
    }
}

impl Policy for Fair<'_> {
    fn submit(&mut self, row: usize, now: u64) -> Result<(), RejectReason> {
        self.tick(now);
        let r = &self.trace.rows()[row];
        let opts = PushOptions::new()
            .with_cost(r.cost)
            .with_class(self.classes[r.class as usize]);
        self.scheduler
            .try_push_to(self.handles[r.tenant as usize], row, opts)
            .map_err(|rejected| rejected.reason())
    }
    fn next(&mut self, now: u64) -> Option<(usize, Option<Ticket>)> {
        self.tick(now);
        self.scheduler.dispatch().map(|d| (d.item, Some(d.ticket)))
    }
    fn complete(&mut self, ticket: Ticket, cost: u32, now: u64) {
        self.tick(now);
        let known = self.scheduler.complete(ticket, cost);
        assert!(known, "every ticket is completed once");
    }
    fn take_returned(&mut self, now: u64) -> Vec<(usize, RejectReason)> {
        if self.scheduler.pending_returns() == 0 {
            return Vec::new();
        }
        self.tick(now);
        self.scheduler
            .take_returned()
            .into_iter()
            .map(|r| {
                let reason = r.reason();
                (r.into_inner(), reason)
            })
            .collect()
    }
    fn has_queued(&self) -> bool {
        !self.scheduler.queue().is_empty()
    }
}

/// The fate of every row, each set exactly once.
struct Ledger(Vec<Option<Fate>>);

impl Ledger {
    fn set(&mut self, row: usize, fate: Fate) {
        let slot = &mut self.0[row];
        assert!(
            slot.is_none(),
            "row {row} came back twice: {slot:?}, then {fate:?}"
        );
        *slot = Some(fate);
    }

    /// Every row's fate; panics if a row has none (it was lost).
    fn finish(self) -> Vec<Fate> {
        self.0
            .into_iter()
            .enumerate()
            .map(|(row, fate)| {
                fate.unwrap_or_else(|| {
                    panic!("row {row} was lost: never served, refused or returned")
                })
            })
            .collect()
    }
}

/// Replays `trace` through `policy` with `workers` workers until every row is served or
/// handed back.
fn run(trace: &Trace, workers: usize, mut policy: impl Policy) -> Outcome {
    let rows = trace.rows();
    let mut ledger = Ledger(vec![None; rows.len()]);
    // Free workers, lowest-numbered first; running jobs by (end time, worker).
    let mut free: BinaryHeap<Reverse<usize>> = (0..workers).map(Reverse).collect();
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut on_worker: Vec<Option<(usize, Option<Ticket>)>> = (0..workers).map(|_| None).collect();
    let mut next_row = 0;
    let mut now = rows.first().map_or(0, |r| r.arrival_ms);
    let mut finished_ms = now;
    loop {
        while let Some(&Reverse((end, w))) = running.peek() {
            if end > now {
                break;
            }
            running.pop();
            let (row, ticket) = on_worker[w].take().expect("a running worker has a job");
            if let Some(ticket) = ticket {
                policy.complete(ticket, rows[row].cost, now);
            }
            finished_ms = finished_ms.max(end);
            free.push(Reverse(w));
        }
        while let Some(r) = rows.get(next_row).filter(|r| r.arrival_ms <= now) {
            let _ = r;
            if let Err(reason) = policy.submit(next_row, now) {
                ledger.set(next_row, Fate::Refused(reason));
            }
            next_row += 1;
        }
        while let Some(&Reverse(w)) = free.peek() {
            let Some((row, ticket)) = policy.next(now) else {
                break;
            };
            free.pop();
            ledger.set(row, Fate::Served { start_ms: now });
            on_worker[w] = Some((row, ticket));
            running.push(Reverse((now + rows[row].service_ms, w)));
        }
        for (row, reason) in policy.take_returned(now) {
            ledger.set(row, Fate::Returned(reason));
        }
        let next_arrival = rows.get(next_row).map(|r| r.arrival_ms);
        let next_end = running.peek().map(|Reverse((end, _))| *end);
        match next_arrival.into_iter().chain(next_end).min() {
            Some(t) => now = t.max(now),
            None => {
                assert!(
                    !policy.has_queued(),
                    "jobs are queued, no worker is busy and none will arrive: the policy stalled"
                );
                break;
            }
        }
    }
    Outcome {
        fates: ledger.finish(),
        finished_ms,
    }
}

/// Replays `trace` on the operator's FIFO with `workers` workers.
pub fn replay_fifo(trace: &Trace, workers: usize) -> Outcome {
    run(trace, workers, Fifo::default())
}

/// Maps each trace class to the config's class of the same name.
///
/// # Errors
///
/// [`TraceError::UnknownClass`] with the first line naming a class the config lacks.
pub fn class_ids(trace: &Trace, setup: &Setup) -> Result<Vec<ClassId>, TraceError> {
    let classes = &setup.valid().classes;
    (0..trace.class_count() as u32)
        .map(|c| {
            let name = trace.class_name(c);
            classes.id(name).ok_or_else(|| TraceError::UnknownClass {
                line: trace.class_first_line(c),
                class: name.to_string(),
                known: classes
                    .iter()
                    .map(|(_, spec)| spec.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })
        .collect()
}

/// Replays `trace` on a `fairshare::Scheduler` built from `setup`'s config, with its workers.
/// Tenants go to their groups through [`assign_group`] before the first push.
///
/// Checks the scheduler's own books against the replay's at the end: its admitted count is
/// the rows served plus those handed back, its refusals are the rows refused, its hand-backs
/// the rows returned.
///
/// # Errors
///
/// [`ReplayError::Trace`] if a row names a class the config lacks.
pub fn replay_fairshare(trace: &Trace, setup: &Setup) -> Result<Outcome, ReplayError> {
    let classes = class_ids(trace, setup)?;
    let clock = ManualClock::new();
    clock.set(Nanos::from_millis(trace.rows()[0].arrival_ms));
    let mut scheduler = setup.scheduler(clock.clone());
    let mut handles = Vec::with_capacity(trace.tenant_count());
    for t in 0..trace.tenant_count() as u32 {
        let name = trace.tenant_name(t);
        assign_group(&mut scheduler, name, trace.group_name(trace.group_of(t)));
        handles.push(scheduler.tenant(name.to_string()));
    }
    let mut fair = Fair {
        trace,
        scheduler,
        clock,
        handles,
        classes,
    };
    let outcome = run(trace, setup.workers(), &mut fair);
    let books = fair.scheduler.counters();
    assert_eq!(
        books.total(),
        outcome.refused() as u64,
        "refusals: the scheduler's count and the replay's"
    );
    assert_eq!(
        books.returned(),
        outcome.returned() as u64,
        "hand-backs: the scheduler's count and the replay's"
    );
    assert_eq!(
        books.admitted,
        (outcome.served() + outcome.returned()) as u64,
        "admitted = served + handed back"
    );
    Ok(outcome)
}

impl<P: Policy> Policy for &mut P {
    fn submit(&mut self, row: usize, now: u64) -> Result<(), RejectReason> {
        (**self).submit(row, now)
    }
    fn next(&mut self, now: u64) -> Option<(usize, Option<Ticket>)> {
        (**self).next(now)
    }
    fn complete(&mut self, ticket: Ticket, cost: u32, now: u64) {
        (**self).complete(ticket, cost, now)
    }
    fn take_returned(&mut self, now: u64) -> Vec<(usize, RejectReason)> {
        (**self).take_returned(now)
    }
    fn has_queued(&self) -> bool {
        (**self).has_queued()
    }
}
