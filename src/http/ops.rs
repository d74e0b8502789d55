//! Liveness, readiness and metrics: what a load balancer and Prometheus ask.

use std::time::Duration;

use admit_core::Timestamp;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// How long a write probe's outcome stands: a load balancer polling
/// `/readyz` every second makes one write every few seconds, not one a
/// second; a database that cannot be written shows within this long, and
/// so does one that can again.
const WRITE_PROBE_SECS: i64 = 5;

/// How long `/readyz` waits for the probe: a write lock not had by then
/// (SQLite's busy timeout is 10 s) is a database not taking writes.
const WRITE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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
    // Reads alone prove little: on a full disk or a read-only file every
    // webhook failed while this answered 200 (issue 14).
    writable(&state).await.map_err(ApiError::NotReady)?;
    Ok(Json(json!({"status": "ready"})))
}

/// The last write probe's time and outcome (the reason when it failed).
pub type LastProbe = Option<(Timestamp, Result<(), String>)>;

/// Whether the database takes writes: [`Store::check_writable`] at most
/// once every [`WRITE_PROBE_SECS`] (by the app's clock), its outcome
/// answering in between; callers arriving during a probe wait for it.
async fn writable(state: &AppState) -> Result<(), String> {
    let mut last = state.write_probe.lock().await;
    let now = state.clock.now();
    if let Some((at, outcome)) = &*last
        && (0..WRITE_PROBE_SECS).contains(&(now.unix() - at.unix()))
    {
        return outcome.clone();
    }
    let outcome = match tokio::time::timeout(WRITE_PROBE_TIMEOUT, state.store.check_writable(now))
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "not ready: the database cannot be written");
            Err(format!(
                "the database cannot be written: {}",
                root_cause(&e)
            ))
        }
        Err(_) => {
            tracing::warn!("not ready: a write to the database did not finish in time");
            Err(format!(
                "the database cannot be written: a write did not finish within {} s",
                WRITE_PROBE_TIMEOUT.as_secs()
            ))
        }
    };
    *last = Some((now, outcome.clone()));
    outcome
}

/// The innermost cause (the database's own message, say "database or
/// disk is full"), for the reason `/readyz` gives.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The go/no-go memo, the same JSON as `admit readiness --json`.
#[utoipa::path(
    get,
    path = "/v1/readiness",
    operation_id = "get_readiness",
    tag = "readiness",
    responses(
        (status = 200, description = "The memo: `recommendation` (`READY` or `HOLD`), `confidence`, `done`, `in_progress`, `blockers`, `decisions`, `hash`", body = Object),
    )
)]
pub(super) async fn readiness(
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

async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    // With ADMIT_METRICS_TOKEN set, Prometheus sends it as a bearer token.
    if let Some(expected) = &state.config.metrics_token {
        let presented = super::auth::presented_bearer(&headers).ok_or(ApiError::Unauthorized)?;
        if !super::auth::same_secret(presented, secrecy::ExposeSecret::expose_secret(expected)) {
            return Err(ApiError::Unauthorized);
        }
    }
    let now = state.clock.now();
    // The backlog gauges are the database's figures at scrape time; a
    // failed read leaves the last ones and is logged, the scrape still answers.
    match state.store.backlog().await {
        Ok(backlog) => state.metrics.observe_backlog(&backlog, now),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot read the backlog for the metrics");
        }
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    ))
}
