//! Stripe billing semantics over HTTP (DESIGN.md S15–S18, §2.3): signed
//! events shaped like what current accounts send (API 2025-09-30 and later,
//! with an older 2018 account where it matters), delivered in creation order,
//! reversed and shuffled, each processed as it arrives.

use serde_json::{Value, json};

use crate::helpers::{PRIMARY_SECRET, TestApp, spawn_app};
use crate::stripe_story::{DAY, PRO, Sub, T, WS, acme, deliver, event};

/// The three delivery orders every order-sensitive test runs.
fn orders(events: &[Vec<u8>]) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut reversed = events.to_vec();
    reversed.reverse();
    // A fixed shuffle: odd positions first, then even, each backwards.
    let mut shuffled: Vec<Vec<u8>> = events.iter().skip(1).step_by(2).rev().cloned().collect();
    shuffled.extend(events.iter().step_by(2).rev().cloned());
    vec![
        ("creation order", events.to_vec()),
        ("reversed", reversed),
        ("shuffled", shuffled),
    ]
}

async fn billing(app: &TestApp) -> Value {
    app.get(&format!("/v1/workspaces/{WS}/billing"))
        .await
        .expect(200)
}

async fn access(app: &TestApp, email: &str) -> Value {
    app.get(&format!("/v1/access?workspace_id={WS}&email={email}"))
        .await
        .expect(200)
}

async fn outbox_keys(app: &TestApp) -> Vec<String> {
    app.state
        .store
        .list_outbox(None, 1000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.state != "superseded")
        .map(|r| r.idempotency_key)
        .collect()
}

async fn cases(app: &TestApp, state: &str) -> Vec<Value> {
    app.get(&format!("/v1/cases?state={state}"))
        .await
        .expect(200)["cases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// ---- 1. scheduled cancellations ----------------------------------------------

#[tokio::test]
async fn a_cancel_at_ends_paid_access_without_the_deletion_event_in_every_order() {
    let sub = Sub::new(1, "dana@acme.test", T);
    let end = T + 20 * DAY;
    let mut events = sub.purchase();
    events.push(event(
        "evt_1Sem1CancelAt",
        "customer.subscription.updated",
        T + 5 * DAY,
        sub.object(
            "active",
            PRO,
            json!({"cancel_at": end, "canceled_at": T + 5 * DAY,
                   "cancellation_details": {"reason": "cancellation_requested"}}),
        ),
        Some(json!({"cancel_at": null, "canceled_at": null})),
    ));
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        let state = billing(&app).await;
        assert_eq!(state["cancel_at"], end, "{order}: {state}");
        assert_eq!(state["cancel_at_period_end"], false, "{order}");
        assert_eq!(state["subscription_plan"], "pro", "{order}");
        assert!(
            outbox_keys(&app)
                .await
                .contains(&format!("cancellation:{}:dana@acme.test", sub.id)),
            "{order}: the owner is told"
        );
        assert_eq!(access(&app, "dana@acme.test").await["reason"], "active");
        app.clock.advance(end - app.clock_now().unix());
        let after = access(&app, "dana@acme.test").await;
        assert_eq!(
            (after["reason"].as_str(), after["plan"].as_str()),
            (Some("period_ended"), Some("free")),
            "{order}: {after}"
        );
        assert_eq!(billing(&app).await["subscription_plan"], "free", "{order}");
        // The deletion arrives (late): the same answer.
        deliver(
            &app,
            &[event(
                "evt_1Sem1Deleted",
                "customer.subscription.deleted",
                end,
                sub.object(
                    "canceled",
                    PRO,
                    json!({"cancel_at": end, "canceled_at": T + 5 * DAY, "ended_at": end}),
                ),
                None,
            )],
        )
        .await;
        let deleted = access(&app, "dana@acme.test").await;
        assert_eq!(deleted["reason"], "period_ended", "{order}: {deleted}");
        assert_eq!(deleted["subscription_status"], "canceled", "{order}");
    }
}

#[tokio::test]
async fn an_older_account_schedules_the_end_with_the_flag_alone() {
    // API 2018-02-28: the plan and the period on the subscription, no items period.
    let period_end = T + 30 * DAY;
    let legacy = |status: &str, cancel: bool| {
        json!({
            "id": "sub_LegacySem01", "object": "subscription", "customer": "cus_LegacySem01",
            "status": status, "created": T, "current_period_start": T, "current_period_end": period_end,
            "cancel_at_period_end": cancel, "canceled_at": if cancel { json!(T + DAY) } else { json!(null) },
            "metadata": {"workspace_id": WS},
            "plan": {"id": "plan_AdmitProMonthly01", "object": "plan", "interval": "month"},
            "items": {"object": "list", "data": [{"object": "subscription_item",
                "plan": {"id": "plan_AdmitProMonthly01", "object": "plan"}}]}
        })
    };
    let body = |id: &str, kind: &str, created: i64, object: Value, previous: Option<Value>| {
        let mut data = json!({"object": object});
        if let Some(previous) = previous {
            data["previous_attributes"] = previous;
        }
        serde_json::to_vec(
            &json!({"id": id, "object": "event", "api_version": "2018-02-28",
            "created": created, "livemode": false, "type": kind, "data": data, "request": null}),
        )
        .expect("serialises")
    };
    let events = vec![
        body(
            "evt_LegacySem01",
            "customer.subscription.created",
            T,
            legacy("active", false),
            None,
        ),
        body(
            "evt_LegacySem02",
            "customer.subscription.updated",
            T + DAY,
            legacy("active", true),
            Some(json!({"cancel_at_period_end": false, "canceled_at": null})),
        ),
    ];
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        assert_eq!(billing(&app).await["cancel_at"], period_end, "{order}");
        app.clock.advance(period_end - app.clock_now().unix());
        assert_eq!(
            access(&app, "dana@acme.test").await["reason"],
            "period_ended",
            "{order}"
        );
    }
}

