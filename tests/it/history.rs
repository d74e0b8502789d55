//! A subscription's long history: its renewals are derived from the
//! subscription's checkpoint and the few events after it, and the result is
//! what a derivation over every event gives — also when an event created
//! inside the checkpoint arrives late, or the checkpoint cannot be read.

use std::collections::BTreeMap;

use admit::simulate::{Event, Purchase};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{
    TestApp, deliver_signed, event_outcomes, metric_value, outbox_messages, spawn_app,
};

const PRICE: &str = "price_AdmitProMonthly01";
const MONTH: i64 = 30 * 86_400;
const MONTHS: i64 = 14;
const WORKSPACE: &str = "ws_history01";

/// The checkout, then a renewal a month, each a turn of its own (as Stripe
/// sends them, weeks apart); the last turn is `late`, an event of an early
/// renewal held back until the end.
fn turns() -> (Vec<Vec<Event>>, Event) {
    let mut purchase = Purchase::new("owner@history.test", Some(WORKSPACE), PRICE);
    purchase.t -= (MONTHS + 1) * MONTH;
    purchase.created = Some(purchase.t);
    let mut turns = vec![purchase.checkout()];
    for _ in 0..MONTHS {
        purchase.t += MONTH;
        turns.push(purchase.renewal());
    }
    // The third renewal's invoice.paid: created long before the checkpoint's second.
    let late = turns[3].remove(0);
    (turns, late)
}

async fn app() -> TestApp {
    let app = spawn_app().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WORKSPACE, "name": "History", "owner_email": "owner@history.test"}),
    )
    .await
    .expect(201);
    app
}

/// The billing state, each event's status and outcome, and the messages.
/// (Scenarios are left out: S7 depends on receipt times, which differ.)
async fn settled(app: &TestApp) -> (Value, Vec<Value>, Vec<String>) {
    let mut billing = app
        .get(&format!("/v1/workspaces/{WORKSPACE}/billing"))
        .await
        .expect(200);
    if let Some(fields) = billing.as_object_mut() {
        fields.remove("updated_at");
    }
    let outcomes = event_outcomes(app, &[]).await;
    let outbox = outbox_messages(app).await;
    (billing, outcomes, outbox)
}

/// Derivations by how they read the history, from `/metrics`.
async fn derivations(app: &TestApp) -> BTreeMap<&'static str, f64> {
    let metrics = app.metrics().await;
    ["events", "checkpoint", "refold"]
        .into_iter()
        .map(|history| {
            let series = format!("admit_derivations_total{{history=\"{history}\"}}");
            (history, metric_value(&metrics, &series).unwrap_or(0.0))
        })
        .collect()
}

/// The subscription's checkpoint row: (events it counts, its JSON).
async fn checkpoint(app: &TestApp) -> Option<(i64, String)> {
    let mut db = app.database().await;
    let row = sqlx::query_as("SELECT events, fold FROM subscription_checkpoints")
        .fetch_optional(&mut db)
        .await
        .expect("checkpoint row");
    db.close().await.expect("close");
    row
}

#[tokio::test]
async fn a_long_history_is_derived_from_its_checkpoint_and_a_late_event_from_every_event() {
    let (turns, late) = turns();

    // Month by month, as admit would have lived them.
    let monthly = app().await;
    for turn in &turns {
        deliver_signed(&monthly, turn).await;
        monthly.drain().await;
    }
    let (counted, _) = checkpoint(&monthly).await.expect("a checkpoint was taken");
    let all_but_late = turns.iter().map(Vec::len).sum::<usize>() as i64;
    assert!(
        counted >= all_but_late - 1 - 2 * admit_core::provisioning::CHECKPOINT_AFTER as i64,
        "the checkpoint keeps up with the history: {counted} of {all_but_late}"
    );
    let before_late = derivations(&monthly).await;
    assert!(
        before_late["checkpoint"] >= 5.0,
        "renewals derived from the checkpoint: {before_late:?}"
    );
    assert_eq!(before_late["refold"], 0.0, "{before_late:?}");

    deliver_signed(&monthly, std::slice::from_ref(&late)).await;
    monthly.drain().await;
    let after_late = derivations(&monthly).await;
    assert_eq!(
        after_late["refold"], 1.0,
        "the late event is derived from every event: {after_late:?}"
    );
    let (recounted, _) = checkpoint(&monthly).await.expect("checkpoint");
    assert!(
        recounted > counted,
        "the next checkpoint is folded from every event, the late one too: {recounted} ≤ {counted}"
    );

    // The oracle: the same deliveries, derived once over everything.
    let at_once = app().await;
    for turn in &turns {
        deliver_signed(&at_once, turn).await;
    }
    deliver_signed(&at_once, std::slice::from_ref(&late)).await;
    at_once.drain().await;

    let got = settled(&monthly).await;
    let want = settled(&at_once).await;
    assert_eq!(got.0["subscription_status"], "active", "{:?}", got.0);
    assert_eq!(got.0, want.0, "billing state");
    assert_eq!(got.1, want.1, "event outcomes");
    assert_eq!(got.2, want.2, "messages");
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_read_is_set_aside_and_taken_again() {
    let (turns, _) = turns();
    let app = app().await;
    let (last, earlier) = turns.split_last().expect("turns");
    for turn in earlier {
        deliver_signed(&app, turn).await;
        app.drain().await;
    }
    let (counted, _) = checkpoint(&app).await.expect("a checkpoint was taken");
    let mut db = app.database().await;
    sqlx::query("UPDATE subscription_checkpoints SET fold = '{\"not\": \"a fold\"}'")
        .execute(&mut db)
        .await
        .expect("spoil the checkpoint");
    db.close().await.expect("close");

    deliver_signed(&app, last).await;
    app.drain().await;
    assert!(derivations(&app).await["refold"] >= 1.0);
    let (recounted, fold) = checkpoint(&app).await.expect("checkpoint");
    assert!(recounted >= counted, "{recounted} < {counted}");
    assert!(
        fold.contains("\"fold\""),
        "a readable checkpoint again: {fold}"
    );
    let billing = app
        .get(&format!("/v1/workspaces/{WORKSPACE}/billing"))
        .await
        .expect(200);
    assert_eq!(billing["subscription_status"], "active");
    let renewed_to = last
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.body).expect("body"))
        .find(|body| body["type"] == "customer.subscription.updated")
        .and_then(|body| body["data"]["object"]["items"]["data"][0]["current_period_end"].as_i64());
    assert_eq!(
        billing["current_period_end"].as_i64(),
        renewed_to,
        "the last renewal applied"
    );
}

