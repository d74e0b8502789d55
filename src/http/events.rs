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
    Router::new().route("/v1/events/{id}", get(read))
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
    }))
}
