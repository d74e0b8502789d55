//! A verified event body read into the core's typed facts
//! ([`admit_core::BillingEvent`]), from current and legacy API shapes alike.
//!
//! Only the identity of the object an event is about is required: an event
//! of a handled type whose object has no usable id is refused, because the
//! core could not attribute it to anything. Every other field is optional,
//! and a null, a missing or an oddly typed one is read as absent.

use admit_core::{
    BillingEvent, ChargeRefund, Checkout, CheckoutMode, CustomerId, CustomerSnapshot, Dispute,
    Email, EventKind, Invoice, PreviousAttributes, SubscriptionChange, SubscriptionId,
    SubscriptionSnapshot, SubscriptionStatus, Timestamp,
};
use serde_json::Value;

use crate::subscription::{
    item_period_end, item_prices, list_items, metadata_string, non_empty, push_unique, reference_id,
};
use crate::{EventEnvelope, ParseError, SubscriptionView};

/// Reads a signature-verified event body into the core's typed facts.
/// Ok(None) for event types admit records but does not act on.
pub fn billing_event(body: &[u8]) -> Result<Option<BillingEvent>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
    let envelope = EventEnvelope::from_json(&value)?;
    billing_event_of(&envelope, value)
}

/// The envelope and the billing event of one body, which is parsed once:
/// an envelope that cannot be read fails the whole; a billing event that
/// cannot be read is the second result's error.
pub fn read_event(body: &[u8]) -> Result<(EventEnvelope, BillingResult), ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
    let envelope = EventEnvelope::from_json(&value)?;
    let billing = billing_event_of(&envelope, value);
    Ok((envelope, billing))
}

/// What [`billing_event`] says of a body.
pub type BillingResult = Result<Option<BillingEvent>, ParseError>;

fn billing_event_of(envelope: &EventEnvelope, event: Value) -> BillingResult {
    // A thin event carries no snapshot to act on; its type names are v2's.
    if envelope.thin {
        return Ok(None);
    }
    let Some(handled) = Handled::of(&envelope.event_type) else {
        return Ok(None);
    };
    let (object, previous) = data_parts(event)?;
    let malformed = |reason| ParseError::Malformed {
        event_type: envelope.event_type.clone(),
        reason,
    };
    let kind = match handled {
        Handled::Checkout(kind) => match checkout(&object).map_err(malformed)? {
            Some(session) => kind(session),
            None => return Ok(None),
        },
        Handled::Subscription(change) => EventKind::Subscription {
            change,
            subscription: subscription(&object, previous.as_ref()).map_err(malformed)?,
        },
        Handled::Invoice(kind) => kind(invoice(&object).map_err(malformed)?),
        Handled::Customer(kind) => kind(customer(&object).map_err(malformed)?),
        Handled::Dispute => EventKind::Dispute(dispute(&object).map_err(malformed)?),
        Handled::ChargeRefunded => EventKind::ChargeRefunded(charge(&object).map_err(malformed)?),
    };
    Ok(Some(BillingEvent {
        id: envelope.id.clone(),
        created: envelope.created,
        kind,
    }))
}

#[derive(Debug, Clone, Copy)]
enum Handled {
    Checkout(fn(Checkout) -> EventKind),
    Subscription(SubscriptionChange),
    Invoice(fn(Invoice) -> EventKind),
    Customer(fn(CustomerSnapshot) -> EventKind),
    Dispute,
    ChargeRefunded,
}

impl Handled {
    fn of(event_type: &str) -> Option<Self> {
        Some(match event_type {
            "checkout.session.completed" => Self::Checkout(EventKind::CheckoutCompleted),
            "checkout.session.async_payment_succeeded" => {
                Self::Checkout(EventKind::CheckoutAsyncPaymentSucceeded)
            }
            "checkout.session.async_payment_failed" => {
                Self::Checkout(EventKind::CheckoutAsyncPaymentFailed)
            }
            "customer.subscription.created" => Self::Subscription(SubscriptionChange::Created),
            "customer.subscription.updated" => Self::Subscription(SubscriptionChange::Updated),
            "customer.subscription.deleted" => Self::Subscription(SubscriptionChange::Deleted),
            "customer.subscription.paused" => Self::Subscription(SubscriptionChange::Paused),
            "customer.subscription.resumed" => Self::Subscription(SubscriptionChange::Resumed),
            // A reminder three days ahead, not a change: the subscription
            // events that follow carry whatever actually happens.
            "customer.subscription.trial_will_end" => return None,
            // One invoice can bring both: `invoice.paid` also covers an
            // invoice paid out of band, and endpoints set up before it existed
            // listen for `payment_succeeded` only.
            "invoice.paid" | "invoice.payment_succeeded" => Self::Invoice(EventKind::InvoicePaid),
            "invoice.payment_failed" => Self::Invoice(EventKind::InvoicePaymentFailed),
            "customer.created" | "customer.updated" => Self::Customer(EventKind::CustomerChanged),
            "customer.deleted" => Self::Customer(EventKind::CustomerDeleted),
            // Every step of a dispute carries the dispute as it stands.
            "charge.dispute.created"
            | "charge.dispute.updated"
            | "charge.dispute.closed"
            | "charge.dispute.funds_withdrawn"
            | "charge.dispute.funds_reinstated" => Self::Dispute,
            // Sent for partial refunds too; the charge says how much.
            "charge.refunded" => Self::ChargeRefunded,
            _ => return None,
        })
    }
}

/// `data.object` and `data.previous_attributes`, taken out of the event;
/// the envelope has already made sure the object is there.
fn data_parts(mut event: Value) -> Result<(Value, Option<Value>), ParseError> {
    let previous = event
        .pointer_mut("/data/previous_attributes")
        .map(Value::take)
        .filter(Value::is_object);
    let object = event
        .pointer_mut("/data/object")
        .map(Value::take)
        .ok_or(ParseError::Invalid("`data.object` is missing"))?;
    Ok((object, previous))
}

fn is_object(object: &Value, expected: &str) -> bool {
    object["object"].as_str() == Some(expected)
}

fn customer_id(value: &Value) -> Option<CustomerId> {
    reference_id(value).and_then(|id| CustomerId::parse(id).ok())
}

fn subscription_id(value: &Value) -> Option<SubscriptionId> {
    reference_id(value).and_then(|id| SubscriptionId::parse(id).ok())
}

/// An address that does not parse is no address: a purchaser who cannot be
/// written to is the same as none for the core.
fn email(value: &Value) -> Option<Email> {
    value.as_str().and_then(|raw| Email::parse(raw).ok())
}

