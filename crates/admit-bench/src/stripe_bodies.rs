//! Event bodies the size and shape Stripe sends (3–7 kB, every field of the
//! captured API version), because the database's size per event and the
//! cost of parsing depend on the body, and the compact simulator's ~0.7 kB
//! understate both. The project's captured fixtures are the templates; each
//! purchase gets its own ids, workspace, purchaser and timestamps, replaced
//! in the parsed JSON so that a value changes only where it is a value.

use std::sync::LazyLock;

use admit::simulate::Event;
use serde_json::Value;

use crate::traffic::{self, Rng};

const DAY: i64 = 86_400;
const MONTH: i64 = 30 * DAY;

/// What a fixture value stands for, so that each purchase can have its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Subscription,
    Customer,
    Session,
    FirstInvoice,
    RenewalInvoice,
    LaterInvoice,
    FirstLine,
    RenewalLine,
    Item,
    Card,
    LaterCard,
    PaymentIntent,
    CheckoutRequest,
    PortalRequest,
    IdempotencyKey,
    InvoiceNumber,
    FirstInvoiceToken,
    RenewalInvoiceToken,
    Workspace,
    Email,
    Price,
}

/// Every value of the fixtures that identifies Acme's purchase
/// (`tests/fixtures/stripe/index.json` tells the story). A fixture that
/// names one more is caught by the tests, which allow no other id through.
const FIXTURE: &[(&str, Name)] = &[
    ("sub_AcmePro0001", Name::Subscription),
    ("cus_AcmeDana0001", Name::Customer),
    ("cs_test_AcmePro0001", Name::Session),
    ("in_AcmePro0001", Name::FirstInvoice),
    ("in_AcmePro0002", Name::RenewalInvoice),
    ("in_AcmePro0003", Name::LaterInvoice),
    ("il_AcmePro0001L1", Name::FirstLine),
    ("il_AcmePro0002L1", Name::RenewalLine),
    ("si_AcmePro0001", Name::Item),
    ("pm_AcmeDanaCard01", Name::Card),
    ("pm_AcmeDanaCard02", Name::LaterCard),
    ("pi_AcmeSeats0001", Name::PaymentIntent),
    ("req_pUDSekyoxhXX8a", Name::CheckoutRequest),
    ("req_fHTghKuOIowa6h", Name::PortalRequest),
    ("d8261103-0136-5990-a8d8-cff8f256cf15", Name::IdempotencyKey),
    ("AC7E0D41", Name::InvoiceNumber),
    (
        "uBO5CTNu135sFctxOut3Z4mYwq7QPFKVLisPWErJ",
        Name::FirstInvoiceToken,
    ),
    (
        "Y3KBL7PQ6vUDFzqy8ZnjVle8aScgEokSN9KG87Hx",
        Name::RenewalInvoiceToken,
    ),
    ("ws_acme01", Name::Workspace),
    ("dana@acme.test", Name::Email),
    ("price_AdmitProMonthly01", Name::Price),
    ("price_AdmitProYearly01", Name::Price),
];

/// A string of a template that names the purchase.
#[derive(Debug)]
struct Leaf {
    pointer: String,
    text: String,
    /// Indexes into `FIXTURE` of the names it holds.
    names: Vec<usize>,
}

#[derive(Debug)]
struct Template {
    body: Value,
    leaves: Vec<Leaf>,
}

impl Template {
    fn new(body: Value) -> Self {
        let mut leaves = Vec::new();
        collect(&body, &mut String::new(), &mut leaves);
        Self { body, leaves }
    }

    /// A copy naming `names`' purchase, with `id` and `created`; `times`
    /// sets the object's own timestamps.
    fn render(
        &self,
        names: &[String],
        rng: &mut Rng,
        created: i64,
        times: impl FnOnce(&mut Value),
    ) -> Event {
        let mut body = self.body.clone();
        for leaf in &self.leaves {
            let text = match leaf.names.as_slice() {
                &[i] if leaf.text == FIXTURE[i].0 => names[i].clone(),
                indexes => indexes.iter().fold(leaf.text.clone(), |text, &i| {
                    text.replace(FIXTURE[i].0, &names[i])
                }),
            };
            put(&mut body, &leaf.pointer, text);
        }
        let id = format!("evt_{}", token(rng, 24));
        put(&mut body, "/id", id.as_str());
        put(&mut body, "/created", created);
        times(object(&mut body));
        let event_type = body["type"].as_str().unwrap_or_default().to_owned();
        Event {
            id,
            event_type,
            // Stripe sends its bodies indented, as the fixtures are.
            body: serde_json::to_vec_pretty(&body).unwrap_or_default(),
        }
    }
}

