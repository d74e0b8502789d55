//! `GET /welcome?session_id=`: the page Stripe Checkout's success URL lands on.

use serde_json::json;

use crate::helpers::{PRIMARY_SECRET, TestApp, spawn_app};

const SESSION: &str = "cs_test_AcmePro0001";

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stripe/current")
            .join(file),
    )
    .expect("fixture")
}

async fn page(app: &TestApp, session: &str) -> (u16, String, Option<String>) {
    let response = app
        .client
        .get(app.url(&format!("/welcome?session_id={session}")))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.text().await.expect("body"), cache)
}

async fn post(app: &TestApp, file: &str) {
    app.post_signed(&fixture(file), PRIMARY_SECRET)
        .await
        .expect(200);
}

#[tokio::test]
async fn the_page_follows_the_purchase_from_finishing_to_ready() {
    let app = spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_acme01", "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);

    // The success redirect can beat the webhook: a session admit has not
    // heard of yet is "finishing" for a while, then "couldn't find".
    let (status, early, _) = page(&app, SESSION).await;
    assert_eq!(status, 200);
    assert!(
        early.contains("Finishing your setup")
            && early.contains(&format!("url=welcome?session_id={SESSION}&amp;wait=1"))
            && !early.contains("Acme Rockets"),
        "{early}"
    );
    let (status, unknown, _) = page(&app, &format!("{SESSION}&wait=40")).await;
    assert_eq!(status, 404);
    assert!(unknown.contains("couldn't find this checkout"), "{unknown}");
    assert!(!unknown.contains("Acme Rockets"), "{unknown}");

    for file in [
        "customer_subscription_created.json",
        "invoice_paid.json",
        "checkout_session_completed.json",
    ] {
        post(&app, file).await;
    }
    let (status, finishing, cache) = page(&app, SESSION).await;
    assert_eq!(status, 200);
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert!(
        finishing.contains("http-equiv=\"refresh\""),
        "a finishing page refreshes itself: {finishing}"
    );

    post(&app, "customer_subscription_updated_active.json").await;
    app.drain().await;
    let (status, ready, _) = page(&app, SESSION).await;
    assert_eq!(status, 200);
    assert!(
        ready.contains("Acme Rockets") && ready.contains("Pro"),
        "{ready}"
    );
    assert!(
        ready.contains("dana@acme.test"),
        "the email to sign in with: {ready}"
    );
    assert!(!ready.contains("http-equiv=\"refresh\""));
}

#[tokio::test]
async fn a_held_purchase_shows_the_case_reference() {
    let app = spawn_app().await;
    for file in [
        "customer_subscription_created.json",
        "invoice_paid.json",
        "customer_subscription_updated_active.json",
        "checkout_session_completed.json",
    ] {
        post(&app, file).await;
    }
    app.drain().await;
    let cases = app.get("/v1/cases?state=held").await.expect(200);
    let case_id = cases["cases"][0]["id"]
        .as_str()
        .expect("a held case")
        .to_owned();
    let (status, held, _) = page(&app, SESSION).await;
    assert_eq!(status, 200);
    assert!(held.contains(&case_id), "{held}");
    assert!(
        !held.contains("ws_acme01"),
        "nothing about workspaces: {held}"
    );
}

#[tokio::test]
async fn odd_session_ids_get_the_helpful_page() {
    let app = spawn_app().await;
    for session in ["", "not-a-session", "%3Cscript%3E", &"cs_".repeat(200)] {
        let (status, body, _) = page(&app, session).await;
        assert_eq!(status, 404, "{session}");
        assert!(
            body.contains("<html") && !body.contains("<script>"),
            "{session}: {body}"
        );
    }
    // Well-formed but unheard of: finishing, reloading with a count, until the count runs out.
    let (status, body, _) = page(&app, "cs_test_unknown").await;
    assert_eq!(status, 200);
    assert!(body.contains("wait=1"), "{body}");
    let (status, body, _) = page(&app, "cs_test_unknown&wait=39").await;
    assert_eq!(status, 200);
    assert!(body.contains("wait=40"), "{body}");
    let (status, body, _) = page(&app, "cs_test_unknown&wait=40").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = page(&app, "cs_test_unknown&wait=nope").await;
    assert_eq!(status, 400, "a malformed count is a bad request");
}
