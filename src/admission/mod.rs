//! Admission control: one pipeline of checks in front of the fair queue.
//!
//! [`Scheduler`] is the public type; the GCRA, the queue-delay controller and the settings
//! live in their own files.

mod checks;
mod codel;
mod commit;
mod config;
mod dispatch;
mod gcra;
mod operators;
mod quota;
mod scheduler;

pub use commit::Permit;
pub use config::{Capacity, QueueDelay, SchedulerConfig, ShedPolicy, TenantLimits};
pub use quota::Quota;
pub use scheduler::{AdmissionCounters, Scheduler};
