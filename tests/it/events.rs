//! `GET /v1/events/{id}` and its authentication.

use crate::helpers::{APP_TOKEN, PRIMARY_SECRET, spawn_app};

#[tokio::test]
async fn reads_back_a_stored_event() {
    let app = spawn_app().await;
    let body = br#"{"id":"evt_read","object":"event","type":"invoice.paid","created":1794999000,"livemode":false,"data":{"object":{"id":"in_1","object":"invoice","customer":"cus_1"}}}"#;
    app.post_signed(body, PRIMARY_SECRET).await.expect(200);
    let event = app.get("/v1/events/evt_read").await.expect(200);
    assert_eq!(event["id"], "evt_read");
    assert_eq!(event["type"], "invoice.paid");
    assert_eq!(event["created"], 1_794_999_000);
    assert_eq!(event["received_at"], app.clock_now().unix());
    assert_eq!(event["status"], "received");
}

#[tokio::test]
async fn unknown_or_invalid_ids_are_not_found() {
    let app = spawn_app().await;
    app.get("/v1/events/evt_nothing_here")
        .await
        .expect_error(404, "event_not_found");
    app.get("/v1/events/not-an-event-id")
        .await
        .expect_error(404, "event_not_found");
}

#[tokio::test]
async fn v1_needs_the_app_token() {
    let app = spawn_app().await;
    app.get_without_token("/v1/events/evt_x")
        .await
        .expect_error(401, "unauthorized");
    app.get_with_token("/v1/events/evt_x", "wrong-token-wrong-token")
        .await
        .expect_error(401, "unauthorized");
    app.get_with_token("/v1/events/evt_x", &APP_TOKEN[..APP_TOKEN.len() - 1])
        .await
        .expect_error(401, "unauthorized");
    app.get_with_token("/v1/events/evt_x", APP_TOKEN)
        .await
        .expect_error(404, "event_not_found");
}

/// A body damaged on disk (the row is kept compressed) fails its own event,
/// visibly, and neither the event's page nor the processor gets stuck on it.
#[tokio::test]
async fn a_damaged_stored_body_fails_its_event_and_nothing_else() {
    use sqlx::Connection;
    let app = spawn_app().await;
    // A type admit does not act on: the processor reads its body to say so.
    let damaged = br#"{"id":"evt_damaged","object":"event","type":"payment_method.attached","created":1794999000,"livemode":false,"data":{"object":{"id":"pm_1","object":"payment_method","customer":"cus_damaged"}}}"#;
    let healthy = br#"{"id":"evt_healthy","object":"event","type":"payment_method.attached","created":1794999001,"livemode":false,"data":{"object":{"id":"pm_2","object":"payment_method","customer":"cus_damaged"}}}"#;
    app.post_signed(damaged, PRIMARY_SECRET).await.expect(200);
    app.post_signed(healthy, PRIMARY_SECRET).await.expect(200);
    let mut db = app.database().await;
    let encoding: String =
        sqlx::query_scalar("SELECT encoding FROM stripe_event_bodies WHERE id = 'evt_damaged'")
            .fetch_one(&mut db)
            .await
            .expect("body row");
    assert_eq!(encoding, "lz4", "stored compressed");
    sqlx::query(
        "UPDATE stripe_event_bodies SET payload = substr(payload, 1, 12) WHERE id = 'evt_damaged'",
    )
    .execute(&mut db)
    .await
    .expect("damage the body");
    db.close().await.expect("close");

    app.processor.drain().await.expect("the processor goes on");
    let event = app.get("/v1/events/evt_damaged").await.expect(200);
    assert_eq!(event["status"], "failed");
    let error = event["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("stored body cannot be read"), "{error}");
    let other = app.get("/v1/events/evt_healthy").await.expect(200);
    assert_eq!(other["status"], "ignored", "{other}");
}
