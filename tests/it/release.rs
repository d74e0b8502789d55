//! The release gate as the release owner runs it: `admit qa-gate`,
//! `admit readiness` (and `approve`), `GET /v1/readiness`, and the removal
//! of the gate's workspaces on a running admit — the real binary as a child
//! process, against real databases.

use std::path::Path;
use std::process::Command;

use admit::Clock;
use serde_json::{Value, json};

use crate::helpers::{APP_TOKEN, PRIMARY_SECRET, TestApp, database_url, spawn_app, spawn_app_with};
use crate::stripe_story::{Sub, T, WS, acme, deliver};

const TEST_CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/admit-test.toml");

/// Runs `admit` on the database in `dir` (a fresh one per test), with the
/// given configuration file (`None`: the embedded demo catalog). On the
/// blocking pool, so a test app on this runtime keeps serving meanwhile.
async fn admit(dir: &Path, config: Option<&str>, args: &[&str]) -> (i32, String, String) {
    crate::helpers::prepare_database(dir).await;
    let dir = dir.to_owned();
    let config = config.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || run_admit(&dir, config.as_deref(), &args))
        .await
        .expect("the admit child process")
}

fn run_admit(dir: &Path, config: Option<&str>, args: &[String]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_admit"));
    command
        .args(args)
        .env("ADMIT_DATABASE_URL", database_url(dir))
        .env(
            "ADMIT_MAIL_URL",
            format!("file://{}", dir.join("mail").display()),
        )
        .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
        .env("ADMIT_APP_TOKEN", APP_TOKEN)
        .env("ADMIT_LOG", "warn")
        .env_remove("ADMIT_CONFIG")
        .env_remove("ADMIT_STRIPE_API_KEY");
    if let Some(config) = config {
        command.env("ADMIT_CONFIG", config);
    }
    let output = command.output().expect("the admit binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no row {id}: {report}"))
}

