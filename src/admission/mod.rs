//! Admission control: one pipeline of checks in front of the fair queue.
//!
//! [`Scheduler`] is the public type. Its checks, the commit of an admitted push, dispatch
//! past expired and shed items, and the operators' calls each have a file; the queue-delay
//! controller and the flattened limits too. The settings live in [`config`](crate::config). Rate limiting itself is the `rate` module, below this one.

mod batch;
mod checks;
mod codel;
mod commit;
mod detection;
mod dispatch;
mod groups;
mod operators;
mod rules;
mod scheduler;
mod tenant_state;

pub use commit::Permit;
pub use scheduler::Scheduler;
