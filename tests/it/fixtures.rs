//! admit's own Stripe event fixtures (`tests/fixtures/stripe/`): every event
//! type DESIGN.md names, in current (2026-07-29) and legacy (2017-08-15) shapes.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::helpers::{PRIMARY_SECRET, spawn_app};

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub file: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub id: String,
    pub shape: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stripe")
}

pub fn index() -> Vec<Entry> {
    let text = std::fs::read_to_string(root().join("index.json")).expect("fixture index");
    let index: Value = serde_json::from_str(&text).expect("index is JSON");
    let entries = index.get("events").cloned().unwrap_or(index);
    serde_json::from_value(entries).expect("index entries")
}

pub fn body(entry: &Entry) -> Vec<u8> {
    std::fs::read(root().join(&entry.file)).expect("fixture file")
}

/// The body of the first fixture of `event_type` in `shape`.
pub fn body_of(event_type: &str, shape: &str) -> Vec<u8> {
    let entry = index()
        .into_iter()
        .find(|e| e.event_type == event_type && e.shape == shape)
        .unwrap_or_else(|| panic!("no {shape} fixture of {event_type}"));
    body(&entry)
}

/// Event types DESIGN.md and the issues name; each must have a current fixture.
const NAMED_TYPES: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
];

#[test]
fn fixtures_cover_every_named_type_in_both_shapes() {
    let index = index();
    for event_type in NAMED_TYPES {
        assert!(
            index
                .iter()
                .any(|e| e.event_type == *event_type && e.shape == "current"),
            "no current fixture for {event_type}"
        );
    }
    for event_type in [
        "customer.subscription.created",
        "customer.subscription.deleted",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
    ] {
        assert!(
            index
                .iter()
                .any(|e| e.event_type == event_type && e.shape == "legacy"),
            "no legacy fixture for {event_type}"
        );
    }
}

#[tokio::test]
async fn every_fixture_is_accepted_stored_and_readable() {
    let app = spawn_app().await;
    let index = index();
    for entry in &index {
        let body = body(entry);
        let response = app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
        assert_eq!(response["id"], entry.id.as_str(), "{}", entry.file);
        assert_eq!(response["duplicate"], false, "{}", entry.file);

        let stored = app
            .get(&format!("/v1/events/{}", entry.id))
            .await
            .expect(200);
        assert_eq!(stored["type"], entry.event_type.as_str(), "{}", entry.file);
        assert_eq!(stored["status"], "received");
        assert_eq!(stored["received_at"], app.clock_now().unix());
        let created = serde_json::from_slice::<Value>(&body).expect("JSON")["created"].clone();
        assert_eq!(stored["created"], created, "{}", entry.file);

        let row = app
            .state
            .store
            .get_event(&admit_core::EventId::parse(entry.id.clone()).expect("id"))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(
            row.payload, body,
            "{}: the raw body is kept byte for byte",
            entry.file
        );
    }
    assert_eq!(app.event_count().await, index.len() as u64);
}

#[test]
fn subscriptions_of_both_shapes_yield_their_price() {
    for (shape, expected_prefix) in [("current", "price_"), ("legacy", "plan_")] {
        let body = body_of("customer.subscription.created", shape);
        let event: Value = serde_json::from_slice(&body).expect("JSON");
        let view = admit_stripe::SubscriptionView::from_object(&event["data"]["object"])
            .unwrap_or_else(|| panic!("{shape} subscription parses"));
        assert!(view.customer.is_some(), "{shape}");
        assert!(
            view.price_ids
                .first()
                .is_some_and(|p| p.starts_with(expected_prefix)),
            "{shape}: {:?}",
            view.price_ids
        );
        assert!(view.current_period_end.is_some(), "{shape}");
    }
}
