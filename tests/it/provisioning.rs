//! The decision table end to end: signed Stripe events over HTTP, the
//! processor, and what `/v1` answers afterwards (DESIGN.md §2.2).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{PRIMARY_SECRET, TestApp, spawn_app};

const WS: &str = "ws_acme01";
const DAY: i64 = 86_400;

/// Replacements that turn the fixture story into a Payment Link purchase:
/// no metadata and no client reference naming a workspace.
const UNBOUND: &[(&str, &str)] = &[
    (
        "\"workspace_id\": \"ws_acme01\"",
        "\"campaign\": \"spring\"",
    ),
    (
        "\"client_reference_id\": \"ws_acme01\"",
        "\"client_reference_id\": null",
    ),
];

/// The happy path of the fixture story in Stripe's creation order.
const PURCHASE: &[&str] = &[
    "current/customer_created.json",
    "current/customer_subscription_created.json",
    "current/invoice_paid.json",
    "current/invoice_payment_succeeded.json",
    "current/customer_subscription_updated_active.json",
    "current/checkout_session_completed.json",
];

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stripe")
            .join(file),
    )
    .unwrap_or_else(|e| panic!("fixture {file}: {e}"))
}

/// A fixture with some strings replaced: another subscription, price, workspace.
fn variant(file: &str, replacements: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(fixture(file)).expect("UTF-8 fixture");
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    text.into_bytes()
}

async fn post(app: &TestApp, body: &[u8]) {
    app.post_signed(body, PRIMARY_SECRET).await.expect(200);
}

async fn post_all(app: &TestApp, files: &[&str]) {
    for file in files {
        post(app, &fixture(file)).await;
    }
}

async fn workspace(app: &TestApp, id: &str, owner: &str) {
    app.post_json(
        "/v1/workspaces",
        &json!({"id": id, "name": "Acme Rockets", "owner_email": owner}),
    )
    .await
    .expect(201);
}

async fn member(app: &TestApp, id: &str, email: &str, role: &str) {
    app.put_json(
        &format!("/v1/workspaces/{id}/members/{email}"),
        &json!({"role": role}),
    )
    .await
    .expect(200);
}

async fn billing(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/workspaces/{id}/billing"))
        .await
        .expect(200)
}

async fn access(app: &TestApp, id: &str, email: &str) -> Value {
    app.get(&format!("/v1/access?workspace_id={id}&email={email}"))
        .await
        .expect(200)
}

async fn outbox(app: &TestApp) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = app
        .state
        .store
        .list_outbox(None, 1000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|r| (r.idempotency_key, r.recipient, r.state))
        .collect();
    rows.sort();
    rows
}

async fn pending_keys(app: &TestApp) -> BTreeSet<String> {
    outbox(app)
        .await
        .into_iter()
        .filter(|(_, _, state)| state == "pending")
        .map(|(key, _, _)| key)
        .collect()
}

async fn held_cases(app: &TestApp) -> Vec<Value> {
    let body = app.get("/v1/cases?state=held").await.expect(200);
    body["cases"].as_array().cloned().unwrap_or_default()
}

/// An Acme workspace owned by dana (the purchaser in the fixtures), with an admin and a member.
async fn acme(app: &TestApp) {
    workspace(app, WS, "dana@acme.test").await;
    member(app, WS, "lee@acme.test", "admin").await;
    member(app, WS, "mo@acme.test", "member").await;
}