#[tokio::test]
async fn unscheduling_restores_the_paid_state_in_either_order() {
    let sub = Sub::new(2, "dana@acme.test", T);
    let end = T + 20 * DAY;
    let mut events = sub.purchase();
    events.push(event(
        "evt_1Sem2Schedule",
        "customer.subscription.updated",
        T + 5 * DAY,
        sub.object("active", PRO, json!({"cancel_at": end})),
        Some(json!({"cancel_at": null})),
    ));
    events.push(event(
        "evt_1Sem2Unschedule",
        "customer.subscription.updated",
        T + 6 * DAY,
        sub.object("active", PRO, json!({})),
        Some(json!({"cancel_at": end})),
    ));
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        assert_eq!(billing(&app).await["cancel_at"], Value::Null, "{order}");
        assert!(
            !outbox_keys(&app)
                .await
                .iter()
                .any(|k| k.starts_with("cancellation:")),
            "{order}: no cancellation notice stays due"
        );
        app.clock.advance(end + DAY - app.clock_now().unix());
        assert_eq!(
            access(&app, "dana@acme.test").await["reason"],
            "active",
            "{order}"
        );
    }
}

#[tokio::test]
async fn a_moved_end_date_reaches_the_notice_still_waiting_to_be_sent() {
    let app = acme().await;
    let sub = Sub::new(10, "dana@acme.test", T);
    deliver(&app, &sub.purchase()).await;
    let (first, moved) = (T + 20 * DAY, T + 25 * DAY);
    deliver(
        &app,
        &[event(
            "evt_1Sem10Schedule",
            "customer.subscription.updated",
            T + 5 * DAY,
            sub.object("active", PRO, json!({"cancel_at": first})),
            Some(json!({"cancel_at": null})),
        )],
    )
    .await;
    deliver(
        &app,
        &[event(
            "evt_1Sem10Moved",
            "customer.subscription.updated",
            T + 6 * DAY,
            sub.object("active", PRO, json!({"cancel_at": moved})),
            Some(json!({"cancel_at": first})),
        )],
    )
    .await;
    let rows = app
        .state
        .store
        .list_outbox(Some("pending"), 100)
        .await
        .expect("outbox");
    let notice = rows
        .iter()
        .find(|r| r.kind == "cancellation")
        .unwrap_or_else(|| panic!("a pending cancellation notice: {rows:?}"));
    assert_eq!(notice.payload["access_ends"], moved, "{:?}", notice.payload);
}

