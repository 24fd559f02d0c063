//! The thread-safe handle: [`SharedScheduler`] wraps one [`Scheduler`](crate::Scheduler) in a
//! lock, adds blocking and waker-based waiting, leases for in-flight items, and shutdown. The
//! waiting rules live in `waiters.rs`.

mod handle;
mod waiters;

pub use handle::{Dispatching, Job, Lease, Popping, SharedScheduler, WaitError, Waiting};
