//! Outbox delivery end to end: signed Stripe events in, the processor, the
//! sender, and what a real SMTP server (tests/it/smtp_server.py) or the mail
//! folder received.

use std::path::Path;

use admit::signin::hash_token;
use admit_store::OutboxRow;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::helpers::{
    PRIMARY_SECRET, TestApp, mail_folder, metric_value, spawn_app_in_with, spawn_app_with,
};
use crate::smtp::{Reply, SmtpServer, free_port, smtp_url};

const WS: &str = "ws_acme01";
const ONBOARDING: &str = "onboarding:sub_AcmePro0001:dana@acme.test";
const ACCESS_DELAYED: &str = "access_delayed:sub_AcmePro0001:dana@acme.test";
const SUPPORT_ALERT: &str = "support_alert:missing_workspace:sub_AcmePro0001:support";
/// The sender's domain in the test configuration (`admit <no-reply@localhost>`).
const FROM_DOMAIN: &str = "localhost";

const PURCHASE: &[&str] = &[
    "current/customer_created.json",
    "current/customer_subscription_created.json",
    "current/invoice_paid.json",
    "current/invoice_payment_succeeded.json",
    "current/customer_subscription_updated_active.json",
    "current/checkout_session_completed.json",
];
const CHECKOUT: &str = "current/checkout_session_completed.json";

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stripe")
            .join(file),
    )
    .unwrap_or_else(|e| panic!("fixture {file}: {e}"))
}

async fn post_all(app: &TestApp, files: &[&str]) {
    for file in files {
        app.post_signed(&fixture(file), PRIMARY_SECRET)
            .await
            .expect(200);
    }
}

/// Acme Rockets, owned by dana, the purchaser in the fixtures.
async fn acme(app: &TestApp) {
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
}

/// S1: the paid checkout, processed; its onboarding message is due.
async fn s1(app: &TestApp) {
    acme(app).await;
    post_all(app, PURCHASE).await;
    app.drain().await;
}

async fn message(app: &TestApp, key: &str) -> OutboxRow {
    app.state
        .store
        .list_outbox(None, 1000)
        .await
        .expect("outbox")
        .into_iter()
        .find(|row| row.idempotency_key == key)
        .unwrap_or_else(|| panic!("no outbox row {key}"))
}

/// The Message-ID a message with this key carries, computed independently.
fn expected_message_id(key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("<{}@{FROM_DOMAIN}>", &digest[..32])
}

/// The token in a sign-in link: what follows `token=`, 64 hex digits.
fn token_in(text: &str) -> Option<String> {
    let start = text.find("token=")? + "token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (token.len() == 64).then_some(token)
}

