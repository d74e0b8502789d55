//! Purchases: the events of one subscription (or of one one-time checkout),
//! folded into what Stripe's final word on it is.
//!
//! The fold sorts by `(created, precedence, event id)` before it looks at
//! anything, so its result depends on the set of events, never on the order
//! they arrived in (DESIGN.md §2.3).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{
    BillingEvent, Checkout, CheckoutMode, CustomerId, Email, EventId, EventKind,
    SubscriptionChange, SubscriptionId, SubscriptionStatus, Timestamp,
};

/// What a purchase is keyed by: its subscription, or for a one-time payment
/// its checkout session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PurchaseKey {
    Subscription(SubscriptionId),
    Session(String),
}

impl PurchaseKey {
    pub fn as_str(&self) -> &str {
        match self {
            PurchaseKey::Subscription(id) => id.as_str(),
            PurchaseKey::Session(id) => id,
        }
    }
}

impl fmt::Display for PurchaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the events say about one purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub key: PurchaseKey,
    pub customer: Option<CustomerId>,
    pub subscription: Option<SubscriptionId>,
    pub session_ids: BTreeSet<String>,
    /// Status after the fold; `None` when no event said one yet.
    pub status: Option<SubscriptionStatus>,
    pub price_ids: Vec<String>,
    pub current_period_end: Option<Timestamp>,
    pub cancel_at_period_end: bool,
    /// `metadata.workspace_id` values seen, by source, in precedence order
    /// (checkout before subscription before invoice).
    pub metadata_workspaces: Vec<String>,
    pub metadata_plan: Option<String>,
    pub client_reference_ids: BTreeSet<String>,
    /// From checkout (`customer_details.email`), else the invoice's `customer_email`.
    pub purchaser_email: Option<Email>,
    /// When the purchase began: the subscription's own `created`, else its first event.
    pub started: Timestamp,
    /// When Stripe ended it (the terminal event's `created`).
    pub ended: Option<Timestamp>,
    /// Start of the current `past_due` stretch.
    pub past_due_since: Option<Timestamp>,
    /// Money has been collected or the subscription is running (or trialing).
    pub paid: bool,
    /// A one-time checkout whose delayed payment failed.
    pub payment_failed: bool,
    /// Invoices that failed and were not paid afterwards.
    pub unpaid_failed_invoices: BTreeSet<String>,
    pub events: BTreeSet<EventId>,
    /// The last event in convergence order: the one that "last changed" it.
    pub last_event: EventId,
}

/// Order within one second: the subscription exists before it is paid, a
/// failed attempt comes before the retry that succeeds, updates follow, and
/// deletion is last. (Event ids, the last tie-break, are random.)
fn precedence(kind: &EventKind) -> u8 {
    match kind {
        EventKind::Subscription {
            change: SubscriptionChange::Created,
            ..
        } => 0,
        EventKind::CustomerChanged(_) => 0,
        EventKind::CheckoutCompleted(_)
        | EventKind::CheckoutAsyncPaymentSucceeded(_)
        | EventKind::CheckoutAsyncPaymentFailed(_) => 1,
        EventKind::InvoicePaymentFailed(_) => 2,
        EventKind::InvoicePaid(_) => 3,
        EventKind::Subscription {
            change:
                SubscriptionChange::Updated | SubscriptionChange::Paused | SubscriptionChange::Resumed,
            ..
        } => 4,
        EventKind::Subscription {
            change: SubscriptionChange::Deleted,
            ..
        } => 5,
        EventKind::CustomerDeleted(_) => 6,
    }
}

/// The convergence order of DESIGN.md §2.3.
pub fn convergence_order(a: &BillingEvent, b: &BillingEvent) -> std::cmp::Ordering {
    (a.created, precedence(&a.kind), &a.id).cmp(&(b.created, precedence(&b.kind), &b.id))
}