// ---- 2. a lapsed subscription beside a newly paid one -------------------------

#[tokio::test]
async fn a_new_paid_subscription_takes_over_from_a_past_due_one_in_every_order() {
    let first = Sub::new(3, "dana@acme.test", T);
    let mut second = Sub::new(4, "lee@acme.test", T + 40 * DAY);
    second.customer.clone_from(&first.customer);
    let mut events = first.purchase();
    events.push(event(
        "evt_1Sem3RenewalFailed",
        "invoice.payment_failed",
        T + 30 * DAY,
        first.invoice("in_Sem3Renewal", "subscription_cycle", false, "Sem3Renewal"),
        None,
    ));
    events.push(event(
        "evt_1Sem3PastDue",
        "customer.subscription.updated",
        T + 30 * DAY + 1,
        first.object("past_due", PRO, json!({})),
        Some(json!({"status": "active"})),
    ));
    events.extend(second.purchase());
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        let state = billing(&app).await;
        assert_eq!(
            state["stripe_subscription_id"],
            second.id.as_str(),
            "{order}: {state}"
        );
        assert_eq!(state["subscription_status"], "active", "{order}");
        assert_eq!(
            access(&app, "lee@acme.test").await["plan"],
            "pro",
            "{order}"
        );
        let held = cases(&app, "held").await;
        let lapsed = held
            .iter()
            .find(|c| c["kind"] == "duplicate_subscription")
            .unwrap_or_else(|| panic!("{order}: a case for the lapsed one: {held:?}"));
        assert_eq!(
            lapsed["stripe_subscription_id"],
            first.id.as_str(),
            "{order}"
        );
        assert_eq!(lapsed["details"]["action"], "cancel_lapsed", "{order}");
        assert_eq!(
            lapsed["details"]["canonical_subscription"],
            second.id.as_str()
        );
        let keys = outbox_keys(&app).await;
        assert!(
            keys.contains(&format!("onboarding:{}:lee@acme.test", second.id)),
            "{order}: {keys:?}"
        );
        assert!(
            !keys.iter().any(|k| k.starts_with("duplicate_charge:")),
            "{order}: nobody is promised a refund: {keys:?}"
        );
    }
}

// ---- 3. thin events --------------------------------------------------------------

#[tokio::test]
async fn a_thin_event_is_stored_and_ignored_not_refused() {
    let app = spawn_app().await;
    let body = br#"{"id":"evt_test_65RCjjRFeL5SNnXq8yp16R9LmSDWSA4Y7qNgwNAHkG0Og","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","livemode":false,"created":"2026-11-30T17:04:11.372Z","context":null,"reason":{"type":"request","request":{"id":"req_v2Sem01","idempotency_key":"4c1b"}},"related_object":{"id":"mtr_test_61R9Ijk","type":"billing.meter","url":"/v1/billing/meters/mtr_test_61R9Ijk"}}"#;
    let answer = app.post_signed(body, PRIMARY_SECRET).await.expect(200);
    assert_eq!(answer["received"], true);
    app.drain().await;
    let stored = app
        .get("/v1/events/evt_test_65RCjjRFeL5SNnXq8yp16R9LmSDWSA4Y7qNgwNAHkG0Og")
        .await
        .expect(200);
    assert_eq!(
        (stored["status"].as_str(), stored["outcome"].as_str()),
        (Some("ignored"), Some("thin_event")),
        "{stored}"
    );
    // An endpoint's ping is a thin event too.
    let ping = br#"{"id":"evt_test_65RPingSem01","object":"v2.core.event","type":"v2.core.event_destination.ping","livemode":false,"created":"2026-11-30T17:05:00Z"}"#;
    app.post_signed(ping, PRIMARY_SECRET).await.expect(200);
    // A thin envelope that is not one is still refused.
    let bad =
        br#"{"id":"evt_test_65RBad","object":"v2.core.event","type":"v1.x","created":"soon"}"#;
    app.post_signed(bad, PRIMARY_SECRET)
        .await
        .expect_error(400, "event_malformed");
}

