//! The ids an inbox row is found by, from the parsed event.

use admit_core::{BillingEvent, EventKind};
use admit_store::EventKeys;

pub fn event_keys(event: &BillingEvent) -> EventKeys {
    let email = match &event.kind {
        EventKind::CheckoutCompleted(c)
        | EventKind::CheckoutAsyncPaymentSucceeded(c)
        | EventKind::CheckoutAsyncPaymentFailed(c) => c.purchaser_email.clone(),
        EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => i.customer_email.clone(),
        EventKind::CustomerChanged(c) | EventKind::CustomerDeleted(c) => c.email.clone(),
        EventKind::Subscription { .. } | EventKind::Dispute(_) | EventKind::ChargeRefunded(_) => {
            None
        }
    };
    let (charge, payment_intent) = match &event.kind {
        EventKind::CheckoutCompleted(c)
        | EventKind::CheckoutAsyncPaymentSucceeded(c)
        | EventKind::CheckoutAsyncPaymentFailed(c) => (None, c.payment_intent.clone()),
        EventKind::InvoicePaid(i) | EventKind::InvoicePaymentFailed(i) => {
            (i.charge.clone(), i.payment_intent.clone())
        }
        EventKind::Dispute(d) => (d.charge.clone(), d.payment_intent.clone()),
        EventKind::ChargeRefunded(c) => (Some(c.id.clone()), c.payment_intent.clone()),
        EventKind::Subscription { .. }
        | EventKind::CustomerChanged(_)
        | EventKind::CustomerDeleted(_) => (None, None),
    };
    EventKeys {
        customer: event.customer().map(ToString::to_string),
        subscription: event.subscription().map(ToString::to_string),
        session: event.checkout().map(|c| c.session_id.clone()),
        workspace_hint: event.metadata_workspace().map(str::to_owned),
        purchaser_email: email.map(String::from),
        charge,
        payment_intent,
    }
}
