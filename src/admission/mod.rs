//! Admission control: one pipeline of checks in front of the fair queue.
//!
//! [`Scheduler`] is the public type; the GCRA, the queue-delay controller and the settings
//! live in their own files.

mod codel;
mod config;
mod gcra;
mod quota;
mod scheduler;

pub use config::{Capacity, QueueDelay, SchedulerConfig, ShedPolicy, TenantLimits};
pub use quota::Quota;
pub use scheduler::{AdmissionCounters, Permit, Scheduler};
