//! Every row of the decision table names itself: one purchase per scenario
//! S1–S12, and `scenario` read back from `/v1/events/{id}` and `/v1/cases`.

use serde_json::{Value, json};

use crate::helpers::{PRIMARY_SECRET, TestApp};
use crate::stripe_story::{DAY, Sub, T, WS, deliver, event};

async fn acme() -> TestApp {
    let app = crate::stripe_story::acme().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_other", "name": "Other", "owner_email": "olga@other.test"}),
    )
    .await
    .expect(201);
    app
}

async fn scenario_of_event(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/events/{id}")).await.expect(200)["scenario"].clone()
}

async fn case_scenarios(app: &TestApp) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for state in ["held", "resolved"] {
        let body = app
            .get(&format!("/v1/cases?state={state}"))
            .await
            .expect(200);
        for case in body["cases"].as_array().cloned().unwrap_or_default() {
            all.push((
                case["kind"].as_str().unwrap_or_default().to_owned(),
                case["scenario"].clone(),
            ));
        }
    }
    all
}

fn customer_created(customer: &str, email: &str, workspace: &str) -> Vec<u8> {
    event(
        &format!("evt_1Cus{customer}"),
        "customer.created",
        T - 10,
        json!({"id": customer, "object": "customer", "email": email,
               "metadata": {"workspace_id": workspace}}),
        None,
    )
}

/// The checkout event of a purchase (its last, in creation order).
fn checkout_id(sub: &Sub) -> String {
    format!("evt_1Sem{}Checkout", sub.n)
}

#[tokio::test]
async fn each_purchase_names_the_row_that_decided_it() {
    // (scenario, purchaser, metadata workspace, setup)
    for (expected, n) in [("S1", 101), ("S2", 102), ("S3", 103), ("S4", 104)] {
        let app = acme().await;
        let purchaser = match expected {
            "S2" => "stranger@else.test",
            "S4" => "lee@acme.test",
            _ => "dana@acme.test",
        };
        let mut sub = Sub::new(n, purchaser, T);
        if matches!(expected, "S3" | "S4") {
            sub.workspace = None;
        }
        if expected == "S3" {
            // The customer is already the workspace's (its metadata says so).
            deliver(
                &app,
                &[customer_created(&sub.customer, "billing@acme.test", WS)],
            )
            .await;
            sub.email = "billing@acme.test".into();
        }
        deliver(&app, &sub.purchase()).await;
        assert_eq!(
            scenario_of_event(&app, &checkout_id(&sub)).await,
            expected,
            "{expected}"
        );
        let billing = app
            .get(&format!("/v1/workspaces/{WS}/billing"))
            .await
            .expect(200);
        assert_eq!(billing["subscription_plan"], "pro", "{expected}");
        if expected == "S2" {
            assert!(
                case_scenarios(&app)
                    .await
                    .contains(&("email_mismatch".into(), json!("S2")))
            );
        }
    }
}

