//! `/v1/workspaces`: the application creates workspaces, manages their
//! members and reads their audit log.
//!
//! Email addresses arrive in bodies and in paths; they are parsed into
//! [`Email`] at once and never logged (logs carry the workspace id and role).

use admit_core::{Email, Role, Workspace, WorkspaceId};
use admit_store::{Actor, MemberChange, StoredAuditEntry};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;
use super::json::ApiJson;

const MAX_NAME_CHARS: usize = 200;
const DEFAULT_AUDIT_LIMIT: i64 = 100;
const MAX_AUDIT_LIMIT: i64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workspaces", post(create))
        .route("/v1/workspaces/{id}", get(read).delete(remove))
        .route(
            "/v1/workspaces/{id}/members/{email}",
            put(put_member).delete(remove_member),
        )
        .route("/v1/workspaces/{id}/audit", get(audit))
}

#[derive(Debug, Serialize)]
struct MemberView {
    email: String,
    role: Role,
}

#[derive(Debug, Serialize)]
struct WorkspaceView {
    id: String,
    name: String,
    /// Unix seconds, like every time admit returns.
    created_at: i64,
    /// In email order.
    members: Vec<MemberView>,
}

impl From<Workspace> for WorkspaceView {
    fn from(workspace: Workspace) -> Self {
        Self {
            id: workspace.id.into(),
            name: workspace.name,
            created_at: workspace.created_at.unix(),
            members: workspace
                .members
                .into_iter()
                .map(|(email, role)| MemberView {
                    email: email.into(),
                    role,
                })
                .collect(),
        }
    }
}

/// What `GET /v1/workspaces/{id}` answers: the workspace plus what only a
/// read shows (the billing state), flattened into one object.
#[derive(Debug, Serialize)]
struct WorkspaceDetail {
    #[serde(flatten)]
    workspace: WorkspaceView,
    billing: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct CreateWorkspace {
    id: Option<String>,
    name: String,
    owner_email: String,
}

async fn create(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceDetail>), ApiError> {
    let id = match body.id {
        Some(raw) => {
            WorkspaceId::parse(raw).map_err(|e| ApiError::WorkspaceIdInvalid(e.to_string()))?
        }
        None => generate_id()?,
    };
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "the name must be 1 to {MAX_NAME_CHARS} characters, not counting surrounding spaces"
        )));
    }
    // A name goes into mail subjects and headers: no line breaks, no controls.
    if name.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "the name must not contain control characters (line breaks, tabs, …)".into(),
        ));
    }
    let owner = parse_email(&body.owner_email)?;
    let workspace = state
        .store
        .create_workspace(&id, name, &owner, &Actor::api(), state.clock.now())
        .await?;
    tracing::info!(workspace_id = %workspace.id, "workspace created");
    let detail = WorkspaceDetail {
        workspace: workspace.into(),
        billing: super::billing::billing_view(None, &state, state.clock.now()),
    };
    Ok((StatusCode::CREATED, Json(detail)))
}

async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceDetail>, ApiError> {
    let id = existing_id(id)?;
    let workspace = state
        .store
        .get_workspace(&id)
        .await?
        .ok_or(ApiError::WorkspaceNotFound)?;
    let billing = state.store.get_billing(&id).await?;
    Ok(Json(WorkspaceDetail {
        workspace: workspace.into(),
        billing: super::billing::billing_view(billing.as_ref(), &state, state.clock.now()),
    }))
}

#[derive(Debug, Deserialize)]
struct PutMember {
    role: String,
}

#[derive(Debug, Serialize)]
struct MemberChangeView {
    email: String,
    role: Role,
    change: &'static str,
}

/// Answers 200 whether the member was added, changed or already had the
/// role: a PUT states the desired membership, and `change` says what it took.
async fn put_member(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path((id, email)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutMember>,
) -> Result<Json<MemberChangeView>, ApiError> {
    let id = existing_id(id)?;
    let email = parse_email(&email)?;
    let role = Role::parse(&body.role).ok_or(ApiError::RoleInvalid)?;
    let change = state
        .store
        .put_member(&id, &email, role, &Actor::api(), state.clock.now())
        .await?;
    let change = match change {
        MemberChange::Added => "added",
        MemberChange::RoleChanged { .. } => "role_changed",
        MemberChange::Unchanged => "unchanged",
    };
    tracing::info!(workspace_id = %id, %role, change, "member put");
    Ok(Json(MemberChangeView {
        email: email.into(),
        role,
        change,
    }))
}

/// Removes a workspace nobody pays for any more (its events, cases and
/// audit stay as history); 409 while a subscription runs.
async fn remove(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = existing_id(id)?;
    if !state
        .store
        .delete_workspace(&id, &Actor::api(), state.clock.now())
        .await?
    {
        return Err(ApiError::WorkspaceNotFound);
    }
    tracing::info!(workspace_id = %id, "workspace removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path((id, email)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = existing_id(id)?;
    let email = parse_email(&email)?;
    state
        .store
        .remove_member(&id, &email, &Actor::api(), state.clock.now())
        .await?;
    tracing::info!(workspace_id = %id, "member removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
struct AuditEntryView {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    subject: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
    cause: Option<String>,
}

impl From<StoredAuditEntry> for AuditEntryView {
    fn from(stored: StoredAuditEntry) -> Self {
        let entry = stored.entry;
        Self {
            id: stored.id,
            at: entry.at.unix(),
            actor: entry.actor,
            action: entry.action,
            subject: entry.subject,
            before: entry.before,
            after: entry.after,
            cause: entry.cause,
        }
    }
}

#[derive(Debug, Serialize)]
struct AuditView {
    /// Newest first.
    entries: Vec<AuditEntryView>,
}

async fn audit(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditView>, ApiError> {
    let id = existing_id(id)?;
    let limit = match query {
        Ok(Query(AuditQuery { limit: None })) => DEFAULT_AUDIT_LIMIT,
        Ok(Query(AuditQuery { limit: Some(n) })) if (1..=MAX_AUDIT_LIMIT).contains(&n) => n,
        _ => {
            return Err(ApiError::InvalidRequest(format!(
                "`limit` must be a whole number from 1 to {MAX_AUDIT_LIMIT}"
            )));
        }
    };
    let entries = state.store.audit_log(&id, limit).await?;
    Ok(Json(AuditView {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// A workspace id from a path: one that cannot be valid names no workspace.
fn existing_id(raw: String) -> Result<WorkspaceId, ApiError> {
    WorkspaceId::parse(raw).map_err(|_| ApiError::WorkspaceNotFound)
}

fn parse_email(raw: &str) -> Result<Email, ApiError> {
    super::deliverable_email(raw)
}

/// `ws_` and 20 hex digits: 80 random bits, so a collision is not a concern
/// and the id reveals neither the creation order nor the count.
fn generate_id() -> Result<WorkspaceId, ApiError> {
    let mut bytes = [0u8; 10];
    // Without its `std` feature getrandom's error is no `std::error::Error`,
    // so its text is the cause.
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness for an id: {e}")))?;
    WorkspaceId::parse(format!("ws_{}", hex::encode(bytes)))
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("generated workspace id")))
}
