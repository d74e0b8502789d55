//! `/admin/outbox`: messages by state, a message's page (its text, an HTML
//! preview in a sandboxed frame, attempts and last error) and resend.

use admit_core::Email;
use admit_store::{ListKind, OutboxQuery, OutboxRow, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{ConsoleError, render, respond};
use super::session::{Acting, SignedIn};
use super::{DoneQuery, LIST_SIZE, list_cursor, next_href};
use crate::http::AppState;
use crate::http::OUTBOX_STATES;
use crate::mail::render::{MailContext, Rendered, render_message};

/// The preview may style itself but run nothing, load nothing, and sit only
/// in the console's own frame.
const PREVIEW_POLICY: &str =
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

/// A message's link is minted when it is sent; the preview shows where it goes.
const PREVIEW_LINK: &str = "#sign-in-link-created-when-sent";

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
}

pub fn row(m: &OutboxRow) -> Value {
    json!({
        "id": m.id, "kind": m.kind, "state": m.state, "recipient": m.recipient,
        "workspace_id": m.workspace_id, "attempts": m.attempts, "last_error": m.last_error,
        "created_at": m.created_at.unix(), "sent_at": m.sent_at.map(|t| t.unix()),
        "next_attempt_at": m.next_attempt_at.unix(), "key": m.idempotency_key,
    })
}

pub async fn list(
    State(state): State<AppState>,
    me: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let filter = match query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
    {
        None => None,
        Some(s) if OUTBOX_STATES.contains(&s) => Some(s.to_owned()),
        Some(_) => {
            return Err(ConsoleError::BadRequest(format!(
                "state must be one of {} or all",
                OUTBOX_STATES.join(", ")
            )));
        }
    };
    let page = state
        .store
        .outbox(&OutboxQuery {
            state: filter.clone(),
            after: list_cursor(query.cursor.as_deref(), ListKind::Outbox)?,
            limit: LIST_SIZE,
            ..OutboxQuery::default()
        })
        .await?;
    let filters = [("state", filter.clone().unwrap_or_default())];
    render(
        "outbox.html",
        Some(&me),
        json!({
            "title": "Outbox", "section": "outbox", "state": filter,
            "states": OUTBOX_STATES,
            "rows": page.items.iter().map(row).collect::<Vec<_>>(),
            "next": next_href("/admin/outbox", &filters, page.next.as_ref()),
        }),
    )
}

const NOT_FOUND: ConsoleError = ConsoleError::NotFound("no message with this id");

async fn message(state: &AppState, id: &str) -> Result<OutboxRow, ConsoleError> {
    let id = id.parse::<i64>().map_err(|_| NOT_FOUND)?;
    state.store.get_message(id).await?.ok_or(NOT_FOUND)
}

/// The message as the sender would render it now.
fn rendered(state: &AppState, m: &OutboxRow) -> Result<Rendered, String> {
    let mail = &state.config.mail;
    let recipient = if m.recipient == "support" {
        state
            .config
            .support_email
            .as_ref()
            .map_or_else(|| "support".to_owned(), |e| Email::as_str(e).to_owned())
    } else {
        m.recipient.clone()
    };
    let ctx = MailContext {
        product_name: &mail.product_name,
        support_email: state.config.support_email.as_ref().map(Email::as_str),
        public_url: &mail.public_url,
        app_home_url: &mail.app_home_url,
    };
    render_message(&m.kind, &recipient, &m.payload, Some(PREVIEW_LINK), &ctx)
        .map_err(|e| crate::telemetry::error_chain(&e))
}

pub async fn page(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, ConsoleError> {
    let m = message(&state, &id).await?;
    let (subject, text, render_error) = match rendered(&state, &m) {
        Ok(r) => (Some(r.subject), Some(r.text), None),
        Err(e) => (None, None, Some(e)),
    };
    render(
        "message.html",
        Some(&me),
        json!({
            "title": format!("Message {}", m.id), "section": "outbox",
            "message": row(&m), "about": m.about, "case_key": m.case_key,
            "subject": subject, "text": text, "render_error": render_error,
            // A sent message was delivered; the console resends only what failed.
            "resendable": m.state == "dead",
            "result": query.done.is_some().then_some("Queued again: the sender delivers it within seconds. Its state below shows when it went."),
        }),
    )
}

pub async fn preview(
    State(state): State<AppState>,
    _me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let m = message(&state, &id).await?;
    let html = rendered(&state, &m)
        .map_err(|e| ConsoleError::BadRequest(format!("the message cannot be rendered: {e}")))?
        .html;
    let mut response = respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        PREVIEW_POLICY,
        html,
    );
    // Framed by the console's own message page, nowhere else.
    response.headers_mut().insert(
        axum::http::header::X_FRAME_OPTIONS,
        axum::http::HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

pub async fn resend(
    State(state): State<AppState>,
    Acting(me): Acting,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let current = message(&state, &id).await?;
    if current.state != "dead" {
        return Err(ConsoleError::BadRequest(format!(
            "message {} is {}: the console resends only dead messages (a sent one was delivered already)",
            current.id, current.state
        )));
    }
    let id = current.id;
    let actor = me.operator.actor().to_string();
    match state.store.resend(id, &actor, state.clock.now()).await {
        Ok(row) => {
            tracing::info!(outbox_id = row.id, kind = %row.kind, operator = %me.operator.name, "message queued again in the console");
            Ok(Redirect::to(&format!("/admin/outbox/{id}?done=1")).into_response())
        }
        Err(StoreError::OutboxNotFound) => Err(NOT_FOUND),
        Err(e) => Err(e.into()),
    }
}
