//! admit's functional core: the domain types and the decisions.
//!
//! Nothing in this crate performs IO or reads a clock: time arrives as a
//! [`Timestamp`] argument, so every decision is a pure function of its inputs
//! (DESIGN.md §4). The shell (`admit`) owns sockets, files and the database.

pub mod actor;
pub mod backoff;
pub mod billing;
pub mod catalog;
pub mod directory;
pub mod email;
pub mod events;
pub mod ids;
pub mod provisioning;
pub mod readiness;
pub mod time;

pub use actor::{Actor, OperatorRole, SystemTask};
pub use backoff::Backoff;
pub use billing::{BillingState, SubscriptionStatus};
pub use catalog::{Catalog, CatalogError, Entitlements, Plan, PlanKey};
pub use directory::{
    Directory, LastOwner, MemberPlan, RemovalRefused, Role, Workspace, WorkspaceCustomers,
    checkout_customer, plan_invitation, plan_removal, plan_role_change, plan_workspace_removal,
};
pub use email::{Email, EmailError};
pub use events::{
    BillingEvent, ChargeRefund, Checkout, CheckoutMode, CustomerSnapshot, Dispute, EventKind,
    Invoice, PreviousAttributes, SubscriptionChange, SubscriptionSnapshot, scheduled_end,
};
pub use ids::{CustomerId, EventId, IdError, SubscriptionId, WorkspaceId};
pub use time::Timestamp;