fn list_data(list: &Value) -> &[Value] {
    list["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `Ok(None)` for a session mode newer than admit: acting on it as one of
/// the known modes could grant what was never bought.
fn checkout(object: &Value) -> Result<Option<Checkout>, &'static str> {
    if !is_object(object, "checkout.session") {
        return Err("`data.object` is not a checkout.session");
    }
    let session_id = non_empty(&object["id"]).ok_or("the session has no `id`")?;
    let mode = match object["mode"].as_str() {
        Some("subscription") => CheckoutMode::Subscription,
        Some("payment") => CheckoutMode::Payment,
        Some("setup") => CheckoutMode::Setup,
        _ => return Ok(None),
    };
    let mut price_ids = Vec::new();
    // `line_items` is only present when the session was fetched with it
    // expanded; webhooks normally omit it.
    for item in list_data(&object["line_items"]) {
        if let Some(price) = reference_id(&item["price"]) {
            push_unique(&mut price_ids, price);
        }
    }
    Ok(Some(Checkout {
        session_id: session_id.to_owned(),
        mode,
        paid: matches!(
            object["payment_status"].as_str(),
            Some("paid" | "no_payment_required")
        ),
        customer: customer_id(&object["customer"]),
        subscription: subscription_id(&object["subscription"]),
        // `customer_details` holds what the buyer typed on the page;
        // `customer_email` only what the merchant prefilled.
        purchaser_email: email(&object["customer_details"]["email"])
            .or_else(|| email(&object["customer_email"])),
        metadata_workspace: metadata_string(object, "workspace_id").map(str::to_owned),
        client_reference_id: non_empty(&object["client_reference_id"]).map(str::to_owned),
        metadata_plan: metadata_string(object, "plan").map(str::to_owned),
        price_ids,
        payment_intent: reference_id(&object["payment_intent"]).map(str::to_owned),
    }))
}

/// `data.previous_attributes` of a subscription update: only the keys that
/// changed, with their earlier values. A key that is present but null (a
/// `cancel_at` that was unset) is `Some(None)`.
fn previous_attributes(previous: &Value) -> PreviousAttributes {
    let present = |key: &str| previous.get(key).is_some();
    let items = previous.get("items").map(list_items);
    let price_ids = items
        .map(item_prices)
        .filter(|prices| !prices.is_empty())
        .or_else(|| reference_id(&previous["plan"]).map(|plan| vec![plan.to_owned()]));
    PreviousAttributes {
        status: present("status").then(|| {
            previous["status"]
                .as_str()
                .and_then(SubscriptionStatus::parse)
        }),
        cancel_at_period_end: previous["cancel_at_period_end"].as_bool(),
        cancel_at: present("cancel_at")
            .then(|| previous["cancel_at"].as_i64().map(Timestamp::from_unix)),
        current_period_end: previous["current_period_end"]
            .as_i64()
            .or_else(|| items.and_then(item_period_end))
            .map(Timestamp::from_unix),
        price_ids,
    }
}

fn subscription(
    object: &Value,
    previous: Option<&Value>,
) -> Result<SubscriptionSnapshot, &'static str> {
    let view = SubscriptionView::read(object)?;
    let id = SubscriptionId::parse(view.id)
        .map_err(|_| "the subscription's `id` is not a `sub_…` id")?;
    Ok(SubscriptionSnapshot {
        id,
        customer: view.customer.and_then(|c| CustomerId::parse(c).ok()),
        status: view.status.as_deref().and_then(SubscriptionStatus::parse),
        price_ids: view.price_ids,
        current_period_end: view.current_period_end.map(Timestamp::from_unix),
        cancel_at_period_end: view.cancel_at_period_end,
        metadata_workspace: view.metadata_workspace,
        created: view.created.map(Timestamp::from_unix),
        cancel_at: view.cancel_at.map(Timestamp::from_unix),
        previous: previous.map(previous_attributes),
    })
}

/// Invoices moved their subscription fields twice: top level (legacy and
/// until 2025-03-31), then `parent.subscription_details` (since 2025-03-31);
/// in between, `subscription_details.metadata` carried the subscription's
/// metadata. Each field is read from the newest place first.
fn invoice(object: &Value) -> Result<Invoice, &'static str> {
    if !is_object(object, "invoice") {
        return Err("`data.object` is not an invoice");
    }
    let id = non_empty(&object["id"]).ok_or("the invoice has no `id`")?;
    let details = &object["parent"]["subscription_details"];
    let lines = list_data(&object["lines"]);
    let metadata_workspace = metadata_string(details, "workspace_id")
        .or_else(|| metadata_string(&object["subscription_details"], "workspace_id"))
        // A subscription line carries its subscription's metadata.
        .or_else(|| {
            lines
                .iter()
                .find_map(|line| metadata_string(line, "workspace_id"))
        })
        .or_else(|| metadata_string(object, "workspace_id"));
    let mut price_ids = Vec::new();
    for line in lines {
        let price = reference_id(&line["pricing"]["price_details"]["price"])
            .or_else(|| reference_id(&line["price"]))
            .or_else(|| reference_id(&line["plan"]));
        if let Some(price) = price {
            push_unique(&mut price_ids, price);
        }
    }
    // Before 2025-03-31 the invoice named its charge and payment intent;
    // since then they are in `payments` (present only when expanded).
    let payment = list_data(&object["payments"])
        .iter()
        .map(|p| &p["payment"])
        .find(|p| !p.is_null());
    let charge = reference_id(&object["charge"])
        .or_else(|| payment.and_then(|p| reference_id(&p["charge"])));
    let payment_intent = reference_id(&object["payment_intent"])
        .or_else(|| payment.and_then(|p| reference_id(&p["payment_intent"])));
    Ok(Invoice {
        id: id.to_owned(),
        customer: customer_id(&object["customer"]),
        subscription: subscription_id(&object["subscription"])
            .or_else(|| subscription_id(&details["subscription"])),
        customer_email: email(&object["customer_email"]),
        metadata_workspace: metadata_workspace.map(str::to_owned),
        billing_reason: non_empty(&object["billing_reason"]).map(str::to_owned),
        price_ids,
        charge: charge.map(str::to_owned),
        payment_intent: payment_intent.map(str::to_owned),
    })
}

