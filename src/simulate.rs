//! `admit simulate …`: sends correctly signed, realistic Stripe event
//! sequences to a running admit, the way `stripe trigger` does, so a team can
//! see provisioning work end to end without a Stripe account. The events
//! have the shapes of API 2025-09-30 and fresh ids every run.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Provenance};

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// admit's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub webhook_secret: String,
    pub app_token: String,
}

impl Target {
    /// The URL and secrets `serve` uses with the same configuration. A
    /// development secret generated at start-up cannot be known here.
    pub fn from_config(config: &Config, url: Option<String>) -> anyhow::Result<Self> {
        if config.webhook_secrets_provenance == Provenance::GeneratedForDevelopment {
            bail!(
                "no webhook secret is configured: set ADMIT_WEBHOOK_SECRETS (and ADMIT_APP_TOKEN) for both `admit serve` and `admit simulate`"
            );
        }
        let secret = config
            .webhook_secrets
            .first()
            .context("ADMIT_WEBHOOK_SECRETS is empty")?
            .expose_secret()
            .to_owned();
        Ok(Self {
            url: url.unwrap_or_else(|| format!("http://{}", config.listen)),
            webhook_secret: secret,
            app_token: config.app_token.expose_secret().to_owned(),
        })
    }
}

/// One simulated subscription: ids unique to this run.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub subscription: String,
    pub customer: String,
    pub session: String,
    pub payment_intent: String,
    pub email: String,
    pub workspace: Option<String>,
    pub price: String,
    pub t: i64,
    /// The subscription's own `created`, which Stripe never changes; `None`
    /// stamps each snapshot with `t`, as when only one moment is simulated.
    pub created: Option<i64>,
}

fn nonce() -> String {
    random_hex(9)
}

/// `bytes` random bytes as hex: unique ids and scratch secrets. A failure to
/// read the OS's randomness falls back to the clock's nanoseconds (only
/// uniqueness is needed where this is used).
pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    if getrandom::fill(&mut raw).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in raw.iter_mut().enumerate() {
            *b = nanos.to_le_bytes()[i % 16];
        }
    }
    hex::encode(raw)
}

fn unix_now() -> i64 {
    SystemClock.now().unix()
}

const DAY: i64 = 86_400;

/// The `User-Agent` of deliveries admit makes itself (`simulate`, the QA
/// gate): the readiness memo counts only Stripe's as verified deliveries.
pub const USER_AGENT: &str = concat!("admit-simulate/", env!("CARGO_PKG_VERSION"));

impl Purchase {
    pub fn new(email: &str, workspace: Option<&str>, price: &str) -> Self {
        let id = nonce();
        Self {
            subscription: format!("sub_sim{id}"),
            customer: format!("cus_sim{id}"),
            session: format!("cs_test_sim{id}"),
            payment_intent: format!("pi_sim{id}"),
            email: email.to_owned(),
            workspace: workspace.map(str::to_owned),
            price: price.to_owned(),
            // The checkout's events are stamped in the seconds just past, so
            // whatever is simulated next for it comes after them.
            t: unix_now() - 5,
            created: None,
        }
    }

    /// The purchase of a subscription admit already holds (for renewals,
    /// cancellations, disputes): its ids from the workspace's billing state.
    pub fn existing(billing: &Value, workspace: &str) -> anyhow::Result<Self> {
        let subscription = billing["stripe_subscription_id"].as_str().context(
            "the workspace has no subscription yet: run `admit simulate checkout` first",
        )?;
        let customer = billing["stripe_customer_id"]
            .as_str()
            .context("the workspace's billing state names no customer")?;
        let suffix = subscription.trim_start_matches("sub_");
        Ok(Self {
            subscription: subscription.to_owned(),
            customer: customer.to_owned(),
            session: String::new(),
            payment_intent: format!("pi_{suffix}"),
            email: billing["purchaser_email"]
                .as_str()
                .unwrap_or("billing@example.test")
                .to_owned(),
            workspace: Some(workspace.to_owned()),
            price: String::new(),
            t: unix_now(),
            created: None,
        })
    }

    fn metadata(&self) -> Value {
        match &self.workspace {
            Some(workspace) => json!({ "workspace_id": workspace }),
            None => json!({}),
        }
    }

