//! Builders for realistic provisioning scenarios (ids and shapes as Stripe
//! writes them), shared by the table tests and the property tests.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::catalog::tests::plan;
use crate::{
    BillingEvent, Checkout, CheckoutMode, CustomerSnapshot, Directory, Email, EventId, EventKind,
    Invoice, Role, SubscriptionChange, SubscriptionId, SubscriptionSnapshot, SubscriptionStatus,
    Timestamp, Workspace,
};

pub const PRO: &str = "price_AdmitProMonthly01";
pub const PRO_YEARLY: &str = "price_AdmitProYearly01";
pub const T0: i64 = 1_795_000_000;
pub const DAY: i64 = 86_400;

pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid test email")
}

pub fn ws_id(raw: &str) -> WorkspaceId {
    WorkspaceId::parse(raw).expect("valid workspace id")
}

pub fn workspace(id: &str, members: &[(&str, Role)]) -> Workspace {
    Workspace {
        id: ws_id(id),
        name: format!("Workspace {id}"),
        created_at: Timestamp::from_unix(T0 - 30 * DAY),
        members: members.iter().map(|(e, r)| (email(e), *r)).collect(),
    }
}

pub fn catalog() -> Catalog {
    Catalog::new([
        plan("free", &[], &[], 3, true),
        plan(
            "pro",
            &[PRO, PRO_YEARLY, "plan_AdmitProMonthly01"],
            &["sso", "audit_log"],
            25,
            false,
        ),
        plan("team", &["price_AdmitTeam01"], &["sso"], 10, false),
    ])
    .expect("valid catalog")
}

/// The facts a scenario runs against, owned.
#[derive(Debug, Clone)]
pub struct World {
    pub directory: Directory,
    pub catalog: Catalog,
    pub intents: BTreeMap<String, CheckoutIntent>,
    pub customer_bindings: BTreeMap<CustomerId, WorkspaceId>,
    pub purchase_bindings: BTreeMap<String, WorkspaceId>,
    pub remembered_purchases: BTreeSet<String>,
    pub created_for_purchases: BTreeSet<String>,
    pub settlements: BTreeMap<String, Settlement>,
    pub policy: UnmatchedPolicy,
}

impl World {
    /// `ws_acme01` owned by dana, with admin lee and member mo; `ws_other` owned by olga.
    pub fn standard() -> Self {
        Self {
            directory: Directory::new([
                workspace(
                    "ws_acme01",
                    &[
                        ("dana@acme.test", Role::Owner),
                        ("lee@acme.test", Role::Admin),
                        ("mo@acme.test", Role::Member),
                    ],
                ),
                workspace("ws_other", &[("olga@other.test", Role::Owner)]),
            ]),
            catalog: catalog(),
            intents: BTreeMap::new(),
            customer_bindings: BTreeMap::new(),
            purchase_bindings: BTreeMap::new(),
            remembered_purchases: BTreeSet::new(),
            created_for_purchases: BTreeSet::new(),
            settlements: BTreeMap::new(),
            policy: UnmatchedPolicy::Hold,
        }
    }

    pub fn facts(&self) -> Facts<'_> {
        Facts {
            directory: &self.directory,
            catalog: &self.catalog,
            intents: &self.intents,
            customer_bindings: &self.customer_bindings,
            purchase_bindings: &self.purchase_bindings,
            remembered_purchases: &self.remembered_purchases,
            created_for_purchases: &self.created_for_purchases,
            settlements: &self.settlements,
            policy: self.policy,
            grace_period_secs: 7 * DAY,
        }
    }

    pub fn intent(&mut self, session: &str, workspace: &str, initiator: &str) {
        self.intents.insert(
            session.to_owned(),
            CheckoutIntent {
                session_id: session.to_owned(),
                workspace: ws_id(workspace),
                initiator: email(initiator),
                purchaser: None,
                plan: crate::PlanKey::new("pro"),
            },
        );
    }

    pub fn derive(&self, events: &[BillingEvent]) -> Derivation {
        derive(self.facts(), events, &BTreeSet::new())
    }
}

fn event(id: &str, t: i64, kind: EventKind) -> BillingEvent {
    BillingEvent {
        id: EventId::parse(id).expect("valid event id"),
        created: Timestamp::from_unix(t),
        kind,
    }
}

pub fn cus(raw: &str) -> CustomerId {
    CustomerId::parse(raw).expect("valid customer id")
}

pub fn sub(raw: &str) -> SubscriptionId {
    SubscriptionId::parse(raw).expect("valid subscription id")
}

/// One purchase as Stripe tells it: the knobs a scenario turns.
#[derive(Debug, Clone)]
pub struct Story {
    pub n: u32,
    pub t: i64,
    pub customer: String,
    pub subscription: String,
    pub session: String,
    pub purchaser: String,
    pub metadata_workspace: Option<String>,
    pub price: String,
}

impl Story {
    pub fn new(n: u32, purchaser: &str, metadata_workspace: Option<&str>) -> Self {
        Self {
            n,
            t: T0 + i64::from(n) * 1000,
            customer: format!("cus_Story{n:04}"),
            subscription: format!("sub_Story{n:04}"),
            session: format!("cs_test_Story{n:04}"),
            purchaser: purchaser.to_owned(),
            metadata_workspace: metadata_workspace.map(str::to_owned),
            price: PRO.to_owned(),
        }
    }

    fn id(&self, step: &str) -> String {
        format!("evt_s{}_{step}", self.n)
    }