/// Any `charge.dispute.*` object. Stripe's own examples use both `dp_` and
/// `du_` ids, so only a non-empty id is required.
fn dispute(object: &Value) -> Result<Dispute, &'static str> {
    if !is_object(object, "dispute") {
        return Err("`data.object` is not a dispute");
    }
    let id = non_empty(&object["id"]).ok_or("the dispute has no `id`")?;
    Ok(Dispute {
        id: id.to_owned(),
        charge: reference_id(&object["charge"]).map(str::to_owned),
        payment_intent: reference_id(&object["payment_intent"]).map(str::to_owned),
        status: non_empty(&object["status"]).map(str::to_owned),
        reason: non_empty(&object["reason"]).map(str::to_owned),
        amount: object["amount"].as_i64(),
        currency: non_empty(&object["currency"]).map(str::to_owned),
    })
}

/// The charge of `charge.refunded`. `invoice` is gone from 2025-03-31 on.
fn charge(object: &Value) -> Result<ChargeRefund, &'static str> {
    if !is_object(object, "charge") {
        return Err("`data.object` is not a charge");
    }
    let id = non_empty(&object["id"]).ok_or("the charge has no `id`")?;
    Ok(ChargeRefund {
        id: id.to_owned(),
        customer: customer_id(&object["customer"]),
        invoice: reference_id(&object["invoice"]).map(str::to_owned),
        payment_intent: reference_id(&object["payment_intent"]).map(str::to_owned),
        amount: object["amount"].as_i64(),
        amount_refunded: object["amount_refunded"].as_i64(),
        refunded: object["refunded"].as_bool().unwrap_or(false),
        currency: non_empty(&object["currency"]).map(str::to_owned),
    })
}