    fn subscription_object(&self, status: &str, extra: &Value) -> Value {
        let mut object = json!({
            "id": self.subscription, "object": "subscription", "customer": self.customer,
            "status": status, "created": self.created.unwrap_or(self.t), "livemode": false,
            "cancel_at": null, "cancel_at_period_end": false,
            "metadata": self.metadata(),
            "items": {"object": "list", "data": [{
                "object": "subscription_item", "quantity": 1,
                "price": {"id": self.price, "object": "price"},
                "current_period_start": self.t, "current_period_end": self.t + 30 * DAY
            }]}
        });
        if let (Some(object), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                object.insert(key.clone(), value.clone());
            }
        }
        object
    }

    fn invoice(&self, suffix: &str, reason: &str, paid: bool) -> Value {
        json!({
            "id": format!("in_{}{suffix}", self.subscription.trim_start_matches("sub_")),
            "object": "invoice", "customer": self.customer, "customer_email": self.email,
            "billing_reason": reason, "status": if paid { "paid" } else { "open" },
            "parent": {"type": "subscription_details", "subscription_details": {
                "subscription": self.subscription, "metadata": self.metadata()}},
            "payments": {"object": "list", "data": [{"object": "invoice_payment",
                "payment": {"type": "payment_intent", "payment_intent": self.payment_intent}}]},
            "lines": {"object": "list", "data": [{"object": "line_item",
                "pricing": {"price_details": {"price": self.price}}}]}
        })
    }

    /// Checkout through activation, in Stripe's creation order.
    pub fn checkout(&self) -> Vec<Event> {
        let checkout = json!({
            "id": self.session, "object": "checkout.session", "mode": "subscription",
            "status": "complete", "payment_status": "paid", "customer": self.customer,
            "subscription": self.subscription, "customer_details": {"email": self.email},
            "metadata": self.metadata(), "livemode": false
        });
        vec![
            Event::new(
                "customer.subscription.created",
                self.t,
                self.subscription_object("incomplete", &json!({})),
                None,
            ),
            Event::new(
                "invoice.paid",
                self.t + 2,
                self.invoice("first", "subscription_create", true),
                None,
            ),
            Event::new(
                "customer.subscription.updated",
                self.t + 3,
                self.subscription_object("active", &json!({})),
                Some(json!({"status": "incomplete"})),
            ),
            Event::new("checkout.session.completed", self.t + 4, checkout, None),
        ]
    }

    /// A monthly renewal is paid at `t`: the period that ended at `t` is
    /// followed by one ending a month later. Advancing `t` a month between
    /// calls gives an unbroken chain of renewals.
    pub fn renewal(&self) -> Vec<Event> {
        let previous_start = self.t - 30 * DAY;
        // Since API 2025-03-31 the period lives on the item, and Stripe
        // names a changed list by its whole earlier value.
        let previous_item = json!({
            "object": "subscription_item", "quantity": 1,
            "price": {"id": self.price, "object": "price"},
            "current_period_start": previous_start, "current_period_end": self.t
        });
        vec![
            Event::new(
                "invoice.paid",
                self.t,
                self.invoice(&format!("r{}", self.t), "subscription_cycle", true),
                None,
            ),
            Event::new(
                "customer.subscription.updated",
                self.t + 1,
                self.subscription_object("active", &json!({})),
                Some(json!({"items": {"object": "list", "data": [previous_item]}})),
            ),
        ]
    }

    /// A renewal charge fails: the subscription goes `past_due`.
    pub fn renewal_failed(&self) -> Vec<Event> {
        vec![
            Event::new(
                "invoice.payment_failed",
                self.t,
                self.invoice(&format!("r{}", self.t), "subscription_cycle", false),
                None,
            ),
            Event::new(
                "customer.subscription.updated",
                self.t + 1,
                self.subscription_object("past_due", &json!({})),
                Some(json!({"status": "active"})),
            ),
        ]
    }

    /// Canceled now, or scheduled for the period end.
    pub fn cancel(&self, at_period_end: bool) -> Vec<Event> {
        if at_period_end {
            let end = self.t + 30 * DAY;
            vec![Event::new(
                "customer.subscription.updated",
                self.t,
                self.subscription_object("active", &json!({"cancel_at": end})),
                Some(json!({"cancel_at": null})),
            )]
        } else {
            vec![Event::new(
                "customer.subscription.deleted",
                self.t,
                self.subscription_object("canceled", &json!({"ended_at": self.t})),
                None,
            )]
        }
    }

    /// The first payment is disputed.
    pub fn dispute(&self) -> Vec<Event> {
        vec![Event::new(
            "charge.dispute.created",
            self.t,
            json!({"id": format!("du_{}", nonce()), "object": "dispute", "amount": 4900,
                   "currency": "usd", "charge": format!("ch_{}", nonce()),
                   "payment_intent": self.payment_intent, "reason": "fraudulent",
                   "status": "needs_response"}),
            None,
        )]
    }
}

