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
    /// A charge of the workspace's purchase is disputed (S17).
    PaymentDisputed,
    /// The workspace's latest paid invoice was refunded in full (S17).
    PaymentRefunded,
}

impl CaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::MissingWorkspace => "missing_workspace",
            CaseKind::EmailMismatch => "email_mismatch",
            CaseKind::DuplicateSubscription => "duplicate_subscription",
            CaseKind::CustomerConflict => "customer_conflict",
            CaseKind::UnknownPrice => "unknown_price",
            CaseKind::PaymentDisputed => "payment_disputed",
            CaseKind::PaymentRefunded => "payment_refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "missing_workspace" => CaseKind::MissingWorkspace,
            "email_mismatch" => CaseKind::EmailMismatch,
            "duplicate_subscription" => CaseKind::DuplicateSubscription,
            "customer_conflict" => CaseKind::CustomerConflict,
            "unknown_price" => CaseKind::UnknownPrice,
            "payment_disputed" => CaseKind::PaymentDisputed,
            "payment_refunded" => CaseKind::PaymentRefunded,
            _ => return None,
        })
    }

    pub const ALL: [CaseKind; 7] = [
        CaseKind::MissingWorkspace,
        CaseKind::EmailMismatch,
        CaseKind::DuplicateSubscription,
        CaseKind::CustomerConflict,
        CaseKind::UnknownPrice,
        CaseKind::PaymentDisputed,
        CaseKind::PaymentRefunded,
    ];

    /// What an operator may do about a case of this kind, in the order a
    /// console offers them. Money cases are settled at Stripe: support only
    /// records what it did.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            CaseKind::MissingWorkspace => &["bind", "invite_purchaser", "mark_refunded", "dismiss"],
            CaseKind::CustomerConflict => &["bind", "invite_purchaser", "mark_refunded", "dismiss"],
            CaseKind::EmailMismatch => &["invite_purchaser", "dismiss"],
            CaseKind::DuplicateSubscription | CaseKind::UnknownPrice => {
                &["invite_purchaser", "mark_refunded", "dismiss"]
            }
            CaseKind::PaymentDisputed | CaseKind::PaymentRefunded => &["mark_refunded", "dismiss"],
        }
    }

    /// The case key: what the case is about. One case per key, ever.
    pub fn key(self, purchase: &str) -> String {
        format!("{}:{purchase}", self.as_str())
    }
}

/// What support is asked to do about a `duplicate_subscription`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateAction {
    /// A second subscription in good standing: cancel and refund it (S8).
    RefundDuplicate,
    /// A lapsed (`past_due`, `unpaid`) or ending subscription beside the one
    /// that now holds the plan: cancel it so it never collects again (S15).
    CancelLapsed,
}

impl DuplicateAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateAction::RefundDuplicate => "refund_duplicate",
            DuplicateAction::CancelLapsed => "cancel_lapsed",
        }
    }
}

/// The money side of a `payment_disputed` / `payment_refunded` case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentDetails {
    pub dispute: Option<String>,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    /// The invoice (or one-time checkout session) the payment was for, when known.
    pub invoice: Option<String>,
    /// The dispute's status as Stripe last wrote it.
    pub status: Option<String>,
    pub reason: Option<String>,
    pub amount: Option<i64>,
    pub amount_refunded: Option<i64>,
    pub currency: Option<String>,
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
    /// For `duplicate_subscription`: what support should do with this one.
    pub action: Option<DuplicateAction>,
    /// For `payment_disputed` / `payment_refunded`.
    pub payment: Option<PaymentDetails>,
    /// A `client_reference_id` the purchase carried (a hint, never a binding).
    pub client_reference_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub key: String,
    pub kind: CaseKind,
    /// The row of the decision table that held it.
    pub scenario: super::Scenario,
    pub state: CaseState,
    pub workspace: Option<WorkspaceId>,
    pub purchaser_email: Option<Email>,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub checkout_session: Option<String>,
    pub events: BTreeSet<EventId>,
    pub details: CaseDetails,
}
