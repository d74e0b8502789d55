//! Health, readiness, metrics and unknown routes.

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.get_without_token("/healthz").await.expect(200);
    assert_eq!(health["status"], "ok");
    let ready = app.get_without_token("/readyz").await.expect(200);
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.store.close().await;
    app.get_without_token("/readyz")
        .await
        .expect_error(503, "not_ready");
    // Liveness does not depend on the database.
    app.get_without_token("/healthz").await.expect(200);
}

#[tokio::test]
async fn metrics_record_request_latency_by_route_template() {
    let app = spawn_app().await;
    app.get("/v1/events/evt_a").await.expect(404);
    app.get("/v1/events/evt_b").await.expect(404);
    let metrics = app.metrics().await;
    let series = r#"admit_http_request_duration_seconds_count{method="GET",route="/v1/events/{id}",status="404"}"#;
    assert_eq!(
        crate::helpers::metric_value(&metrics, series),
        Some(2.0),
        "{metrics}"
    );
    assert!(!metrics.contains("evt_a"), "raw paths never become labels");
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = spawn_app().await;
    app.get_without_token("/no/such/route")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn metrics_show_the_backlog_held_cases_and_the_lags_on_call_alerts_on() {
    use crate::helpers::{PRIMARY_SECRET, metric_value};
    use crate::stripe_story::{Sub, T, acme, deliver};
    let app = acme().await;
    // One purchase provisions (and onboards); one nobody can place is held.
    deliver(&app, &Sub::new(701, "dana@acme.test", T).purchase()).await;
    let mut stranger = Sub::new(702, "stranger@else.test", T);
    stranger.workspace = None;
    deliver(&app, &stranger.purchase()).await;
    app.drain_mail().await;
    // One more arrives and waits.
    let waiting = Sub::new(703, "dana@acme.test", T + 100).purchase();
    app.post_signed(&waiting[0], PRIMARY_SECRET)
        .await
        .expect(200);
    app.clock.advance(42);

    let metrics = app.metrics().await;
    let value = |series: &str| metric_value(&metrics, series);
    assert_eq!(value("admit_inbox_backlog"), Some(1.0), "{metrics}");
    assert_eq!(
        value("admit_inbox_oldest_unprocessed_age_seconds"),
        Some(42.0)
    );
    assert_eq!(
        value(r#"admit_cases_held{kind="missing_workspace"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(value("admit_outbox_dead"), Some(0.0));
    assert_eq!(
        value("admit_event_processing_lag_seconds_count"),
        Some(8.0),
        "every processed delivery of the two purchases: {metrics}"
    );
    assert_eq!(
        value(r#"admit_outbox_delivery_lag_seconds_count{kind="onboarding"}"#),
        Some(1.0),
        "{metrics}"
    );
}