#[tokio::test]
async fn s1_a_paid_checkout_provisions_the_workspace_and_onboards_the_purchaser() {
    let app = spawn_app().await;
    acme(&app).await;
    assert_eq!(
        access(&app, WS, "dana@acme.test").await["reason"],
        "free_tier",
        "before payment"
    );

    post_all(&app, PURCHASE).await;
    assert!(app.drain().await >= 1);

    let state = billing(&app, WS).await;
    assert_eq!(state["subscription_status"], "active");
    assert_eq!(state["subscription_plan"], "pro");
    assert_eq!(state["stripe_customer_id"], "cus_AcmeDana0001");
    assert_eq!(state["stripe_subscription_id"], "sub_AcmePro0001");
    assert_eq!(state["purchaser_email"], "dana@acme.test");
    assert_eq!(state["cancel_at_period_end"], false);
    assert!(state["current_period_end"].as_i64().is_some());
    let read = app.get(&format!("/v1/workspaces/{WS}")).await.expect(200);
    assert_eq!(read["billing"], state);

    let dana = access(&app, WS, "Dana@ACME.test").await;
    assert_eq!(
        (
            dana["allowed"].clone(),
            dana["role"].clone(),
            dana["plan"].clone(),
            dana["reason"].clone()
        ),
        (json!(true), json!("owner"), json!("pro"), json!("active"))
    );
    assert_eq!(
        dana["entitlements"],
        json!({"features": ["audit_log", "sso"], "limits": {"seats": 25}})
    );

    assert_eq!(
        outbox(&app).await,
        [(
            "onboarding:sub_AcmePro0001:dana@acme.test".to_owned(),
            "dana@acme.test".to_owned(),
            "pending".to_owned()
        )]
    );
    let event = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(
        (event["status"].clone(), event["outcome"].clone()),
        (json!("processed"), json!("provisioned"))
    );

    let audit = app
        .get(&format!("/v1/workspaces/{WS}/audit"))
        .await
        .expect(200);
    let change = audit["entries"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["action"] == "billing.changed"))
        .cloned()
        .expect("the billing change is audited");
    assert!(
        change["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("stripe:evt_"))
    );
    assert_eq!(change["after"]["subscription_status"], "active");
}

#[tokio::test]
async fn access_answers_for_every_role_before_and_after_payment_in_grace_and_after_cancel() {
    let app = spawn_app().await;
    acme(&app).await;
    let people = [
        ("dana@acme.test", Some("owner")),
        ("lee@acme.test", Some("admin")),
        ("mo@acme.test", Some("member")),
        ("eve@evil.test", None),
    ];
    let check = |stage: &'static str, plan: &'static str, reason: &'static str| {
        let app = &app;
        async move {
            for (email, role) in people {
                let answer = access(app, WS, email).await;
                assert_eq!(answer["allowed"], role.is_some(), "{stage} {email}");
                assert_eq!(answer["role"], json!(role), "{stage} {email}");
                assert_eq!(answer["plan"], plan, "{stage} {email}");
                let expected = if role.is_some() {
                    reason
                } else {
                    "not_a_member"
                };
                assert_eq!(answer["reason"], expected, "{stage} {email}");
            }
        }
    };
    check("before payment", "free", "free_tier").await;
    post_all(&app, PURCHASE).await;
    app.drain().await;
    check("paid", "pro", "active").await;

    post_all(
        &app,
        &[
            "current/invoice_payment_failed.json",
            "current/customer_subscription_updated_past_due.json",
        ],
    )
    .await;
    app.drain().await;
    check("in grace", "pro", "past_due_grace").await;
    app.clock.advance(8 * DAY);
    check("grace over", "free", "past_due_grace_expired").await;
    assert_eq!(billing(&app, WS).await["subscription_plan"], "free");

    post_all(&app, &["current/customer_subscription_deleted.json"]).await;
    app.drain().await;
    check("canceled", "free", "canceled").await;
    let unknown = access(&app, "ws_nope", "dana@acme.test").await;
    assert_eq!(
        (unknown["allowed"].clone(), unknown["reason"].clone()),
        (json!(false), json!("workspace_not_found"))
    );
    app.get("/v1/access?workspace_id=ws_acme01")
        .await
        .expect_error(400, "invalid_request");
    app.get("/v1/access?workspace_id=ws_acme01&email=nope")
        .await
        .expect_error(400, "email_invalid");
}

