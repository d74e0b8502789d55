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
