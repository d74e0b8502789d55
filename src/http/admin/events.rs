//! `/admin/events`: the inbox with filters, an event's page (its payload,
//! outcome and scenario, the workspace's other events around it) and replay.

use admit_core::provisioning::Scenario;
use admit_core::{EventId, Timestamp, WorkspaceId};
use admit_store::{EventQuery, EventStatus, EventSummary, ListKind};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{ConsoleError, render};
use super::session::{Acting, SignedIn};
use super::{DoneQuery, LIST_SIZE, list_cursor, next_href, nonempty};
use crate::http::AppState;

const NOT_FOUND: ConsoleError = ConsoleError::NotFound("no event with this id has been received");

pub const STATUSES: &[&str] = &["received", "processed", "held", "ignored", "failed"];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    status: Option<String>,
    outcome: Option<String>,
    scenario: Option<String>,
    workspace_id: Option<String>,
    /// Received at or after: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC), as a date input sends it.
    since: Option<String>,
    cursor: Option<String>,
}

/// `2026-12-05` or `2026-12-05T18:04` (UTC) as a timestamp.
fn parse_since(raw: &str) -> Option<Timestamp> {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let minute_format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let at = time::PrimitiveDateTime::parse(raw, minute_format)
        .ok()
        .or_else(|| {
            time::Date::parse(raw, date_format)
                .ok()
                .map(|d| d.midnight())
        })?;
    Some(Timestamp::from_unix(at.assume_utc().unix_timestamp()))
}

pub fn summary(e: &EventSummary) -> Value {
    json!({
        "id": e.id.as_str(), "type": e.event_type, "status": e.status.as_str(),
        "outcome": e.outcome, "scenario": e.scenario, "workspace": e.workspace_hint,
        "customer": e.customer_id, "subscription": e.subscription_id,
        "created": e.created.unix(), "received_at": e.received_at.unix(),
    })
}

pub async fn list(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let status = match nonempty(query.status.as_deref()) {
        None => None,
        Some(s) => Some(EventStatus::parse(&s).ok_or_else(|| {
            ConsoleError::BadRequest(format!("status must be one of {}", STATUSES.join(", ")))
        })?),
    };
    let scenario = match nonempty(query.scenario.as_deref()) {
        None => None,
        Some(s) => Some(
            Scenario::parse(&s)
                .map(|s| s.as_str().to_owned())
                .ok_or_else(|| ConsoleError::BadRequest(format!("{s:?} is not one of S1–S18")))?,
        ),
    };
    let workspace = match nonempty(query.workspace_id.as_deref()) {
        None => None,
        Some(w) => {
            Some(WorkspaceId::parse(w).map_err(|e| ConsoleError::BadRequest(e.to_string()))?)
        }
    };
    let since = match nonempty(query.since.as_deref()) {
        None => None,
        Some(raw) => Some(parse_since(&raw).ok_or_else(|| {
            ConsoleError::BadRequest(
                "since must be a date (2026-12-05) or a time (2026-12-05T18:04), UTC".into(),
            )
        })?),
    };
    let page = state
        .store
        .events(&EventQuery {
            event_type: nonempty(query.event_type.as_deref()),
            status,
            outcome: nonempty(query.outcome.as_deref()),
            scenario,
            workspace,
            since,
            after: list_cursor(query.cursor.as_deref(), ListKind::Events)?,
            limit: LIST_SIZE,
            ..EventQuery::default()
        })
        .await?;
    let filters = [
        (
            "type",
            nonempty(query.event_type.as_deref()).unwrap_or_default(),
        ),
        (
            "status",
            nonempty(query.status.as_deref()).unwrap_or_default(),
        ),
        (
            "outcome",
            nonempty(query.outcome.as_deref()).unwrap_or_default(),
        ),
        (
            "scenario",
            nonempty(query.scenario.as_deref()).unwrap_or_default(),
        ),
        (
            "workspace_id",
            nonempty(query.workspace_id.as_deref()).unwrap_or_default(),
        ),
        (
            "since",
            nonempty(query.since.as_deref()).unwrap_or_default(),
        ),
    ];
    render(
        "events.html",
        Some(&me),
        json!({
            "title": "Events", "section": "events",
            "rows": page.items.iter().map(summary).collect::<Vec<_>>(),
            "filters": filters.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "statuses": STATUSES,
            "next": next_href("/admin/events", &filters, page.next.as_ref()),
        }),
    )
}

pub async fn page(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, ConsoleError> {
    let id = EventId::parse(id).map_err(|_| NOT_FOUND)?;
    let event = state.store.get_event(&id).await?.ok_or(NOT_FOUND)?;
    let payload = match &event.body_error {
        Some(error) => format!("(the stored body cannot be read: {error})"),
        None => serde_json::from_slice::<Value>(&event.payload)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&event.payload).into_owned()),
    };
    // Its workspace's other events (or, for an event linked to none, its
    // customer's), newest first.
    let workspace = state.store.event_workspace(&event.id).await?;
    let around = match (&workspace, &event.customer_id) {
        (Some(workspace), _) => Some(EventQuery {
            workspace: Some(workspace.clone()),
            limit: 25,
            ..EventQuery::default()
        }),
        (None, Some(customer)) => Some(EventQuery {
            stripe_id: Some(customer.clone()),
            limit: 25,
            ..EventQuery::default()
        }),
        (None, None) => None,
    };
    let around = match around {
        Some(q) => state.store.events(&q).await?.items,
        None => Vec::new(),
    };
    render(
        "event.html",
        Some(&me),
        json!({
            "title": format!("Event {}", event.id), "section": "events",
            "event": {
                "id": event.id.as_str(), "type": event.event_type, "status": event.status.as_str(),
                "outcome": event.outcome, "scenario": event.scenario, "livemode": event.livemode,
                "source": event.source, "attempts": event.attempts, "last_error": event.last_error,
                "created": event.created.unix(), "received_at": event.received_at.unix(),
                "object_type": event.object_type, "object_id": event.object_id,
                "customer": event.customer_id, "api_version": event.api_version,
                "workspace": workspace.as_ref().map(WorkspaceId::as_str),
            },
            "payload": payload,
            "around": around.iter().map(summary).collect::<Vec<_>>(),
            "result": query.done.is_some().then_some("Queued for replay: the processor derives it (and its scope) again. Its status below shows when it is done."),
        }),
    )
}

pub async fn replay(
    State(state): State<AppState>,
    Acting(me): Acting,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = EventId::parse(id).map_err(|_| NOT_FOUND)?;
    if !state
        .store
        .requeue_event(&id, &me.operator.actor(), state.clock.now())
        .await?
    {
        return Err(NOT_FOUND);
    }
    state.wake.notify_one();
    tracing::info!(event_id = %id, operator = %me.operator.name, "event queued for replay in the console");
    Ok(Redirect::to(&format!("/admin/events/{id}?done=1")).into_response())
}
