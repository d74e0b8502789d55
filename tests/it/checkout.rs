//! `POST /v1/workspaces/{id}/checkout` and the welcome page's sync, against a
//! real HTTP server (wiremock) answering with Stripe's shapes — localstripe
//! has no Checkout Sessions or Prices. Asserts the exact form fields admit sends.

use std::collections::HashMap;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{PRIMARY_SECRET, TestApp, spawn_app_with};

const WS: &str = "ws_acme01";

fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

async fn stripe() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cus_Checkout0001", "object": "customer", "email": "dana@acme.test",
            "metadata": {"workspace_id": WS}, "livemode": false
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_test_Checkout0001", "object": "checkout.session", "mode": "subscription",
            "status": "open", "url": "https://checkout.stripe.com/c/pay/cs_test_Checkout0001", "livemode": false
        })))
        .mount(&server)
        .await;
    for (id, interval) in [
        ("price_AdmitProMonthly01", "month"),
        ("price_AdmitProYearly01", "year"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/prices/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "object": "price", "recurring": {"interval": interval, "interval_count": 1}
            })))
            .mount(&server)
            .await;
    }
    server
}

async fn app_with(server: &MockServer) -> TestApp {
    let app = spawn_app_with(&[
        ("ADMIT_STRIPE_API_KEY", "sk_test_admit_checkout"),
        ("ADMIT_STRIPE_API_BASE", &server.uri()),
        ("ADMIT_PUBLIC_URL", "https://billing.acme.example"),
    ])
    .await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app.put_json(
        &format!("/v1/workspaces/{WS}/members/mo@acme.test"),
        &json!({"role": "member"}),
    )
    .await
    .expect(200);
    app
}

async fn requests(server: &MockServer, verb: &str, route: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == route)
        .collect()
}

fn checkout_body(initiator: &str) -> Value {
    json!({"plan": "pro", "initiator_email": initiator, "purchaser_email": "ap@acme.test"})
}

#[tokio::test]
async fn a_checkout_sends_stripes_form_and_records_the_trusted_binding() {
    let server = stripe().await;
    let app = app_with(&server).await;
    let body = app
        .post_json(
            &format!("/v1/workspaces/{WS}/checkout"),
            &checkout_body("Dana@Acme.test"),
        )
        .await
        .expect(200);
    assert_eq!(
        body,
        json!({"checkout_session_id": "cs_test_Checkout0001", "url": "https://checkout.stripe.com/c/pay/cs_test_Checkout0001"})
    );

    let customers = requests(&server, "POST", "/v1/customers").await;
    assert_eq!(customers.len(), 1);
    let customer = form(&customers[0]);
    assert_eq!(
        customer.get("email").map(String::as_str),
        Some("ap@acme.test")
    );
    assert_eq!(
        customer.get("metadata[workspace_id]").map(String::as_str),
        Some(WS)
    );
    assert_eq!(
        customers[0]
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some("admit-customer-ws_acme01")
    );
    assert_eq!(
        customers[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer sk_test_admit_checkout")
    );

    let sessions = requests(&server, "POST", "/v1/checkout/sessions").await;
    assert_eq!(sessions.len(), 1);
    let session = form(&sessions[0]);
    let expected = [
        ("mode", "subscription"),
        ("customer", "cus_Checkout0001"),
        ("line_items[0][price]", "price_AdmitProMonthly01"),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", WS),
        ("metadata[workspace_id]", WS),
        ("metadata[initiator_email]", "dana@acme.test"),
        ("metadata[plan]", "pro"),
        ("subscription_data[metadata][workspace_id]", WS),
        (
            "success_url",
            "https://billing.acme.example/welcome?session_id={CHECKOUT_SESSION_ID}",
        ),
    ];
    for (key, value) in expected {
        assert_eq!(
            session.get(key).map(String::as_str),
            Some(value),
            "{key} in {session:?}"
        );
    }
    let key = sessions[0]
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        key.starts_with("admit-checkout-") && key.len() > 20,
        "{key}"
    );

    // The intent is the trusted binding: a completed session without metadata still binds.
    let completed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stripe/current/checkout_session_completed.json"),
    )
    .expect("fixture")
    .replace("cs_test_AcmePro0001", "cs_test_Checkout0001")
    .replace(
        "\"workspace_id\": \"ws_acme01\"",
        "\"note\": \"no binding here\"",
    )
    .replace(
        "\"client_reference_id\": \"ws_acme01\"",
        "\"client_reference_id\": null",
    );
    app.post_signed(completed.as_bytes(), PRIMARY_SECRET)
        .await
        .expect(200);
    app.drain().await;
    let cases = app.get("/v1/cases?state=held").await.expect(200);
    assert_eq!(
        cases["cases"],
        json!([]),
        "bound through the intent, not held"
    );
}