#[tokio::test]
async fn s2_a_purchaser_who_does_not_administer_the_workspace_gets_no_access() {
    let app = spawn_app().await;
    workspace(&app, WS, "olga@acme.test").await;
    post_all(&app, PURCHASE).await;
    app.drain().await;

    assert_eq!(
        billing(&app, WS).await["subscription_plan"],
        "pro",
        "provisioned all the same"
    );
    assert_eq!(
        billing(&app, WS).await["purchaser_email"],
        "dana@acme.test",
        "billing contact"
    );
    let dana = access(&app, WS, "dana@acme.test").await;
    assert_eq!(
        (dana["allowed"].clone(), dana["reason"].clone()),
        (json!(false), json!("not_a_member"))
    );
    let keys: Vec<_> = outbox(&app)
        .await
        .into_iter()
        .map(|(k, r, _)| (k, r))
        .collect();
    assert_eq!(
        keys,
        [
            (
                "billing_contact_notice:sub_AcmePro0001:dana@acme.test".to_owned(),
                "dana@acme.test".to_owned()
            ),
            (
                "onboarding:sub_AcmePro0001:olga@acme.test".to_owned(),
                "olga@acme.test".to_owned()
            ),
        ]
    );
    let cases = app.get("/v1/cases?state=resolved").await.expect(200);
    assert_eq!(cases["cases"][0]["kind"], "email_mismatch");
    assert_eq!(cases["cases"][0]["resolution"], "auto");
    assert!(held_cases(&app).await.is_empty());

    // Support invites the purchaser after all.
    let id = cases["cases"][0]["id"]
        .as_str()
        .expect("case id")
        .to_owned();
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "invite_purchaser", "role": "admin"}),
    )
    .await
    .expect(200);
    app.drain().await;
    assert_eq!(access(&app, WS, "dana@acme.test").await["role"], "admin");
}

#[tokio::test]
async fn s5_missing_workspace_is_held_and_resolving_it_provisions() {
    let app = spawn_app().await;
    post_all(&app, PURCHASE).await;
    app.drain().await;

    let held = held_cases(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let case = &held[0];
    assert_eq!(case["kind"], "missing_workspace");
    assert_eq!(case["purchaser_email"], "dana@acme.test");
    assert_eq!(case["stripe_customer_id"], "cus_AcmeDana0001");
    assert_eq!(case["stripe_subscription_id"], "sub_AcmePro0001");
    assert_eq!(case["checkout_session_id"], "cs_test_AcmePro0001");
    assert_eq!(case["details"]["requested_workspace"], WS);
    assert!(
        case["event_ids"]
            .as_array()
            .is_some_and(|ids| ids.len() >= 5)
    );
    assert_eq!(
        pending_keys(&app).await,
        BTreeSet::from([
            "access_delayed:sub_AcmePro0001:dana@acme.test".to_owned(),
            "support_alert:missing_workspace:sub_AcmePro0001:support".to_owned(),
        ])
    );
    let event = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(
        (event["status"].clone(), event["outcome"].clone()),
        (json!("held"), json!("missing_workspace"))
    );

    // Support binds it to the workspace the customer really has.
    workspace(&app, "ws_real", "dana@acme.test").await;
    let id = case["id"].as_str().expect("id");
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "bind"}),
    )
    .await
    .expect_error(400, "resolution_invalid");
    let resolved = app
        .post_json(
            &format!("/v1/cases/{id}/resolve"),
            &json!({"action": "bind", "workspace_id": "ws_real"}),
        )
        .await
        .expect(200);
    assert_eq!(
        (resolved["state"].clone(), resolved["resolution"].clone()),
        (json!("resolved"), json!("bind"))
    );
    app.drain().await;
    assert_eq!(billing(&app, "ws_real").await["subscription_plan"], "pro");
    assert!(held_cases(&app).await.is_empty());
    assert!(
        pending_keys(&app)
            .await
            .contains("onboarding:sub_AcmePro0001:dana@acme.test")
    );
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "dismiss"}),
    )
    .await
    .expect_error(409, "case_already_resolved");
    app.post_json("/v1/cases/case_nope/resolve", &json!({"action": "dismiss"}))
        .await
        .expect_error(404, "case_not_found");
}

