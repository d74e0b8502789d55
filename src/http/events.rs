//! `GET /v1/events/{id}`: what admit holds of one Stripe event.

use admit_core::EventId;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events/{id}", get(read))
        .route("/v1/events/{id}/replay", axum::routing::post(replay))
}

/// Processes a stored event (and its scope) again: after a catalog change,
/// or once an operator fixed what made it fail. Idempotent like any processing.
async fn replay(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    let id = EventId::parse(id).map_err(|_| ApiError::EventNotFound)?;
    if !state.store.requeue_event(&id).await? {
        return Err(ApiError::EventNotFound);
    }
    state.wake.notify_one();
    tracing::info!(event_id = %id, "event queued for replay");
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": id.as_str(), "status": "received"})),
    ))
}

#[derive(Debug, Serialize)]
struct EventView {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// Unix seconds, as Stripe writes times.
    created: i64,
    received_at: i64,
    status: &'static str,
    livemode: bool,
    source: String,
    attempts: i64,
    last_error: Option<String>,
    /// Why the event has its status (`provisioned`, `missing_workspace`, …).
    outcome: Option<String>,
    /// The row of the decision table that decided it (`S1`…`S18`); null for
    /// events that decide nothing.
    scenario: Option<String>,
}

async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let id = EventId::parse(id).map_err(|_| ApiError::EventNotFound)?;
    let event = state
        .store
        .get_event(&id)
        .await?
        .ok_or(ApiError::EventNotFound)?;
    Ok(Json(EventView {
        id: event.id.to_string(),
        event_type: event.event_type,
        created: event.created.unix(),
        received_at: event.received_at.unix(),
        status: event.status.as_str(),
        livemode: event.livemode,
        source: event.source,
        attempts: event.attempts,
        last_error: event.last_error,
        outcome: event.outcome,
        scenario: event.scenario,
    }))
}
