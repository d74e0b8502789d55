//! Liveness, readiness and metrics: what a load balancer and Prometheus ask.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/readiness", get(readiness))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.ingest.is_running() {
        tracing::error!("not ready: the ingest writer has stopped");
        return Err(ApiError::NotReady("the ingest writer has stopped".into()));
    }
    state.store.check_ready().await.map_err(|e| {
        tracing::warn!(error = %crate::telemetry::error_chain(&e), "not ready");
        ApiError::NotReady(e.to_string())
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// The go/no-go memo, the same JSON as `admit readiness --json`.
async fn readiness(
    _caller: super::auth::AppCaller,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let report = current_report(&state).await.map_err(ApiError::Internal)?;
    Ok(Json(crate::readiness::render_json(&report)))
}

/// The memo from live data, this instance's refusals of a moment ago included.
pub(super) async fn current_report(state: &AppState) -> anyhow::Result<crate::readiness::Report> {
    state
        .rejections
        .flush(state.store.as_ref(), state.clock.now())
        .await;
    crate::readiness::report(
        &state.config,
        state.store.as_ref(),
        state.stripe.as_ref(),
        state.clock.now(),
    )
    .await
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.clock.now();
    // The backlog gauges are the database's figures at scrape time; a
    // failed read leaves the last ones and is logged, the scrape still answers.
    match state.store.backlog().await {
        Ok(backlog) => state.metrics.observe_backlog(&backlog, now),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot read the backlog for the metrics");
        }
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
