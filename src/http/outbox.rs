//! `GET /v1/outbox` and `POST /v1/outbox/{id}/resend`: what was (and will be)
//! sent, for operators.

use admit_store::{OutboxQuery, OutboxRow};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::params::{ApiPath, ApiQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/outbox", get(list))
        .route("/v1/outbox/{id}/resend", post(resend))
}

/// A message admit sent or will send.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OutboxMessage)]
pub struct MessageView {
    pub id: i64,
    /// At most one message per key, ever.
    pub idempotency_key: String,
    /// `onboarding`, `receipt`, `support_notice`, …
    pub kind: String,
    /// An email address, or `support`.
    pub recipient: String,
    #[schema(required = true)]
    pub workspace_id: Option<String>,
    #[schema(required = true)]
    pub about: Option<String>,
    #[schema(required = true)]
    pub case_key: Option<String>,
    /// `pending`, `sent`, `dead` or `superseded`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub created_at: i64,
    #[schema(required = true)]
    pub sent_at: Option<i64>,
}

pub fn message_view(row: &OutboxRow) -> MessageView {
    MessageView {
        id: row.id,
        idempotency_key: row.idempotency_key.clone(),
        kind: row.kind.clone(),
        recipient: row.recipient.clone(),
        workspace_id: row.workspace_id.clone(),
        about: row.about.clone(),
        case_key: row.case_key.clone(),
        state: row.state.clone(),
        attempts: row.attempts,
        next_attempt_at: row.next_attempt_at.unix(),
        last_error: row.last_error.clone(),
        created_at: row.created_at.unix(),
        sent_at: row.sent_at.map(|t| t.unix()),
    }
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OutboxPage)]
struct MessagePage {
    messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `pending`, `sent`, `dead`, `superseded` or `all`.
    #[param(schema_with = super::openapi::outbox_state_filter)]
    state: Option<String>,
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    kind: Option<String>,
    /// An email address, or `support`.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    recipient: Option<String>,
    #[param(pattern = r"^([A-Za-z0-9_-]{1,255})?$")]
    workspace_id: Option<String>,
    /// A previous page's `next_cursor`.
    #[param(pattern = r"^(o\.-?[0-9]{1,18}\.[!-~]{1,255})?$")]
    cursor: Option<String>,
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

pub const STATES: &[&str] = &["pending", "sent", "dead", "superseded"];

/// The outbox, filtered and paged.
#[utoipa::path(
    get,
    path = "/v1/outbox",
    operation_id = "list_outbox",
    tag = "outbox",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "`invalid_request`, `workspace_id_invalid`", body = ErrorBody),
    )
)]
async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let filter = super::state_filter(query.state.as_deref(), STATES)?;
    let page = state
        .store
        .outbox(&OutboxQuery {
            state: filter.map(str::to_owned),
            kind: super::text_filter(query.kind, "kind")?,
            // An address is compared as admit stores it; `support` as it is.
            recipient: super::text_filter(query.recipient, "recipient")?
                .map(|r| admit_core::Email::parse(&r).map_or(r, String::from)),
            workspace: super::workspace_filter(query.workspace_id)?,
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Outbox)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    Ok(Json(MessagePage {
        messages: page.items.iter().map(message_view).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// Queues a message again (a `dead` one, once its cause is fixed).
#[utoipa::path(
    post,
    path = "/v1/outbox/{id}/resend",
    operation_id = "resend_message",
    tag = "outbox",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message, pending again", body = MessageView),
        (status = 404, description = "`outbox_not_found`", body = ErrorBody),
    )
)]
async fn resend(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = id.parse::<i64>().map_err(|_| ApiError::OutboxNotFound)?;
    let row = state.store.resend(id, "api", state.clock.now()).await?;
    // The sender polls every second; no need to wake it.
    tracing::info!(outbox_id = row.id, kind = %row.kind, "message queued again");
    Ok(Json(message_view(&row)))
}
