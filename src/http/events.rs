//! `GET /v1/events` and `GET /v1/events/{id}`: what admit holds of Stripe's events.

use admit_core::provisioning::Scenario;
use admit_core::{EventId, Timestamp};
use admit_store::{EventQuery, EventStatus};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::params::{ApiPath, ApiQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list))
        .route("/v1/events/{id}", get(read))
        .route("/v1/events/{id}/replay", axum::routing::post(replay))
}

/// The statuses of a stored event.
pub const STATUSES: &[&str] = &["received", "processed", "held", "ignored", "failed"];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// A Stripe event type (`invoice.paid`, …).
    #[serde(rename = "type")]
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    event_type: Option<String>,
    /// `received`, `processed`, `held`, `ignored`, `failed` or `all`.
    #[param(schema_with = super::openapi::event_status_filter)]
    status: Option<String>,
    /// Why an event has its status (`provisioned`, `missing_workspace`, …).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    outcome: Option<String>,
    /// `S1`…`S18`.
    #[param(schema_with = super::openapi::scenario_filter)]
    scenario: Option<String>,
    #[param(pattern = r"^([A-Za-z0-9_-]{1,255})?$")]
    workspace_id: Option<String>,
    /// A `cus_`, `sub_`, `cs_`, `in_` … id the event names.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    stripe_id: Option<String>,
    /// The purchaser's email.
    #[param(schema_with = super::openapi::email_filter)]
    email: Option<String>,
    /// Received at or after (Unix seconds).
    since: Option<i64>,
    /// A previous page's `next_cursor`.
    #[param(pattern = r"^(e\.-?[0-9]{1,18}\.[!-~]{1,255})?$")]
    cursor: Option<String>,
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One event of a list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventSummary)]
struct EventSummary {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    received_at: i64,
    status: &'static str,
    #[schema(required = true)]
    outcome: Option<String>,
    #[schema(required = true)]
    scenario: Option<String>,
    /// The workspace the event's metadata names, if any.
    #[schema(required = true)]
    workspace_hint: Option<String>,
    #[schema(required = true)]
    stripe_customer_id: Option<String>,
    #[schema(required = true)]
    stripe_subscription_id: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventPage)]
struct EventPage {
    events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The inbox, newest first, filtered; paged by `next_cursor`.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "list_events",
    tag = "events",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "`invalid_request`, `workspace_id_invalid`, `email_invalid`", body = ErrorBody),
    )
)]
async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status =
        super::state_filter(query.status.as_deref(), STATUSES)?.and_then(EventStatus::parse);
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
            event_type: super::text_filter(query.event_type, "type")?,
            status,
            outcome: super::text_filter(query.outcome, "outcome")?,
            scenario,
            workspace: super::workspace_filter(query.workspace_id)?,
            stripe_id: super::text_filter(query.stripe_id, "stripe_id")?,
            purchaser_email: super::email_filter(query.email)?,
            since: query.since.map(Timestamp::from_unix),
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Events)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    let events = page
        .items
        .into_iter()
        .map(|e| EventSummary {
            id: e.id.as_str().to_owned(),
            event_type: e.event_type,
            created: e.created.unix(),
            received_at: e.received_at.unix(),
            status: e.status.as_str(),
            outcome: e.outcome,
            scenario: e.scenario,
            workspace_hint: e.workspace_hint,
            stripe_customer_id: e.customer_id,
            stripe_subscription_id: e.subscription_id,
        })
        .collect();
    Ok(Json(EventPage {
        events,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// What a replay answers: the event is queued again.
#[derive(Debug, Serialize, ToSchema)]
struct Replayed {
    id: String,
    /// `received`: it waits for the processor.
    status: &'static str,
}

/// Processes a stored event (and its scope) again: after a catalog change,
/// or once an operator fixed what made it fail. Idempotent like any processing.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/replay",
    operation_id = "replay_event",
    tag = "events",
    params(("id" = String, Path, description = "The Stripe event's id (`evt_…`)")),
    responses(
        (status = 202, description = "Queued for processing", body = Replayed),
        (status = 404, description = "`event_not_found`", body = ErrorBody),
    )
)]
async fn replay(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(axum::http::StatusCode, Json<Replayed>), ApiError> {
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
        Json(Replayed {
            id: id.as_str().to_owned(),
            status: "received",
        }),
    ))
}

/// A Stripe event as admit holds it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
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
    #[schema(required = true)]
    last_error: Option<String>,
    /// Why the event has its status (`provisioned`, `missing_workspace`, …).
    #[schema(required = true)]
    outcome: Option<String>,
    /// The row of the decision table that decided it (`S1`…`S18`); null for
    /// events that decide nothing.
    #[schema(required = true)]
    scenario: Option<String>,
}

/// One event: its status, outcome and the scenario that decided it.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    operation_id = "get_event",
    tag = "events",
    params(("id" = String, Path, description = "The Stripe event's id (`evt_…`)")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 404, description = "`event_not_found`", body = ErrorBody),
    )
)]
async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
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
