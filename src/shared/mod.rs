//! The thread-safe handle: [`SharedScheduler`] wraps one [`Scheduler`](crate::Scheduler) in a
//! lock, adds blocking and waker-based waiting, leases for in-flight items, and shutdown. The
//! waiting rules live in `waiters.rs`.

mod batch;
mod blocking;
mod detect;
mod futures;
mod groups;
mod handle;
mod lease;
mod waiters;

pub use futures::{Dispatching, Popping, Waiting};
pub use handle::{SharedScheduler, WaitError};
pub use lease::{Job, Lease};