/// The sign-in tokens as stored: (hash, email, workspace, outbox id).
async fn stored_tokens(app: &TestApp) -> Vec<(String, String, String, Option<i64>)> {
    let mut conn = app.database().await;
    let rows = sqlx::query_as(
        "SELECT token_hash, email, workspace_id, outbox_id FROM signin_tokens ORDER BY created_at",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read tokens");
    conn.close().await.expect("close");
    rows
}

#[tokio::test]
async fn s1_onboarding_reaches_the_purchaser_once_with_a_sign_in_link() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &smtp.url())]).await;
    s1(&app).await;
    assert_eq!(app.drain_mail().await, 1);

    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    let mail = &received[0];
    assert_eq!(mail.rcpt_tos, ["dana@acme.test"]);
    assert!(mail.header("to").contains("dana@acme.test"), "{mail:#?}");
    assert!(mail.header("from").contains("no-reply@localhost"));
    let subject = mail.header("subject");
    assert!(
        subject.contains("Acme Rockets") || subject.contains("Pro"),
        "the subject names the workspace or the plan: {subject}"
    );
    assert_eq!(mail.header("message-id"), expected_message_id(ONBOARDING));
    assert!(
        mail.raw
            .contains(&format!("Message-ID: {}", expected_message_id(ONBOARDING))),
        "as sent: {}",
        mail.raw
    );
    assert!(!mail.header("date").is_empty());
    assert_eq!(mail.content_type, "multipart/alternative");
    for body in [&mail.text, &mail.html] {
        assert!(body.contains("Acme Rockets"), "{body}");
        assert!(body.contains("Pro"), "{body}");
    }

    let token = token_in(&mail.text).expect("the text part has a sign-in link with a token");
    assert!(
        mail.text.contains(&format!("workspace={WS}&token={token}")),
        "the configured link: {}",
        mail.text
    );
    assert!(mail.html.contains(&token), "the HTML part has the link too");
    let row = message(&app, ONBOARDING).await;
    assert_eq!(
        stored_tokens(&app).await,
        [(
            hash_token(&token),
            "dana@acme.test".to_owned(),
            WS.to_owned(),
            Some(row.id)
        )],
        "only the hash is stored"
    );
    assert_ne!(hash_token(&token), token);
    // The link works, once: the application redeems the token from the email.
    let redeemed = app
        .post_json(
            "/v1/signin-tokens/redeem",
            &serde_json::json!({"token": token}),
        )
        .await
        .expect(200);
    assert_eq!(
        redeemed,
        serde_json::json!({"email": "dana@acme.test", "workspace_id": WS, "role": "owner"})
    );
    app.post_json(
        "/v1/signin-tokens/redeem",
        &serde_json::json!({"token": token}),
    )
    .await
    .expect_error(410, "token_used");

    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));
    assert_eq!(row.sent_at, Some(app.clock_now()));
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"admit_outbox_sent_total{kind="onboarding"}"#),
        Some(1.0),
        "{metrics}"
    );

    // Nothing is sent twice.
    app.clock.advance(86_400);
    assert_eq!(app.drain_mail().await, 0);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn twenty_concurrent_duplicates_and_a_restart_still_send_one_message() {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let settings = [("ADMIT_MAIL_URL", url.as_str())];
    let app = spawn_app_with(&settings).await;
    acme(&app).await;
    post_all(&app, &PURCHASE[..PURCHASE.len() - 1]).await;
    let checkout = fixture(CHECKOUT);
    let deliveries = (0..20).map(|_| app.post_signed(&checkout, PRIMARY_SECRET));
    for response in futures::future::join_all(deliveries).await {
        response.expect(200);
    }
    app.drain().await;

    // Stopped with the message derived but not yet sent.
    let (dir, clock) = (app.dir.clone(), app.clock.clone());
    app.stop().await;
    let app = spawn_app_in_with(dir, clock, &settings).await;
    let deliveries = (0..10).map(|_| app.post_signed(&checkout, PRIMARY_SECRET));
    for response in futures::future::join_all(deliveries).await {
        response.expect(200);
    }
    app.drain().await;
    assert_eq!(app.drain_mail().await, 1);
    assert_eq!(smtp.received().len(), 1);

    // Stripe keeps redelivering after the message went out.
    post_all(&app, PURCHASE).await;
    app.drain().await;
    app.clock.advance(3_600);
    assert_eq!(app.drain_mail().await, 0);
    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(
        received[0].header("message-id"),
        expected_message_id(ONBOARDING)
    );
    let outbox = app
        .state
        .store
        .list_outbox(None, 100)
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].state.as_str(), outbox[0].attempts), ("sent", 1));
}

#[tokio::test]
async fn smtp_down_keeps_the_message_pending_and_it_goes_out_once_the_server_is_back() {
    let port = free_port();
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &smtp_url(port))]).await;
    s1(&app).await;
    assert_eq!(app.drain_mail().await, 1, "one attempt");

    let now = app.clock_now();
    let row = message(&app, ONBOARDING).await;
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1));
    assert!(
        row.last_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{row:?}"
    );
    assert_eq!(
        row.next_attempt_at,
        now.plus_seconds(30),
        "the first backoff"
    );
    assert!(row.next_attempt_at > now);
    assert_eq!(app.drain_mail().await, 0, "not due before the backoff");

    let smtp = SmtpServer::start_on(port, Reply::Accept).await;
    assert_eq!(app.drain_mail().await, 0, "still not due");
    assert!(smtp.received().is_empty());
    app.clock.advance(30);
    assert_eq!(app.drain_mail().await, 1);
    let received = smtp.received();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let row = message(&app, ONBOARDING).await;
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));

    // The failed attempt's token was withdrawn; the delivered link works alone.
    let token = token_in(&received[0].text).expect("a sign-in link");
    let tokens = stored_tokens(&app).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].0, hash_token(&token));

    app.clock.advance(86_400);
    assert_eq!(app.drain_mail().await, 0);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_message_undeliverable_for_good_is_dead_after_the_configured_attempts_and_kept() {
    let port = free_port();
    let app = spawn_app_with(&[
        ("ADMIT_MAIL_URL", &smtp_url(port)),
        ("ADMIT_MAIL_MAX_ATTEMPTS", "3"),
    ])
    .await;
    s1(&app).await;

    for (attempt, backoff) in [(1, 30), (2, 60)] {
        assert_eq!(app.drain_mail().await, 1);
        let row = message(&app, ONBOARDING).await;
        assert_eq!((row.state.as_str(), row.attempts), ("pending", attempt));
        assert_eq!(row.next_attempt_at, app.clock_now().plus_seconds(backoff));
        app.clock.advance(backoff);
    }
    assert_eq!(app.drain_mail().await, 1, "the third and last attempt");
    let dead = message(&app, ONBOARDING).await;
    assert_eq!((dead.state.as_str(), dead.attempts), ("dead", 3));
    assert!(dead.last_error.is_some());
    app.clock.advance(7 * 86_400);
    assert_eq!(app.drain_mail().await, 0, "a dead message is not retried");

    let listed = app.get("/v1/outbox?state=dead").await.expect(200);
    let messages = listed["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{listed}");
    assert_eq!(messages[0]["idempotency_key"], ONBOARDING);
    assert_eq!(messages[0]["attempts"], 3);
    assert!(messages[0]["last_error"].as_str().is_some());
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"admit_outbox_failures_total{kind="onboarding",permanent="false"}"#
        ),
        Some(3.0),
        "{metrics}"
    );

    // Nothing lost: once the server is there, an operator's resend delivers it.
    let smtp = SmtpServer::start_on(port, Reply::Accept).await;
    app.post_json(&format!("/v1/outbox/{}/resend", dead.id), &json!({}))
        .await
        .expect(200);
    assert_eq!(app.drain_mail().await, 1);
    assert_eq!(smtp.received().len(), 1);
    let sent = message(&app, ONBOARDING).await;
    assert_eq!((sent.state.as_str(), sent.attempts), ("sent", 1));
}

