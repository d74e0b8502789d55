//! Stripe events as the core understands them: typed facts, parsed at the
//! edge (`admit-stripe`), with nothing Stripe-JSON-shaped left in them.

use serde::{Deserialize, Serialize};

use crate::{CustomerId, Email, EventId, SubscriptionId, SubscriptionStatus, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingEvent {
    pub id: EventId,
    pub created: Timestamp,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Any `charge.dispute.*`: the dispute as it stands now.
    Dispute(Dispute),
    /// `charge.refunded`: a charge refunded in part or in full.
    ChargeRefunded(ChargeRefund),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SubscriptionChange {
    Created,
    Updated,
    Paused,
    Resumed,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckoutMode {
    Subscription,
    Payment,
    Setup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub session_id: String,
    pub mode: CheckoutMode,
    /// `payment_status` is `paid` or `no_payment_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionId>,
    /// `customer_details.email`, else `customer_email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchaser_email: Option<Email>,
    /// `metadata.workspace_id`: a trusted binding (only the merchant's key sets metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_workspace: Option<String>,
    /// A hint only: Payment Links let anyone choose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_reference_id: Option<String>,
    /// `metadata.plan`, which admit sets on sessions it creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_plan: Option<String>,
    /// Price ids of the line items when the event carries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_ids: Vec<String>,
    /// The payment intent of a one-time payment, so that a dispute or a
    /// refund of it finds the purchase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSnapshot {
    pub id: SubscriptionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerId>,
    /// `None` for a status this version of admit does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SubscriptionStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_at_period_end: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_workspace: Option<String>,
    /// The subscription's own `created`, the same in every event about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// A scheduled end as a timestamp. Recent API versions use it for "cancel
    /// at period end" too, with `cancel_at_period_end: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_at: Option<Timestamp>,
    /// `data.previous_attributes` of an update: what the snapshot before it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousAttributes>,
}

impl SubscriptionSnapshot {
    /// When paid access is scheduled to end: `cancel_at` when set, else the
    /// period end when `cancel_at_period_end`.
    pub fn scheduled_end(&self) -> Option<Timestamp> {
        scheduled_end(
            self.cancel_at,
            self.cancel_at_period_end,
            self.current_period_end,
        )
    }
}

/// Status, `cancel_at_period_end`, `cancel_at`, period end, prices.
pub type ComparedFields<'a> = (
    Option<SubscriptionStatus>,
    bool,
    Option<Timestamp>,
    Option<Timestamp>,
    &'a [String],
);

/// The scheduled end of a subscription (DESIGN.md §2.3).
pub fn scheduled_end(
    cancel_at: Option<Timestamp>,
    cancel_at_period_end: bool,
    current_period_end: Option<Timestamp>,
) -> Option<Timestamp> {
    cancel_at.or(if cancel_at_period_end {
        current_period_end
    } else {
        None
    })
}

/// The fields of `data.previous_attributes` admit compares. `None` means the
/// key was absent (it did not change); `Some` holds the earlier value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousAttributes {
    /// `Some(None)`: the earlier status is one admit does not know.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub status: Option<Option<SubscriptionStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_at_period_end: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub cancel_at: Option<Option<Timestamp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_ids: Option<Vec<String>>,
}

/// `Some(None)` and `None` both become `null` with serde's defaults; the
/// stored event keeps them apart as `[null]` and an absent field.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(|inner| [inner]).serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Ok(Option::<[Option<T>; 1]>::deserialize(deserializer)?.map(|[inner]| inner))
    }
}

impl SubscriptionSnapshot {
    /// Whether `self` is the snapshot that `later` changed: `self` equals
    /// `later` with the fields its `previous_attributes` name set back to
    /// their earlier values (what an update does not name, it did not
    /// change). An update that names none of the compared fields (a new
    /// payment method, say) follows any snapshot equal to it. Without
    /// `previous_attributes` at all (a fetched object, an old endpoint) an
    /// update follows nothing: the chain says nothing about it.
    pub fn precedes(&self, later: &SubscriptionSnapshot) -> bool {
        let Some(previous) = &later.previous else {
            return false;
        };
        self.status == previous.status.unwrap_or(later.status)
            && self.cancel_at_period_end
                == previous
                    .cancel_at_period_end
                    .unwrap_or(later.cancel_at_period_end)
            && self.cancel_at == previous.cancel_at.unwrap_or(later.cancel_at)
            && self.current_period_end == previous.current_period_end.or(later.current_period_end)
            && previous.price_ids.as_ref().unwrap_or(&later.price_ids) == &self.price_ids
    }

    /// The fields the causal chain compares, for telling whether two
    /// orders end in the same state.
    pub fn compared(&self) -> ComparedFields<'_> {
        (
            self.status,
            self.cancel_at_period_end,
            self.cancel_at,
            self.current_period_end,
            &self.price_ids,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<Email>,
    /// The subscription's `metadata.workspace_id` as the invoice carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_ids: Vec<String>,
    /// The charge and payment intent that paid it, where the API version
    /// still writes them on the invoice (before 2025-03-31) or lists them
    /// in `payments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
}

/// A dispute as `charge.dispute.*` events carry it. It names its charge and
/// payment intent, never the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    /// As Stripe wrote it: `needs_response`, `under_review`, `won`, `lost`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl Dispute {
    /// Closed in the merchant's favour (or never a real dispute): nothing is owed.
    pub fn settled_for_merchant(&self) -> bool {
        matches!(
            self.status.as_deref(),
            Some("won" | "warning_closed" | "prevented")
        )
    }
}

/// A charge as `charge.refunded` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRefund {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerId>,
    /// The invoice it paid, where the API version still writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_refunded: Option<i64>,
    /// Stripe's `refunded`: the whole amount went back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refunded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl ChargeRefund {
    pub fn is_full(&self) -> bool {
        self.refunded
            || matches!((self.amount, self.amount_refunded), (Some(a), Some(r)) if a > 0 && r >= a)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    pub id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
            EventKind::ChargeRefunded(c) => c.customer.as_ref(),
            EventKind::Dispute(_) => None,
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
            EventKind::CustomerChanged(_)
            | EventKind::CustomerDeleted(_)
            | EventKind::Dispute(_)
            | EventKind::ChargeRefunded(_) => None,
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
            EventKind::Dispute(_) | EventKind::ChargeRefunded(_) => None,
        }
    }

    /// Charge and payment-intent ids the event names: how a dispute or a
    /// refund finds the purchase it is about.
    pub fn payment_refs(&self) -> Vec<&str> {
        let refs: [Option<&String>; 2] = match &self.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => [c.payment_intent.as_ref(), None],
            EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => {
                [i.charge.as_ref(), i.payment_intent.as_ref()]
            }
            EventKind::Dispute(d) => [d.charge.as_ref(), d.payment_intent.as_ref()],
            EventKind::ChargeRefunded(c) => [Some(&c.id), c.payment_intent.as_ref()],
            EventKind::Subscription { .. }
            | EventKind::CustomerChanged(_)
            | EventKind::CustomerDeleted(_) => [None, None],
        };
        refs.into_iter().flatten().map(String::as_str).collect()
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
