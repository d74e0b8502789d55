//! Micro-benchmarks of the per-event CPU work: signature check, parsing, and
//! the core's derivation. Run with `cargo bench -p admit-bench --bench micro`.
//!
//! The bodies are the project's own Stripe fixtures, so a change to what
//! Stripe sends (and to the fixtures with it) moves these figures too.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use admit_core::provisioning::{
    Checkpoint, CoveredEvent, Facts, Folded, ScopeEvents, UnmatchedPolicy, derive, derive_scope,
};
use admit_core::{
    BillingEvent, Catalog, Directory, Email, Entitlements, EventId, EventKind, Plan, PlanKey,
    PreviousAttributes, Role, SubscriptionStatus, Timestamp, Workspace, WorkspaceId,
};
use admit_stripe::signature::{sign, verify_signature};
use admit_stripe::{EventEnvelope, billing_event};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            "../../../tests/fixtures/stripe/current/",
            $name,
            ".json"
        ))
        .as_slice()
    };
}

const CUSTOMER_CREATED: &[u8] = fixture!("customer_created");
const SUBSCRIPTION_CREATED: &[u8] = fixture!("customer_subscription_created");
const SUBSCRIPTION_UPDATED: &[u8] = fixture!("customer_subscription_updated_active");
const INVOICE_PAID: &[u8] = fixture!("invoice_paid");
const CHECKOUT_COMPLETED: &[u8] = fixture!("checkout_session_completed");

/// The three shapes that carry a purchase, largest to smallest.
const BODIES: [(&str, &[u8]); 3] = [
    ("invoice_paid", INVOICE_PAID),
    ("subscription_updated", SUBSCRIPTION_UPDATED),
    ("checkout_completed", CHECKOUT_COMPLETED),
];

const SECRET: &str = "whsec_admit_micro_bench_secret";
const TOLERANCE_SECS: u64 = 300;

/// What the fixtures' story is about: dana owns `ws_acme01` and buys Pro.
const WORKSPACE: &str = "ws_acme01";
const PRO_PRICE: &str = "price_AdmitProMonthly01";
const DAY: i64 = 86_400;
/// The fixtures' subscription bills every 30 days.
const PERIOD: i64 = 30 * DAY;
const RENEWALS: i64 = 36;

fn signature(c: &mut Criterion) {
    // invoice.paid (5.5 kB) is the size of a typical access-deciding webhook,
    // and the HMAC's cost grows with the body.
    let body = INVOICE_PAID;
    let now = Timestamp::from_unix(1_795_000_009);
    let header = sign(body, SECRET, now);
    let secrets = [SECRET];
    assert!(verify_signature(&header, body, &secrets, now, Some(TOLERANCE_SECS)).is_ok());

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify", |b| {
        b.iter(|| {
            verify_signature(
                black_box(&header),
                black_box(body),
                &secrets,
                now,
                Some(TOLERANCE_SECS),
            )
        });
    });
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for (name, body) in BODIES {
        assert!(EventEnvelope::parse(body).is_ok(), "{name} is an event");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", name), body, |b, body| {
            b.iter(|| EventEnvelope::parse(black_box(body)));
        });
    }
    group.finish();
}

fn billing_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("billing_event");
    for (name, body) in BODIES {
        // A body read as "not acted on" would skip most of the work measured.
        assert!(
            matches!(billing_event(body), Ok(Some(_))),
            "{name} is a billing event"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", name), body, |b, body| {
            b.iter(|| billing_event(black_box(body)));
        });
    }
    group.finish();
}

/// The facts the fixtures' story runs against, owned so that [`Facts`] can
/// borrow them.
struct World {
    directory: Directory,
    catalog: Catalog,
    intents: BTreeMap<String, admit_core::provisioning::CheckoutIntent>,
    customer_bindings: BTreeMap<admit_core::CustomerId, WorkspaceId>,
    purchase_bindings: BTreeMap<String, WorkspaceId>,
    remembered_purchases: BTreeSet<String>,
    created_for_purchases: BTreeSet<String>,
    settlements: BTreeMap<String, admit_core::provisioning::Settlement>,
    scope: BTreeSet<WorkspaceId>,
}

