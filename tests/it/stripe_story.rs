//! Signed Stripe events of one subscription, shaped like what current
//! accounts send (API 2025-09-30): the purchase, invoices, updates.

use serde_json::{Value, json};

use crate::helpers::{PRIMARY_SECRET, TestApp, spawn_app};

/// A test app with `ws_acme01` owned by dana, with lee as an admin.
pub async fn acme() -> TestApp {
    let app = spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app.put_json(
        &format!("/v1/workspaces/{WS}/members/lee@acme.test"),
        &json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app
}

/// Posts each event signed and processes it as it arrives.
pub async fn deliver(app: &TestApp, events: &[Vec<u8>]) {
    for body in events {
        app.post_signed(body, PRIMARY_SECRET).await.expect(200);
        app.drain().await;
    }
}

pub const WS: &str = "ws_acme01";
pub const DAY: i64 = 86_400;
pub const T: i64 = 1_795_000_000;
pub const PRO: &str = "price_AdmitProMonthly01";

/// One Stripe account's view of one subscription, as events.
pub struct Sub {
    pub n: u32,
    pub id: String,
    pub customer: String,
    pub session: String,
    pub email: String,
    /// When it was bought.
    pub t: i64,
    /// `metadata.workspace_id` on the checkout, the subscription and its invoices.
    pub workspace: Option<String>,
}

impl Sub {
    pub fn new(n: u32, email: &str, t: i64) -> Self {
        Self {
            n,
            id: format!("sub_1Sem{n:04}B7WZ01zgkW"),
            customer: format!("cus_Sem{n:04}Dana"),
            session: format!("cs_test_a1Sem{n:04}B7WZ01zgkW"),
            email: email.to_owned(),
            t,
            workspace: Some(WS.to_owned()),
        }
    }

    fn metadata(&self) -> Value {
        match &self.workspace {
            Some(workspace) => json!({ "workspace_id": workspace }),
            None => json!({ "campaign": "spring" }),
        }
    }

    pub fn period_end(&self) -> i64 {
        self.t + 30 * DAY
    }

    /// A subscription object in the current shape (period on the items).
    pub fn object(&self, status: &str, price: &str, extra: Value) -> Value {
        let mut object = json!({
            "id": self.id, "object": "subscription", "customer": self.customer,
            "status": status, "created": self.t, "livemode": false,
            "cancel_at": null, "cancel_at_period_end": false, "canceled_at": null,
            "metadata": self.metadata(),
            "items": {"object": "list", "data": [{
                "id": format!("si_Sem{:04}", self.n), "object": "subscription_item",
                "price": {"id": price, "object": "price", "recurring": {"interval": "month"}},
                "quantity": 1, "current_period_start": self.t, "current_period_end": self.period_end()
            }]}
        });
        if let (Some(object), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                object.insert(key.clone(), value.clone());
            }
        }
        object
    }

    pub fn invoice(&self, id: &str, reason: &str, paid: bool, charge: &str) -> Value {
        json!({
            "id": id, "object": "invoice", "customer": self.customer, "customer_email": self.email,
            "billing_reason": reason, "status": if paid { "paid" } else { "open" }, "livemode": false,
            "amount_paid": if paid { 4900 } else { 0 }, "currency": "usd",
            "parent": {"type": "subscription_details", "subscription_details": {
                "subscription": self.id, "metadata": self.metadata()}},
            // An account that also lists the invoice's payments.
            "payments": {"object": "list", "data": [{"object": "invoice_payment",
                "payment": {"type": "payment_intent", "payment_intent": format!("pi_{charge}")}}]},
            "lines": {"object": "list", "data": [{"object": "line_item",
                "pricing": {"price_details": {"price": PRO}}}]}
        })
    }

    pub fn checkout(&self) -> Value {
        json!({
            "id": self.session, "object": "checkout.session", "mode": "subscription",
            "status": "complete", "payment_status": "paid", "customer": self.customer,
            "subscription": self.id, "customer_details": {"email": self.email},
            "client_reference_id": self.workspace, "metadata": self.metadata(), "livemode": false
        })
    }

    /// Checkout through activation, in Stripe's creation order.
    pub fn purchase(&self) -> Vec<Vec<u8>> {
        let n = self.n;
        vec![
            event(
                &format!("evt_1Sem{n}Created"),
                "customer.subscription.created",
                self.t,
                self.object("incomplete", PRO, json!({})),
                None,
            ),
            event(
                &format!("evt_1Sem{n}InvoicePaid"),
                "invoice.paid",
                self.t + 2,
                self.invoice(
                    &format!("in_Sem{n}First"),
                    "subscription_create",
                    true,
                    &format!("Sem{n}First"),
                ),
                None,
            ),
            event(
                &format!("evt_1Sem{n}Active"),
                "customer.subscription.updated",
                self.t + 3,
                self.object("active", PRO, json!({})),
                Some(json!({"status": "incomplete"})),
            ),
            event(
                &format!("evt_1Sem{n}Checkout"),
                "checkout.session.completed",
                self.t + 4,
                self.checkout(),
                None,
            ),
        ]
    }
}

pub fn event(
    id: &str,
    kind: &str,
    created: i64,
    object: Value,
    previous: Option<Value>,
) -> Vec<u8> {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-09-30.clover", "created": created,
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": data,
        "request": {"id": null, "idempotency_key": null}
    }))
    .expect("serialises")
}