#[tokio::test]
async fn held_purchases_name_their_row_on_the_event_and_the_case() {
    // S5: nobody's workspace.
    let app = acme().await;
    let mut sub = Sub::new(105, "stranger@else.test", T);
    sub.workspace = None;
    deliver(&app, &sub.purchase()).await;
    assert_eq!(scenario_of_event(&app, &checkout_id(&sub)).await, "S5");
    assert_eq!(
        case_scenarios(&app).await,
        [("missing_workspace".to_owned(), json!("S5"))]
    );

    // S8: a second subscription in good standing.
    let app = acme().await;
    let first = Sub::new(108, "dana@acme.test", T);
    let mut second = Sub::new(109, "lee@acme.test", T + 10 * DAY);
    second.customer = "cus_Sem0109Lee".into();
    deliver(&app, &first.purchase()).await;
    deliver(&app, &second.purchase()).await;
    assert_eq!(scenario_of_event(&app, &checkout_id(&second)).await, "S8");
    assert!(
        case_scenarios(&app)
            .await
            .contains(&("duplicate_subscription".into(), json!("S8")))
    );

    // S9: the customer belongs to another workspace.
    let app = acme().await;
    let sub = Sub::new(110, "dana@acme.test", T);
    deliver(
        &app,
        &[customer_created(
            &sub.customer,
            "dana@acme.test",
            "ws_other",
        )],
    )
    .await;
    deliver(&app, &sub.purchase()).await;
    assert_eq!(scenario_of_event(&app, &checkout_id(&sub)).await, "S9");
    assert!(
        case_scenarios(&app)
            .await
            .contains(&("customer_conflict".into(), json!("S9")))
    );

    // S10: a price the catalog does not know.
    let app = acme().await;
    let sub = Sub::new(111, "dana@acme.test", T);
    let unknown: Vec<Vec<u8>> = sub
        .purchase()
        .into_iter()
        .map(|body| {
            String::from_utf8(body)
                .expect("utf-8")
                .replace("price_AdmitProMonthly01", "price_1SemNotInCatalog")
                .into_bytes()
        })
        .collect();
    deliver(&app, &unknown).await;
    assert_eq!(scenario_of_event(&app, &checkout_id(&sub)).await, "S10");
    assert_eq!(
        case_scenarios(&app).await,
        [("unknown_price".to_owned(), json!("S10"))]
    );
}

#[tokio::test]
async fn redeliveries_reorderings_and_the_lifecycle_name_their_rows() {
    let app = acme().await;
    let sub = Sub::new(106, "dana@acme.test", T);
    let purchase = sub.purchase();
    // S7: delivered backwards, the earlier events arrive after later ones.
    let mut reversed = purchase.clone();
    reversed.reverse();
    for body in &reversed {
        app.post_signed(body, PRIMARY_SECRET).await.expect(200);
        app.drain().await;
        app.clock.advance(1);
    }
    assert_eq!(
        scenario_of_event(&app, "evt_1Sem106Created").await,
        "S7",
        "the subscription's creation arrived last"
    );
    assert_eq!(scenario_of_event(&app, &checkout_id(&sub)).await, "S1");
    // S6: the same event again changes nothing and says so.
    let again = app
        .post_signed(&purchase[0], PRIMARY_SECRET)
        .await
        .expect(200);
    assert_eq!(
        (again["duplicate"].as_bool(), again["scenario"].as_str()),
        (Some(true), Some("S6"))
    );

    // S11: a renewal fails.
    deliver(
        &app,
        &[
            event(
                "evt_1Sem106RenewalFailed",
                "invoice.payment_failed",
                T + 30 * DAY,
                sub.invoice(
                    "in_Sem106Renewal",
                    "subscription_cycle",
                    false,
                    "Sem106Renewal",
                ),
                None,
            ),
            event(
                "evt_1Sem106PastDue",
                "customer.subscription.updated",
                T + 30 * DAY + 1,
                sub.object("past_due", crate::stripe_story::PRO, json!({})),
                Some(json!({"status": "active"})),
            ),
        ],
    )
    .await;
    assert_eq!(scenario_of_event(&app, "evt_1Sem106PastDue").await, "S11");
    // The billing change's audit entry names it too.
    let audit = app
        .get(&format!("/v1/workspaces/{WS}/audit"))
        .await
        .expect(200);
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "billing.changed" && e["after"]["scenario"] == "S11"),
        "{audit}"
    );

    // S12: canceled.
    deliver(
        &app,
        &[event(
            "evt_1Sem106Deleted",
            "customer.subscription.deleted",
            T + 40 * DAY,
            sub.object("canceled", crate::stripe_story::PRO, json!({})),
            None,
        )],
    )
    .await;
    assert_eq!(scenario_of_event(&app, "evt_1Sem106Deleted").await, "S12");
    // A customer update decides nothing.
    deliver(
        &app,
        &[customer_created("cus_Sem0199", "x@else.test", "ws_nowhere")],
    )
    .await;
    assert_eq!(
        scenario_of_event(&app, "evt_1Cuscus_Sem0199").await,
        Value::Null
    );
}
