//! The fair queue core: per-tenant FIFOs served by weighted deficit round robin, under
//! [`Classes`] of work.
//!
//! [`FairQueue`] is the public type (also at the crate root); the tenant table, the item slab,
//! the DRR ring and the class pick are private implementation details.

mod classes;
mod config;
mod fair_queue;
mod items;
mod over_share;
mod tenants;

pub use classes::{ClassCounters, ClassSpec, Classes, MAX_CLASSES};
pub use config::QueueConfig;
pub(crate) use fair_queue::ClassCosts;
pub use fair_queue::{DefaultHashBuilder, Dispatch, Drain, FairQueue, QueueCounters, Ticket};
pub(crate) use items::NIL;
pub(crate) use tenants::COOLING;
pub use tenants::{TenantCounters, TenantHandle};
