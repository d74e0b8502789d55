//! Several processors on one database, as several instances run them: a
//! shuffled, partly re-delivered burst of many purchases settles to exactly
//! what one processor makes of the same events delivered in creation order.
//! Their derivations race for the same scopes; the per-scope version check
//! makes the loser derive again instead of writing over the winner.

use std::collections::BTreeMap;

use admit::provision::Processor;
use admit::simulate::{Event, Purchase};
use serde_json::{Value, json};

use crate::helpers::{TestApp, deliver_signed, event_outcomes, outbox_messages, spawn_app};

const PRICE: &str = "price_AdmitProMonthly01";
const PURCHASES: usize = 12;

fn workspace_id(i: usize) -> String {
    format!("ws_burst{i:02}")
}

/// Each purchase's lifecycle in creation order: a checkout, for some a
/// failed renewal, for others a scheduled cancellation.
fn lifecycles() -> Vec<Vec<Event>> {
    (0..PURCHASES)
        .map(|i| {
            let mut purchase = Purchase::new(
                &format!("owner@burst{i}.test"),
                Some(&workspace_id(i)),
                PRICE,
            );
            purchase.t -= 45 * 86_400;
            let mut events = purchase.checkout();
            if i % 3 == 0 {
                let mut later = purchase.clone();
                later.t += 30 * 86_400;
                events.extend(later.renewal_failed());
            }
            if i % 4 == 1 {
                let mut later = purchase.clone();
                later.t += 40 * 86_400;
                events.extend(later.cancel(true));
            }
            events
        })
        .collect()
}

/// A fixed permutation (a multiplicative walk), with every fifth event sent twice.
fn burst(lifecycles: &[Vec<Event>]) -> Vec<Event> {
    let all: Vec<Event> = lifecycles.iter().flatten().cloned().collect();
    let n = all.len();
    let step = (1..n).rev().find(|s| gcd(*s, n) == 1).unwrap_or(1);
    let mut out = Vec::with_capacity(n + n / 5);
    for k in 0..n {
        let event = &all[(k * step + 7) % n];
        out.push(event.clone());
        if k % 5 == 0 {
            out.push(event.clone());
        }
    }
    out
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

async fn app_with_workspaces() -> TestApp {
    let app = spawn_app().await;
    for i in 0..PURCHASES {
        app.post_json(
            "/v1/workspaces",
            &json!({"id": workspace_id(i), "name": "Burst", "owner_email": format!("owner@burst{i}.test")}),
        )
        .await
        .expect(201);
    }
    app
}

/// Every workspace's billing state, its events' outcomes and the outbox.
async fn settled(app: &TestApp) -> (BTreeMap<String, Value>, Vec<Value>, Vec<String>) {
    let mut billing = BTreeMap::new();
    for i in 0..PURCHASES {
        let mut state = app
            .get(&format!("/v1/workspaces/{}/billing", workspace_id(i)))
            .await
            .expect(200);
        if let Some(fields) = state.as_object_mut() {
            fields.remove("updated_at");
        }
        billing.insert(workspace_id(i), state);
    }
    let outcomes = event_outcomes(app, &["scenario"]).await;
    let outbox = outbox_messages(app).await;
    (billing, outcomes, outbox)
}

#[tokio::test]
async fn several_processors_settle_a_shuffled_burst_as_one_processor_settles_it_in_order() {
    let lifecycles = lifecycles();
    let in_order: Vec<Event> = lifecycles.iter().flatten().cloned().collect();

    let one = app_with_workspaces().await;
    deliver_signed(&one, &in_order).await;
    one.drain().await;
    let want = settled(&one).await;
    assert!(
        want.0.values().all(|b| b["subscription_plan"] == "pro"),
        "every purchase provisioned: {:?}",
        want.0
    );

    let many = app_with_workspaces().await;
    deliver_signed(&many, &burst(&lifecycles)).await;
    let processor = || {
        Processor::new(
            many.state.store.clone(),
            many.state.config.clone(),
            many.state.clock.clone(),
        )
    };
    let (a, b, c) = (processor(), processor(), processor());
    let (a, b, c) = tokio::join!(a.drain(), b.drain(), c.drain());
    let total = a.expect("drain") + b.expect("drain") + c.expect("drain");
    assert!(
        total >= in_order.len(),
        "each stored event settled once at least: {total}"
    );
    assert_eq!(
        many.state.store.pending_events().await.expect("pending"),
        0,
        "nothing left in the inbox"
    );
    let got = settled(&many).await;
    assert_eq!(got.0, want.0, "billing states");
    assert_eq!(got.1, want.1, "event outcomes");
    assert_eq!(got.2, want.2, "messages: none twice, none missing");
}