#[tokio::test]
async fn s6_twenty_concurrent_deliveries_have_one_effect() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, &PURCHASE[..PURCHASE.len() - 1]).await;
    let checkout = fixture("current/checkout_session_completed.json");
    let deliveries = (0..20).map(|_| app.post_signed(&checkout, PRIMARY_SECRET));
    for response in futures::future::join_all(deliveries).await {
        response.expect(200);
    }
    app.drain().await;
    let once = outbox(&app).await;
    assert_eq!(once.len(), 1, "{once:?}");
    // Later redeliveries answer 200 and change nothing.
    for _ in 0..3 {
        post(&app, &checkout).await;
    }
    assert_eq!(app.drain().await, 0);
    assert_eq!(outbox(&app).await, once);
}

async fn lifecycle_result(order: &[&str]) -> (Value, Vec<(String, String, String)>, Vec<Value>) {
    let app = spawn_app().await;
    acme(&app).await;
    for file in order {
        post(&app, &fixture(file)).await;
        // Processing between deliveries, as in production.
        app.drain().await;
    }
    let mut state = billing(&app, WS).await;
    state.as_object_mut().map(|m| m.remove("updated_by_event"));
    (state, outbox(&app).await, held_cases(&app).await)
}

#[tokio::test]
async fn s7_any_order_converges_to_the_creation_order_state() {
    let mut lifecycle: Vec<&str> = PURCHASE.to_vec();
    lifecycle.extend([
        "current/customer_subscription_updated_cancel_at_period_end.json",
        "current/customer_subscription_deleted.json",
    ]);
    let forward = lifecycle_result(&lifecycle).await;
    assert_eq!(forward.0["subscription_status"], "canceled");
    assert_eq!(forward.0["subscription_plan"], "free");

    let mut reverse = lifecycle.clone();
    reverse.reverse();
    let backward = lifecycle_result(&reverse).await;
    assert_eq!(backward.0, forward.0);
    assert_eq!(backward.2, forward.2);
    let warranted = |rows: &[(String, String, String)]| {
        rows.iter()
            .filter(|(_, _, s)| s != "superseded")
            .map(|(k, _, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(warranted(&backward.1), warranted(&forward.1));

    // A fixed shuffle (deterministic, so a failure reproduces).
    let shuffled: Vec<&str> = [5, 0, 7, 2, 6, 1, 4, 3]
        .iter()
        .map(|&i| lifecycle[i])
        .collect();
    let mixed = lifecycle_result(&shuffled).await;
    assert_eq!(mixed.0, forward.0);
    assert_eq!(warranted(&mixed.1), warranted(&forward.1));
}

#[tokio::test]
async fn s8_a_second_subscription_is_held_and_never_double_provisioned() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    app.drain().await;
    // Lee buys Pro for the same workspace in another tab, as another customer.
    let second = [
        ("sub_AcmePro0001", "sub_AcmePro0002"),
        ("cus_AcmeDana0001", "cus_AcmeLee00002"),
        ("cs_test_AcmePro0001", "cs_test_AcmePro0002"),
        ("in_AcmePro0001", "in_AcmePro0002x"),
        ("dana@acme.test", "lee@acme.test"),
        ("\"created\": 17950000", "\"created\": 17950009"),
        ("evt_", "evt_second"),
    ];
    for file in &PURCHASE[1..] {
        post(&app, &variant(file, &second)).await;
    }
    app.drain().await;
    let state = billing(&app, WS).await;
    assert_eq!(
        state["stripe_subscription_id"], "sub_AcmePro0001",
        "the canonical subscription stays"
    );
    let held = held_cases(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["kind"], "duplicate_subscription");
    assert_eq!(held[0]["stripe_subscription_id"], "sub_AcmePro0002");
    assert_eq!(
        held[0]["details"]["canonical_subscription"],
        "sub_AcmePro0001"
    );
    let keys = pending_keys(&app).await;
    assert!(
        keys.contains("duplicate_charge:sub_AcmePro0002:lee@acme.test"),
        "{keys:?}"
    );
    assert!(
        keys.contains("support_alert:duplicate_subscription:sub_AcmePro0002:support"),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("onboarding:sub_AcmePro0002")),
        "{keys:?}"
    );

    let id = held[0]["id"].as_str().expect("id");
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "mark_refunded", "note": "refunded in dashboard"}),
    )
    .await
    .expect(200);
    app.drain().await;
    assert!(held_cases(&app).await.is_empty());
    assert_eq!(
        billing(&app, WS).await["stripe_subscription_id"],
        "sub_AcmePro0001"
    );
}