// ---- 4. same-second updates ---------------------------------------------------------

#[tokio::test]
async fn same_second_updates_end_on_the_last_link_in_either_order() {
    let sub = Sub::new(5, "dana@acme.test", T);
    let t = T + 30 * DAY;
    let mut events = sub.purchase();
    // A renewal retried at once: active → past_due → active in one second. The
    // ids sort the wrong way round on purpose.
    events.push(event(
        "evt_1Sem5zPastDue",
        "customer.subscription.updated",
        t,
        sub.object("past_due", PRO, json!({})),
        Some(json!({"status": "active"})),
    ));
    events.push(event(
        "evt_1Sem5aActive",
        "customer.subscription.updated",
        t,
        sub.object("active", PRO, json!({})),
        Some(json!({"status": "past_due"})),
    ));
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        let state = billing(&app).await;
        assert_eq!(state["subscription_status"], "active", "{order}: {state}");
        assert_eq!(state["updated_by_event"], "evt_1Sem5aActive", "{order}");
    }
}

#[tokio::test]
async fn same_second_updates_of_an_older_account_follow_their_chain() {
    // API 2018-02-28: `plan` on the subscription; a plan change and a
    // cancellation request in one second, ids in the wrong order.
    let legacy = |plan: &str, cancel: bool| {
        json!({
            "id": "sub_LegacySem02", "object": "subscription", "customer": "cus_LegacySem02",
            "status": "active", "created": T, "current_period_end": T + 30 * DAY,
            "cancel_at_period_end": cancel, "metadata": {"workspace_id": WS},
            "plan": {"id": plan, "object": "plan"},
            "items": {"object": "list", "data": [{"object": "subscription_item",
                "plan": {"id": plan, "object": "plan"}}]}
        })
    };
    let body = |id: &str, created: i64, object: Value, previous: Value| {
        serde_json::to_vec(
            &json!({"id": id, "object": "event", "api_version": "2018-02-28",
            "created": created, "livemode": false, "type": "customer.subscription.updated",
            "data": {"object": object, "previous_attributes": previous}}),
        )
        .expect("serialises")
    };
    let t = T + 3 * DAY;
    let events = vec![
        body(
            "evt_LegacySem10",
            T,
            legacy("plan_AdmitProMonthly01", false),
            json!({"status": "incomplete"}),
        ),
        // First the move to Team (previous plan: Pro), then the schedule.
        body(
            "evt_LegacySemZ",
            t,
            legacy("price_AdmitTeam01", false),
            json!({"plan": {"id": "plan_AdmitProMonthly01", "object": "plan"},
                   "items": {"data": [{"plan": {"id": "plan_AdmitProMonthly01"}}]}}),
        ),
        body(
            "evt_LegacySemA",
            t,
            legacy("price_AdmitTeam01", true),
            json!({"cancel_at_period_end": false}),
        ),
    ];
    for (order, delivery) in orders(&events) {
        let app = acme().await;
        deliver(&app, &delivery).await;
        let state = billing(&app).await;
        assert_eq!(state["subscription_plan"], "team", "{order}: {state}");
        assert_eq!(state["cancel_at"], T + 30 * DAY, "{order}: {state}");
        assert_eq!(state["updated_by_event"], "evt_LegacySemA", "{order}");
    }
}

