//! `POST /v1/signin-tokens/redeem`: single use, expiry, hash at rest,
//! membership re-checked.

use admit_core::{Email, Timestamp, WorkspaceId};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

const TOKEN: &str = "7f3c9a0e5b1d4c2f8e6a9b0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6";

async fn issue(app: &TestApp, token: &str, email: &str, ttl: i64) {
    let now = app.clock_now();
    app.state
        .store
        .issue_signin_token(
            &admit::signin::hash_token(token),
            &WorkspaceId::parse("ws_acme01").expect("id"),
            &Email::parse(email).expect("email"),
            None,
            Timestamp::from_unix(now.unix() + ttl),
            now,
        )
        .await
        .expect("issue");
}

async fn setup() -> TestApp {
    let app = spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_acme01", "name": "Acme", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app
}

#[tokio::test]
async fn a_token_is_redeemed_once() {
    let app = setup().await;
    issue(&app, TOKEN, "dana@acme.test", 3600).await;
    let body = app
        .post_json("/v1/signin-tokens/redeem", &json!({"token": TOKEN}))
        .await
        .expect(200);
    assert_eq!(
        body,
        json!({"email": "dana@acme.test", "workspace_id": "ws_acme01", "role": "owner"})
    );
    app.post_json("/v1/signin-tokens/redeem", &json!({"token": TOKEN}))
        .await
        .expect_error(410, "token_used");
}

#[tokio::test]
async fn concurrent_redemptions_let_exactly_one_through() {
    let app = setup().await;
    issue(&app, TOKEN, "dana@acme.test", 3600).await;
    let body = json!({"token": TOKEN});
    let attempts = (0..10).map(|_| app.post_json("/v1/signin-tokens/redeem", &body));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_gone() {
    let app = setup().await;
    issue(&app, TOKEN, "dana@acme.test", 3600).await;
    app.clock.advance(3600);
    app.post_json("/v1/signin-tokens/redeem", &json!({"token": TOKEN}))
        .await
        .expect_error(410, "token_expired");
}

#[tokio::test]
async fn membership_is_checked_again_at_redemption() {
    let app = setup().await;
    app.put_json(
        "/v1/workspaces/ws_acme01/members/lee@acme.test",
        &json!({"role": "admin"}),
    )
    .await
    .expect(200);
    issue(&app, TOKEN, "lee@acme.test", 3600).await;
    app.delete("/v1/workspaces/ws_acme01/members/lee@acme.test")
        .await
        .expect_empty(204);
    app.post_json("/v1/signin-tokens/redeem", &json!({"token": TOKEN}))
        .await
        .expect_error(403, "not_a_member");
    // Invited again, the same (unused) link works.
    app.put_json(
        "/v1/workspaces/ws_acme01/members/lee@acme.test",
        &json!({"role": "member"}),
    )
    .await
    .expect(200);
    let body = app
        .post_json("/v1/signin-tokens/redeem", &json!({"token": TOKEN}))
        .await
        .expect(200);
    assert_eq!(body["role"], "member");
}

#[tokio::test]
async fn only_the_hash_is_stored_and_unknown_tokens_are_refused() {
    let app = setup().await;
    issue(&app, TOKEN, "dana@acme.test", 3600).await;
    let mut db = app.database().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM signin_tokens")
        .fetch_all(&mut db)
        .await
        .expect("read");
    assert_eq!(stored, [admit::signin::hash_token(TOKEN)]);
    assert_ne!(stored[0], TOKEN);
    let other = TOKEN.replace('7', "8");
    app.post_json("/v1/signin-tokens/redeem", &json!({"token": other}))
        .await
        .expect_error(404, "token_not_found");
    app.post_json("/v1/signin-tokens/redeem", &json!({"token": "short"}))
        .await
        .expect_error(404, "token_not_found");
    app.post_json("/v1/signin-tokens/redeem", &json!({}))
        .await
        .expect_error(400, "invalid_request");
}