    fn snapshot(
        &self,
        status: SubscriptionStatus,
        cancel_at_period_end: bool,
        price: &str,
    ) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            id: sub(&self.subscription),
            customer: Some(cus(&self.customer)),
            status: Some(status),
            price_ids: vec![price.to_owned()],
            current_period_end: Some(Timestamp::from_unix(self.t + 30 * DAY)),
            cancel_at_period_end,
            metadata_workspace: self.metadata_workspace.clone(),
            created: Some(Timestamp::from_unix(self.t + 1)),
            cancel_at: None,
            previous: None,
        }
    }

    pub fn customer_created(&self) -> BillingEvent {
        event(
            &self.id("customer"),
            self.t,
            EventKind::CustomerChanged(CustomerSnapshot {
                id: cus(&self.customer),
                email: Some(email(&self.purchaser)),
                metadata_workspace: None,
            }),
        )
    }

    pub fn subscription(
        &self,
        step: &str,
        dt: i64,
        change: SubscriptionChange,
        status: SubscriptionStatus,
    ) -> BillingEvent {
        self.subscription_with(step, dt, change, status, false, &self.price.clone())
    }

    pub fn subscription_with(
        &self,
        step: &str,
        dt: i64,
        change: SubscriptionChange,
        status: SubscriptionStatus,
        cancel_at_period_end: bool,
        price: &str,
    ) -> BillingEvent {
        event(
            &self.id(step),
            self.t + dt,
            EventKind::Subscription {
                change,
                subscription: self.snapshot(status, cancel_at_period_end, price),
            },
        )
    }

    pub fn invoice(
        &self,
        step: &str,
        dt: i64,
        invoice: &str,
        paid: bool,
        reason: &str,
    ) -> BillingEvent {
        let facts = Invoice {
            id: format!("in_{}_{invoice}", self.n),
            customer: Some(cus(&self.customer)),
            subscription: Some(sub(&self.subscription)),
            customer_email: Some(email(&self.purchaser)),
            metadata_workspace: self.metadata_workspace.clone(),
            billing_reason: Some(reason.to_owned()),
            price_ids: vec![self.price.clone()],
            charge: Some(format!("ch_{}_{invoice}", self.n)),
            payment_intent: Some(format!("pi_{}_{invoice}", self.n)),
        };
        let kind = if paid {
            EventKind::InvoicePaid(facts)
        } else {
            EventKind::InvoicePaymentFailed(facts)
        };
        event(&self.id(step), self.t + dt, kind)
    }

    pub fn checkout(&self, dt: i64) -> BillingEvent {
        event(
            &self.id("checkout"),
            self.t + dt,
            EventKind::CheckoutCompleted(Checkout {
                session_id: self.session.clone(),
                mode: CheckoutMode::Subscription,
                paid: true,
                customer: Some(cus(&self.customer)),
                subscription: Some(sub(&self.subscription)),
                purchaser_email: Some(email(&self.purchaser)),
                metadata_workspace: self.metadata_workspace.clone(),
                client_reference_id: self.metadata_workspace.clone(),
                metadata_plan: None,
                price_ids: Vec::new(),
                payment_intent: None,
            }),
        )
    }

    /// Checkout → subscription created (incomplete) → first invoice paid → active,
    /// in Stripe's creation order.
    pub fn purchase(&self) -> Vec<BillingEvent> {
        vec![
            self.customer_created(),
            self.subscription(
                "sub_created",
                1,
                SubscriptionChange::Created,
                SubscriptionStatus::Incomplete,
            ),
            self.invoice("invoice_paid", 3, "first", true, "subscription_create"),
            self.subscription(
                "sub_active",
                4,
                SubscriptionChange::Updated,
                SubscriptionStatus::Active,
            ),
            self.checkout(5),
        ]
    }

    /// A renewal fails and the subscription goes past due.
    pub fn renewal_fails(&self) -> Vec<BillingEvent> {
        vec![
            self.invoice(
                "renewal_failed",
                30 * DAY,
                "renewal",
                false,
                "subscription_cycle",
            ),
            self.subscription(
                "sub_past_due",
                30 * DAY + 1,
                SubscriptionChange::Updated,
                SubscriptionStatus::PastDue,
            ),
        ]
    }

    /// Cancellation scheduled, then the subscription ends at period end.
    pub fn cancels(&self) -> Vec<BillingEvent> {
        vec![
            self.subscription_with(
                "sub_cancel_scheduled",
                10 * DAY,
                SubscriptionChange::Updated,
                SubscriptionStatus::Active,
                true,
                &self.price.clone(),
            ),
            self.subscription_with(
                "sub_deleted",
                30 * DAY,
                SubscriptionChange::Deleted,
                SubscriptionStatus::Canceled,
                true,
                &self.price.clone(),
            ),
        ]
    }
}

pub fn keys(derivation: &Derivation) -> Vec<&str> {
    derivation.effects.keys().map(String::as_str).collect()
}

pub fn held(derivation: &Derivation) -> Vec<(&str, CaseKind)> {
    derivation
        .cases
        .values()
        .filter(|c| c.state == CaseState::Held)
        .map(|c| (c.key.as_str(), c.kind))
        .collect()
}

pub fn billing<'d>(derivation: &'d Derivation, workspace: &str) -> &'d crate::BillingState {
    derivation
        .billing
        .get(&ws_id(workspace))
        .unwrap_or_else(|| panic!("no billing state for {workspace}"))
}
