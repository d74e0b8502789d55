//! Stripe events as the core understands them: typed facts, parsed at the
//! edge (`admit-stripe`), with nothing Stripe-JSON-shaped left in them.

use crate::{CustomerId, Email, EventId, SubscriptionId, SubscriptionStatus, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingEvent {
    pub id: EventId,
    pub created: Timestamp,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    CheckoutCompleted(Checkout),
    CheckoutAsyncPaymentSucceeded(Checkout),
    CheckoutAsyncPaymentFailed(Checkout),
    Subscription {
        change: SubscriptionChange,
        subscription: SubscriptionSnapshot,
    },
    /// `invoice.paid` and its older twin `invoice.payment_succeeded`.
    InvoicePaid(Invoice),
    InvoicePaymentFailed(Invoice),
    /// `customer.created` / `customer.updated`.
    CustomerChanged(CustomerSnapshot),
    CustomerDeleted(CustomerSnapshot),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubscriptionChange {
    Created,
    Updated,
    Paused,
    Resumed,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutMode {
    Subscription,
    Payment,
    Setup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub session_id: String,
    pub mode: CheckoutMode,
    /// `payment_status` is `paid` or `no_payment_required`.
    pub paid: bool,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    /// `customer_details.email`, else `customer_email`.
    pub purchaser_email: Option<Email>,
    /// `metadata.workspace_id`: a trusted binding (only the merchant's key sets metadata).
    pub metadata_workspace: Option<String>,
    /// A hint only: Payment Links let anyone choose it.
    pub client_reference_id: Option<String>,
    /// `metadata.plan`, which admit sets on sessions it creates.
    pub metadata_plan: Option<String>,
    /// Price ids of the line items when the event carries them.
    pub price_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    pub id: SubscriptionId,
    pub customer: Option<CustomerId>,
    /// `None` for a status this version of admit does not know.
    pub status: Option<SubscriptionStatus>,
    pub price_ids: Vec<String>,
    pub current_period_end: Option<Timestamp>,
    pub cancel_at_period_end: bool,
    pub metadata_workspace: Option<String>,
    /// The subscription's own `created`, the same in every event about it.
    pub created: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub customer_email: Option<Email>,
    /// The subscription's `metadata.workspace_id` as the invoice carries it.
    pub metadata_workspace: Option<String>,
    pub billing_reason: Option<String>,
    pub price_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSnapshot {
    pub id: CustomerId,
    pub email: Option<Email>,
    pub metadata_workspace: Option<String>,
}

impl BillingEvent {
    /// The customer the event is about, when it names one.
    pub fn customer(&self) -> Option<&CustomerId> {
        match &self.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => c.customer.as_ref(),
            EventKind::Subscription { subscription, .. } => subscription.customer.as_ref(),
            EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => i.customer.as_ref(),
            EventKind::CustomerChanged(c) | EventKind::CustomerDeleted(c) => Some(&c.id),
        }
    }

    /// The subscription the event is about, when it names one.
    pub fn subscription(&self) -> Option<&SubscriptionId> {
        match &self.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => c.subscription.as_ref(),
            EventKind::Subscription { subscription, .. } => Some(&subscription.id),
            EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => {
                i.subscription.as_ref()
            }
            EventKind::CustomerChanged(_) | EventKind::CustomerDeleted(_) => None,
        }
    }

    /// `metadata.workspace_id` as the event carries it.
    pub fn metadata_workspace(&self) -> Option<&str> {
        match &self.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => c.metadata_workspace.as_deref(),
            EventKind::Subscription { subscription, .. } => {
                subscription.metadata_workspace.as_deref()
            }
            EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => {
                i.metadata_workspace.as_deref()
            }
            EventKind::CustomerChanged(c) | EventKind::CustomerDeleted(c) => {
                c.metadata_workspace.as_deref()
            }
        }
    }

    pub fn checkout(&self) -> Option<&Checkout> {
        match &self.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => Some(c),
            _ => None,
        }
    }
}
