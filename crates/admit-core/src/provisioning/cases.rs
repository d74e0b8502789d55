//! Held cases: anything that needs a person.

use std::collections::BTreeSet;

use crate::{CustomerId, Email, EventId, SubscriptionId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseKind {
    MissingWorkspace,
    EmailMismatch,
    DuplicateSubscription,
    CustomerConflict,
    UnknownPrice,
}

impl CaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::MissingWorkspace => "missing_workspace",
            CaseKind::EmailMismatch => "email_mismatch",
            CaseKind::DuplicateSubscription => "duplicate_subscription",
            CaseKind::CustomerConflict => "customer_conflict",
            CaseKind::UnknownPrice => "unknown_price",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "missing_workspace" => CaseKind::MissingWorkspace,
            "email_mismatch" => CaseKind::EmailMismatch,
            "duplicate_subscription" => CaseKind::DuplicateSubscription,
            "customer_conflict" => CaseKind::CustomerConflict,
            "unknown_price" => CaseKind::UnknownPrice,
            _ => return None,
        })
    }

    /// The case key: what the case is about. One case per key, ever.
    pub fn key(self, purchase: &str) -> String {
        format!("{}:{purchase}", self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    Held,
    /// Informational cases are born resolved (`email_mismatch`).
    AutoResolved,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseDetails {
    /// Workspaces an operator may want to bind to.
    pub candidates: Vec<WorkspaceId>,
    /// `metadata.workspace_id` that names no workspace.
    pub requested_workspace: Option<String>,
    /// For `customer_conflict`: the workspace the customer is already bound to.
    pub bound_workspace: Option<WorkspaceId>,
    /// For `unknown_price`.
    pub unknown_prices: Vec<String>,
    /// For `duplicate_subscription`: the subscription that stays.
    pub canonical: Option<String>,
    /// A `client_reference_id` the purchase carried (a hint, never a binding).
    pub client_reference_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub key: String,
    pub kind: CaseKind,
    pub state: CaseState,
    pub workspace: Option<WorkspaceId>,
    pub purchaser_email: Option<Email>,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub checkout_session: Option<String>,
    pub events: BTreeSet<EventId>,
    pub details: CaseDetails,
}
