//! admit against localstripe, a real, stateful Stripe stand-in (legacy API
//! shapes: plans, `items[0][plan]`, card sources): webhooks it signs and
//! delivers to a running admit, its events list (`backfill`), its
//! subscriptions and customers (`reconcile`), and the `admit` binary's
//! `backfill` and `reconcile` commands.
//!
//! localstripe signs with the real time, so each app's clock follows the
//! real time here (the other tests start theirs in 2026 at `helpers::START`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use admit::{Clock, ManualClock, SystemClock};
use admit_core::Timestamp;
use admit_stripe::api::StripeClient;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::helpers::{PRIMARY_SECRET, TestApp, database_url, spawn_app_in_with};
use crate::localstripe::{API_KEY, LocalStripe};

const WS: &str = "ws_ls01";
const OWNER: &str = "dana@localstripe.test";
/// In the `pro` plan of tests/it/admit-test.toml.
const PLAN: &str = "plan_AdmitProMonthly01";
/// How long localstripe (about 1 s per webhook) and admit together may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// Keeps a test app's clock on the real time while it lives.
struct RealTime(JoinHandle<()>);

impl RealTime {
    fn follow(clock: Arc<ManualClock>) -> Self {
        clock.set(SystemClock.now());
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                clock.set(SystemClock.now());
            }
        }))
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// admit on `dir` with its Stripe API pointed at `ls`; `background` runs the
/// inbox processor as webhooks arrive (otherwise the test drains it).
async fn start_admit(
    dir: Arc<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    ls: &LocalStripe,
    background: bool,
) -> TestApp {
    let base = ls.url();
    spawn_app_in_with(
        dir,
        clock,
        &[
            ("ADMIT_STRIPE_API_KEY", API_KEY),
            ("ADMIT_STRIPE_API_BASE", &base),
            (
                "ADMIT_PROCESS_IN_BACKGROUND",
                if background { "true" } else { "false" },
            ),
        ],
    )
    .await
}

/// A fresh admit whose clock is the real time.
async fn fresh_admit(ls: &LocalStripe, background: bool) -> (TestApp, RealTime) {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let follow = RealTime::follow(clock.clone());
    (start_admit(dir, clock, ls, background).await, follow)
}

fn client(app: &TestApp) -> StripeClient {
    app.state
        .stripe
        .clone()
        .expect("the app has a Stripe client (ADMIT_STRIPE_API_KEY is set)")
}

async fn create_workspace(app: &TestApp) {
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Localstripe Labs", "owner_email": OWNER}),
    )
    .await
    .expect(201);
}

async fn access(app: &TestApp) -> Value {
    app.get(&format!("/v1/access?workspace_id={WS}&email={OWNER}"))
        .await
        .expect(200)
}

async fn billing(app: &TestApp) -> Value {
    app.get(&format!("/v1/workspaces/{WS}/billing"))
        .await
        .expect(200)
}

struct Purchase {
    customer: String,
    subscription: String,
}

/// The catalog's legacy plan, [`PLAN`], in localstripe.
async fn create_plan(ls: &LocalStripe) {
    let product = ls.create_product("Pro").await;
    assert_eq!(ls.create_plan(PLAN, &product, 2900).await, PLAN);
}