/// Every string under `value` that holds a `FIXTURE` name, by JSON pointer.
fn collect(value: &Value, pointer: &mut String, leaves: &mut Vec<Leaf>) {
    let len = pointer.len();
    match value {
        Value::String(text) => {
            let names: Vec<usize> = (0..FIXTURE.len())
                .filter(|&i| text.contains(FIXTURE[i].0))
                .collect();
            if !names.is_empty() {
                leaves.push(Leaf {
                    pointer: pointer.clone(),
                    text: text.clone(),
                    names,
                });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointer.push_str(&format!("/{i}"));
                collect(item, pointer, leaves);
                pointer.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                collect(field, pointer, leaves);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A template is fixed at build time, so a pointer it lacks is a fixture
/// that changed shape: better stopped than silently left stale.
fn put(body: &mut Value, pointer: &str, value: impl Into<Value>) {
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the Stripe fixture has no `{pointer}`")) = value.into();
}

fn object(body: &mut Value) -> &mut Value {
    body.pointer_mut("/data/object")
        .unwrap_or_else(|| panic!("a Stripe fixture without `data.object`"))
}

#[derive(Debug)]
struct Templates {
    subscription_created: Template,
    invoice_paid: Template,
    subscription_active: Template,
    /// The monthly renewal's `customer.subscription.updated`: the status
    /// stays, the invoice it points to changes.
    subscription_renewed: Template,
    checkout_completed: Template,
    invoice_failed: Template,
    subscription_past_due: Template,
    cancellation_scheduled: Template,
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("a Stripe fixture is not JSON: {e}"))
}

static TEMPLATES: LazyLock<Templates> = LazyLock::new(|| {
    let active = parse(include_str!(
        "../../../tests/fixtures/stripe/current/customer_subscription_updated_active.json"
    ));
    let mut cancellation = parse(include_str!(
        "../../../tests/fixtures/stripe/current/customer_subscription_updated_cancel_at_period_end.json"
    ));
    // That capture follows a move to the yearly price; the bench's purchases
    // stay on the monthly one, so they cancel with its item.
    cancellation["data"]["object"]["items"] = active["data"]["object"]["items"].clone();
    // Stripe names what a renewal changed; the status is not among it.
    let mut renewed = active.clone();
    renewed["data"]["previous_attributes"] =
        serde_json::json!({"latest_invoice": "in_AcmePro0003"});
    Templates {
        subscription_created: Template::new(parse(include_str!(
            "../../../tests/fixtures/stripe/current/customer_subscription_created.json"
        ))),
        invoice_paid: Template::new(parse(include_str!(
            "../../../tests/fixtures/stripe/current/invoice_paid.json"
        ))),
        subscription_active: Template::new(active),
        subscription_renewed: Template::new(renewed),
        checkout_completed: Template::new(parse(include_str!(
            "../../../tests/fixtures/stripe/current/checkout_session_completed.json"
        ))),
        invoice_failed: Template::new(parse(include_str!(
            "../../../tests/fixtures/stripe/current/invoice_payment_failed.json"
        ))),
        subscription_past_due: Template::new(parse(include_str!(
            "../../../tests/fixtures/stripe/current/customer_subscription_updated_past_due.json"
        ))),
        cancellation_scheduled: Template::new(cancellation),
    }
});

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn token(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[(rng.next() % 62) as usize]))
        .collect()
}

fn hex(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[(rng.next() % 16) as usize]).to_ascii_lowercase())
        .collect()
}

/// One purchase: what it names every fixture value as, and when it was made.
#[derive(Debug, Clone)]
pub struct Purchase {
    /// Indexed like `FIXTURE`.
    names: Vec<String>,
    /// When the subscription was created; the checkout's events follow it.
    pub t: i64,
}

