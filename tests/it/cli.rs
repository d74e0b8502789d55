//! The `admit` binary's operator commands, run as a child process against a
//! test app's database.

use std::process::Command;

use serde_json::json;

use crate::helpers::{PRIMARY_SECRET, TestApp, database_url, spawn_app};

fn admit(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_admit"))
        .args(args)
        .env("ADMIT_DATABASE_URL", database_url(app.dir.path()))
        .env(
            "ADMIT_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/admit-test.toml"),
        )
        .env("ADMIT_LOG", "warn")
        .output()
        .expect("the admit binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn outbox_list_and_resend() {
    let app = spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_acme01", "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
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
    assert_eq!(app.drain_mail().await, 1);

    let (code, out, err) = admit(&app, &["outbox", "list", "--state", "sent"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("onboarding"))
        .unwrap_or_else(|| panic!("no onboarding row: {out}"));
    assert!(
        line.contains("dana@acme.test") && line.contains("sent"),
        "{line}"
    );
    let id = line
        .split_whitespace()
        .next()
        .expect("id column")
        .to_owned();

    let (code, out, err) = admit(&app, &["outbox", "resend", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending"), "{out}");
    let listed = app.get("/v1/outbox?state=pending").await.expect(200);
    assert_eq!(listed["messages"][0]["id"].to_string(), id);

    let (code, _, err) = admit(&app, &["outbox", "list", "--state", "lost"]);
    assert_eq!(code, 1);
    assert!(err.contains("--state must be one of"), "{err}");
    let (code, _, err) = admit(&app, &["outbox", "resend", "999999"]);
    assert_eq!(code, 1);
    assert!(err.contains("no outbox message"), "{err}");
}