#[tokio::test]
async fn the_gate_passes_every_scenario_on_the_demo_and_the_test_catalog() {
    for catalog in [None, Some(TEST_CATALOG)] {
        let dir = tempfile::tempdir().expect("dir");
        let (code, out, err) = admit(dir.path(), catalog, &["qa-gate", "--json"]).await;
        let report = json_of(&out);
        assert_eq!(report["result"], "PASS", "{catalog:?}: {out}\n{err}");
        assert_eq!(code, 0, "{err}");
        let ids: Vec<&str> = report["scenarios"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        for id in admit_core::readiness::REQUIRED_SCENARIOS {
            assert!(ids.contains(id), "{id} ran: {ids:?}");
        }
        // Every purchase row ran in every order it declares.
        assert_eq!(
            row(&report, "S8")["orders"].as_array().map(Vec::len),
            Some(4)
        );
    }
}

#[tokio::test]
async fn the_table_ends_with_the_verdict_and_one_scenario_runs_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, err) = admit(dir.path(), None, &["qa-gate", "--scenario", "s8"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("scenario"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("S8 ") && l.contains("PASS")),
        "{out}"
    );
    assert!(!out.contains("S1 "), "only S8 (and the catalog) ran: {out}");
    assert_eq!(lines.last(), Some(&"QA GATE: PASS"));
    let (code, _, err) = admit(dir.path(), None, &["qa-gate", "--scenario", "S99"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("no scenario S99"), "{err}");
}

#[tokio::test]
async fn a_catalog_without_the_price_sold_turns_the_gate_hold_with_the_reason() {
    // The demo catalog does not know the test catalog's price.
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, _) = admit(
        dir.path(),
        None,
        &["qa-gate", "--json", "--price", "price_AdmitProMonthly01"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let report = json_of(&out);
    assert_eq!(report["result"], "HOLD");
    let catalog = row(&report, "catalog");
    assert_eq!(catalog["result"], "HOLD");
    assert!(
        catalog["why"][0]
            .as_str()
            .is_some_and(|w| w.contains("price_AdmitProMonthly01 is in no plan")),
        "{catalog}"
    );
    let s1 = row(&report, "S1");
    assert_eq!(s1["result"], "HOLD");
    let why = s1["why"].to_string();
    assert!(why.contains("was held") && why.contains("S10"), "{why}");

    let (code, out, _) = admit(
        dir.path(),
        None,
        &[
            "qa-gate",
            "--price",
            "price_AdmitProMonthly01",
            "--scenario",
            "S1",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(out.trim_end().ends_with("QA GATE: HOLD (2 of 2)"), "{out}");
}

#[tokio::test]
async fn a_scenario_whose_expectation_admit_does_not_meet_holds_with_what_differs() {
    let dir = tempfile::tempdir().expect("dir");
    let scenarios = dir.path().join("scenarios");
    std::fs::create_dir(&scenarios).expect("dir");
    let s1 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("qa/scenarios/S01.toml"),
    )
    .expect("S01");
    // Someone expects the purchaser's colleague to get the onboarding.
    let wrong = s1.replace(
        "kind = \"onboarding\"\nto = \"dana@acme.test\"",
        "kind = \"onboarding\"\nto = \"lee@acme.test\"",
    );
    assert_ne!(wrong, s1);
    std::fs::write(scenarios.join("S01.toml"), wrong).expect("write");
    let dir_arg = scenarios.display().to_string();
    let (code, out, _) = admit(
        dir.path(),
        None,
        &["qa-gate", "--json", "--scenarios", &dir_arg],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let report = json_of(&out);
    let why = row(&report, "S1")["why"].to_string();
    assert!(
        why.contains("onboarding to dana@acme.test queued, expected onboarding to lee@acme.test"),
        "{why}"
    );
}

#[tokio::test]
async fn readiness_holds_on_a_fresh_instance_is_ready_after_a_pass_and_records_a_decision() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, err) = admit(dir.path(), Some(TEST_CATALOG), &["migrate"]).await;
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = admit(dir.path(), Some(TEST_CATALOG), &["readiness"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Recommendation: HOLD"), "{out}");
    assert!(
        out.contains("[!] no full QA gate run yet: run `admit qa-gate`"),
        "{out}"
    );
    // A run of one scenario does not speak for the table.
    let (code, _, _) = admit(
        dir.path(),
        Some(TEST_CATALOG),
        &["qa-gate", "--scenario", "S1"],
    )
    .await;
    assert_eq!(code, 0);
    let (code, out, _) = admit(dir.path(), Some(TEST_CATALOG), &["readiness"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no full QA gate run yet"), "{out}");

    let (code, out, err) = admit(dir.path(), Some(TEST_CATALOG), &["qa-gate"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = admit(dir.path(), Some(TEST_CATALOG), &["readiness", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let memo = json_of(&out);
    assert_eq!(memo["recommendation"], "READY");
    assert_eq!(
        memo["confidence"], "Medium",
        "no deliveries yet, no Stripe key"
    );
    assert!(memo["done"].to_string().contains("QA gate PASS"), "{memo}");
    let hash = memo["hash"].as_str().expect("hash").to_owned();

    let (code, out, err) = admit(
        dir.path(),
        Some(TEST_CATALOG),
        &[
            "readiness",
            "approve",
            "--by",
            "rel-owner",
            "--decision",
            "go",
            "--note",
            "launch Monday",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&hash), "{out}");
    let (_, out, _) = admit(dir.path(), Some(TEST_CATALOG), &["readiness"]).await;
    assert!(
        out.contains(&format!(
            "go by rel-owner on a READY memo ({hash}): launch Monday"
        )),
        "{out}"
    );
    let (code, _, err) = admit(
        dir.path(),
        Some(TEST_CATALOG),
        &[
            "readiness",
            "approve",
            "--by",
            "x",
            "--decision",
            "maybe",
            "--note",
            "n",
        ],
    )
    .await;
    assert_eq!(code, 2, "clap refuses it");
    assert!(err.contains("go") && err.contains("no-go"), "{err}");

    // The decision is in the audit log, with the memo it approved.
    let store = admit_store::connect(&database_url(dir.path()))
        .await
        .expect("store");
    let entries = store
        .audit_by_action("readiness.approved", 10)
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0].entry;
    assert_eq!(entry.actor, "operator:rel-owner");
    let after = entry.after.as_ref().expect("after");
    assert_eq!(after["decision"], "go");
    assert_eq!(after["memo_hash"], hash.as_str());
    assert_eq!(after["memo"]["recommendation"], "READY");
    store.close().await;
}

/// An app on `dir`'s database whose held case is two hours old by the time
/// `readiness` (real clock) reads it.
async fn app_with_an_old_held_case() -> TestApp {
    let app = acme().await;
    app.clock
        .set(admit::SystemClock.now().plus_seconds(-2 * 3_600));
    let mut sub = Sub::new(601, "stranger@else.test", T);
    sub.workspace = None;
    deliver(&app, &sub.purchase()).await;
    app
}

#[tokio::test]
async fn a_held_case_older_than_an_hour_holds_the_memo_and_stales_a_go() {
    let app = app_with_an_old_held_case().await;
    let dir = app.dir.path();
    let (code, _, err) = admit(dir, Some(TEST_CATALOG), &["qa-gate"]).await;
    assert_eq!(code, 0, "{err}");
    let case = app.get("/v1/cases?state=held").await.expect(200)["cases"][0]["id"]
        .as_str()
        .expect("a held case")
        .to_owned();
    let (code, out, _) = admit(dir, Some(TEST_CATALOG), &["readiness"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("held missing_workspace cases older than an hour"),
        "{out}"
    );
    assert!(out.contains(&case), "the memo lists the case: {out}");

    // Resolved, the memo turns READY; a go on it turns stale once a new case holds it.
    app.post_json(
        &format!("/v1/cases/{case}/resolve"),
        &json!({"action": "dismiss", "note": "test purchase"}),
    )
    .await
    .expect(200);
    app.drain().await;
    let (code, out, _) = admit(dir, Some(TEST_CATALOG), &["readiness"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = admit(
        dir,
        Some(TEST_CATALOG),
        &[
            "readiness",
            "approve",
            "--by",
            "rel",
            "--decision",
            "go",
            "--note",
            "ok",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let mut again = Sub::new(602, "other@else.test", T);
    again.workspace = None;
    deliver(&app, &again.purchase()).await;
    app.drain_mail().await;
    let (code, out, _) = admit(dir, Some(TEST_CATALOG), &["readiness"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("STALE: the memo has turned HOLD since"),
        "{out}"
    );

    // The HTTP memo is the CLI's (on the same clock).
    app.clock.set(admit::SystemClock.now());
    let (_, cli, _) = admit(dir, Some(TEST_CATALOG), &["readiness", "--json"]).await;
    let cli = json_of(&cli);
    let http = app.get("/v1/readiness").await.expect(200);
    assert_eq!(http["recommendation"], cli["recommendation"]);
    assert_eq!(http["hash"], cli["hash"]);
    assert_eq!(http["blockers"], cli["blockers"]);
    app.get_without_token("/v1/readiness")
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn signature_failures_without_a_verified_delivery_are_a_blocker() {
    let app = spawn_app().await;
    app.clock.set(admit::SystemClock.now());
    // Anybody's request without a header is noise, not a wrong secret.
    app.post_webhook(b"{}".to_vec(), None).await.expect(400);
    let memo = app.get("/v1/readiness").await.expect(200);
    assert!(
        !memo["blockers"].to_string().contains("signature"),
        "{memo}"
    );

    let forged = admit_stripe::signature::sign(b"{}", "whsec_not_ours", app.clock_now());
    app.post_webhook(b"{}".to_vec(), Some(&forged))
        .await
        .expect_error(400, "signature_mismatch");
    let memo = app.get("/v1/readiness").await.expect(200);
    let blockers = memo["blockers"].to_string();
    assert!(
        blockers.contains("1 webhook signature failures in the last 24 h (1 signature_mismatch) and no verified delivery"),
        "{blockers}"
    );

    // Beside verified deliveries the same failure is a line of work in progress.
    deliver(&app, &Sub::new(604, "dana@acme.test", T).purchase()).await;
    let memo = app.get("/v1/readiness").await.expect(200);
    assert!(
        !memo["blockers"].to_string().contains("signature"),
        "{memo}"
    );
    assert!(
        memo["in_progress"]
            .to_string()
            .contains("signature failures"),
        "{memo}"
    );
}

#[tokio::test]
async fn a_workspace_nobody_pays_for_can_be_removed() {
    let app = acme().await;
    deliver(&app, &Sub::new(603, "dana@acme.test", T).purchase()).await;
    app.delete(&format!("/v1/workspaces/{WS}"))
        .await
        .expect_error(409, "workspace_has_subscription");
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_spare01", "name": "Spare", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    app.delete("/v1/workspaces/ws_spare01")
        .await
        .expect_empty(204);
    app.get("/v1/workspaces/ws_spare01")
        .await
        .expect_error(404, "workspace_not_found");
    app.delete("/v1/workspaces/ws_spare01")
        .await
        .expect_error(404, "workspace_not_found");
}

#[tokio::test]
async fn the_gate_runs_its_subset_against_a_running_admit_and_leaves_nothing_behind() {
    let app = spawn_app_with(&[("ADMIT_PROCESS_IN_BACKGROUND", "true")]).await;
    app.clock.set(admit::SystemClock.now());
    let dir = app.dir.path();
    let url = app.url("");
    let (code, out, err) = admit(
        dir,
        Some(TEST_CATALOG),
        &["qa-gate", "--json", "--against", &url, "--no-record"],
    )
    .await;
    let report = json_of(&out);
    assert_eq!(report["result"], "PASS", "{out}\n{err}");
    assert_eq!(code, 0);
    let ids: Vec<&str> = report["scenarios"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["catalog", "S1", "S2", "S6", "S13"], "the subset");
    // The gate's own deliveries are not Stripe's: they leave the memo's
    // delivery figures and signature failures alone.
    let memo = app.get("/v1/readiness").await.expect(200);
    assert!(
        memo["in_progress"]
            .to_string()
            .contains("no webhook delivery verified yet"),
        "{memo}"
    );
    assert!(
        !memo["blockers"].to_string().contains("signature"),
        "{memo}"
    );
    // Its workspaces are gone; the events stay as history.
    let events = app.get("/v1/events?limit=1000").await.expect(200);
    assert!(!events["events"].as_array().expect("events").is_empty());
    let audit = app
        .state
        .store
        .audit_by_action("workspace.deleted", 100)
        .await
        .expect("audit");
    assert!(
        audit.len() >= 6,
        "every run removed its workspace: {}",
        audit.len()
    );
    for entry in &audit {
        let workspace = entry.entry.workspace_id.as_ref().expect("workspace");
        assert!(workspace.as_str().starts_with("qa"), "{workspace}");
        app.get(&format!("/v1/workspaces/{workspace}"))
            .await
            .expect_error(404, "workspace_not_found");
    }
}

/// A Stripe stand-in for the price checks (localstripe has no prices): a
/// wiremock answering `GET /v1/prices/{id}` with Stripe's shapes.
async fn stripe_prices(answers: &[(&str, Option<bool>)]) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let server = wiremock::MockServer::start().await;
    for (id, active) in answers {
        let response = match active {
            Some(active) => ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "object": "price", "active": active,
                "recurring": {"interval": "month", "interval_count": 1}
            })),
            None => ResponseTemplate::new(404).set_body_json(json!({"error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "message": format!("No such price: '{id}'")
            }})),
        };
        Mock::given(method("GET"))
            .and(path(format!("/v1/prices/{id}")))
            .respond_with(response)
            .mount(&server)
            .await;
    }
    server
}

/// The memo of a fresh app whose Stripe is `server`.
async fn readiness_with_stripe(server: &wiremock::MockServer) -> Value {
    let app = spawn_app_with(&[
        ("ADMIT_STRIPE_API_KEY", "sk_test_admit_readiness"),
        ("ADMIT_STRIPE_API_BASE", &server.uri()),
    ])
    .await;
    app.get("/v1/readiness").await.expect(200)
}

#[tokio::test]
async fn with_a_key_every_catalog_price_is_checked_at_stripe() {
    let server = stripe_prices(&[
        ("price_AdmitProMonthly01", Some(true)),
        ("price_AdmitProYearly01", Some(true)),
        ("plan_AdmitProMonthly01", None),
        ("price_AdmitTeam01", Some(false)),
    ])
    .await;
    let memo = readiness_with_stripe(&server).await;
    let prices = memo["blockers"]
        .as_array()
        .and_then(|b| b.iter().find(|i| i["key"] == "prices"))
        .unwrap_or_else(|| panic!("a price blocker: {memo}"));
    assert_eq!(
        prices["text"],
        "catalog prices not found at Stripe: plan_AdmitProMonthly01 (pro); archived at Stripe: price_AdmitTeam01 (team)"
    );

    let server = stripe_prices(&[
        ("price_AdmitProMonthly01", Some(true)),
        ("price_AdmitProYearly01", Some(true)),
        ("plan_AdmitProMonthly01", Some(true)),
        ("price_AdmitTeam01", Some(true)),
    ])
    .await;
    let memo = readiness_with_stripe(&server).await;
    assert!(
        memo["done"]
            .to_string()
            .contains("all 4 catalog prices exist at Stripe and are active"),
        "{memo}"
    );
}