/// The purchase an event belongs to, if any.
pub fn purchase_key(event: &BillingEvent) -> Option<PurchaseKey> {
    if let Some(subscription) = event.subscription() {
        return Some(PurchaseKey::Subscription(subscription.clone()));
    }
    match event.checkout() {
        Some(Checkout {
            mode: CheckoutMode::Payment | CheckoutMode::Subscription,
            session_id,
            ..
        }) => Some(PurchaseKey::Session(session_id.clone())),
        _ => None,
    }
}

/// Groups events into purchases and folds each. Duplicate event ids count once.
pub fn purchases(events: &[BillingEvent]) -> BTreeMap<PurchaseKey, Purchase> {
    let mut unique: BTreeMap<&EventId, &BillingEvent> = BTreeMap::new();
    for event in events {
        unique.entry(&event.id).or_insert(event);
    }
    let mut grouped: BTreeMap<PurchaseKey, Vec<&BillingEvent>> = BTreeMap::new();
    for event in unique.values() {
        if let Some(key) = purchase_key(event) {
            grouped.entry(key).or_default().push(event);
        }
    }
    grouped
        .into_iter()
        .filter_map(|(key, mut events)| {
            events.sort_by(|a, b| convergence_order(a, b));
            fold(key.clone(), &events).map(|p| (key, p))
        })
        .collect()
}

fn push_unique(list: &mut Vec<String>, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty())
        && !list.iter().any(|v| v == value)
    {
        list.push(value.to_owned());
    }
}

fn set_status(p: &mut Purchase, status: SubscriptionStatus, at: Timestamp) {
    if p.status.is_some_and(SubscriptionStatus::is_terminal) {
        return;
    }
    if status == SubscriptionStatus::PastDue {
        if p.status != Some(SubscriptionStatus::PastDue) {
            p.past_due_since = Some(at);
        }
    } else {
        p.past_due_since = None;
    }
    if status.is_terminal() {
        p.ended = Some(at);
    }
    if status.is_live() {
        p.paid = true;
    }
    p.status = Some(status);
}

