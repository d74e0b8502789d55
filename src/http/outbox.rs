//! `GET /v1/outbox` and `POST /v1/outbox/{id}/resend`: what was (and will be)
//! sent, for operators.

use admit_store::{OutboxQuery, OutboxRow};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/outbox", get(list))
        .route("/v1/outbox/{id}/resend", post(resend))
}

pub fn message_view(row: &OutboxRow) -> Value {
    json!({
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "kind": row.kind,
        "recipient": row.recipient,
        "workspace_id": row.workspace_id,
        "about": row.about,
        "case_key": row.case_key,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.unix(),
        "last_error": row.last_error,
        "created_at": row.created_at.unix(),
        "sent_at": row.sent_at.map(|t| t.unix()),
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    recipient: Option<String>,
    workspace_id: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub const STATES: &[&str] = &["pending", "sent", "dead", "superseded"];

async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = super::state_filter(query.state.as_deref(), STATES)?;
    let page = state
        .store
        .outbox(&OutboxQuery {
            state: filter.map(str::to_owned),
            kind: query.kind.filter(|k| !k.is_empty()),
            // An address is compared as admit stores it; `support` as it is.
            recipient: query
                .recipient
                .filter(|r| !r.is_empty())
                .map(|r| admit_core::Email::parse(&r).map_or(r, String::from)),
            workspace: super::workspace_filter(query.workspace_id)?,
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Outbox)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    Ok(Json(json!({
        "messages": page.items.iter().map(message_view).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

async fn resend(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id.parse::<i64>().map_err(|_| ApiError::OutboxNotFound)?;
    let row = state.store.resend(id, "api", state.clock.now()).await?;
    // The sender polls every second; no need to wake it.
    tracing::info!(outbox_id = row.id, kind = %row.kind, "message queued again");
    Ok(Json(message_view(&row)))
}
