//! `admit simulate` against a running `admit serve`: the real binary twice,
//! the events signed with the configured secret, the outcome read over the API.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{APP_TOKEN, PRIMARY_SECRET};
use crate::shutdown::{exits, ready, sigterm, start};

struct Simulator<'a> {
    base: &'a str,
}

impl Simulator<'_> {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_admit"))
            .arg("simulate")
            .args(args)
            .args(["--url", self.base])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "ADMIT_CONFIG",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
            )
            .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
            .env("ADMIT_APP_TOKEN", APP_TOKEN)
            .env("ADMIT_LOG", "warn")
            .output()
            .expect("admit simulate runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "simulate {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(APP_TOKEN)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn workspace(client: &reqwest::Client, base: &str, id: &str, owner: &str) {
    let response = client
        .post(format!("{base}/v1/workspaces"))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"id": id, "name": id, "owner_email": owner}))
        .send()
        .await
        .expect("create workspace");
    assert_eq!(response.status().as_u16(), 201);
}

/// The access JSON `--wait` prints after the lines of what was sent.
fn printed_access(stdout: &str) -> Value {
    let start = stdout.find('{').expect("access JSON printed");
    serde_json::from_str(&stdout[start..]).expect("access JSON")
}

async fn held(client: &reqwest::Client, base: &str, kind: &str) -> Vec<Value> {
    let cases = get(client, base, &format!("/v1/cases?kind={kind}")).await;
    cases["cases"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn simulate_drives_the_table_against_a_running_server() {
    let dir = tempfile::tempdir().expect("dir");
    crate::helpers::prepare_database(dir.path()).await;
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    ready(&mut server, &client).await;
    let base = server.base.clone();
    let simulate = Simulator { base: &base };
    workspace(&client, &base, "ws_sim_one", "dana@acme.test").await;
    workspace(&client, &base, "ws_sim_two", "erin@beta.test").await;
    workspace(&client, &base, "ws_sim_late", "finn@gamma.test").await;

    // S1: the owner pays.
    let out = simulate.run(&[
        "checkout",
        "--workspace",
        "ws_sim_one",
        "--email",
        "dana@acme.test",
        "--wait",
    ]);
    assert_eq!(
        out.matches("\nsent ").count() + usize::from(out.starts_with("sent ")),
        4,
        "{out}"
    );
    let access = printed_access(&out);
    assert_eq!(
        (
            access["allowed"].as_bool(),
            access["plan"].as_str(),
            access["reason"].as_str()
        ),
        (Some(true), Some("pro"), Some("active")),
        "{out}"
    );
    let events = get(
        &client,
        &base,
        "/v1/events?workspace_id=ws_sim_one&type=checkout.session.completed",
    )
    .await;
    assert_eq!(events["events"][0]["scenario"], "S1", "{events}");

    // S2: someone else at the company pays; duplicated and shuffled deliveries change nothing.
    let out = simulate.run(&[
        "checkout",
        "--workspace",
        "ws_sim_two",
        "--email",
        "erin@beta.test",
        "--mismatch",
        "--duplicate",
        "2",
        "--shuffle",
        "--wait",
    ]);
    assert!(out.contains("(duplicate)"), "{out}");
    assert_eq!(printed_access(&out)["plan"], "pro");
    let mismatch = held(&client, &base, "email_mismatch").await;
    assert_eq!(mismatch.len(), 1, "{mismatch:?}");
    assert_eq!(mismatch[0]["scenario"], "S2");
    assert_eq!(mismatch[0]["purchaser_email"], "billing@beta.test");

    // S5: a Payment Link purchase nobody's workspace matches.
    simulate.run(&[
        "checkout",
        "--workspace",
        "ws_sim_one",
        "--email",
        "stranger@else.test",
        "--unbound",
        "--wait",
    ]);
    let missing = held(&client, &base, "missing_workspace").await;
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0]["scenario"], "S5");

    // S8: a second subscription for the first workspace.
    simulate.run(&[
        "checkout",
        "--workspace",
        "ws_sim_one",
        "--email",
        "dana@acme.test",
        "--wait",
    ]);
    let duplicates = held(&client, &base, "duplicate_subscription").await;
    assert_eq!(duplicates.len(), 1, "{duplicates:?}");
    assert_eq!(duplicates[0]["scenario"], "S8");

    // S11: a renewal fails; the plan is kept during the grace period.
    simulate.run(&[
        "checkout",
        "--workspace",
        "ws_sim_late",
        "--email",
        "finn@gamma.test",
        "--wait",
    ]);
    let out = simulate.run(&["renewal-failed", "--workspace", "ws_sim_late", "--wait"]);
    let access = printed_access(&out);
    assert_eq!(
        (
            access["subscription_status"].as_str(),
            access["reason"].as_str()
        ),
        (Some("past_due"), Some("past_due_grace")),
        "{out}"
    );

    sigterm(&server);
    exits(&mut server, Duration::from_secs(30)).await;
}

#[test]
fn simulate_refuses_without_a_configured_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_admit"))
        .args([
            "simulate",
            "checkout",
            "--workspace",
            "ws_x",
            "--email",
            "a@b.test",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ADMIT_WEBHOOK_SECRETS"), "{stderr}");
}