#[tokio::test]
async fn s9_a_customer_bound_elsewhere_with_metadata_for_this_workspace_is_held() {
    let app = spawn_app().await;
    acme(&app).await;
    workspace(&app, "ws_other", "olga@other.test").await;
    let now = app.clock_now();
    let customer = admit_core::CustomerId::parse("cus_AcmeDana0001").expect("id");
    let other = admit_core::WorkspaceId::parse("ws_other").expect("id");
    app.state
        .store
        .bind_customer(&customer, &other, "test", now)
        .await
        .expect("bind");
    post_all(&app, &PURCHASE[1..]).await;
    app.drain().await;

    let held = held_cases(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["kind"], "customer_conflict");
    assert_eq!(held[0]["details"]["bound_workspace"], "ws_other");
    assert_eq!(billing(&app, WS).await["subscription_plan"], Value::Null);
    assert_eq!(
        billing(&app, "ws_other").await["subscription_plan"],
        Value::Null
    );
    assert_eq!(
        pending_keys(&app).await,
        BTreeSet::from(["support_alert:customer_conflict:sub_AcmePro0001:support".to_owned()])
    );
}

#[tokio::test]
async fn s10_a_price_outside_the_catalog_is_held() {
    let app = spawn_app().await;
    acme(&app).await;
    for file in PURCHASE {
        post(
            &app,
            &variant(file, &[("price_AdmitProMonthly01", "price_Enterprise99")]),
        )
        .await;
    }
    app.drain().await;
    let held = held_cases(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["kind"], "unknown_price");
    assert_eq!(
        held[0]["details"]["unknown_prices"],
        json!(["price_Enterprise99"])
    );
    assert_eq!(billing(&app, WS).await["subscription_plan"], Value::Null);
    let keys = pending_keys(&app).await;
    assert!(
        keys.contains("access_delayed:sub_AcmePro0001:dana@acme.test"),
        "{keys:?}"
    );
    assert!(
        keys.contains("support_alert:unknown_price:sub_AcmePro0001:support"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn s11_payment_failed_keeps_the_plan_through_grace_and_notifies() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    post_all(
        &app,
        &[
            "current/invoice_payment_failed.json",
            "current/customer_subscription_updated_past_due.json",
        ],
    )
    .await;
    app.drain().await;
    let state = billing(&app, WS).await;
    assert_eq!(state["subscription_status"], "past_due");
    assert_eq!(state["subscription_plan"], "pro");
    assert_eq!(state["plan_reason"], "past_due_grace");
    let keys = pending_keys(&app).await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("payment_failed:sub_AcmePro0001:")
                && k.ends_with(":dana@acme.test")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn s12_cancellation_ends_paid_access_and_tells_the_owners() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    post_all(
        &app,
        &["current/customer_subscription_updated_cancel_at_period_end.json"],
    )
    .await;
    app.drain().await;
    let state = billing(&app, WS).await;
    assert_eq!(
        (
            state["cancel_at_period_end"].clone(),
            state["subscription_plan"].clone()
        ),
        (json!(true), json!("pro"))
    );
    assert!(
        pending_keys(&app)
            .await
            .contains("cancellation:sub_AcmePro0001:dana@acme.test")
    );

    post_all(&app, &["current/customer_subscription_deleted.json"]).await;
    app.drain().await;
    let state = billing(&app, WS).await;
    assert_eq!(
        (
            state["subscription_status"].clone(),
            state["subscription_plan"].clone()
        ),
        (json!("canceled"), json!("free"))
    );
    assert_eq!(
        access(&app, WS, "lee@acme.test").await["reason"],
        "canceled"
    );
    // Nothing brings a canceled subscription back.
    post(
        &app,
        &fixture("current/customer_subscription_updated_active.json"),
    )
    .await;
    app.drain().await;
    assert_eq!(billing(&app, WS).await["subscription_status"], "canceled");
}

#[tokio::test]
async fn legacy_shapes_provision_too() {
    let app = spawn_app().await;
    workspace(&app, "ws_legacy01", "bo@legacy.test").await;
    for entry in fixtures::index().iter().filter(|e| e.shape == "legacy") {
        if entry.event_type == "invoice.payment_failed"
            || entry.event_type == "customer.subscription.deleted"
        {
            continue;
        }
        post(&app, &fixtures::body(entry)).await;
    }
    app.drain().await;
    let state = billing(&app, "ws_legacy01").await;
    assert_eq!(state["subscription_status"], "active");
    assert_eq!(state["subscription_plan"], "pro");
    assert_eq!(state["stripe_subscription_id"], "sub_LegacyBo01");
    let ignored = app.get("/v1/events/").await;
    assert_eq!(ignored.status, 404);
}

#[tokio::test]
async fn unhandled_and_unreadable_events_are_settled_visibly() {
    let app = spawn_app().await;
    post(
        &app,
        &fixture("current/entitlements_active_entitlement_summary_updated.json"),
    )
    .await;
    let broken = br#"{"id":"evt_broken_sub","object":"event","type":"customer.subscription.updated","created":1795000000,"data":{"object":{"object":"subscription","status":"active"}}}"#;
    post(&app, broken).await;
    app.drain().await;
    let ignored = app.get("/v1/events/evt_broken_sub").await.expect(200);
    assert_eq!(ignored["status"], "failed");
    assert!(
        ignored["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("id")),
        "{ignored}"
    );
    let summary_id = fixtures::index()
        .into_iter()
        .find(|e| e.event_type.starts_with("entitlements."))
        .map(|e| e.id)
        .expect("fixture");
    let summary = app
        .get(&format!("/v1/events/{summary_id}"))
        .await
        .expect(200);
    assert_eq!(
        (summary["status"].clone(), summary["outcome"].clone()),
        (json!("ignored"), json!("type_not_handled"))
    );
}

#[tokio::test]
async fn the_background_worker_updates_access_promptly() {
    let app = crate::helpers::spawn_app_with(&[("ADMIT_PROCESS_IN_BACKGROUND", "true")]).await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    let started = std::time::Instant::now();
    loop {
        if access(&app, WS, "dana@acme.test").await["plan"] == "pro" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "not provisioned within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Posts Acme's purchase and, beside it, the legacy workspace's; drains;
/// the legacy one is provisioned whatever became of Acme's.
async fn settle_beside_legacy(app: &TestApp) {
    post_all(app, PURCHASE).await;
    for entry in fixtures::index()
        .iter()
        .filter(|e| e.shape == "legacy" && e.event_type == "customer.subscription.created")
    {
        post(app, &fixtures::body(entry)).await;
    }
    app.processor.drain().await.expect("drain");
    assert_eq!(
        billing(app, "ws_legacy01").await["subscription_plan"],
        "pro",
        "the other workspace is not blocked"
    );
}

/// A corrupt row in one purchase's scope (an intent whose initiator is no
/// email, written behind admit's back) fails that purchase's events visibly;
/// the rest of the batch, another workspace's purchase, is provisioned.
#[tokio::test]
async fn an_unreadable_scope_fails_its_event_and_blocks_no_other() {
    let app = spawn_app().await;
    acme(&app).await;
    workspace(&app, "ws_legacy01", "bo@legacy.test").await;
    let mut db = app.database().await;
    sqlx::query(
        "INSERT INTO checkout_intents (session_id, workspace_id, initiator_email, plan, created_at)
         VALUES ('cs_test_AcmePro0001', 'ws_acme01', 'not an email', 'pro', 1)",
    )
    .execute(&mut db)
    .await
    .expect("corrupt intent");
    settle_beside_legacy(&app).await;
    let failed = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the cause is kept: {failed}"
    );
}

/// A stored billing event that is not JSON (written behind admit's back)
/// is never dropped silently: its event fails, visibly, with the cause.
#[tokio::test]
async fn an_unreadable_stored_billing_event_fails_its_event_visibly() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    let mut db = app.database().await;
    sqlx::query("UPDATE stripe_events SET billing = '{' WHERE id = 'evt_ejghkCYTDodEotgnscB3P9wF'")
        .execute(&mut db)
        .await
        .expect("corrupt");
    app.processor.drain().await.expect("drain");
    let failed = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be read")),
        "{failed}"
    );
}

/// A real database fault, caused with a trigger (not a fake): writes of one
/// workspace's billing state abort. That workspace's event fails and is
/// retried with backoff; another workspace is provisioned meanwhile; once the
/// fault is gone and the retry is due, the first one is provisioned too.
#[tokio::test]
async fn a_failing_workspace_is_retried_with_backoff_and_blocks_no_other() {
    let app = spawn_app().await;
    acme(&app).await;
    workspace(&app, "ws_legacy01", "bo@legacy.test").await;
    let mut db = app.database().await;
    crate::helpers::inject_fault(
        &mut db,
        "fault",
        "billing_states",
        "NEW.workspace_id = 'ws_acme01'",
        "injected fault",
    )
    .await;

    settle_beside_legacy(&app).await;
    assert_eq!(billing(&app, WS).await["subscription_plan"], Value::Null);
    let failed = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("injected fault")),
        "{failed}"
    );

    crate::helpers::drop_fault(&mut db, "fault", "billing_states").await;
    assert_eq!(
        app.processor.drain().await.expect("drain"),
        0,
        "not due before its backoff"
    );
    app.clock.advance(60);
    app.drain().await;
    assert_eq!(billing(&app, WS).await["subscription_plan"], "pro");
    let processed = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(processed["status"], "processed");
}