fn fold(key: PurchaseKey, events: &[&BillingEvent]) -> Option<Purchase> {
    let first = events.first()?;
    let last = events.last()?;
    let mut p = Purchase {
        subscription: match &key {
            PurchaseKey::Subscription(id) => Some(id.clone()),
            PurchaseKey::Session(_) => None,
        },
        key,
        customer: None,
        session_ids: BTreeSet::new(),
        status: None,
        price_ids: Vec::new(),
        current_period_end: None,
        cancel_at_period_end: false,
        metadata_workspaces: Vec::new(),
        metadata_plan: None,
        client_reference_ids: BTreeSet::new(),
        purchaser_email: None,
        started: first.created,
        ended: None,
        past_due_since: None,
        paid: false,
        payment_failed: false,
        unpaid_failed_invoices: BTreeSet::new(),
        events: events.iter().map(|e| e.id.clone()).collect(),
        last_event: last.id.clone(),
    };
    let mut checkout_workspaces = Vec::new();
    let mut subscription_workspaces = Vec::new();
    let mut invoice_workspaces = Vec::new();
    let mut invoice_email = None;
    let mut paid_invoices = BTreeSet::new();
    for event in events {
        if p.customer.is_none() {
            p.customer = event.customer().cloned();
        }
        match &event.kind {
            EventKind::CheckoutCompleted(c)
            | EventKind::CheckoutAsyncPaymentSucceeded(c)
            | EventKind::CheckoutAsyncPaymentFailed(c) => {
                p.session_ids.insert(c.session_id.clone());
                push_unique(&mut checkout_workspaces, c.metadata_workspace.as_deref());
                if let Some(id) = &c.client_reference_id {
                    p.client_reference_ids.insert(id.clone());
                }
                if p.metadata_plan.is_none() {
                    p.metadata_plan.clone_from(&c.metadata_plan);
                }
                if p.purchaser_email.is_none() {
                    p.purchaser_email.clone_from(&c.purchaser_email);
                }
                if p.price_ids.is_empty() {
                    p.price_ids.clone_from(&c.price_ids);
                }
                let paid_now = match &event.kind {
                    EventKind::CheckoutCompleted(c) => c.paid,
                    EventKind::CheckoutAsyncPaymentSucceeded(_) => true,
                    _ => false,
                };
                if matches!(event.kind, EventKind::CheckoutAsyncPaymentFailed(_)) && !p.paid {
                    p.payment_failed = true;
                }
                if paid_now {
                    p.paid = true;
                    p.payment_failed = false;
                    if c.mode == CheckoutMode::Payment {
                        set_status(&mut p, SubscriptionStatus::Active, event.created);
                    } else if matches!(p.status, Some(SubscriptionStatus::Incomplete)) {
                        // A paid subscription checkout means the first invoice is paid.
                        set_status(&mut p, SubscriptionStatus::Active, event.created);
                    }
                }
            }
            EventKind::Subscription {
                change,
                subscription: s,
            } => {
                if let Some(created) = s.created {
                    p.started = created;
                }
                push_unique(
                    &mut subscription_workspaces,
                    s.metadata_workspace.as_deref(),
                );
                if !s.price_ids.is_empty() {
                    p.price_ids.clone_from(&s.price_ids);
                }
                if s.current_period_end.is_some() {
                    p.current_period_end = s.current_period_end;
                }
                if !p.status.is_some_and(SubscriptionStatus::is_terminal) {
                    p.cancel_at_period_end = s.cancel_at_period_end;
                }
                let status = match (change, s.status) {
                    (_, Some(status)) => Some(status),
                    (SubscriptionChange::Deleted, None) => Some(SubscriptionStatus::Canceled),
                    (_, None) => None,
                };
                if let Some(status) = status {
                    set_status(&mut p, status, event.created);
                }
            }
            EventKind::InvoicePaid(i) => {
                push_unique(&mut invoice_workspaces, i.metadata_workspace.as_deref());
                if invoice_email.is_none() {
                    invoice_email.clone_from(&i.customer_email);
                }
                if p.price_ids.is_empty() {
                    p.price_ids.clone_from(&i.price_ids);
                }
                paid_invoices.insert(i.id.clone());
                p.unpaid_failed_invoices.remove(&i.id);
                p.paid = true;
                if matches!(
                    p.status,
                    Some(
                        SubscriptionStatus::Incomplete
                            | SubscriptionStatus::PastDue
                            | SubscriptionStatus::Unpaid
                    )
                ) {
                    set_status(&mut p, SubscriptionStatus::Active, event.created);
                }
            }
            EventKind::InvoicePaymentFailed(i) => {
                push_unique(&mut invoice_workspaces, i.metadata_workspace.as_deref());
                if invoice_email.is_none() {
                    invoice_email.clone_from(&i.customer_email);
                }
                if !paid_invoices.contains(&i.id) {
                    p.unpaid_failed_invoices.insert(i.id.clone());
                }
                let first_invoice = i.billing_reason.as_deref() == Some("subscription_create");
                // A failure of an invoice that is already paid changes nothing: paid wins.
                let already_paid = paid_invoices.contains(&i.id);
                if p.status == Some(SubscriptionStatus::Active) && !first_invoice && !already_paid {
                    set_status(&mut p, SubscriptionStatus::PastDue, event.created);
                }
            }
            EventKind::CustomerChanged(_) | EventKind::CustomerDeleted(_) => {}
        }
    }
    if p.purchaser_email.is_none() {
        p.purchaser_email = invoice_email;
    }
    p.metadata_workspaces = checkout_workspaces;
    for w in subscription_workspaces
        .into_iter()
        .chain(invoice_workspaces)
    {
        push_unique(&mut p.metadata_workspaces, Some(&w));
    }
    Some(p)
}
