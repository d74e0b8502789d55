//! admit's functional core: the domain types every other crate speaks.
//!
//! Nothing in this crate performs IO or reads a clock: time arrives as a
//! [`Timestamp`] argument, so every decision is a pure function of its inputs
//! (DESIGN.md §4). The shell (`admit`) owns sockets, files and the database.

pub mod email;
pub mod ids;
pub mod time;

pub use email::{Email, EmailError};
pub use ids::{CustomerId, EventId, IdError, SubscriptionId, WorkspaceId};
pub use time::Timestamp;