impl World {
    fn acme() -> Self {
        let workspace = WorkspaceId::parse(WORKSPACE).expect("valid workspace id");
        let member = |raw: &str, role| (Email::parse(raw).expect("valid email"), role);
        let directory = Directory::new([Workspace {
            id: workspace.clone(),
            name: "Acme Rockets".to_owned(),
            created_at: Timestamp::from_unix(1_795_000_000 - PERIOD),
            members: BTreeMap::from([
                member("dana@acme.test", Role::Owner),
                member("lee@acme.test", Role::Admin),
                member("mo@acme.test", Role::Member),
            ]),
        }]);
        let plan = |key: &str, prices: &[&str], seats, free_tier| Plan {
            key: PlanKey::new(key),
            name: key.to_uppercase(),
            prices: prices.iter().map(|p| (*p).to_owned()).collect(),
            entitlements: Entitlements {
                features: BTreeSet::from(["sso".to_owned()]),
                limits: BTreeMap::from([("seats".to_owned(), seats)]),
            },
            free_tier,
            rank: 0,
        };
        let catalog = Catalog::new([
            plan("free", &[], 3, true),
            plan("pro", &[PRO_PRICE], 25, false),
        ])
        .expect("valid catalog");
        Self {
            directory,
            catalog,
            intents: BTreeMap::new(),
            customer_bindings: BTreeMap::new(),
            purchase_bindings: BTreeMap::new(),
            remembered_purchases: BTreeSet::new(),
            created_for_purchases: BTreeSet::new(),
            settlements: BTreeMap::new(),
            scope: BTreeSet::from([workspace]),
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            directory: &self.directory,
            catalog: &self.catalog,
            intents: &self.intents,
            customer_bindings: &self.customer_bindings,
            purchase_bindings: &self.purchase_bindings,
            remembered_purchases: &self.remembered_purchases,
            created_for_purchases: &self.created_for_purchases,
            settlements: &self.settlements,
            policy: UnmatchedPolicy::Hold,
            grace_period_secs: 7 * DAY,
        }
    }
}

fn parsed(body: &[u8]) -> BillingEvent {
    billing_event(body)
        .expect("fixture parses")
        .expect("fixture is a billing event")
}

/// Checkout of Pro for `ws_acme01`, as Stripe sends it: customer,
/// subscription (incomplete), first invoice paid, subscription active,
/// session completed.
fn fresh_purchase() -> Vec<BillingEvent> {
    [
        CUSTOMER_CREATED,
        SUBSCRIPTION_CREATED,
        INVOICE_PAID,
        SUBSCRIPTION_UPDATED,
        CHECKOUT_COMPLETED,
    ]
    .into_iter()
    .map(parsed)
    .collect()
}

/// The fresh purchase and then `RENEWALS` monthly cycles, each a
/// `customer.subscription.updated` that moves the period end and the
/// `invoice.paid` that pays it. Built by editing the parsed fixtures, so the
/// renewals carry every field a real one does.
fn three_years() -> Vec<BillingEvent> {
    let mut events = fresh_purchase();
    let invoice = parsed(INVOICE_PAID);
    let update = parsed(SUBSCRIPTION_UPDATED);
    let mut period_end = first_period_end();
    for month in 1..=RENEWALS {
        let next_end = period_end.plus_seconds(PERIOD);

        let mut renewed = update.clone();
        renewed.id = event_id(month, "subscription_updated");
        renewed.created = period_end;
        if let EventKind::Subscription { subscription, .. } = &mut renewed.kind {
            subscription.status = Some(SubscriptionStatus::Active);
            subscription.current_period_end = Some(next_end);
            subscription.previous = Some(PreviousAttributes {
                current_period_end: Some(period_end),
                ..PreviousAttributes::default()
            });
        }

        // Stripe finalises and charges a renewal invoice about an hour after
        // the period turns.
        let mut paid = invoice.clone();
        paid.id = event_id(month, "invoice_paid");
        paid.created = period_end.plus_seconds(3_600);
        if let EventKind::InvoicePaid(invoice) = &mut paid.kind {
            invoice.id = format!("in_AcmePro{month:04}");
            invoice.billing_reason = Some("subscription_cycle".to_owned());
            invoice.charge = Some(format!("ch_AcmePro{month:04}"));
            invoice.payment_intent = Some(format!("pi_AcmePro{month:04}"));
        }

        events.extend([renewed, paid]);
        period_end = next_end;
    }
    events
}