#[tokio::test]
async fn a_tie_the_chain_cannot_break_is_settled_by_asking_stripe() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let sub = Sub::new(9, "dana@acme.test", T);
    let server = MockServer::start().await;
    // Stripe's word now: active.
    Mock::given(method("GET"))
        .and(path(format!("/v1/subscriptions/{}", sub.id)))
        .respond_with(ResponseTemplate::new(200).set_body_json(sub.object(
            "active",
            PRO,
            json!({}),
        )))
        .mount(&server)
        .await;
    let app = crate::helpers::spawn_app_with(&[
        ("ADMIT_STRIPE_API_KEY", "sk_test_admit_ties"),
        ("ADMIT_STRIPE_API_BASE", &server.uri()),
    ])
    .await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Acme Rockets", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect(201);
    deliver(&app, &sub.purchase()).await;
    let t = T + 30 * DAY;
    // The events arrive a minute after Stripe made them; a fetch is stamped now.
    app.clock.advance(t + 60 - app.clock_now().unix());
    // Two snapshots in one second with nothing to chain them (as a fetch or
    // an old endpoint records them): the precedence alone would say past_due.
    deliver(
        &app,
        &[
            event(
                "evt_1Sem9aPastDue",
                "customer.subscription.updated",
                t,
                sub.object("past_due", PRO, json!({})),
                None,
            ),
            event(
                "evt_1Sem9zTrialing",
                "customer.subscription.updated",
                t,
                sub.object("trialing", PRO, json!({})),
                None,
            ),
        ],
    )
    .await;
    let asked = server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == format!("/v1/subscriptions/{}", sub.id))
        .count();
    assert!(asked >= 1, "Stripe was asked");
    let state = billing(&app).await;
    assert_eq!(state["subscription_status"], "active", "{state}");
    let settled_by = state["updated_by_event"]
        .as_str()
        .expect("an event")
        .to_owned();
    let fetched = app
        .get(&format!("/v1/events/{settled_by}"))
        .await
        .expect(200);
    assert_eq!(fetched["source"], "api_fetch");
}

// ---- 5. a plan change to a price outside the catalog ---------------------------

#[tokio::test]
async fn a_plan_change_to_an_unknown_price_keeps_the_plan_and_holds_a_case() {
    let app = acme().await;
    let sub = Sub::new(6, "dana@acme.test", T);
    deliver(&app, &sub.purchase()).await;
    deliver(
        &app,
        &[event(
            "evt_1Sem6Repriced",
            "customer.subscription.updated",
            T + 10 * DAY,
            sub.object("active", "price_1SemEnterprise2026", json!({})),
            Some(
                json!({"items": {"object": "list", "data": [{"object": "subscription_item",
                "price": {"id": PRO, "object": "price"}}]}}),
            ),
        )],
    )
    .await;
    assert_eq!(billing(&app).await["subscription_plan"], "pro");
    assert_eq!(access(&app, "dana@acme.test").await["reason"], "active");
    let held = cases(&app, "held").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["kind"], "unknown_price");
    assert_eq!(
        held[0]["details"]["unknown_prices"],
        json!(["price_1SemEnterprise2026"])
    );
    let keys = outbox_keys(&app).await;
    assert!(
        !keys.iter().any(|k| k.starts_with("access_delayed:")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("support_alert:unknown_price:")),
        "{keys:?}"
    );
    let event = app.get("/v1/events/evt_1Sem6Repriced").await.expect(200);
    assert_eq!(
        (event["status"].as_str(), event["outcome"].as_str()),
        (Some("held"), Some("unknown_price"))
    );
}

// ---- 7. disputes and refunds -----------------------------------------------------