/// `customer.deleted` may carry only `{id, object, deleted}`; the rest is
/// then absent, which is fine.
fn customer(object: &Value) -> Result<CustomerSnapshot, &'static str> {
    if !is_object(object, "customer") {
        return Err("`data.object` is not a customer");
    }
    let id = non_empty(&object["id"]).ok_or("the customer has no `id`")?;
    Ok(CustomerSnapshot {
        id: CustomerId::parse(id).map_err(|_| "the customer's `id` is not a `cus_…` id")?,
        email: email(&object["email"]),
        metadata_workspace: metadata_string(object, "workspace_id").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    // ---- the project's fixtures ------------------------------------------

    fn fixtures_root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stripe")
    }

    fn fixture(file: &str) -> Vec<u8> {
        std::fs::read(fixtures_root().join(file)).expect("fixture file")
    }

    fn parsed(file: &str) -> Option<BillingEvent> {
        billing_event(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn cid(id: &str) -> CustomerId {
        CustomerId::parse(id).expect("customer id")
    }

    fn cus(id: &str) -> Option<CustomerId> {
        Some(cid(id))
    }

    fn sub_id(id: &str) -> SubscriptionId {
        SubscriptionId::parse(id).expect("subscription id")
    }

    fn mail(raw: &str) -> Option<Email> {
        Some(Email::parse(raw).expect("email"))
    }

    fn at(unix: i64) -> Option<Timestamp> {
        Some(Timestamp::from_unix(unix))
    }

    const DANA: &str = "cus_AcmeDana0001";
    const DANA_EMAIL: &str = "dana@acme.test";
    const ACME_SUB: &str = "sub_AcmePro0001";
    const ACME_WS: &str = "ws_acme01";
    const MONTHLY: &str = "price_AdmitProMonthly01";
    const YEARLY: &str = "price_AdmitProYearly01";
    const FIRST_PERIOD_END: i64 = 1_797_592_000;
    const SECOND_PERIOD_END: i64 = 1_800_270_400;
    const YEAR_END: i64 = 1_829_567_200;
    const ACME_SUB_CREATED: i64 = 1_795_000_000;

    const BO: &str = "cus_LegacyBo01";
    const BO_EMAIL: &str = "bo@legacy.test";
    const BO_SUB: &str = "sub_LegacyBo01";
    const BO_WS: &str = "ws_legacy01";
    const BO_PLAN: &str = "plan_AdmitProMonthly01";
    const BO_PERIOD_END: i64 = 1_797_593_006;
    const BO_SUB_CREATED: i64 = 1_795_001_006;

    fn acme_sub(
        change: SubscriptionChange,
        status: SubscriptionStatus,
        price: &str,
        period_end: i64,
        cancel_at_period_end: bool,
    ) -> EventKind {
        EventKind::Subscription {
            change,
            subscription: SubscriptionSnapshot {
                id: sub_id(ACME_SUB),
                customer: cus(DANA),
                status: Some(status),
                price_ids: vec![price.into()],
                current_period_end: at(period_end),
                cancel_at_period_end,
                metadata_workspace: Some(ACME_WS.into()),
                created: at(ACME_SUB_CREATED),
                // The fixtures are of an account in classic billing mode,
                // where "at period end" also sets `cancel_at`.
                cancel_at: if cancel_at_period_end {
                    at(period_end)
                } else {
                    None
                },
                previous: None,
            },
        }
    }

    fn after(mut kind: EventKind, earlier: PreviousAttributes) -> EventKind {
        if let EventKind::Subscription { subscription, .. } = &mut kind {
            subscription.previous = Some(earlier);
        }
        kind
    }

    fn was_status(status: SubscriptionStatus) -> PreviousAttributes {
        PreviousAttributes {
            status: Some(Some(status)),
            ..PreviousAttributes::default()
        }
    }

    fn bo_sub(change: SubscriptionChange, status: SubscriptionStatus) -> EventKind {
        EventKind::Subscription {
            change,
            subscription: SubscriptionSnapshot {
                id: sub_id(BO_SUB),
                customer: cus(BO),
                status: Some(status),
                price_ids: vec![BO_PLAN.into()],
                current_period_end: at(BO_PERIOD_END),
                cancel_at_period_end: false,
                metadata_workspace: Some(BO_WS.into()),
                created: at(BO_SUB_CREATED),
                cancel_at: None,
                previous: None,
            },
        }
    }

    fn acme_invoice(id: &str, billing_reason: &str) -> Invoice {
        Invoice {
            id: id.into(),
            customer: cus(DANA),
            subscription: Some(sub_id(ACME_SUB)),
            customer_email: mail(DANA_EMAIL),
            metadata_workspace: Some(ACME_WS.into()),
            billing_reason: Some(billing_reason.into()),
            price_ids: vec![MONTHLY.into()],
            charge: None,
            payment_intent: None,
        }
    }

    /// localstripe puts the workspace nowhere on an invoice and never sets
    /// `billing_reason`.
    fn bo_invoice(id: &str, paid_by: &str) -> Invoice {
        Invoice {
            charge: Some(format!("ch_{paid_by}")),
            payment_intent: Some(format!("pi_{paid_by}")),
            id: id.into(),
            customer: cus(BO),
            subscription: Some(sub_id(BO_SUB)),
            customer_email: mail(BO_EMAIL),
            metadata_workspace: None,
            billing_reason: None,
            price_ids: vec![BO_PLAN.into()],
        }
    }

    fn seats_checkout(paid: bool) -> Checkout {
        Checkout {
            session_id: "cs_test_AcmeSeats0001".into(),
            mode: CheckoutMode::Payment,
            paid,
            customer: cus(DANA),
            subscription: None,
            purchaser_email: mail(DANA_EMAIL),
            metadata_workspace: Some(ACME_WS.into()),
            client_reference_id: None,
            metadata_plan: None,
            price_ids: vec![],
            payment_intent: Some("pi_AcmeSeats0001".into()),
        }
    }

    fn dana() -> CustomerSnapshot {
        CustomerSnapshot {
            id: cid(DANA),
            email: mail(DANA_EMAIL),
            metadata_workspace: Some(ACME_WS.into()),
        }
    }

    fn bo() -> CustomerSnapshot {
        CustomerSnapshot {
            id: cid(BO),
            email: mail(BO_EMAIL),
            metadata_workspace: Some(BO_WS.into()),
        }
    }

    /// What each fixture must yield: `Some(None)` for a recorded-only type,
    /// `None` for a file this table does not know (a new fixture needs a row).
    fn expected(file: &str) -> Option<Option<EventKind>> {
        use SubscriptionChange::{Created, Deleted, Paused, Resumed, Updated};
        use SubscriptionStatus::{Active, Canceled, Incomplete, PastDue};
        let kind = match file {
            "current/customer_created.json" | "current/customer_updated.json" => {
                EventKind::CustomerChanged(dana())
            }
            "current/customer_subscription_created.json" => {
                acme_sub(Created, Incomplete, MONTHLY, FIRST_PERIOD_END, false)
            }
            "current/invoice_paid.json" | "current/invoice_payment_succeeded.json" => {
                EventKind::InvoicePaid(acme_invoice("in_AcmePro0001", "subscription_create"))
            }
            "current/customer_subscription_updated_active.json" => after(
                acme_sub(Updated, Active, MONTHLY, FIRST_PERIOD_END, false),
                was_status(Incomplete),
            ),
            "current/checkout_session_completed.json" => EventKind::CheckoutCompleted(Checkout {
                session_id: "cs_test_AcmePro0001".into(),
                mode: CheckoutMode::Subscription,
                paid: true,
                customer: cus(DANA),
                subscription: Some(sub_id(ACME_SUB)),
                purchaser_email: mail(DANA_EMAIL),
                metadata_workspace: Some(ACME_WS.into()),
                client_reference_id: Some(ACME_WS.into()),
                metadata_plan: None,
                price_ids: vec![],
                payment_intent: None,
            }),
            "current/entitlements_active_entitlement_summary_updated.json"
            | "legacy/plan_created.json"
            | "legacy/invoice_created.json" => return Some(None),
            "current/checkout_session_completed_payment_unpaid.json" => {
                EventKind::CheckoutCompleted(seats_checkout(false))
            }
            "current/checkout_session_async_payment_succeeded.json" => {
                EventKind::CheckoutAsyncPaymentSucceeded(seats_checkout(true))
            }
            "current/checkout_session_async_payment_failed.json" => {
                EventKind::CheckoutAsyncPaymentFailed(seats_checkout(false))
            }
            "current/invoice_payment_failed.json" => EventKind::InvoicePaymentFailed(acme_invoice(
                "in_AcmePro0002",
                "subscription_cycle",
            )),
            "current/customer_subscription_updated_past_due.json" => after(
                acme_sub(Updated, PastDue, MONTHLY, SECOND_PERIOD_END, false),
                was_status(Active),
            ),
            "current/customer_subscription_updated_plan_change.json" => after(
                acme_sub(Updated, Active, YEARLY, YEAR_END, false),
                PreviousAttributes {
                    price_ids: Some(vec![MONTHLY.into()]),
                    current_period_end: at(SECOND_PERIOD_END),
                    ..PreviousAttributes::default()
                },
            ),
            "current/customer_subscription_paused.json" => {
                acme_sub(Paused, SubscriptionStatus::Paused, YEARLY, YEAR_END, false)
            }
            "current/customer_subscription_resumed.json" => {
                acme_sub(Resumed, Active, YEARLY, YEAR_END, false)
            }
            "current/customer_subscription_updated_cancel_at_period_end.json" => after(
                acme_sub(Updated, Active, YEARLY, YEAR_END, true),
                PreviousAttributes {
                    cancel_at: Some(None),
                    cancel_at_period_end: Some(false),
                    ..PreviousAttributes::default()
                },
            ),
            "current/customer_subscription_deleted.json" => {
                acme_sub(Deleted, Canceled, YEARLY, YEAR_END, true)
            }
            "current/customer_deleted.json" => EventKind::CustomerDeleted(dana()),
            "legacy/customer_created.json" | "legacy/customer_updated.json" => {
                EventKind::CustomerChanged(bo())
            }
            "legacy/invoice_payment_succeeded.json" => {
                EventKind::InvoicePaid(bo_invoice("in_LegacyBo0001", "LegacyBo0001"))
            }
            "legacy/customer_subscription_created.json" => bo_sub(Created, Active),
            "legacy/invoice_payment_failed.json" => {
                EventKind::InvoicePaymentFailed(bo_invoice("in_LegacyBo0002", "LegacyBo0002"))
            }
            "legacy/customer_subscription_deleted.json" => bo_sub(Deleted, Canceled),
            _ => return None,
        };
        Some(Some(kind))
    }

    #[derive(serde::Deserialize)]
    struct IndexEntry {
        file: String,
        id: String,
        created: i64,
    }

    #[test]
    fn every_fixture_yields_its_exact_facts() {
        let index = std::fs::read(fixtures_root().join("index.json")).expect("fixture index");
        let index: Vec<IndexEntry> = serde_json::from_slice(&index).expect("index entries");
        let mut on_disk: Vec<String> = ["current", "legacy"]
            .iter()
            .flat_map(|shape| {
                std::fs::read_dir(fixtures_root().join(shape))
                    .expect("fixture folder")
                    .map(move |entry| {
                        let name = entry.expect("folder entry").file_name();
                        format!("{shape}/{}", name.to_string_lossy())
                    })
            })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = index.iter().map(|e| e.file.clone()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "the index lists every fixture once");
        for entry in &index {
            let want = expected(&entry.file)
                .unwrap_or_else(|| panic!("{}: add the facts it must yield", entry.file));
            let got = parsed(&entry.file);
            match (got, want) {
                (None, None) => {}
                (Some(event), Some(kind)) => {
                    assert_eq!(event.id.as_str(), entry.id, "{}", entry.file);
                    assert_eq!(event.created.unix(), entry.created, "{}", entry.file);
                    assert_eq!(event.kind, kind, "{}", entry.file);
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", entry.file),
            }
        }
    }

    /// Ingress stores the billing event as JSON and the processor reads
    /// that, not the body: both must be the same facts, `previous_attributes`
    /// naming an unknown status or a cleared `cancel_at` included.
    #[test]
    fn every_billing_event_survives_its_stored_form() {
        let index = std::fs::read(fixtures_root().join("index.json")).expect("fixture index");
        let index: Vec<IndexEntry> = serde_json::from_slice(&index).expect("index entries");
        let mut events: Vec<BillingEvent> = index.iter().filter_map(|e| parsed(&e.file)).collect();
        let mut edge = parsed("current/customer_subscription_updated_active.json")
            .expect("a subscription update");
        if let EventKind::Subscription { subscription, .. } = &mut edge.kind {
            subscription.previous = Some(PreviousAttributes {
                status: Some(None),
                cancel_at: Some(None),
                ..PreviousAttributes::default()
            });
        }
        events.push(edge);
        assert!(events.len() > 10);
        for event in events {
            let stored = serde_json::to_string(&event).expect("to JSON");
            let back: BillingEvent = serde_json::from_str(&stored).expect("from JSON");
            assert_eq!(back, event, "{stored}");
        }
        // Absent and explicitly null fields read the same.
        let spelled_out = r#"{"id":"evt_1","created":1,"kind":{"InvoicePaid":{"id":"in_1",
            "customer":null,"subscription":null,"customer_email":null,"metadata_workspace":null,
            "billing_reason":null,"price_ids":[],"charge":null,"payment_intent":null}}}"#;
        let terse = r#"{"id":"evt_1","created":1,"kind":{"InvoicePaid":{"id":"in_1"}}}"#;
        assert_eq!(
            serde_json::from_str::<BillingEvent>(spelled_out).expect("spelled out"),
            serde_json::from_str::<BillingEvent>(terse).expect("terse")
        );
    }

    #[test]
    fn an_unpaid_payment_session_is_paid_once_the_async_payment_succeeds() {
        let unpaid = parsed("current/checkout_session_completed_payment_unpaid.json");
        let settled = parsed("current/checkout_session_async_payment_succeeded.json");
        let failed = parsed("current/checkout_session_async_payment_failed.json");
        let paid = |event: &Option<BillingEvent>| {
            event
                .as_ref()
                .and_then(BillingEvent::checkout)
                .map(|c| c.paid)
        };
        assert_eq!(paid(&unpaid), Some(false));
        assert_eq!(paid(&settled), Some(true));
        assert_eq!(paid(&failed), Some(false));
    }

    // ---- shapes the fixtures do not cover ----------------------------------

    fn event(event_type: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "evt_test1", "object": "event", "type": event_type, "created": 1_795_000_500,
            "data": {"object": object}
        }))
        .expect("serialises")
    }

    fn kind_of(event_type: &str, object: Value) -> Option<EventKind> {
        billing_event(&event(event_type, object))
            .unwrap_or_else(|e| panic!("{event_type}: {e}"))
            .map(|event| event.kind)
    }

    fn checkout_of(object: Value) -> Checkout {
        match kind_of("checkout.session.completed", object) {
            Some(EventKind::CheckoutCompleted(c)) => c,
            other => panic!("not a completed checkout: {other:?}"),
        }
    }

    fn snapshot_of(object: Value) -> SubscriptionSnapshot {
        match kind_of("customer.subscription.updated", object) {
            Some(EventKind::Subscription { subscription, .. }) => subscription,
            other => panic!("not a subscription event: {other:?}"),
        }
    }

    fn invoice_of(object: Value) -> Invoice {
        match kind_of("invoice.paid", object) {
            Some(EventKind::InvoicePaid(i)) => i,
            other => panic!("not a paid invoice: {other:?}"),
        }
    }

    fn updated_with_previous(object: Value, previous: Value) -> SubscriptionSnapshot {
        let body = serde_json::to_vec(&json!({
            "id": "evt_test2", "object": "event", "type": "customer.subscription.updated",
            "created": 1_795_000_500, "data": {"object": object, "previous_attributes": previous}
        }))
        .expect("serialises");
        match billing_event(&body).expect("parses").map(|e| e.kind) {
            Some(EventKind::Subscription { subscription, .. }) => subscription,
            other => panic!("not a subscription event: {other:?}"),
        }
    }

    #[test]
    fn cancel_at_is_read_in_flexible_and_classic_shapes() {
        // Flexible billing mode (2025-09-30 on): "at period end" is a
        // `cancel_at` with `cancel_at_period_end: false`.
        let flexible = snapshot_of(json!({
            "id": "sub_Flex01", "object": "subscription", "status": "active",
            "cancel_at": 1_797_592_000, "cancel_at_period_end": false,
            "items": {"data": [{"price": "price_a", "current_period_end": 1_797_592_000}]}
        }));
        assert_eq!(flexible.cancel_at, at(1_797_592_000));
        assert!(!flexible.cancel_at_period_end);
        assert_eq!(flexible.scheduled_end(), at(1_797_592_000));
        // A 2020-08-27 account that only sets the flag.
        let classic = snapshot_of(json!({
            "id": "sub_Classic01", "object": "subscription", "status": "active",
            "cancel_at_period_end": true, "current_period_end": 1_795_639_999,
            "plan": {"id": "plan_pro"}
        }));
        assert_eq!(classic.cancel_at, None);
        assert_eq!(classic.scheduled_end(), at(1_795_639_999));
        let unscheduled = snapshot_of(json!({
            "id": "sub_Flex01", "object": "subscription", "status": "active",
            "cancel_at": null, "cancel_at_period_end": false
        }));
        assert_eq!(unscheduled.scheduled_end(), None);
    }

    #[test]
    fn previous_attributes_keep_only_what_changed() {
        let object = json!({
            "id": "sub_Chain01", "object": "subscription", "status": "past_due",
            "cancel_at": null, "cancel_at_period_end": false,
            "items": {"data": [{"price": {"id": "price_b"}, "current_period_end": 1_800_000_000}]}
        });
        let status = updated_with_previous(object.clone(), json!({"status": "active"}));
        assert_eq!(
            status.previous,
            Some(PreviousAttributes {
                status: Some(Some(SubscriptionStatus::Active)),
                ..PreviousAttributes::default()
            })
        );
        let unscheduled = updated_with_previous(
            object.clone(),
            json!({"cancel_at": 1_797_592_000, "cancel_at_period_end": true, "canceled_at": 1_795_000_000}),
        );
        assert_eq!(
            unscheduled.previous,
            Some(PreviousAttributes {
                cancel_at: Some(at(1_797_592_000)),
                cancel_at_period_end: Some(true),
                ..PreviousAttributes::default()
            })
        );
        let repriced = updated_with_previous(
            object.clone(),
            json!({"items": {"data": [{"price": {"id": "price_a"}, "current_period_end": 1_797_592_000}]}}),
        );
        let earlier = repriced.previous.expect("previous attributes");
        assert_eq!(earlier.price_ids, Some(vec!["price_a".to_owned()]));
        assert_eq!(earlier.current_period_end, at(1_797_592_000));
        // An unknown earlier status is still a present key; junk is nothing.
        let odd = updated_with_previous(object.clone(), json!({"status": "brand_new"}));
        assert_eq!(odd.previous.and_then(|p| p.status), Some(None));
        assert_eq!(snapshot_of(object).previous, None);
        let junk = updated_with_previous(
            json!({"id": "sub_Chain01", "object": "subscription"}),
            json!("not an object"),
        );
        assert_eq!(junk.previous, None);
    }

    #[test]
    fn disputes_and_refunds_name_their_charge() {
        let dispute = kind_of(
            "charge.dispute.created",
            json!({"id": "du_1SfV", "object": "dispute", "amount": 4900, "currency": "usd",
                   "charge": "ch_AcmePro0002", "payment_intent": {"id": "pi_AcmePro0002"},
                   "reason": "fraudulent", "status": "needs_response",
                   "evidence_details": {"due_by": 1_796_000_000}}),
        );
        assert_eq!(
            dispute,
            Some(EventKind::Dispute(Dispute {
                id: "du_1SfV".into(),
                charge: Some("ch_AcmePro0002".into()),
                payment_intent: Some("pi_AcmePro0002".into()),
                status: Some("needs_response".into()),
                reason: Some("fraudulent".into()),
                amount: Some(4900),
                currency: Some("usd".into()),
            }))
        );
        let closed = kind_of(
            "charge.dispute.closed",
            json!({"id": "dp_1", "object": "dispute", "status": "won"}),
        );
        assert!(matches!(closed, Some(EventKind::Dispute(d)) if d.settled_for_merchant()));
        let refund = kind_of(
            "charge.refunded",
            json!({"id": "ch_AcmePro0002", "object": "charge", "amount": 4900,
                   "amount_refunded": 4900, "refunded": true, "customer": "cus_AcmeDana0001",
                   "payment_intent": "pi_AcmePro0002", "currency": "usd"}),
        );
        match refund {
            Some(EventKind::ChargeRefunded(c)) => {
                assert!(c.is_full());
                assert_eq!(c.customer, cus(DANA));
                assert_eq!(c.invoice, None);
            }
            other => panic!("not a refund: {other:?}"),
        }
        let partial = kind_of(
            "charge.refunded",
            json!({"id": "ch_1", "object": "charge", "amount": 4900, "amount_refunded": 900,
                   "refunded": false, "invoice": {"id": "in_1"}}),
        );
        assert!(
            matches!(partial, Some(EventKind::ChargeRefunded(c)) if !c.is_full() && c.invoice.as_deref() == Some("in_1"))
        );
        assert!(
            billing_event(&event(
                "charge.refunded",
                json!({"id": "dp_1", "object": "dispute"})
            ))
            .is_err()
        );
    }

    #[test]
    fn an_invoice_names_its_payment_in_either_place() {
        let legacy = invoice_of(json!({"id": "in_1", "object": "invoice",
            "charge": {"id": "ch_1", "object": "charge"}, "payment_intent": "pi_1"}));
        assert_eq!(
            (legacy.charge.as_deref(), legacy.payment_intent.as_deref()),
            (Some("ch_1"), Some("pi_1"))
        );
        let basil = invoice_of(json!({"id": "in_2", "object": "invoice",
            "payments": {"object": "list", "data": [{"id": "inpay_1", "object": "invoice_payment",
                "payment": {"type": "payment_intent", "payment_intent": "pi_2"}}]}}));
        assert_eq!(
            (basil.charge, basil.payment_intent.as_deref()),
            (None, Some("pi_2"))
        );
    }

    #[test]
    fn a_thin_event_is_recorded_not_acted_on() {
        let body = br#"{"id":"evt_test_65R9Ijk8Hq5S","object":"v2.core.event","type":"v1.billing.meter.no_meter_found","livemode":false,"created":"2026-11-30T17:04:11.372Z","related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}"#;
        assert_eq!(billing_event(body).expect("accepted"), None);
    }

    #[test]
    fn a_reference_may_be_an_id_or_an_expanded_object() {
        let as_string = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "subscription",
            "customer": "cus_X1", "subscription": "sub_X1"
        }));
        let expanded = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "subscription",
            "customer": {"id": "cus_X1", "object": "customer", "email": "x@y.test"},
            "subscription": {"id": "sub_X1", "object": "subscription", "status": "active"}
        }));
        assert_eq!(as_string.customer, cus("cus_X1"));
        assert_eq!(as_string, expanded);

        let sub = snapshot_of(json!({
            "id": "sub_X1", "object": "subscription", "status": "active",
            "customer": {"id": "cus_X1", "object": "customer"}
        }));
        assert_eq!(sub.customer, cus("cus_X1"));

        let invoice = invoice_of(json!({
            "id": "in_X1", "object": "invoice",
            "customer": {"id": "cus_X1", "object": "customer"},
            "subscription": {"id": "sub_X1", "object": "subscription"}
        }));
        assert_eq!(invoice.customer, cus("cus_X1"));
        assert_eq!(invoice.subscription, Some(sub_id("sub_X1")));

        let current = invoice_of(json!({
            "id": "in_X2", "object": "invoice",
            "parent": {"type": "subscription_details",
                "subscription_details": {"subscription": {"id": "sub_X2", "object": "subscription"}}},
            "lines": {"data": [{"pricing": {"price_details":
                {"price": {"id": "price_X2", "object": "price"}}}}]}
        }));
        assert_eq!(current.subscription, Some(sub_id("sub_X2")));
        assert_eq!(current.price_ids, ["price_X2"]);
    }

    #[test]
    fn ids_of_the_wrong_kind_are_no_reference() {
        let session = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "payment",
            "customer": "acct_1", "subscription": "in_1"
        }));
        assert_eq!(session.customer, None);
        assert_eq!(session.subscription, None);
    }

    #[test]
    fn an_unknown_subscription_status_parses_as_none() {
        let sub = snapshot_of(json!({
            "id": "sub_X1", "object": "subscription", "status": "hibernating",
            "customer": "cus_X1", "items": {"data": [{"price": {"id": "price_a"}}]}
        }));
        assert_eq!(sub.status, None);
        assert_eq!(sub.price_ids, ["price_a"]);
        assert_eq!(sub.customer, cus("cus_X1"));
    }

    #[test]
    fn the_period_ends_with_the_last_item_and_cancel_at_alone_is_not_cancel_at_period_end() {
        let sub = snapshot_of(json!({
            "id": "sub_X1", "object": "subscription", "status": "active",
            "cancel_at": 1_800_000_000, "cancel_at_period_end": false,
            "items": {"data": [
                {"price": "price_a", "plan": {"id": "price_a"}, "current_period_end": 1_800_000_000},
                {"price": "price_b", "current_period_end": 1_900_000_000}
            ]}
        }));
        assert_eq!(sub.current_period_end, at(1_900_000_000));
        assert_eq!(sub.price_ids, ["price_a", "price_b"]);
        assert!(!sub.cancel_at_period_end);
    }

    #[test]
    fn the_purchaser_email_is_normalised_and_falls_back_to_customer_email() {
        let typed = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "payment",
            "customer_details": {"email": "  Dana@Acme.TEST "}, "customer_email": "other@acme.test"
        }));
        assert_eq!(
            typed.purchaser_email.as_ref().map(Email::as_str),
            Some(DANA_EMAIL)
        );

        let prefilled = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "payment",
            "customer_details": null, "customer_email": "Bo@Legacy.Test"
        }));
        assert_eq!(prefilled.purchaser_email, mail(BO_EMAIL));

        let invalid = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "payment",
            "customer_details": {"email": "not an address"}, "customer_email": "nope"
        }));
        assert_eq!(invalid.purchaser_email, None);
    }

    #[test]
    fn checkout_reads_payment_status_metadata_and_expanded_line_items() {
        let session = checkout_of(json!({
            "id": "cs_1", "object": "checkout.session", "mode": "setup",
            "payment_status": "no_payment_required",
            "metadata": {"workspace_id": "ws_9", "plan": "pro"},
            "client_reference_id": "",
            "line_items": {"object": "list", "data": [
                {"object": "item", "price": {"id": "price_a", "object": "price"}},
                {"object": "item", "price": {"id": "price_a", "object": "price"}},
                {"object": "item", "price": "price_b"},
                {"object": "item", "price": null}
            ]}
        }));
        assert_eq!(session.mode, CheckoutMode::Setup);
        assert!(session.paid);
        assert_eq!(session.metadata_workspace.as_deref(), Some("ws_9"));
        assert_eq!(session.metadata_plan.as_deref(), Some("pro"));
        assert_eq!(session.client_reference_id, None);
        assert_eq!(session.price_ids, ["price_a", "price_b"]);
    }

    #[test]
    fn an_unknown_checkout_mode_is_not_acted_on() {
        for mode in [json!("subscription_and_more"), json!(null), json!(3)] {
            assert_eq!(
                kind_of(
                    "checkout.session.completed",
                    json!({"id": "cs_1", "object": "checkout.session", "mode": mode,
                           "payment_status": "paid"})
                ),
                None,
                "{mode}"
            );
        }
    }

    #[test]
    fn invoices_of_the_2022_to_2025_api_read_their_older_places() {
        let invoice = invoice_of(json!({
            "id": "in_X1", "object": "invoice", "customer": "cus_X1",
            "subscription": "sub_X1", "customer_email": "X@Y.test",
            "billing_reason": "subscription_update",
            "subscription_details": {"metadata": {"workspace_id": "ws_old"}},
            "metadata": {"workspace_id": "ws_invoice"},
            "lines": {"data": [
                {"price": {"id": "price_a"}, "plan": {"id": "price_a"}, "metadata": {}},
                {"price": {"id": "price_b"}, "metadata": {"workspace_id": "ws_line"}},
                {"price": {"id": "price_a"}}
            ]}
        }));
        assert_eq!(invoice.subscription, Some(sub_id("sub_X1")));
        assert_eq!(invoice.customer_email, mail("x@y.test"));
        assert_eq!(invoice.metadata_workspace.as_deref(), Some("ws_old"));
        assert_eq!(
            invoice.billing_reason.as_deref(),
            Some("subscription_update")
        );
        assert_eq!(invoice.price_ids, ["price_a", "price_b"]);
    }

    #[test]
    fn the_invoice_workspace_falls_back_to_lines_then_the_invoice() {
        let from_line = invoice_of(json!({
            "id": "in_X1", "object": "invoice",
            "parent": {"subscription_details": {"metadata": {}}},
            "lines": {"data": [{"metadata": {}}, {"metadata": {"workspace_id": "ws_line"}}]},
            "metadata": {"workspace_id": "ws_invoice"}
        }));
        assert_eq!(from_line.metadata_workspace.as_deref(), Some("ws_line"));

        let from_invoice = invoice_of(json!({
            "id": "in_X1", "object": "invoice", "parent": null, "lines": null,
            "metadata": {"workspace_id": "ws_invoice"}
        }));
        assert_eq!(
            from_invoice.metadata_workspace.as_deref(),
            Some("ws_invoice")
        );
        assert_eq!(from_invoice.subscription, None);
        assert!(from_invoice.price_ids.is_empty());
    }

    #[test]
    fn a_deleted_customer_stub_is_enough() {
        assert_eq!(
            kind_of(
                "customer.deleted",
                json!({"id": "cus_X1", "object": "customer", "deleted": true})
            ),
            Some(EventKind::CustomerDeleted(CustomerSnapshot {
                id: cid("cus_X1"),
                email: None,
                metadata_workspace: None,
            }))
        );
    }

    #[test]
    fn nulls_everywhere_never_fail() {
        let nulls = |id: &str, object: &str, keys: &[&str]| {
            let mut map = serde_json::Map::new();
            map.insert("id".into(), json!(id));
            map.insert("object".into(), json!(object));
            for key in keys {
                map.insert((*key).into(), Value::Null);
            }
            Value::Object(map)
        };
        let session = nulls(
            "cs_1",
            "checkout.session",
            &[
                "payment_status",
                "customer",
                "subscription",
                "customer_details",
                "customer_email",
                "metadata",
                "client_reference_id",
                "line_items",
            ],
        );
        let mut session_with_mode = session.clone();
        session_with_mode["mode"] = json!("payment");
        assert!(kind_of("checkout.session.completed", session_with_mode).is_some());
        let sub = nulls(
            "sub_1",
            "subscription",
            &[
                "customer",
                "status",
                "items",
                "plan",
                "current_period_end",
                "cancel_at_period_end",
                "metadata",
                "created",
            ],
        );
        assert!(kind_of("customer.subscription.deleted", sub).is_some());
        let invoice = nulls(
            "in_1",
            "invoice",
            &[
                "customer",
                "subscription",
                "parent",
                "subscription_details",
                "customer_email",
                "metadata",
                "billing_reason",
                "lines",
            ],
        );
        assert!(kind_of("invoice.payment_failed", invoice).is_some());
        let customer = nulls("cus_1", "customer", &["email", "metadata"]);
        assert!(kind_of("customer.updated", customer).is_some());
    }

    #[test]
    fn types_admit_does_not_act_on_are_none() {
        for event_type in [
            "customer.subscription.trial_will_end",
            "invoice.created",
            "invoice.finalized",
            "payment_intent.succeeded",
            "checkout.session.expired",
            "brand.new.thing",
        ] {
            // Even an object that would be malformed for a handled type.
            assert_eq!(
                kind_of(event_type, json!({"object": "whatever"})),
                None,
                "{event_type}"
            );
        }
    }

    #[test]
    fn malformed_known_events_are_refused_with_a_reason() {
        let cases = [
            (
                "customer.subscription.updated",
                json!({"object": "subscription", "status": "active"}),
                "has no `id`",
            ),
            (
                "customer.subscription.created",
                json!({"id": "si_1", "object": "subscription"}),
                "`sub_…`",
            ),
            (
                "customer.subscription.deleted",
                json!({"id": "in_1", "object": "invoice"}),
                "not a subscription",
            ),
            (
                "invoice.paid",
                json!({"object": "invoice", "id": null}),
                "has no `id`",
            ),
            (
                "invoice.payment_failed",
                json!({"id": "sub_1", "object": "subscription"}),
                "not an invoice",
            ),
            (
                "checkout.session.completed",
                json!({"object": "checkout.session", "mode": "payment"}),
                "has no `id`",
            ),
            (
                "checkout.session.async_payment_failed",
                json!({"id": "in_1", "object": "invoice"}),
                "not a checkout.session",
            ),
            (
                "customer.created",
                json!({"id": "acct_1", "object": "customer"}),
                "`cus_…`",
            ),
            (
                "customer.deleted",
                json!({"object": "customer", "deleted": true}),
                "has no `id`",
            ),
        ];
        for (event_type, object, reason) in cases {
            let err = billing_event(&event(event_type, object)).expect_err(event_type);
            let message = err.to_string();
            assert!(
                matches!(err, ParseError::Malformed { .. }),
                "{event_type}: {err:?}"
            );
            assert!(message.contains(event_type), "{message}");
            assert!(message.contains(reason), "{message}");
        }
    }

    #[test]
    fn envelope_errors_pass_through() {
        assert!(matches!(
            billing_event(b"nope"),
            Err(ParseError::NotJson(_))
        ));
        assert!(billing_event(br#"{"id":"cus_1","type":"invoice.paid","created":5,"data":{"object":{"object":"invoice","id":"in_1"}}}"#).is_err());
    }

    // ---- no input panics --------------------------------------------------

    /// A real object for each handled type, to overwrite fields of.
    const SAMPLES: &[(&str, &str)] = &[
        (
            "checkout.session.completed",
            "current/checkout_session_completed.json",
        ),
        (
            "checkout.session.async_payment_succeeded",
            "current/checkout_session_async_payment_succeeded.json",
        ),
        (
            "checkout.session.async_payment_failed",
            "current/checkout_session_async_payment_failed.json",
        ),
        (
            "customer.subscription.created",
            "legacy/customer_subscription_created.json",
        ),
        (
            "customer.subscription.updated",
            "current/customer_subscription_updated_active.json",
        ),
        (
            "customer.subscription.deleted",
            "current/customer_subscription_deleted.json",
        ),
        (
            "customer.subscription.paused",
            "current/customer_subscription_paused.json",
        ),
        (
            "customer.subscription.resumed",
            "current/customer_subscription_resumed.json",
        ),
        ("invoice.paid", "current/invoice_paid.json"),
        (
            "invoice.payment_succeeded",
            "legacy/invoice_payment_succeeded.json",
        ),
        (
            "invoice.payment_failed",
            "current/invoice_payment_failed.json",
        ),
        ("customer.created", "current/customer_created.json"),
        ("customer.updated", "legacy/customer_updated.json"),
        ("customer.deleted", "current/customer_deleted.json"),
    ];

    /// Field names the parser looks at, so that generated objects reach it.
    const KEYS: &[&str] = &[
        "id",
        "object",
        "customer",
        "subscription",
        "status",
        "items",
        "data",
        "price",
        "plan",
        "pricing",
        "price_details",
        "current_period_end",
        "cancel_at_period_end",
        "metadata",
        "workspace_id",
        "created",
        "mode",
        "payment_status",
        "customer_details",
        "email",
        "customer_email",
        "client_reference_id",
        "line_items",
        "lines",
        "parent",
        "subscription_details",
        "billing_reason",
    ];

    const WORDS: &[&str] = &[
        "subscription",
        "invoice",
        "customer",
        "checkout.session",
        "sub_1",
        "cus_1",
        "in_1",
        "cs_1",
        "price_1",
        "plan_1",
        "paid",
        "active",
        "payment",
        "setup",
        "a@b.test",
        "",
        "ws_1",
        "cus_",
        "sub_\u{e9}",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(WORDS).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(arb_key(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => "[a-z_]{0,6}",
        ]
    }

    proptest! {
        #[test]
        fn any_object_of_a_handled_type_never_panics(
            (event_type, _) in prop::sample::select(SAMPLES),
            object in arb_json(),
        ) {
            let _ = billing_event(&event(event_type, object));
        }

        #[test]
        fn any_field_of_a_real_object_never_panics(
            (event_type, file) in prop::sample::select(SAMPLES),
            fields in prop::collection::btree_map(arb_key(), arb_json(), 1..6),
        ) {
            let body: Value = serde_json::from_slice(&fixture(file)).expect("fixture JSON");
            let mut object = body["data"]["object"].clone();
            if let Value::Object(map) = &mut object {
                map.extend(fields);
            }
            let _ = billing_event(&event(event_type, object));
        }
    }
}