#[tokio::test]
async fn a_550_rejection_is_dead_after_one_attempt() {
    let smtp = SmtpServer::start_on(free_port(), Reply::Permanent550).await;
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &smtp.url())]).await;
    s1(&app).await;
    assert_eq!(app.drain_mail().await, 1);

    let row = message(&app, ONBOARDING).await;
    assert_eq!((row.state.as_str(), row.attempts), ("dead", 1));
    let error = row.last_error.expect("the rejection is recorded");
    assert!(error.contains("550"), "{error}");
    assert!(smtp.received().is_empty());
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"admit_outbox_failures_total{kind="onboarding",permanent="true"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    app.clock.advance(86_400);
    assert_eq!(app.drain_mail().await, 0);
}

#[tokio::test]
async fn a_451_is_retried_and_delivered_once_the_server_accepts() {
    let mut smtp = SmtpServer::start_on(free_port(), Reply::Transient451).await;
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &smtp.url())]).await;
    s1(&app).await;
    assert_eq!(app.drain_mail().await, 1);

    let row = message(&app, ONBOARDING).await;
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1));
    let error = row.last_error.expect("the refusal is recorded");
    assert!(error.contains("451"), "{error}");

    smtp.restart(Reply::Accept).await;
    app.clock.advance(30);
    assert_eq!(app.drain_mail().await, 1);
    assert_eq!(smtp.received().len(), 1);
    let row = message(&app, ONBOARDING).await;
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));
}

/// The `.eml` files in `folder`: name → bytes.
fn eml_files(folder: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(folder)
        .expect("the mail folder exists")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect()
}

fn header_of<'a>(eml: &'a str, name: &str) -> Option<&'a str> {
    eml.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn the_folder_transport_writes_one_eml_per_message_named_by_its_stable_message_id() {
    let out = tempfile::tempdir().expect("tempdir");
    let folder = out.path().join("mail");
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &format!("file://{}", folder.display()))]).await;
    // No workspace: the purchaser hears access is delayed, support gets an alert.
    post_all(&app, PURCHASE).await;
    app.drain().await;
    assert_eq!(app.drain_mail().await, 2);

    let files = eml_files(&folder);
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    for key in [ACCESS_DELAYED, SUPPORT_ALERT] {
        let id = expected_message_id(key);
        let name = format!("{}.eml", &id[1..33]);
        let eml = String::from_utf8_lossy(&files[&name]).into_owned();
        assert_eq!(header_of(&eml, "Message-ID"), Some(id.as_str()), "{eml}");
        assert!(header_of(&eml, "Date").is_some());
    }
    let alert_file = format!("{}.eml", &expected_message_id(SUPPORT_ALERT)[1..33]);
    let alert = String::from_utf8_lossy(&files[&alert_file]).into_owned();
    assert_eq!(header_of(&alert, "To"), Some("support@admit.test"));

    // An operator resends one: its file is replaced, the other is untouched.
    let resent = message(&app, ACCESS_DELAYED).await;
    app.post_json(&format!("/v1/outbox/{}/resend", resent.id), &json!({}))
        .await
        .expect(200);
    assert_eq!(app.drain_mail().await, 1);
    let after = eml_files(&folder);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "no new or temporary files"
    );
    assert_eq!(after[&alert_file], files[&alert_file]);
    let delayed_file = format!("{}.eml", &expected_message_id(ACCESS_DELAYED)[1..33]);
    let delayed = String::from_utf8_lossy(&after[&delayed_file]).into_owned();
    assert_eq!(
        header_of(&delayed, "Message-ID"),
        Some(expected_message_id(ACCESS_DELAYED).as_str()),
        "a resent message keeps its id"
    );
    assert_eq!(message(&app, ACCESS_DELAYED).await.state, "sent");
}