/// The whole story through localstripe's webhooks: the workspace, the
/// endpoint, a customer and a paid subscription naming the workspace; waits
/// until admit gives the owner the `pro` plan.
async fn provision(ls: &LocalStripe, app: &TestApp) -> Purchase {
    create_workspace(app).await;
    ls.register_webhook("admit", &app.url("/webhooks/stripe"), PRIMARY_SECRET)
        .await;
    create_plan(ls).await;
    let customer = ls.create_customer(OWNER, Some(WS)).await;
    let subscription = ls.create_subscription(&customer, PLAN, Some(WS)).await;
    assert_eq!(subscription["status"], "active", "{subscription}");
    let subscription = subscription["id"].as_str().expect("id").to_owned();

    let started = Instant::now();
    loop {
        let now = access(app).await;
        if now["plan"] == "pro" {
            assert_eq!(now["allowed"], true, "{now}");
            assert_eq!(now["reason"], "active", "{now}");
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not provisioned within {PATIENCE:?}: {now}\nlocalstripe log:\n{}",
            ls.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Webhooks arrive in no particular order, and `pro` may come before the
    // rest: wait until admit has every event localstripe sent.
    all_delivered(ls, app).await;
    Purchase {
        customer,
        subscription,
    }
}

/// Waits until every event localstripe has is in admit's inbox, processed.
async fn all_delivered(ls: &LocalStripe, app: &TestApp) {
    let started = Instant::now();
    let events = ls.get("/v1/events?limit=100").await;
    for event in events["data"].as_array().into_iter().flatten() {
        let id = event["id"].as_str().expect("event id");
        loop {
            let stored = app.get(&format!("/v1/events/{id}")).await;
            if stored.status == 200 {
                let stored = stored.expect(200);
                if stored["status"] != "received" {
                    assert_ne!(stored["status"], "failed", "{stored}");
                    break;
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} {id} not delivered and processed within {PATIENCE:?}\nlocalstripe log:\n{}",
                event["type"],
                ls.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Stops `app`, lets `change` happen in localstripe while nothing listens
/// (waiting until localstripe has tried, and failed, to deliver `lost`),
/// then starts admit again on the same database, processor not in the
/// background, so the test drains it.
async fn while_admit_is_down(
    app: TestApp,
    ls: &LocalStripe,
    change: impl AsyncFnOnce(),
    lost: &str,
) -> TestApp {
    let (dir, clock) = (app.dir.clone(), app.clock.clone());
    app.stop().await;
    change().await;
    ls.wait_for_log(&format!("webhook \"{lost}\" failed"), PATIENCE)
        .await;
    start_admit(dir, clock, ls, false).await
}

fn assert_canceled(billing: &Value, access: &Value, purchase: &Purchase) {
    assert_eq!(billing["subscription_status"], "canceled", "{billing}");
    assert_eq!(billing["stripe_customer_id"], purchase.customer.as_str());
    assert_eq!(
        billing["stripe_subscription_id"],
        purchase.subscription.as_str()
    );
    assert_eq!(access["plan"], "free", "{access}");
    assert_eq!(access["reason"], "canceled", "{access}");
}

#[tokio::test]
async fn localstripe_webhooks_provision_a_workspace() {
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, true).await;
    let purchase = provision(&ls, &app).await;

    let state = billing(&app).await;
    assert_eq!(state["subscription_status"], "active", "{state}");
    assert_eq!(state["subscription_plan"], "pro");
    assert_eq!(state["stripe_customer_id"], purchase.customer.as_str());
    assert_eq!(
        state["stripe_subscription_id"],
        purchase.subscription.as_str()
    );
    assert_eq!(state["purchaser_email"], OWNER);
    assert_eq!(state["cancel_at_period_end"], false);
    let subscription = ls
        .get(&format!("/v1/subscriptions/{}", purchase.subscription))
        .await;
    assert_eq!(
        state["current_period_end"], subscription["current_period_end"],
        "the period as localstripe has it"
    );
    // The provisioning event came from localstripe, signed and delivered.
    let event = state["updated_by_event"].as_str().expect("an event id");
    let stored = app.get(&format!("/v1/events/{event}")).await.expect(200);
    assert_eq!(stored["status"], "processed", "{stored}");
}

#[tokio::test]
async fn a_change_made_while_admit_was_down_is_repaired_by_backfill() {
    let began = SystemClock.now();
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, true).await;
    let purchase = provision(&ls, &app).await;

    let app = while_admit_is_down(
        app,
        &ls,
        async || {
            ls.cancel_subscription(&purchase.subscription).await;
        },
        "customer.subscription.deleted",
    )
    .await;
    assert_eq!(billing(&app).await["subscription_status"], "active");

    let since = Timestamp::from_unix(began.unix() - 300);
    let client = client(&app);
    let report = admit::stripe_sync::backfill(&app.state.store, &client, since, app.clock_now())
        .await
        .expect("backfill runs");
    assert_eq!(report.unreadable, 0, "{report:?}");
    assert!(report.stored >= 1, "the lost event is stored: {report:?}");
    assert_eq!(report.stored + report.already_had, report.fetched);
    let listed = ls.get("/v1/events?limit=100").await;
    assert_eq!(
        Some(report.fetched),
        listed["data"].as_array().map(Vec::len),
        "every event localstripe has"
    );
    assert!(app.drain().await >= 1);

    assert_canceled(&billing(&app).await, &access(&app).await, &purchase);

    let again = admit::stripe_sync::backfill(&app.state.store, &client, since, app.clock_now())
        .await
        .expect("backfill runs again");
    assert_eq!(again.stored, 0, "{again:?}");
    assert_eq!(again.already_had, again.fetched);
    assert_eq!(again.fetched, report.fetched);
}

#[tokio::test]
async fn reconcile_apply_repairs_drift() {
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, true).await;
    let purchase = provision(&ls, &app).await;
    let app = while_admit_is_down(
        app,
        &ls,
        async || {
            ls.cancel_subscription(&purchase.subscription).await;
        },
        "customer.subscription.deleted",
    )
    .await;

    let client = client(&app);
    let config = app.state.config.clone();
    let support = config.support_email.as_ref().map(|e| e.as_str());
    let reconcile = async |apply| {
        admit::stripe_sync::reconcile(
            &app.state.store,
            &client,
            &config.catalog,
            support,
            app.clock_now(),
            apply,
        )
        .await
        .expect("reconcile runs")
    };

    let dry = reconcile(false).await;
    assert_eq!(dry.subscriptions_checked, 1, "{dry:?}");
    assert_eq!(dry.repaired, 0);
    let status = dry
        .drift
        .iter()
        .find(|d| d.field == "subscription_status")
        .unwrap_or_else(|| panic!("status drift reported: {dry:?}"));
    assert_eq!(
        (
            status.workspace.as_str(),
            status.subscription.as_str(),
            status.admit.as_str(),
            status.stripe.as_str()
        ),
        (WS, purchase.subscription.as_str(), "active", "canceled")
    );
    assert_eq!(app.drain().await, 0, "a dry run records nothing");
    assert_eq!(billing(&app).await["subscription_status"], "active");

    let applied = reconcile(true).await;
    assert_eq!(applied.drift, dry.drift);
    assert_eq!(applied.repaired, 1);
    assert!(app.drain().await >= 1);
    assert_canceled(&billing(&app).await, &access(&app).await, &purchase);

    let audit = app
        .get(&format!("/v1/workspaces/{WS}/audit"))
        .await
        .expect(200);
    let repair = audit["entries"]
        .as_array()
        .and_then(|entries| {
            entries.iter().find(|e| {
                e["action"] == "billing.changed" && e["after"]["subscription_status"] == "canceled"
            })
        })
        .unwrap_or_else(|| panic!("the repair is audited: {audit}"));
    assert_eq!(
        repair["before"]["subscription_status"], "active",
        "{repair}"
    );

    let after = reconcile(false).await;
    assert!(after.drift.is_empty(), "repaired: {:?}", after.drift);
}

/// localstripe sends no webhook for a subscription update, as Stripe could
/// fail to: only reconciliation learns of it.
#[tokio::test]
async fn reconcile_apply_repairs_a_change_no_webhook_announced() {
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, true).await;
    let purchase = provision(&ls, &app).await;
    let updated = ls
        .update_subscription(&purchase.subscription, &[("cancel_at_period_end", "true")])
        .await;
    assert_eq!(updated["cancel_at_period_end"], true);

    let client = client(&app);
    let config = app.state.config.clone();
    let dry = admit::stripe_sync::reconcile(
        &app.state.store,
        &client,
        &config.catalog,
        None,
        app.clock_now(),
        false,
    )
    .await
    .expect("reconcile runs");
    let rows: Vec<_> = dry
        .drift
        .iter()
        .map(|d| (d.field, d.admit.as_str(), d.stripe.as_str()))
        .collect();
    assert_eq!(rows, [("cancel_at_period_end", "false", "true")]);

    let applied = admit::stripe_sync::reconcile(
        &app.state.store,
        &client,
        &config.catalog,
        None,
        app.clock_now(),
        true,
    )
    .await
    .expect("reconcile runs");
    assert_eq!(applied.repaired, 1);
    // The background processor picks the recorded object up.
    let started = Instant::now();
    loop {
        let state = billing(&app).await;
        if state["cancel_at_period_end"] == true {
            assert_eq!(state["subscription_status"], "active", "{state}");
            assert_eq!(state["subscription_plan"], "pro", "{state}");
            break;
        }
        assert!(started.elapsed() < PATIENCE, "not repaired: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        access(&app).await["plan"],
        "pro",
        "paid until the period ends"
    );
}

#[tokio::test]
async fn two_customers_for_one_workspace_open_a_duplicate_customer_case() {
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, false).await;
    create_workspace(&app).await;
    let first = ls.create_customer(OWNER, Some(WS)).await;
    let second = ls.create_customer("lee@localstripe.test", Some(WS)).await;
    let _unrelated = ls.create_customer("kim@elsewhere.test", None).await;

    let client = client(&app);
    let config = app.state.config.clone();
    let support = config.support_email.as_ref().map(|e| e.as_str());
    let run = async || {
        admit::stripe_sync::reconcile(
            &app.state.store,
            &client,
            &config.catalog,
            support,
            app.clock_now(),
            true,
        )
        .await
        .expect("reconcile runs")
    };

    let report = run().await;
    assert_eq!(report.cases_opened, 1, "{report:?}");
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(
        report
            .duplicate_customers
            .get(WS)
            .map(|c| c.iter().cloned().collect::<Vec<_>>()),
        Some(both.clone())
    );

    let held = |body: Value| -> Vec<Value> {
        body["cases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["kind"] == "duplicate_customer")
            .cloned()
            .collect()
    };
    let cases = held(app.get("/v1/cases?state=held").await.expect(200));
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["workspace_id"], WS);
    assert_eq!(
        cases[0]["details"]["customers"],
        json!(both),
        "{}",
        cases[0]
    );

    let again = run().await;
    assert_eq!(again.cases_opened, 0, "{again:?}");
    assert_eq!(again.duplicate_customers, report.duplicate_customers);
    let cases = held(app.get("/v1/cases?state=held").await.expect(200));
    assert_eq!(cases.len(), 1, "no second case: {cases:?}");
}

/// `admit …` as an operator runs it, against `dir`'s database and `ls`.
fn admit_cli(dir: &std::path::Path, ls: &LocalStripe, args: &[&str]) -> (i32, String) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_admit"))
        .args(args)
        .env("ADMIT_DATABASE_URL", database_url(dir))
        .env("ADMIT_STRIPE_API_KEY", API_KEY)
        .env("ADMIT_STRIPE_API_BASE", ls.url())
        .env("ADMIT_CONFIG", config)
        .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
        .env("ADMIT_APP_TOKEN", crate::helpers::APP_TOKEN)
        .env(
            "ADMIT_MAIL_URL",
            format!("file://{}", dir.join("mail").display()),
        )
        .env("ADMIT_LOG", "warn")
        .output()
        .expect("run the admit binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn cli_backfill_and_reconcile_run_against_localstripe() {
    let began = SystemClock.now();
    let ls = LocalStripe::start().await;
    let (app, _time) = fresh_admit(&ls, false).await;
    create_workspace(&app).await;
    let dir = app.dir.clone();
    app.stop().await;
    // Bought while no webhook endpoint was registered: admit heard nothing.
    create_plan(&ls).await;
    let customer = ls.create_customer(OWNER, Some(WS)).await;
    let subscription = ls.create_subscription(&customer, PLAN, Some(WS)).await;
    let subscription = subscription["id"].as_str().expect("id").to_owned();
    let events = ls.get("/v1/events?limit=100").await["data"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(events > 0);
    let verify = [
        "verify",
        "--workspace",
        WS,
        "--email",
        OWNER,
        "--plan",
        "pro",
    ];
    assert_eq!(admit_cli(dir.path(), &ls, &verify).0, 1, "HOLD before");

    let (code, out) = admit_cli(dir.path(), &ls, &["reconcile"]);
    assert_eq!(code, 0, "admit reconcile: {out}");
    assert!(
        out.contains("1 subscriptions checked; 1 differences"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(WS) && l.contains(&subscription) && l.contains("not tracked")),
        "the dry run names the untracked subscription: {out}"
    );

    let since = (began.unix() - 300).to_string();
    let (code, out) = admit_cli(dir.path(), &ls, &["backfill", "--since", &since]);
    assert_eq!(code, 0, "admit backfill: {out}");
    assert!(
        out.contains(&format!(
            "{events} events fetched, {events} new, 0 already stored, 0 unreadable"
        )),
        "the output counts the {events} events: {out}"
    );
    let (code, out) = admit_cli(dir.path(), &ls, &verify);
    assert_eq!(code, 0, "PASS after the backfill: {out}");

    let (code, again) = admit_cli(dir.path(), &ls, &["backfill", "--since", "1h"]);
    assert_eq!(code, 0, "admit backfill again: {again}");
    assert!(
        again.contains(&format!(
            "{events} events fetched, 0 new, {events} already stored"
        )),
        "nothing new the second time: {again}"
    );

    let (code, out) = admit_cli(dir.path(), &ls, &["reconcile"]);
    assert_eq!(code, 0, "admit reconcile: {out}");
    assert!(
        out.contains("1 subscriptions checked; 0 differences"),
        "{out}"
    );
}
