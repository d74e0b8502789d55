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