/// An event that changes nothing: stored and ignored, proof that a signed
/// delivery gets through. In the mode admit provisions, so it counts as no
/// mode mismatch.
pub fn ping(livemode: bool) -> Event {
    let mut event = Event::new(
        "admit.ping",
        SystemClock.now().unix(),
        json!({"object": "ping"}),
        None,
    );
    if let Ok(mut body) = serde_json::from_slice::<Value>(&event.body) {
        body["livemode"] = json!(livemode);
        event.body = serde_json::to_vec(&body).unwrap_or_default();
    }
    event
}

/// One signed-to-be event body.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub body: Vec<u8>,
}

impl Event {
    fn new(event_type: &str, created: i64, object: Value, previous: Option<Value>) -> Self {
        let id = format!("evt_sim{}", nonce());
        let mut data = json!({ "object": object });
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        let body = json!({
            "id": id, "object": "event", "api_version": "2025-09-30.clover", "created": created,
            "livemode": false, "pending_webhooks": 1, "type": event_type, "data": data,
            "request": {"id": null, "idempotency_key": null}
        });
        Self {
            id,
            event_type: event_type.to_owned(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// How to deliver: each event `copies` times, shuffled or in creation order.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub copies: u32,
    pub shuffle: bool,
}

/// Sends the events signed like Stripe signs them; returns one line per delivery.
pub async fn send(
    target: &Target,
    events: &[Event],
    delivery: Delivery,
) -> anyhow::Result<Vec<String>> {
    let mut order: Vec<&Event> = Vec::new();
    for event in events {
        for _ in 0..delivery.copies.max(1) {
            order.push(event);
        }
    }
    if delivery.shuffle {
        // A Fisher–Yates shuffle on the OS's randomness.
        for i in (1..order.len()).rev() {
            let mut byte = [0u8; 8];
            let _ = getrandom::fill(&mut byte);
            let j = usize::try_from(u64::from_le_bytes(byte) % (i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut lines = Vec::new();
    for event in order {
        let now = SystemClock.now();
        let header = admit_stripe::signature::sign(&event.body, &target.webhook_secret, now);
        let response = client
            .post(format!("{}/webhooks/stripe", target.url))
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            // Marks the delivery as admit's own: readiness counts Stripe's only.
            .header("user-agent", USER_AGENT)
            .body(event.body.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach admit at {}", target.url))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("admit refused {} ({}): {answer}", event.id, status);
        }
        let duplicate = answer["duplicate"].as_bool().unwrap_or(false);
        lines.push(format!(
            "sent {:<40} {}  {}{}",
            event.event_type,
            event.id,
            status.as_u16(),
            if duplicate { " (duplicate)" } else { "" }
        ));
    }
    Ok(lines)
}

/// `GET` a `/v1` path with the app token.
pub async fn get(target: &Target, path: &str) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", target.url))
        .bearer_auth(&target.app_token)
        .send()
        .await
        .with_context(|| format!("cannot reach admit at {}", target.url))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("GET {path} answered {status}: {body}");
    }
    Ok(body)
}

/// Waits (bounded) until every event sent is processed, then returns access.
pub async fn wait_for_access(
    target: &Target,
    events: &[Event],
    workspace: &str,
    email: &str,
) -> anyhow::Result<Value> {
    for _ in 0..150 {
        let mut settled = true;
        for event in events {
            let stored = get(target, &format!("/v1/events/{}", event.id)).await?;
            if matches!(stored["status"].as_str(), Some("received") | None) {
                settled = false;
                break;
            }
        }
        if settled {
            return get(
                target,
                &format!("/v1/access?workspace_id={workspace}&email={email}"),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the events were not processed within 30 seconds (is the processor running?)")
}
