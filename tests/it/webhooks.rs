//! Webhook ingress: signatures, rotation, tolerance, malformed bodies,
//! oversize bodies and concurrent duplicates.

use serde_json::json;

use crate::helpers::{PRIMARY_SECRET, ROTATED_SECRET, metric_value, spawn_app};

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": "customer.created", "created": 1_795_000_000,
        "api_version": "2026-07-29.dahlia", "livemode": false, "pending_webhooks": 1,
        "data": {"object": {"id": "cus_T1", "object": "customer", "email": "dana@acme.test", "metadata": {}}}
    }))
    .expect("serialises")
}

#[tokio::test]
async fn a_signed_event_is_stored_once_and_a_redelivery_changes_nothing() {
    let app = spawn_app().await;
    let body = event("evt_once");
    let first = app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
    assert_eq!(first["duplicate"], false);
    app.clock.advance(60);
    let again = app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(app.event_count().await, 1);
    let stored = app.get("/v1/events/evt_once").await.expect(200);
    assert_eq!(
        stored["received_at"],
        app.clock_now().unix() - 60,
        "the first receipt is kept"
    );

    let metrics = app.metrics().await;
    let series = |outcome: &str| {
        format!(
            r#"admit_webhook_events_received_total{{type="customer.created",outcome="{outcome}"}}"#
        )
    };
    assert_eq!(
        metric_value(&metrics, &series("stored")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, &series("duplicate")),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn twenty_concurrent_deliveries_store_exactly_one_row() {
    let app = spawn_app().await;
    let body = event("evt_concurrent");
    let deliveries = (0..20).map(|_| app.post_signed(&body, PRIMARY_SECRET));
    let responses = futures::future::join_all(deliveries).await;
    let mut fresh = 0;
    for response in responses {
        if response.expect(200)["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery is the first");
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn either_configured_secret_verifies_during_rotation() {
    let app = spawn_app().await;
    app.post_signed(&event("evt_primary"), PRIMARY_SECRET)
        .await
        .expect(200);
    app.post_signed(&event("evt_rotated"), ROTATED_SECRET)
        .await
        .expect(200);

    // Stripe signs with the old and the new secret at once while an endpoint's secret rolls.
    let body = event("evt_both");
    let now = app.clock_now();
    let unknown = admit_stripe::signature::sign(&body, "whsec_someone_else", now);
    let ours = admit_stripe::signature::sign(&body, ROTATED_SECRET, now);
    let v1 = |h: &str| h.split_once(",v1=").map(|(_, v)| v.to_owned()).expect("v1");
    let header = format!("t={},v1={},v1={}", now.unix(), v1(&unknown), v1(&ours));
    app.post_webhook(body, Some(&header)).await.expect(200);
    assert_eq!(app.event_count().await, 3);
}

#[tokio::test]
async fn rejections_have_stable_codes_store_nothing_and_are_counted() {
    let app = spawn_app().await;
    let body = event("evt_rejected");
    let now = app.clock_now();

    app.post_webhook(body.clone(), None)
        .await
        .expect_error(400, "signature_header_invalid");
    app.post_webhook(body.clone(), Some("t=abc,v1=zz"))
        .await
        .expect_error(400, "signature_header_invalid");
    app.post_webhook(body.clone(), Some(&format!("t={}", now.unix())))
        .await
        .expect_error(400, "signature_header_invalid");

    let foreign = admit_stripe::signature::sign(&body, "whsec_not_ours", now);
    app.post_webhook(body.clone(), Some(&foreign))
        .await
        .expect_error(400, "signature_mismatch");
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let header = admit_stripe::signature::sign(&body, PRIMARY_SECRET, now);
    app.post_webhook(tampered, Some(&header))
        .await
        .expect_error(400, "signature_mismatch");

    let stale = admit_stripe::signature::sign(&body, PRIMARY_SECRET, now.plus_seconds(-301));
    app.post_webhook(body.clone(), Some(&stale))
        .await
        .expect_error(400, "timestamp_outside_tolerance");
    let future = admit_stripe::signature::sign(&body, PRIMARY_SECRET, now.plus_seconds(301));
    app.post_webhook(body.clone(), Some(&future))
        .await
        .expect_error(400, "timestamp_outside_tolerance");
    let edge = admit_stripe::signature::sign(&body, PRIMARY_SECRET, now.plus_seconds(-300));
    app.post_webhook(body.clone(), Some(&edge))
        .await
        .expect(200);

    for not_an_event in [
        b"this is not json".to_vec(),
        br#"{"id":"evt_x","object":"event"}"#.to_vec(),
        br#"{"id":"cus_1","object":"customer","type":"customer.created","created":1,"data":{"object":{"object":"customer"}}}"#.to_vec(),
    ] {
        app.post_signed(&not_an_event, PRIMARY_SECRET)
            .await
            .expect_error(400, "event_malformed");
    }

    let mut oversized = event("evt_big");
    oversized.splice(
        1..1,
        format!(r#""padding":"{}","#, "x".repeat(1024 * 1024)).into_bytes(),
    );
    app.post_signed(&oversized, PRIMARY_SECRET)
        .await
        .expect_error(413, "payload_too_large");

    assert_eq!(
        app.event_count().await,
        1,
        "only the in-tolerance delivery was stored"
    );
    let metrics = app.metrics().await;
    for (code, count) in [
        ("signature_header_invalid", 3.0),
        ("signature_mismatch", 2.0),
        ("timestamp_outside_tolerance", 2.0),
        ("event_malformed", 3.0),
        ("payload_too_large", 1.0),
    ] {
        let series = format!(r#"admit_webhook_rejections_total{{code="{code}"}}"#);
        assert_eq!(
            metric_value(&metrics, &series),
            Some(count),
            "{code}\n{metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_event_types_and_fields_are_accepted() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({
        "id": "evt_future", "object": "event", "type": "billing.meter.brand_new_thing", "created": 1_795_000_000,
        "api_version": "2099-01-01.future", "livemode": false, "context": {"new": true},
        "data": {"object": {"id": "mtr_1", "object": "billing.meter", "whatever": [1, 2, 3]}}
    }))
    .expect("serialises");
    app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
    let stored = app.get("/v1/events/evt_future").await.expect(200);
    assert_eq!(stored["type"], "billing.meter.brand_new_thing");
}

#[tokio::test]
async fn concurrent_deliveries_share_commits_and_each_2xx_means_stored() {
    let app = spawn_app().await;
    // A real database fault (an in-database trigger, the one way to make
    // the database refuse one row): any batch holding this event fails whole.
    let mut db = app.database().await;
    crate::helpers::inject_fault(
        &mut db,
        "poison",
        "stripe_events",
        "NEW.id = 'evt_poison'",
        "refused for the test",
    )
    .await;

    let ids: Vec<String> = (0..60)
        .map(|n| format!("evt_group{n:02}"))
        .chain(std::iter::once("evt_poison".to_owned()))
        .collect();
    let bodies: Vec<Vec<u8>> = ids.iter().map(|id| event(id)).collect();
    let answers =
        futures::future::join_all(bodies.iter().map(|b| app.post_signed(b, PRIMARY_SECRET))).await;
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for (id, answer) in ids.iter().zip(answers) {
        match answer.status {
            200 => acknowledged.push(id.clone()),
            500 => refused.push(id.clone()),
            other => panic!("{id}: unexpected {other}: {}", answer.text),
        }
    }
    assert!(refused.contains(&"evt_poison".to_owned()));
    // Every 2xx is a committed row; nothing refused was half-written.
    for id in &acknowledged {
        app.get(&format!("/v1/events/{id}")).await.expect(200);
    }
    for id in &refused {
        app.get(&format!("/v1/events/{id}"))
            .await
            .expect_error(404, "event_not_found");
    }
    // Stripe retries what was refused; all but the poison get in.
    for (id, body) in ids.iter().zip(&bodies) {
        if refused.contains(id) && id != "evt_poison" {
            app.post_signed(body, PRIMARY_SECRET).await.expect(200);
        }
    }
    assert_eq!(app.event_count().await, 60);
}