#[tokio::test]
async fn a_support_alert_without_a_support_address_is_dead_and_says_why() {
    let app = spawn_app_with(&[("ADMIT_SUPPORT_EMAIL", "")]).await;
    post_all(&app, PURCHASE).await;
    app.drain().await;
    assert_eq!(app.drain_mail().await, 2);

    let alert = message(&app, SUPPORT_ALERT).await;
    assert_eq!(alert.recipient, "support");
    assert_eq!((alert.state.as_str(), alert.attempts), ("dead", 1));
    assert_eq!(
        alert.last_error.as_deref(),
        Some("no support address configured: set ADMIT_SUPPORT_EMAIL")
    );
    let listed = app.get("/v1/outbox?state=dead").await.expect(200);
    assert_eq!(listed["messages"][0]["idempotency_key"], SUPPORT_ALERT);
    assert_eq!(
        message(&app, ACCESS_DELAYED).await.state,
        "sent",
        "the purchaser's message is not held up by it"
    );
}

#[tokio::test]
async fn the_background_sender_delivers_and_stops_with_the_app() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[
        ("ADMIT_PROCESS_IN_BACKGROUND", "true"),
        ("ADMIT_MAIL_URL", &smtp.url()),
    ])
    .await;
    // The background processor provisions; stepping it here would race it.
    acme(&app).await;
    post_all(&app, PURCHASE).await;
    let started = std::time::Instant::now();
    // The server has the message a moment before the sender records it as sent.
    while smtp.received().is_empty() || message(&app, ONBOARDING).await.state != "sent" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not sent within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_message_that_cannot_be_rendered_is_dead_at_once_with_the_reason() {
    let app = spawn_app_with(&[]).await;
    let mut conn = app.database().await;
    let now = app.clock_now().unix();
    // `$1` on both dialects (sqlx numbers SQLite's parameters the same way).
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, kind, recipient, payload, state, next_attempt_at, created_at)
         VALUES ('mystery:x:dana@acme.test', 'mystery', 'dana@acme.test', '{}', 'pending', $1, $1)",
    )
    .bind(now)
    .execute(&mut conn)
    .await
    .expect("insert");
    conn.close().await.expect("close");

    assert_eq!(app.drain_mail().await, 1);
    let row = message(&app, "mystery:x:dana@acme.test").await;
    assert_eq!((row.state.as_str(), row.attempts), ("dead", 1));
    let error = row.last_error.expect("the reason is kept");
    assert!(error.contains("mystery"), "{error}");
    assert!(!mail_folder(app.dir.path()).exists(), "nothing was written");
}

#[tokio::test]
async fn a_server_that_hangs_on_one_recipient_holds_up_no_other_message() {
    use crate::stripe_story::{Sub, T, deliver};
    let smtp = SmtpServer::start_on(free_port(), Reply::StallFor("dana@acme.test")).await;
    let app = spawn_app_with(&[("ADMIT_MAIL_URL", &smtp.url())]).await;
    for (id, owner) in [
        ("ws_acme01", "dana@acme.test"),
        ("ws_other01", "olga@other.test"),
    ] {
        app.post_json(
            "/v1/workspaces",
            &json!({"id": id, "name": id, "owner_email": owner}),
        )
        .await
        .expect(201);
    }
    deliver(&app, &Sub::new(801, "dana@acme.test", T).purchase()).await;
    let mut other = Sub::new(802, "olga@other.test", T);
    other.workspace = Some("ws_other01".into());
    deliver(&app, &other.purchase()).await;

    let sender = app.sender.clone();
    let sending = tokio::spawn(async move { sender.drain().await });
    // Olga's onboarding goes out while Dana's attempt still waits on its server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    while smtp.received().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other message was held up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(smtp.received()[0].rcpt_tos, ["olga@other.test"]);
    assert!(!sending.is_finished(), "Dana's attempt is still waiting");

    // Dana's attempt ends at its deadline and is retried later, not lost.
    assert_eq!(sending.await.expect("joined").expect("drained"), 2);
    let rows = app.state.store.list_outbox(None, 10).await.expect("outbox");
    let dana = rows
        .iter()
        .find(|r| r.recipient == "dana@acme.test")
        .expect("dana's message");
    assert_eq!(dana.state, "pending", "{dana:?}");
    assert!(
        dana.last_error.as_deref().is_some_and(|e| e.contains("30")),
        "{dana:?}"
    );
}