impl Purchase {
    /// Ids as long as Stripe's, so that bodies weigh what Stripe's do.
    pub fn new(workspace: &str, t: i64, rng: &mut Rng) -> Self {
        let names = FIXTURE
            .iter()
            .map(|&(_, name)| match name {
                Name::Subscription => format!("sub_{}", token(rng, 24)),
                Name::Customer => format!("cus_{}", token(rng, 14)),
                Name::Session => format!("cs_test_{}", token(rng, 58)),
                Name::FirstInvoice | Name::RenewalInvoice | Name::LaterInvoice => {
                    format!("in_{}", token(rng, 24))
                }
                Name::FirstLine | Name::RenewalLine => format!("il_{}", token(rng, 24)),
                Name::Item => format!("si_{}", token(rng, 14)),
                Name::Card | Name::LaterCard => format!("pm_{}", token(rng, 24)),
                Name::PaymentIntent => format!("pi_{}", token(rng, 24)),
                Name::CheckoutRequest | Name::PortalRequest => format!("req_{}", token(rng, 14)),
                Name::IdempotencyKey => format!(
                    "{}-{}-{}-{}-{}",
                    hex(rng, 8),
                    hex(rng, 4),
                    hex(rng, 4),
                    hex(rng, 4),
                    hex(rng, 12)
                ),
                Name::InvoiceNumber => token(rng, 8).to_ascii_uppercase(),
                Name::FirstInvoiceToken | Name::RenewalInvoiceToken => token(rng, 40),
                Name::Workspace => workspace.to_owned(),
                Name::Email => traffic::owner(workspace),
                Name::Price => traffic::PRICE.to_owned(),
            })
            .collect();
        Self { names, t }
    }

    fn name(&self, name: Name) -> &str {
        FIXTURE
            .iter()
            .position(|&(_, n)| n == name)
            .map_or("", |i| &self.names[i])
    }

    #[cfg(test)]
    fn subscription(&self) -> &str {
        self.name(Name::Subscription)
    }

    #[cfg(test)]
    fn customer(&self) -> &str {
        self.name(Name::Customer)
    }

    /// The subscription as it stands at `period_start` (a month long, as the
    /// compact simulator draws it); created, started and anchored at `t`.
    fn subscription_at(&self, object: &mut Value, period_start: i64) {
        put(object, "/created", self.t);
        put(object, "/start_date", self.t);
        put(object, "/billing_cycle_anchor", self.t);
        put(object, "/billing_mode/updated_at", self.t);
        put(object, "/items/data/0/created", self.t);
        put(object, "/items/data/0/current_period_start", period_start);
        put(
            object,
            "/items/data/0/current_period_end",
            period_start + MONTH,
        );
        // Purchases are not on a test clock.
        put(object, "/test_clock", Value::Null);
    }

    /// The invoice for the month from `service_start`. The first bills the
    /// creation (an empty invoice period); a renewal bills the month that
    /// just ended.
    fn invoice_at(object: &mut Value, service_start: i64, first: bool, paid: bool) {
        put(object, "/created", service_start);
        put(object, "/effective_at", service_start);
        put(object, "/webhooks_delivered_at", service_start);
        put(object, "/status_transitions/finalized_at", service_start);
        put(
            object,
            "/status_transitions/paid_at",
            paid.then_some(service_start + 1),
        );
        put(
            object,
            "/next_payment_attempt",
            (!paid).then_some(service_start + 3 * DAY),
        );
        put(
            object,
            "/period_start",
            if first {
                service_start
            } else {
                service_start - MONTH
            },
        );
        put(object, "/period_end", service_start);
        put(object, "/lines/data/0/period/start", service_start);
        put(object, "/lines/data/0/period/end", service_start + MONTH);
        put(object, "/test_clock", Value::Null);
    }

    /// Checkout through activation, stamped as the compact simulator stamps
    /// them: subscription created incomplete, first invoice paid, subscription
    /// active, session completed.
    pub fn checkout(&self, rng: &mut Rng) -> Vec<Event> {
        let t = self.t;
        let templates = &*TEMPLATES;
        vec![
            templates
                .subscription_created
                .render(&self.names, rng, t, |o| self.subscription_at(o, t)),
            templates.invoice_paid.render(&self.names, rng, t + 2, |o| {
                Self::invoice_at(o, t, true, true);
            }),
            templates
                .subscription_active
                .render(&self.names, rng, t + 3, |o| self.subscription_at(o, t)),
            templates
                .checkout_completed
                .render(&self.names, rng, t + 4, |o| {
                    // The buyer spent a couple of minutes on the page.
                    put(o, "/created", t - 120);
                    put(o, "/expires_at", t - 120 + DAY);
                }),
        ]
    }

    /// The renewal charge at `at` fails: the invoice stays open and the
    /// subscription, in its new month, goes `past_due`.
    pub fn renewal_failed(&self, at: i64, rng: &mut Rng) -> Vec<Event> {
        let templates = &*TEMPLATES;
        vec![
            templates.invoice_failed.render(&self.names, rng, at, |o| {
                Self::invoice_at(o, at, false, false);
            }),
            templates
                .subscription_past_due
                .render(&self.names, rng, at + 1, |o| self.subscription_at(o, at)),
        ]
    }