/// Convergence through the real processor and SQLite, not just the core: for
/// generated arrival orders (with redeliveries), processing after every
/// delivery ends in the creation-order state and the same warranted emails.
#[test]
fn any_arrival_order_converges_through_the_processor() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut lifecycle: Vec<&'static str> = PURCHASE.to_vec();
    lifecycle.extend([
        "current/invoice_payment_failed.json",
        "current/customer_subscription_updated_past_due.json",
    ]);
    let reference = runtime.block_on(lifecycle_result(&lifecycle));
    let warranted = |rows: &[(String, String, String)]| {
        rows.iter()
            .filter(|(_, _, s)| s != "superseded")
            .map(|(k, _, _)| k.clone())
            .collect::<Vec<_>>()
    };
    let config = ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let strategy = (
        Just(lifecycle.clone()).prop_shuffle(),
        proptest::collection::vec(0..lifecycle.len(), 0..4),
    );
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, |(mut order, repeats)| {
            for index in repeats {
                order.push(lifecycle[index]);
            }
            let result = runtime.block_on(lifecycle_result(&order));
            prop_assert_eq!(&result.0, &reference.0, "billing for {:?}", order);
            prop_assert_eq!(&result.2, &reference.2, "held cases for {:?}", order);
            prop_assert_eq!(
                warranted(&result.1),
                warranted(&reference.1),
                "emails for {:?}",
                order
            );
            Ok(())
        })
        .expect("every order converges");
}

