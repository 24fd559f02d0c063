//! The fair queue core: per-tenant FIFOs served by weighted deficit round robin, under
//! [`Classes`] of work.
//!
//! [`FairQueue`] is the public type (also at the crate root); the tenant table, the item slab,
//! the DRR ring and the class pick are private implementation details.

pub(crate) mod batch;
mod class_pick;
mod classes;
mod deadlines;
mod dispatch;
mod fair_queue;
mod flows;
mod group_settings;
mod group_table;
mod groups;
mod items;
mod lifecycle;
mod over_share;
mod push;
mod ring;
mod slots;
mod tenant_queries;
mod tenants;
mod ticket;

pub use classes::{ClassCounters, ClassSpec, Classes, MAX_CLASSES};
pub(crate) use fair_queue::ClassCosts;
pub use fair_queue::{DefaultHashBuilder, Dispatch, FairQueue, QueueCounters, Ticket};
pub(crate) use items::NIL;
pub use lifecycle::Drain;
#[cfg(test)]
pub(crate) use tenants::Tenant;
pub use tenants::{Attachment, TenantCounters, TenantHandle};
