//! Subscription statuses and a workspace's billing state.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CustomerId, Email, EventId, PlanKey, SubscriptionId, Timestamp};

/// Stripe's subscription statuses (plus `active` for a paid one-time checkout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
}

impl SubscriptionStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
        }
    }

    /// Stripe never brings a subscription back from these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }

    /// The customer has paid (or is trialing) and the subscription is running.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four contract fields and the rest of a workspace's billing state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingState {
    pub subscription_status: Option<SubscriptionStatus>,
    pub subscription_plan: Option<PlanKey>,
    pub stripe_customer_id: Option<CustomerId>,
    pub stripe_subscription_id: Option<SubscriptionId>,
    pub current_period_end: Option<Timestamp>,
    pub cancel_at_period_end: bool,
    /// When paid access is scheduled to end (`cancel_at`, else the period
    /// end when `cancel_at_period_end`); `None` when nothing is scheduled.
    pub cancel_at: Option<Timestamp>,
    pub purchaser_email: Option<Email>,
    pub updated_by_event: Option<EventId>,
    /// Start of the current `past_due` stretch; the grace period counts from here.
    pub past_due_since: Option<Timestamp>,
}
