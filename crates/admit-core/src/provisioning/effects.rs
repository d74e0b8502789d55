//! Messages to send, each with an idempotency key that names exactly one
//! message to one recipient about one thing. The outbox is unique on the key,
//! so deriving a message twice sends it once.

use super::cases::PaymentDetails;
use crate::{Email, PlanKey, Timestamp, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    Onboarding,
    BillingContactNotice,
    AccessDelayed,
    DuplicateCharge,
    PaymentFailed,
    Cancellation,
    SupportAlert,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Onboarding => "onboarding",
            MessageKind::BillingContactNotice => "billing_contact_notice",
            MessageKind::AccessDelayed => "access_delayed",
            MessageKind::DuplicateCharge => "duplicate_charge",
            MessageKind::PaymentFailed => "payment_failed",
            MessageKind::Cancellation => "cancellation",
            MessageKind::SupportAlert => "support_alert",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    Email(Email),
    /// The configured support address.
    Support,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub key: String,
    pub kind: MessageKind,
    pub recipient: Recipient,
    pub workspace: Option<WorkspaceId>,
    /// Subscription or session id the message is about.
    pub purchase: Option<String>,
    pub case_key: Option<String>,
    pub plan: Option<PlanKey>,
    /// For the billing-contact notice: who administers the workspace.
    pub administrators: Vec<Email>,
    /// The email the recipient signs in with (onboarding).
    pub sign_in_email: Option<Email>,
    pub grace_ends: Option<Timestamp>,
    pub access_ends: Option<Timestamp>,
    /// Who paid, for messages about a held case (support needs to know).
    pub purchaser_email: Option<Email>,
    /// A `payment_failed` about a checkout whose payment did not go through,
    /// rather than about a renewal.
    pub about_checkout: bool,
    /// For a support alert: which flavour of its case kind (`cancel_lapsed`
    /// for a lapsed duplicate, `plan_kept` for a plan change to an unknown price).
    pub variant: Option<&'static str>,
    /// For a support alert about a dispute or a refund.
    pub payment: Option<PaymentDetails>,
}

impl Effect {
    pub(crate) fn new(kind: MessageKind, recipient: Recipient, about: &str) -> Self {
        let who = match &recipient {
            Recipient::Email(email) => email.as_str().to_owned(),
            Recipient::Support => "support".to_owned(),
        };
        Self {
            key: format!("{}:{about}:{who}", kind.as_str()),
            kind,
            recipient,
            workspace: None,
            purchase: None,
            case_key: None,
            plan: None,
            administrators: Vec::new(),
            sign_in_email: None,
            grace_ends: None,
            access_ends: None,
            purchaser_email: None,
            about_checkout: false,
            variant: None,
            payment: None,
        }
    }
}
