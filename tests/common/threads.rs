//! Helpers for the shared-handle tests: time limits for waits, a seeded xorshift `Rng`,
//! wakers that unpark a thread or count wake-ups, `block_on` and single polls of futures,
//! receiving a blocking call's result from a helper thread, and the producer / worker loops
//! of the many-thread conservation tests (items carry their producer, tenant and sequence).

use std::future::Future;
use std::pin::pin;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::SeqCst},
    mpsc,
};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use fairshare::{SharedScheduler, adaptive::Outcome, shared::WaitError};

/// Long enough that a wait ending on its own timeout would fail the test's own deadline.
pub(crate) const LONG: Duration = Duration::from_secs(30);
/// How long a test waits for something that must happen promptly.
pub(crate) const PROMPT: Duration = Duration::from_secs(5);
/// A head start for a thread that is about to block.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// SplitMix64: a tiny seeded generator, so every run makes the same choices.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Wakes a parked thread: the waker of [`block_on`].
pub(crate) struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The smallest executor: polls `fut` on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Runs `f` on a new thread and returns a receiver for its result.
pub(crate) fn spawn_recv<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> mpsc::Receiver<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[track_caller]
pub(crate) fn recv_prompt<R>(rx: &mpsc::Receiver<R>, what: &str) -> R {
    match rx.recv_timeout(PROMPT) {
        Ok(out) => out,
        Err(e) => panic!("{what}: no result within {PROMPT:?} ({e})"),
    }
}

pub(crate) type Shared<T> = SharedScheduler<u32, T>;

// ===== producers and workers of the many-thread tests =====

/// An item of the conservation test: which producer pushed it, for which tenant, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Item {
    pub(crate) producer: u32,
    pub(crate) tenant: u32,
    pub(crate) id: u64,
}

/// One item as a worker received it. `before`/`after` are readings of a global counter taken
/// just before the call that returned it and just after; the item left the scheduler in
/// between. `call` names the call (items of a batch share it), `pos` is the position in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) item: Item,
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) call: (u32, u64),
    pub(crate) pos: usize,
}

pub(crate) fn work(h: &Shared<Item>, worker: u32, seed: u64, clock: &AtomicU64) -> Vec<Received> {
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut calls = 0u64;
    let wait = Duration::from_millis(20);
    loop {
        calls += 1;
        let call = (worker, calls);
        // Release held leases before anything that blocks, so workers never wait on each
        // other's leases until a timeout.
        let mode = rng.range(0, 5);
        if mode <= 1 {
            for lease in held.drain(..) {
                drop(lease);
            }
        }
        let before = clock.fetch_add(1, SeqCst);
        let (items, leases, closed) = match mode {
            0 => match h.dispatch_timeout(wait) {
                Ok(job) => (vec![job.item], vec![job.lease], false),
                Err(WaitError::Timeout) => (vec![], vec![], false),
                Err(e) => (vec![], vec![], e == WaitError::Closed),
            },
            1 => match h.pop_timeout(wait) {
                Ok(item) => (vec![item], vec![], false),
                Err(WaitError::Timeout) => (vec![], vec![], false),
                Err(e) => (vec![], vec![], e == WaitError::Closed),
            },
            2 => (h.pop_batch(rng.range(1, 8) as usize), vec![], false),
            3 => {
                let jobs = h.dispatch_batch(rng.range(1, 5) as usize);
                let (items, leases): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.item, j.lease)).unzip();
                (items, leases, false)
            }
            4 => match h.try_dispatch() {
                Some(job) => (vec![job.item], vec![job.lease], false),
                None => (vec![], vec![], false),
            },
            _ => (h.try_pop().into_iter().collect(), vec![], false),
        };
        let after = clock.fetch_add(1, SeqCst);
        if closed {
            break;
        }
        let empty = items.is_empty();
        for (pos, item) in items.into_iter().enumerate() {
            got.push(Received {
                item,
                before,
                after,
                call,
                pos,
            });
        }
        for lease in leases {
            match rng.range(0, 3) {
                0 => lease.complete(rng.range(1, 6) as u32),
                1 => lease.complete_with(rng.range(1, 6) as u32, Outcome::Failure),
                2 => drop(lease),
                _ => held.push(lease),
            }
        }
        if held.len() > 2 {
            drop(held.remove(0));
        }
        if empty && mode >= 2 {
            if h.is_closed() {
                break;
            }
            thread::yield_now();
        }
    }
    drop(held);
    got
}