fn dispute(id: &str, created: i64, status: &str, kind: &str) -> Vec<u8> {
    event(
        id,
        kind,
        created,
        json!({"id": "du_1SemDispute01", "object": "dispute", "amount": 4900, "currency": "usd",
               "charge": "ch_3SemCharge01", "payment_intent": "pi_Sem7First",
               "reason": "product_not_received", "status": status,
               "evidence_details": {"due_by": created + 7 * DAY}}),
        None,
    )
}

#[tokio::test]
async fn a_dispute_holds_a_case_for_support_and_access_follows_the_subscription() {
    let app = acme().await;
    let sub = Sub::new(7, "dana@acme.test", T);
    deliver(&app, &sub.purchase()).await;
    let before = billing(&app).await;
    deliver(
        &app,
        &[dispute(
            "evt_1Sem7Disputed",
            T + 9 * DAY,
            "needs_response",
            "charge.dispute.created",
        )],
    )
    .await;
    assert_eq!(
        billing(&app).await,
        before,
        "access does not change by itself"
    );
    assert_eq!(access(&app, "dana@acme.test").await["reason"], "active");
    // The purchaser's success page still says ready: the dispute is support's.
    let page = app
        .client
        .get(app.url(&format!("/welcome?session_id={}", sub.session)))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(page.contains("Pro"), "{page}");
    assert!(!page.contains("case_"), "{page}");
    let held = cases(&app, "held").await;
    let case = held
        .iter()
        .find(|c| c["kind"] == "payment_disputed")
        .unwrap_or_else(|| panic!("a dispute case: {held:?}"));
    assert_eq!(case["workspace_id"], WS);
    assert_eq!(case["stripe_subscription_id"], sub.id.as_str());
    assert_eq!(case["details"]["payment"]["dispute"], "du_1SemDispute01");
    assert_eq!(case["details"]["payment"]["invoice"], "in_Sem7First");
    assert_eq!(case["actions"], json!(["mark_refunded", "dismiss"]));
    assert!(
        outbox_keys(&app)
            .await
            .contains(&"support_alert:payment_disputed:du_1SemDispute01:support".to_owned())
    );
    // Bind makes no sense for money: refused with the reason.
    let id = case["id"].as_str().expect("case id").to_owned();
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "bind", "workspace_id": WS}),
    )
    .await
    .expect_error(400, "resolution_invalid");

    // The merchant wins: the case is settled by itself.
    deliver(
        &app,
        &[dispute(
            "evt_1Sem7Won",
            T + 40 * DAY,
            "won",
            "charge.dispute.closed",
        )],
    )
    .await;
    assert!(
        !cases(&app, "held")
            .await
            .iter()
            .any(|c| c["kind"] == "payment_disputed")
    );
    let resolved = app.get(&format!("/v1/cases/{id}")).await.expect(200);
    assert_eq!(resolved["resolution"], "auto");
}

#[tokio::test]
async fn a_dispute_admit_cannot_place_is_held_and_a_dismissal_stands() {
    let app = acme().await;
    deliver(
        &app,
        &[dispute(
            "evt_1SemStrayDispute",
            T,
            "needs_response",
            "charge.dispute.created",
        )],
    )
    .await;
    let held = cases(&app, "held").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["workspace_id"], Value::Null);
    let id = held[0]["id"].as_str().expect("id").to_owned();
    app.post_json(
        &format!("/v1/cases/{id}/resolve"),
        &json!({"action": "dismiss", "note": "charge of another product"}),
    )
    .await
    .expect(200);
    app.drain().await;
    // A later word on the same dispute does not reopen what support closed.
    deliver(
        &app,
        &[dispute(
            "evt_1SemStrayUpdated",
            T + DAY,
            "under_review",
            "charge.dispute.updated",
        )],
    )
    .await;
    assert!(cases(&app, "held").await.is_empty());
    assert_eq!(
        app.get(&format!("/v1/cases/{id}")).await.expect(200)["resolution"],
        "dismiss"
    );
}