#[tokio::test]
async fn only_owners_and_admins_may_start_a_checkout() {
    let server = stripe().await;
    let app = app_with(&server).await;
    for initiator in ["mo@acme.test", "stranger@else.test"] {
        app.post_json(
            &format!("/v1/workspaces/{WS}/checkout"),
            &checkout_body(initiator),
        )
        .await
        .expect_error(403, "not_workspace_admin");
    }
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing created at Stripe"
    );
    app.post_json(
        "/v1/workspaces/ws_nope/checkout",
        &checkout_body("dana@acme.test"),
    )
    .await
    .expect_error(404, "workspace_not_found");
    app.post_json(
        &format!("/v1/workspaces/{WS}/checkout"),
        &json!({"plan": "free", "initiator_email": "dana@acme.test"}),
    )
    .await
    .expect_error(400, "plan_invalid");
    app.post_json(
        &format!("/v1/workspaces/{WS}/checkout"),
        &json!({"plan": "gold", "initiator_email": "dana@acme.test"}),
    )
    .await
    .expect_error(400, "plan_invalid");
}

#[tokio::test]
async fn fifty_concurrent_checkouts_create_one_stripe_customer() {
    let server = stripe().await;
    let app = app_with(&server).await;
    let route = format!("/v1/workspaces/{WS}/checkout");
    let body = checkout_body("dana@acme.test");
    let calls = (0..50).map(|_| app.post_json(&route, &body));
    for response in futures::future::join_all(calls).await {
        response.expect(200);
    }
    assert_eq!(requests(&server, "POST", "/v1/customers").await.len(), 1);
    let sessions = requests(&server, "POST", "/v1/checkout/sessions").await;
    assert_eq!(sessions.len(), 50);
    assert!(
        sessions
            .iter()
            .all(|r| form(r).get("customer").map(String::as_str) == Some("cus_Checkout0001"))
    );
}

/// Two admit instances on one database (as behind a load balancer): the
/// checkout lease lives in the database, so concurrent checkouts through
/// both still create one Stripe customer.
#[tokio::test]
async fn concurrent_checkouts_through_two_instances_create_one_stripe_customer() {
    let server = stripe().await;
    let first = app_with(&server).await;
    let second = crate::helpers::spawn_app_in_with(
        first.dir.clone(),
        first.clock.clone(),
        &[
            ("ADMIT_STRIPE_API_KEY", "sk_test_admit_checkout"),
            ("ADMIT_STRIPE_API_BASE", &server.uri()),
            ("ADMIT_PUBLIC_URL", "https://billing.acme.example"),
        ],
    )
    .await;
    let route = format!("/v1/workspaces/{WS}/checkout");
    let body = checkout_body("dana@acme.test");
    let calls = (0..40).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        app.post_json(&route, &body)
    });
    for response in futures::future::join_all(calls).await {
        response.expect(200);
    }
    assert_eq!(requests(&server, "POST", "/v1/customers").await.len(), 1);
    assert_eq!(
        requests(&server, "POST", "/v1/checkout/sessions")
            .await
            .len(),
        40
    );
}