fn first_period_end() -> Timestamp {
    match parsed(SUBSCRIPTION_UPDATED).kind {
        EventKind::Subscription { subscription, .. } => subscription.current_period_end,
        _ => None,
    }
    .expect("the fixture is a subscription update with a period end")
}

fn event_id(month: i64, what: &str) -> EventId {
    EventId::parse(format!("evt_bench{month:02}_{what}")).expect("valid event id")
}

fn derivation(c: &mut Criterion) {
    let world = World::acme();
    let workspace = WorkspaceId::parse(WORKSPACE).expect("valid workspace id");
    let fresh = fresh_purchase();
    let renewed = three_years();
    assert_eq!(renewed.len(), fresh.len() + 2 * RENEWALS as usize);

    // Both must reach the provisioned path; a held or unbound purchase would
    // skip the work that grows with the history.
    for events in [&fresh, &renewed] {
        let derived = derive(world.facts(), events, &world.scope);
        let state = derived.billing.get(&workspace).expect("a billing state");
        assert_eq!(state.subscription_status, Some(SubscriptionStatus::Active));
        assert_eq!(
            state.subscription_plan.as_ref().map(PlanKey::as_str),
            Some("pro")
        );
        assert!(derived.cases.is_empty(), "no case is held");
    }
    let last_end = derive(world.facts(), &renewed, &world.scope)
        .billing
        .get(&workspace)
        .and_then(|s| s.current_period_end);
    assert_eq!(
        last_end,
        Some(first_period_end().plus_seconds(RENEWALS * PERIOD)),
        "the last renewal is in force"
    );

    // The renewal as the processor derives it: the subscription's stored
    // checkpoint (decoded each time, as from the store) and the events
    // after it.
    let taken = ScopeEvents::full(&renewed)
        .checkpoints()
        .expect("every event is there");
    let [(subscription, checkpoint)] = taken.as_slice() else {
        panic!("one checkpoint over three years: {taken:?}");
    };
    let stored = serde_json::to_string(checkpoint).expect("a checkpoint is JSON");
    let (covered, after): (Vec<&BillingEvent>, Vec<&BillingEvent>) = renewed
        .iter()
        .partition(|e| e.subscription() == Some(subscription) && e.created <= checkpoint.through);
    let after: Vec<BillingEvent> = after.into_iter().cloned().collect();
    let covered: Vec<CoveredEvent> = covered.into_iter().map(CoveredEvent::of).collect();
    let from_checkpoint = || {
        let checkpoint: Checkpoint = serde_json::from_str(&stored).expect("stored checkpoint");
        let folded = [(
            subscription.clone(),
            Folded {
                checkpoint,
                covered: covered.clone(),
            },
        )]
        .into();
        let scope = ScopeEvents {
            events: &after,
            folded: &folded,
        };
        derive_scope(world.facts(), scope, &world.scope).expect("no history needed")
    };
    assert_eq!(
        from_checkpoint(),
        derive(world.facts(), &renewed, &world.scope),
        "the checkpoint derives what every event does"
    );

    let mut group = c.benchmark_group("derive");
    group.bench_function("fresh", |b| {
        b.iter(|| derive(world.facts(), black_box(&fresh), &world.scope));
    });
    group.bench_function("three_years", |b| {
        b.iter(|| derive(world.facts(), black_box(&renewed), &world.scope));
    });
    group.bench_function("three_years_from_checkpoint", |b| {
        b.iter(from_checkpoint);
    });
    group.finish();
}

criterion_group!(benches, signature, envelope, billing_events, derivation);
criterion_main!(benches);