#[tokio::test]
async fn a_full_refund_of_the_latest_invoice_holds_a_case_a_partial_one_does_not() {
    let app = acme().await;
    let sub = Sub::new(8, "dana@acme.test", T);
    deliver(&app, &sub.purchase()).await;
    let refund = |id: &str, refunded: i64| {
        event(
            id,
            "charge.refunded",
            T + 3 * DAY,
            json!({"id": "ch_3SemCharge08", "object": "charge", "amount": 4900,
                   "amount_captured": 4900, "amount_refunded": refunded, "refunded": refunded == 4900,
                   "customer": sub.customer, "payment_intent": "pi_Sem8First", "currency": "usd"}),
            None,
        )
    };
    deliver(&app, &[refund("evt_1Sem8Partial", 1000)]).await;
    assert!(cases(&app, "held").await.is_empty());
    assert_eq!(
        app.get("/v1/events/evt_1Sem8Partial").await.expect(200)["outcome"],
        "refund_recorded"
    );
    deliver(&app, &[refund("evt_1Sem8Full", 4900)]).await;
    let held = cases(&app, "held").await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["kind"], "payment_refunded");
    assert_eq!(held[0]["workspace_id"], WS);
    assert_eq!(held[0]["details"]["payment"]["invoice"], "in_Sem8First");
    assert_eq!(billing(&app).await["subscription_plan"], "pro");
}

// ---- 8. a failed bank debit ----------------------------------------------------------

#[tokio::test]
async fn a_failed_bank_debit_says_so_on_the_welcome_page_and_by_mail() {
    let app = acme().await;
    let session = "cs_test_a1SemSepa0001B7WZ01zgkW";
    let object = |payment_status: &str| {
        json!({"id": session, "object": "checkout.session", "mode": "payment", "status": "complete",
               "payment_status": payment_status, "customer": "cus_SemSepa01",
               "customer_details": {"email": "dana@acme.test"}, "payment_intent": "pi_SemSepa01",
               "metadata": {"workspace_id": WS, "plan": "pro"}, "livemode": false,
               "payment_method_types": ["sepa_debit"]})
    };
    deliver(
        &app,
        &[event(
            "evt_1SemSepaCompleted",
            "checkout.session.completed",
            T,
            object("unpaid"),
            None,
        )],
    )
    .await;
    let page = |app: &TestApp| {
        let url = app.url(&format!("/welcome?session_id={session}"));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.expect("request");
            response.text().await.expect("body")
        }
    };
    let pending = page(&app).await;
    assert!(pending.contains("up to 6 business days"), "{pending}");
    assert!(!pending.contains("http-equiv=\"refresh\""), "{pending}");

    deliver(
        &app,
        &[event(
            "evt_1SemSepaFailed",
            "checkout.session.async_payment_failed",
            T + 4 * DAY,
            object("unpaid"),
            None,
        )],
    )
    .await;
    let failed = page(&app).await;
    assert!(failed.contains("did not go through"), "{failed}");
    assert!(!failed.contains("pay again"), "{failed}");
    assert_eq!(billing(&app).await["subscription_status"], Value::Null);

    let rows = app
        .state
        .store
        .list_outbox(None, 100)
        .await
        .expect("outbox");
    let message = rows
        .iter()
        .find(|r| r.kind == "payment_failed")
        .unwrap_or_else(|| panic!("a payment_failed message: {rows:?}"));
    assert_eq!(message.recipient, "dana@acme.test");
    app.drain_mail().await;
    let mail = std::fs::read_dir(crate::helpers::mail_folder(app.dir.path()))
        .expect("mail folder")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|m| m.contains("did not go through"))
        .expect("the payment_failed message was written");
    assert!(mail.contains("start the checkout again"), "{mail}");
}
