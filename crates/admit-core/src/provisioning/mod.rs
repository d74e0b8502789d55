//! Provisioning: from the set of Stripe events and the facts admit holds, to
//! billing states, held cases and the messages to send (DESIGN.md §2).
//!
//! [`derive`] is a pure function of its inputs. The shell calls it with every
//! event of the affected scope each time one arrives and writes the result;
//! because nothing here depends on arrival order, a late or repeated event
//! re-derives the same state it would have produced on time.

mod access;
mod binding;
mod cases;
mod changes;
mod checkpoint;
mod derive;
mod effects;
mod purchase;
mod resolution;
mod scenario;
mod scope;

use std::collections::{BTreeMap, BTreeSet};

pub use access::{Access, AccessReason, access, effective_plan, member_access};
pub use binding::Binding;
pub use cases::{Case, CaseDetails, CaseKind, CaseState, DuplicateAction, PaymentDetails};
pub use changes::{
    BillingChange, BindingKind, CaseChange, CaseTransition, Changes, EventState, LinkKind,
    OutboxChange, OutboxState, OutboxTransition, OutcomeChange, Stored, StoredCase,
    StoredCaseState, StoredEvent, changes, changes_in,
};
pub use checkpoint::{
    CHECKPOINT_AFTER, Checkpoint, CoveredEvent, Folded, NeedsHistory, ScopeEvents,
};
pub use derive::{Derivation, EventOutcome, OutcomeStatus, WorkspaceRequest, derive, derive_scope};
pub use effects::{Effect, MessageKind, Recipient};
pub use purchase::{
    Purchase, PurchaseKey, convergence_order, purchase_key, purchase_until, purchases,
};
pub use resolution::{
    ResolutionAction, ResolutionPlan, ResolutionRefused, case_actions, plan_resolution,
};
pub use scenario::Scenario;
pub use scope::{EventKeys, MAX_SCOPE_ROUNDS, ScopeKeys};

use crate::{Catalog, CustomerId, Directory, Email, PlanKey, WorkspaceId};

/// A checkout session admit created: the trusted binding of its session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutIntent {
    pub session_id: String,
    pub workspace: WorkspaceId,
    pub initiator: Email,
    pub purchaser: Option<Email>,
    pub plan: PlanKey,
}

/// What happens to a paid purchase that no rule binds to a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedPolicy {
    #[default]
    Hold,
    CreateWorkspace,
}

/// An operator's resolution that ends a held case without provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Refunded,
    Dismissed,
}

impl Settlement {
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Refunded => "mark_refunded",
            Settlement::Dismissed => "dismiss",
        }
    }
}

/// Everything besides the events that a derivation depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub directory: &'a Directory,
    pub catalog: &'a Catalog,
    /// Checkout intents by session id.
    pub intents: &'a BTreeMap<String, CheckoutIntent>,
    /// Customers bound outside the events (admit created them for a workspace,
    /// or an operator bound them).
    pub customer_bindings: &'a BTreeMap<CustomerId, WorkspaceId>,
    /// Purchases (subscription or session id) bound by an operator's
    /// resolution or by a workspace created for them.
    pub purchase_bindings: &'a BTreeMap<String, WorkspaceId>,
    /// Those of `purchase_bindings` that rule 3 found (the purchaser
    /// administers the workspace) and admit kept as facts: they stay S4.
    pub remembered_purchases: &'a BTreeSet<String>,
    /// Those of `purchase_bindings` bound to a workspace admit created for
    /// them (policy `create_workspace`): they stay S5.
    pub created_for_purchases: &'a BTreeSet<String>,
    /// Held cases an operator settled, by case key.
    pub settlements: &'a BTreeMap<String, Settlement>,
    pub policy: UnmatchedPolicy,
    /// How long `past_due` keeps the plan, in seconds.
    pub grace_period_secs: i64,
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod semantics;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