/// `ADMIT_UNMATCHED_PURCHASE=create_workspace`: a Payment Link purchase that
/// no rule binds gets a new workspace owned by the purchaser; metadata naming
/// a workspace that does not exist still never creates one.
#[tokio::test]
async fn unmatched_purchases_get_a_workspace_when_the_policy_says_so() {
    let app =
        crate::helpers::spawn_app_with(&[("ADMIT_UNMATCHED_PURCHASE", "create_workspace")]).await;
    for file in PURCHASE {
        post(&app, &variant(file, UNBOUND)).await;
    }
    app.drain().await;
    assert!(held_cases(&app).await.is_empty());
    let created = app
        .get("/v1/workspaces/ws_sub_AcmePro0001")
        .await
        .expect(200);
    assert_eq!(
        created["members"],
        json!([{"email": "dana@acme.test", "role": "owner"}])
    );
    assert_eq!(created["billing"]["subscription_plan"], "pro");
    assert!(
        pending_keys(&app)
            .await
            .contains("onboarding:sub_AcmePro0001:dana@acme.test")
    );
    let audit = app
        .get("/v1/workspaces/ws_sub_AcmePro0001/audit")
        .await
        .expect(200);
    assert!(
        audit["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["action"] == "workspace.created" && e["actor"] == "system")),
        "{audit}"
    );

    // Metadata naming a missing workspace is a case, never a new workspace.
    let other = spawn_app_with_policy().await;
    post_all(&other, PURCHASE).await;
    other.drain().await;
    let held = held_cases(&other).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["kind"], "missing_workspace");
    other
        .get("/v1/workspaces/ws_sub_AcmePro0001")
        .await
        .expect_error(404, "workspace_not_found");
}