    /// The purchase as it stands in its `month`-th month after the checkout
    /// (0 is the checkout's): that month's invoice (as both the first and
    /// the renewal invoice), its line and its links, and the month before's
    /// invoice in place of the later one, which the renewal's
    /// `previous_attributes` names. Derived from the subscription id, so a
    /// month's ids are the same whoever asks.
    pub fn in_month(&self, month: u32) -> Purchase {
        if month == 0 {
            return self.clone();
        }
        let base = self
            .name(Name::Subscription)
            .trim_start_matches("sub_")
            .to_owned();
        let stem = &base[..base.len().min(20)];
        let invoice = |k: u32| format!("in_{stem}{k:04}");
        let previous = if month == 1 {
            self.name(Name::FirstInvoice).to_owned()
        } else {
            invoice(month - 1)
        };
        let mut names = self.names.clone();
        for (i, &(_, name)) in FIXTURE.iter().enumerate() {
            match name {
                Name::FirstInvoice | Name::RenewalInvoice => names[i] = invoice(month),
                Name::LaterInvoice => names[i] = previous.clone(),
                Name::FirstLine | Name::RenewalLine => names[i] = format!("il_{stem}{month:04}"),
                Name::FirstInvoiceToken | Name::RenewalInvoiceToken => {
                    names[i] = format!("{base}{month:04}{}", &base[..base.len().min(12)]);
                }
                _ => {}
            }
        }
        Purchase { names, t: self.t }
    }

    /// The `month`-th monthly renewal (1 and up) at `at`, paid: the
    /// subscription moves to its new month, then the month's invoice is paid.
    pub fn renewal_paid(&self, month: u32, at: i64, rng: &mut Rng) -> Vec<Event> {
        let this = self.in_month(month.max(1));
        let number = format!("{}-{:04}", this.name(Name::InvoiceNumber), month + 1);
        let templates = &*TEMPLATES;
        vec![
            templates
                .subscription_renewed
                .render(&this.names, rng, at, |o| this.subscription_at(o, at)),
            templates
                .invoice_paid
                .render(&this.names, rng, at + 2, |o| {
                    Self::invoice_at(o, at, false, true);
                    put(o, "/billing_reason", "subscription_cycle");
                    put(o, "/number", number);
                }),
        ]
    }

