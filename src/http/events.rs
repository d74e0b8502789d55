//! `GET /v1/events` and `GET /v1/events/{id}`: what admit holds of Stripe's events.

use admit_core::provisioning::Scenario;
use admit_core::{EventId, Timestamp};
use admit_store::{EventQuery, EventStatus};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list))
        .route("/v1/events/{id}", get(read))
        .route("/v1/events/{id}/replay", axum::routing::post(replay))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    status: Option<String>,
    outcome: Option<String>,
    scenario: Option<String>,
    workspace_id: Option<String>,
    stripe_id: Option<String>,
    email: Option<String>,
    /// Received at or after (Unix seconds).
    since: Option<i64>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// The inbox, newest first, filtered; paged by `next_cursor`.
async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status = super::state_filter(
        query.status.as_deref(),
        &["received", "processed", "held", "ignored", "failed"],
    )?
    .and_then(EventStatus::parse);
    let scenario = nonempty(query.scenario)
        .map(|s| {
            Scenario::parse(&s)
                .map(|s| s.as_str().to_owned())
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!("scenario {s:?} is not one of S1–S18"))
                })
        })
        .transpose()?;
    let page = state
        .store
        .events(&EventQuery {
            event_type: nonempty(query.event_type),
            status,
            outcome: nonempty(query.outcome),
            scenario,
            workspace: super::workspace_filter(query.workspace_id)?,
            stripe_id: nonempty(query.stripe_id),
            purchaser_email: super::email_filter(query.email)?,
            since: query.since.map(Timestamp::from_unix),
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Events)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    let events: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id.as_str(), "type": e.event_type, "created": e.created.unix(),
                "received_at": e.received_at.unix(), "status": e.status.as_str(),
                "outcome": e.outcome, "scenario": e.scenario, "workspace_hint": e.workspace_hint,
                "stripe_customer_id": e.customer_id, "stripe_subscription_id": e.subscription_id,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "events": events,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

/// Processes a stored event (and its scope) again: after a catalog change,
/// or once an operator fixed what made it fail. Idempotent like any processing.
async fn replay(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    let id = EventId::parse(id).map_err(|_| ApiError::EventNotFound)?;
    if !state
        .store
        .requeue_event(&id, &admit_store::Actor::api(), state.clock.now())
        .await?
    {
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