async fn spawn_app_with_policy() -> TestApp {
    crate::helpers::spawn_app_with(&[("ADMIT_UNMATCHED_PURCHASE", "create_workspace")]).await
}

#[tokio::test]
async fn events_of_the_other_stripe_mode_never_provision() {
    let app = crate::helpers::spawn_app_with(&[("ADMIT_STRIPE_MODE", "live")]).await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    app.drain().await;
    assert_eq!(
        billing(&app, WS).await["subscription_plan"],
        Value::Null,
        "test-mode events in a live deployment"
    );
    let event = app
        .get("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF")
        .await
        .expect(200);
    assert_eq!(
        (event["status"].clone(), event["outcome"].clone()),
        (json!("ignored"), json!("livemode_mismatch"))
    );
    assert!(outbox(&app).await.is_empty());
}

#[tokio::test]
async fn a_binding_found_through_the_purchasers_workspace_is_kept() {
    let app = spawn_app().await;
    workspace(&app, "ws_only", "dana@acme.test").await;
    for file in PURCHASE {
        post(&app, &variant(file, UNBOUND)).await;
    }
    app.drain().await;
    assert_eq!(
        billing(&app, "ws_only").await["subscription_plan"],
        "pro",
        "S4"
    );
    // Dana becomes an admin of a second workspace; the renewal still belongs to the first.
    workspace(&app, "ws_second", "dana@acme.test").await;
    post(
        &app,
        &variant("current/invoice_payment_failed.json", UNBOUND),
    )
    .await;
    app.drain().await;
    assert!(held_cases(&app).await.is_empty());
    assert_eq!(
        billing(&app, "ws_only").await["stripe_subscription_id"],
        "sub_AcmePro0001"
    );
    let audit = app.get("/v1/workspaces/ws_only/audit").await.expect(200);
    assert!(
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["action"] == "binding.created")),
        "{audit}"
    );
}

#[tokio::test]
async fn a_stored_event_can_be_replayed() {
    let app = spawn_app().await;
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    app.drain().await;
    let replayed = app
        .post_json("/v1/events/evt_ejghkCYTDodEotgnscB3P9wF/replay", &json!({}))
        .await
        .expect(202);
    assert_eq!(replayed["status"], "received");
    assert_eq!(app.drain().await, 1);
    assert_eq!(outbox(&app).await.len(), 1, "replaying sends nothing twice");
    app.post_json("/v1/events/evt_nope/replay", &json!({}))
        .await
        .expect_error(404, "event_not_found");
}