    /// The customer cancels at `at`, effective at the end of the month that
    /// starts then.
    pub fn cancellation_scheduled(&self, at: i64, rng: &mut Rng) -> Vec<Event> {
        let renewal = self.name(Name::RenewalInvoice).to_owned();
        vec![
            TEMPLATES
                .cancellation_scheduled
                .render(&self.names, rng, at, |o| {
                    self.subscription_at(o, at);
                    put(o, "/cancel_at", at + MONTH);
                    put(o, "/canceled_at", at);
                    // By now the month after the first has been invoiced.
                    put(o, "/latest_invoice", renewal);
                }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use admit_core::{EventKind, SubscriptionStatus};

    use super::*;

    fn lifecycle() -> (Purchase, Vec<Event>) {
        let mut rng = Rng::new();
        let t = 1_795_000_000;
        let purchase = Purchase::new("ws_bench0001", t, &mut rng);
        let mut events = purchase.checkout(&mut rng);
        events.extend(purchase.renewal_failed(t + MONTH, &mut rng));
        events.extend(purchase.cancellation_scheduled(t + 40 * DAY, &mut rng));
        (purchase, events)
    }

    #[test]
    fn a_lifecycle_parses_into_events_naming_the_purchase() {
        let (purchase, events) = lifecycle();
        let workspace = Some("ws_bench0001");
        let email = traffic::owner("ws_bench0001");
        let mut ids = HashSet::new();
        let mut kinds = Vec::new();
        let mut last = i64::MIN;
        for event in &events {
            let parsed = admit_stripe::billing_event(&event.body)
                .expect("parses")
                .expect("a handled event");
            assert_eq!(parsed.id.as_str(), event.id);
            assert!(ids.insert(event.id.clone()), "{} twice", event.id);
            assert!(parsed.created.unix() > last, "{} out of order", event.id);
            last = parsed.created.unix();
            match parsed.kind {
                EventKind::Subscription { subscription, .. } => {
                    assert_eq!(subscription.id.as_str(), purchase.subscription());
                    assert_eq!(
                        subscription.customer.as_ref().map(|c| c.as_str()),
                        Some(purchase.customer())
                    );
                    assert_eq!(subscription.metadata_workspace.as_deref(), workspace);
                    assert_eq!(subscription.price_ids, [traffic::PRICE]);
                    kinds.push(format!(
                        "{}/{:?}/{:?}",
                        event.event_type,
                        subscription.status,
                        subscription.previous.and_then(|p| p.status)
                    ));
                }
                EventKind::InvoicePaid(invoice) | EventKind::InvoicePaymentFailed(invoice) => {
                    assert_eq!(
                        invoice.subscription.as_ref().map(|s| s.as_str()),
                        Some(purchase.subscription())
                    );
                    assert_eq!(
                        invoice.customer.as_ref().map(|c| c.as_str()),
                        Some(purchase.customer())
                    );
                    assert_eq!(invoice.metadata_workspace.as_deref(), workspace);
                    assert_eq!(
                        invoice.customer_email.as_ref().map(|e| e.as_str()),
                        Some(email.as_str())
                    );
                    assert_eq!(invoice.price_ids, [traffic::PRICE]);
                    kinds.push(format!("{}/{:?}", event.event_type, invoice.billing_reason));
                }
                EventKind::CheckoutCompleted(session) => {
                    assert_eq!(
                        session.subscription.as_ref().map(|s| s.as_str()),
                        Some(purchase.subscription())
                    );
                    assert_eq!(
                        session.customer.as_ref().map(|c| c.as_str()),
                        Some(purchase.customer())
                    );
                    assert_eq!(session.metadata_workspace.as_deref(), workspace);
                    assert_eq!(session.client_reference_id.as_deref(), workspace);
                    assert_eq!(
                        session.purchaser_email.as_ref().map(|e| e.as_str()),
                        Some(email.as_str())
                    );
                    assert!(session.paid);
                    kinds.push(event.event_type.clone());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        use SubscriptionStatus::{Active, Incomplete, PastDue};
        assert_eq!(
            kinds,
            [
                format!("customer.subscription.created/{:?}/None", Some(Incomplete)),
                "invoice.paid/Some(\"subscription_create\")".to_owned(),
                format!(
                    "customer.subscription.updated/{:?}/{:?}",
                    Some(Active),
                    Some(Some(Incomplete))
                ),
                "checkout.session.completed".to_owned(),
                "invoice.payment_failed/Some(\"subscription_cycle\")".to_owned(),
                format!(
                    "customer.subscription.updated/{:?}/{:?}",
                    Some(PastDue),
                    Some(Some(Active))
                ),
                format!("customer.subscription.updated/{:?}/None", Some(Active)),
            ]
        );
    }

    #[test]
    fn periods_and_the_scheduled_end_follow_the_compact_simulator() {
        let (purchase, events) = lifecycle();
        let t = purchase.t;
        let parsed: Vec<_> = events
            .iter()
            .map(|e| admit_stripe::billing_event(&e.body).expect("parses"))
            .collect();
        let created: Vec<i64> = parsed.iter().flatten().map(|e| e.created.unix()).collect();
        assert_eq!(
            created,
            [
                t,
                t + 2,
                t + 3,
                t + 4,
                t + MONTH,
                t + MONTH + 1,
                t + 40 * DAY
            ]
        );
        let snapshot = |i: usize| match &parsed[i].as_ref().expect("handled").kind {
            EventKind::Subscription { subscription, .. } => subscription.clone(),
            other => panic!("not a subscription: {other:?}"),
        };
        assert_eq!(
            snapshot(0).current_period_end.map(|p| p.unix()),
            Some(t + MONTH)
        );
        assert_eq!(
            snapshot(5).current_period_end.map(|p| p.unix()),
            Some(t + 2 * MONTH)
        );
        let cancel = snapshot(6);
        assert_eq!(
            cancel.scheduled_end().map(|p| p.unix()),
            Some(t + 40 * DAY + MONTH)
        );
        assert_eq!(cancel.created.map(|p| p.unix()), Some(t));
    }

    /// Every id in a body is the purchase's own, a fresh event id, or the
    /// merchant's (account, product, price): a fixture naming an id that
    /// `FIXTURE` does not know would leak it into every purchase.
    #[test]
    fn no_fixture_id_survives() {
        let (purchase, events) = lifecycle();
        let own: HashSet<&str> = purchase.names.iter().map(String::as_str).collect();
        let prefixes = [
            "evt_", "sub_", "cus_", "cs_", "in_", "il_", "si_", "pm_", "pi_", "ch_", "py_", "req_",
            "clock_", "price_",
        ];
        for event in &events {
            let body = String::from_utf8(event.body.clone()).expect("UTF-8");
            for fixture in FIXTURE.iter().map(|&(old, _)| old) {
                if !own.contains(fixture) {
                    assert!(!body.contains(fixture), "{fixture} in {}", event.event_type);
                }
            }
            assert!(!body.to_ascii_lowercase().contains("acme.test"));
            assert!(!body.contains("ws_acme"));
            for word in body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                // `price_details` is a key's value, not an id.
                if prefixes.iter().any(|p| word.starts_with(p)) && word != "price_details" {
                    assert!(
                        own.contains(word) || word == event.id,
                        "{word} in {} is not the purchase's",
                        event.event_type
                    );
                }
            }
        }
    }

    #[test]
    fn a_renewal_names_its_month_and_keeps_the_status() {
        let mut rng = Rng::new();
        let t = 1_795_000_000;
        let purchase = Purchase::new("ws_bench0002", t, &mut rng);
        let third = purchase.in_month(3);
        let second = purchase.in_month(2);
        let events = purchase.renewal_paid(3, t + 3 * MONTH, &mut rng);
        let mut kinds = Vec::new();
        for event in &events {
            assert!((3_000..8_000).contains(&event.body.len()));
            let body = String::from_utf8(event.body.clone()).expect("UTF-8");
            for word in body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if ["in_", "il_"].iter().any(|p| word.starts_with(p)) {
                    assert!(
                        third.names.iter().any(|n| n == word),
                        "{word} in {}",
                        event.event_type
                    );
                }
            }
            match admit_stripe::billing_event(&event.body)
                .expect("parses")
                .expect("a handled event")
                .kind
            {
                EventKind::Subscription { subscription, .. } => {
                    assert_eq!(subscription.id.as_str(), purchase.subscription());
                    assert_eq!(
                        subscription.current_period_end.map(|p| p.unix()),
                        Some(t + 4 * MONTH)
                    );
                    kinds.push(format!(
                        "{}/{:?}/{:?}",
                        event.event_type,
                        subscription.status,
                        subscription.previous.and_then(|p| p.status)
                    ));
                }
                EventKind::InvoicePaid(invoice) => {
                    assert_eq!(
                        invoice.subscription.as_ref().map(|s| s.as_str()),
                        Some(purchase.subscription())
                    );
                    kinds.push(format!("{}/{:?}", event.event_type, invoice.billing_reason));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            kinds,
            [
                format!(
                    "customer.subscription.updated/{:?}/None",
                    Some(SubscriptionStatus::Active)
                ),
                "invoice.paid/Some(\"subscription_cycle\")".to_owned(),
            ]
        );
        let invoice = third.name(Name::FirstInvoice);
        assert!(
            invoice.starts_with("in_") && invoice.len() == purchase.name(Name::FirstInvoice).len()
        );
        assert_eq!(
            third.name(Name::LaterInvoice),
            second.name(Name::FirstInvoice)
        );
        assert_eq!(
            purchase.in_month(1).name(Name::LaterInvoice),
            purchase.name(Name::FirstInvoice)
        );
        assert!(
            events[1]
                .body
                .windows(invoice.len())
                .any(|w| w == invoice.as_bytes())
        );
    }

    #[test]
    fn fixture_names_do_not_overlap() {
        for (i, (a, _)) in FIXTURE.iter().enumerate() {
            for (j, (b, _)) in FIXTURE.iter().enumerate() {
                assert!(i == j || !a.contains(b), "{b} is inside {a}");
            }
        }
    }

    #[test]
    fn bodies_weigh_what_stripe_sends() {
        let (_, events) = lifecycle();
        for event in &events {
            assert!(
                (3_000..8_000).contains(&event.body.len()),
                "{} is {} B",
                event.event_type,
                event.body.len()
            );
        }
    }

    #[test]
    fn purchases_and_events_get_their_own_ids() {
        let mut rng = Rng::new();
        let a = Purchase::new("ws_a", 0, &mut rng);
        let b = Purchase::new("ws_b", 0, &mut rng);
        assert_ne!(a.subscription(), b.subscription());
        assert_ne!(a.customer(), b.customer());
        let ids: HashSet<String> = a
            .checkout(&mut rng)
            .into_iter()
            .chain(b.checkout(&mut rng))
            .map(|e| e.id)
            .collect();
        assert_eq!(ids.len(), 8);
    }
}