#[tokio::test]
async fn the_interval_picks_the_plans_price() {
    let server = stripe().await;
    let app = app_with(&server).await;
    let body = json!({"plan": "pro", "initiator_email": "dana@acme.test", "interval": "year"});
    app.post_json(&format!("/v1/workspaces/{WS}/checkout"), &body)
        .await
        .expect(200);
    let session = form(&requests(&server, "POST", "/v1/checkout/sessions").await[0]);
    assert_eq!(
        session.get("line_items[0][price]").map(String::as_str),
        Some("price_AdmitProYearly01")
    );
    let weekly = json!({"plan": "pro", "initiator_email": "dana@acme.test", "interval": "week"});
    app.post_json(&format!("/v1/workspaces/{WS}/checkout"), &weekly)
        .await
        .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn an_active_subscription_to_the_plan_refuses_a_second_checkout() {
    let server = stripe().await;
    let app = app_with(&server).await;
    for file in [
        "customer_subscription_created.json",
        "invoice_paid.json",
        "customer_subscription_updated_active.json",
        "checkout_session_completed.json",
    ] {
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe/current")
                .join(file),
        )
        .expect("fixture");
        app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
    }
    app.drain().await;
    app.post_json(
        &format!("/v1/workspaces/{WS}/checkout"),
        &checkout_body("dana@acme.test"),
    )
    .await
    .expect_error(409, "already_subscribed");
    assert!(
        requests(&server, "POST", "/v1/checkout/sessions")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn without_a_stripe_key_checkout_is_unavailable() {
    let app = crate::helpers::spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Acme", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app.post_json(
        &format!("/v1/workspaces/{WS}/checkout"),
        &checkout_body("dana@acme.test"),
    )
    .await
    .expect_error(503, "stripe_not_configured");
}

/// The purchaser lands before any webhook: the page asks Stripe, records what
/// it says like events, and is ready on the next refresh — with a bounded
/// number of fetches however often it refreshes.
#[tokio::test]
async fn the_welcome_page_syncs_from_stripe_within_a_fetch_budget() {
    let server = stripe().await;
    let fixture = |file: &str| -> Value {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe/current")
                .join(file),
        )
        .expect("fixture");
        serde_json::from_str::<Value>(&text).expect("json")["data"]["object"].clone()
    };
    let mut session = fixture("checkout_session_completed.json");
    session["subscription"] = fixture("customer_subscription_updated_active.json");
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_AcmePro0001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(session))
        .mount(&server)
        .await;
    let app = app_with(&server).await;

    let welcome = |app: &TestApp| {
        let url = app.url("/welcome?session_id=cs_test_AcmePro0001");
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.expect("request");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };
    let (status, first) = welcome(&app).await;
    assert_eq!(status, 200, "Stripe knows the session: {first}");
    assert!(
        first.contains("http-equiv=\"refresh\""),
        "finishing: {first}"
    );
    app.drain().await;
    let (_, ready) = welcome(&app).await;
    assert!(
        ready.contains("Acme Rockets") && ready.contains("Pro"),
        "{ready}"
    );
    let billing = app
        .get(&format!("/v1/workspaces/{WS}/billing"))
        .await
        .expect(200);
    assert_eq!(billing["subscription_status"], "active");
    let event = app
        .get(&format!(
            "/v1/events/{}",
            billing["updated_by_event"].as_str().unwrap_or_default()
        ))
        .await
        .expect(200);
    assert_eq!(event["source"], "api_fetch");

    // An unknown session is asked about a bounded number of times.
    for _ in 0..20 {
        let response = app
            .client
            .get(app.url("/welcome?session_id=cs_test_Unknown0001"))
            .send()
            .await
            .expect("request");
        // Unheard of yet: the page waits (the webhook may still be on its way).
        assert_eq!(response.status().as_u16(), 200);
        app.clock.advance(10);
    }
    let asked = requests(&server, "GET", "/v1/checkout/sessions/cs_test_Unknown0001")
        .await
        .len();
    assert!((1..=5).contains(&asked), "fetched {asked} times");
}