#[tokio::test]
async fn a_replayed_event_inside_a_checkpoint_settles_as_before() {
    let (turns, _) = turns();
    let app = app().await;
    for turn in &turns {
        deliver_signed(&app, turn).await;
        app.drain().await;
    }
    let before = settled(&app).await;
    let counted = derivations(&app).await;
    let early = &turns[2][0];
    let id = serde_json::from_slice::<Value>(&early.body).expect("body")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post_json(&format!("/v1/events/{id}/replay"), &json!({}))
        .await
        .expect(202);
    assert_eq!(
        app.drain().await,
        1,
        "the replayed event is processed again"
    );
    let now = derivations(&app).await;
    assert_eq!(
        (
            now["checkpoint"] - counted["checkpoint"],
            now["refold"] - counted["refold"]
        ),
        (1.0, 0.0),
        "derived from the checkpoint that covers it: {now:?}"
    );
    assert_eq!(settled(&app).await, before, "replaying changes nothing");
}

#[tokio::test]
async fn a_subscription_with_an_event_read_from_its_body_takes_no_checkpoint() {
    let (turns, _) = turns();
    let app = app().await;
    let (first, later) = turns.split_at(3);
    for turn in first {
        deliver_signed(&app, turn).await;
        app.drain().await;
    }
    // As a row stored before ingress kept the billing event: the store
    // would not count it, so a checkpoint over it could not be checked.
    let mut db = app.database().await;
    let cleared = sqlx::query(
        "UPDATE stripe_events SET billing = NULL
         WHERE id = (SELECT id FROM stripe_events WHERE type = 'invoice.paid' ORDER BY created LIMIT 1)",
    )
    .execute(&mut db)
    .await
    .expect("clear a stored billing event");
    assert_eq!(cleared.rows_affected(), 1);
    sqlx::query("DELETE FROM subscription_checkpoints")
        .execute(&mut db)
        .await
        .expect("no checkpoint yet");
    db.close().await.expect("close");

    for turn in later {
        deliver_signed(&app, turn).await;
        app.drain().await;
    }
    assert_eq!(checkpoint(&app).await, None);
    assert_eq!(derivations(&app).await["checkpoint"], 0.0);
    let billing = app
        .get(&format!("/v1/workspaces/{WORKSPACE}/billing"))
        .await
        .expect(200);
    assert_eq!(billing["subscription_status"], "active");
    assert_eq!(billing["subscription_plan"], "pro");
}

#[tokio::test]
async fn a_second_subscription_started_inside_a_checkpoint_is_judged_by_its_standing_then() {
    let (turns, _) = turns();
    // A second subscription for the same workspace, bought months ago,
    // delivered now: which one holds the plan depends on how the first
    // stood when the second began, inside the first's checkpoint.
    let mut second = Purchase::new("owner@history.test", Some(WORKSPACE), PRICE);
    second.t -= (MONTHS - 4) * MONTH;
    second.created = Some(second.t);
    let duplicate = second.checkout();
    let (last, earlier) = turns.split_last().expect("turns");

    let monthly = app().await;
    for turn in earlier {
        deliver_signed(&monthly, turn).await;
        monthly.drain().await;
    }
    let taken = checkpoint(&monthly).await.expect("a checkpoint was taken");
    deliver_signed(&monthly, &duplicate).await;
    monthly.drain().await;
    deliver_signed(&monthly, last).await;
    monthly.drain().await;
    let counted = derivations(&monthly).await;
    assert_eq!(
        counted["refold"], 0.0,
        "the first subscription's standing then comes from its checkpoint: {counted:?}"
    );
    assert!(counted["checkpoint"] > 0.0, "{counted:?}");
    let (still, _) = checkpoint(&monthly).await.expect("checkpoint");
    assert!(still >= taken.0, "{still} < {}", taken.0);

    let at_once = app().await;
    for turn in earlier {
        deliver_signed(&at_once, turn).await;
    }
    deliver_signed(&at_once, &duplicate).await;
    deliver_signed(&at_once, last).await;
    at_once.drain().await;
    let got = settled(&monthly).await;
    assert_eq!(got, settled(&at_once).await);
    let cases = monthly.get("/v1/cases").await.expect(200);
    assert!(
        cases.to_string().contains("duplicate_subscription"),
        "the second subscription is held: {cases}"
    );
}
