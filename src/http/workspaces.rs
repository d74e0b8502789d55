//! `/v1/workspaces`: the application creates workspaces, manages their
//! members and reads their audit log.
//!
//! Email addresses arrive in bodies and in paths; they are parsed into
//! [`Email`] at once and never logged (logs carry the workspace id and role).

use admit_core::{Email, Role, Workspace, WorkspaceId};
use admit_store::{Actor, MemberChange, StoredAuditEntry};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AppCaller;
use super::billing::BillingView;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::params::ApiPath;

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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Member)]
struct MemberView {
    email: String,
    /// `owner`, `admin` or `member`.
    #[schema(value_type = String)]
    role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Workspace)]
struct WorkspaceDetail {
    #[serde(flatten)]
    workspace: WorkspaceView,
    billing: BillingView,
}

/// A new workspace and its first owner.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewWorkspace)]
struct CreateWorkspace {
    /// Letters, digits, `_` or `-`; generated (`ws_` and 20 hex digits) when absent.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,255}$")]
    id: Option<String>,
    /// 1 to 200 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    #[schema(format = Email, max_length = 254)]
    owner_email: String,
}

/// Creates a workspace with its owner.
#[utoipa::path(
    post,
    path = "/v1/workspaces",
    operation_id = "create_workspace",
    tag = "workspaces",
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "Created", body = WorkspaceDetail),
        (status = 400, description = "`invalid_request`, `workspace_id_invalid`, `email_invalid`", body = ErrorBody),
        (status = 409, description = "`workspace_exists`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    )
)]
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
    // Counted before trimming, as the API document states the limit.
    if name.is_empty() || body.name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "the name must be at most {MAX_NAME_CHARS} characters and more than spaces"
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

/// A workspace, its members and its billing state.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}",
    operation_id = "get_workspace",
    tag = "workspaces",
    params(("id" = String, Path, description = "The workspace's id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceDetail),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
    )
)]
async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
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

/// The role a member should have.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = MemberRole)]
struct PutMember {
    /// `owner`, `admin` or `member`.
    #[schema(pattern = "^(owner|admin|member)$")]
    role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MemberChange)]
struct MemberChangeView {
    email: String,
    #[schema(value_type = String)]
    role: Role,
    /// `added`, `role_changed` or `unchanged`.
    change: &'static str,
}

/// The path of a member.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MemberPath {
    /// The workspace's id.
    id: String,
    /// The member's email address.
    #[param(format = Email, max_length = 254)]
    email: String,
}

/// Answers 200 whether the member was added, changed or already had the
/// role: a PUT states the desired membership, and `change` says what it took.
#[utoipa::path(
    put,
    path = "/v1/workspaces/{id}/members/{email}",
    operation_id = "put_member",
    tag = "workspaces",
    params(MemberPath),
    request_body = PutMember,
    responses(
        (status = 200, description = "The membership as asked", body = MemberChangeView),
        (status = 400, description = "`invalid_request`, `email_invalid`, `role_invalid`", body = ErrorBody),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    )
)]
async fn put_member(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(MemberPath { id, email }): ApiPath<MemberPath>,
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
#[utoipa::path(
    delete,
    path = "/v1/workspaces/{id}",
    operation_id = "delete_workspace",
    tag = "workspaces",
    params(("id" = String, Path, description = "The workspace's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
        (status = 409, description = "`workspace_has_subscription`, `workspace_has_held_cases`", body = ErrorBody),
    )
)]
async fn remove(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
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

/// Removes a member.
#[utoipa::path(
    delete,
    path = "/v1/workspaces/{id}/members/{email}",
    operation_id = "delete_member",
    tag = "workspaces",
    params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`email_invalid`, `invalid_request`", body = ErrorBody),
        (status = 404, description = "`workspace_not_found`, `member_not_found`", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
    )
)]
async fn remove_member(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(MemberPath { id, email }): ApiPath<MemberPath>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
struct AuditEntryView {
    id: i64,
    at: i64,
    /// `api`, `stripe`, `operator:<name>`, …
    actor: String,
    action: String,
    #[schema(required = true)]
    subject: Option<String>,
    #[schema(required = true, value_type = Option<Object>)]
    before: Option<Value>,
    #[schema(required = true, value_type = Option<Object>)]
    after: Option<Value>,
    /// The Stripe event that caused it, if one did.
    #[schema(required = true)]
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditLog)]
struct AuditView {
    /// Newest first.
    entries: Vec<AuditEntryView>,
}

/// The workspace's audit log.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/audit",
    operation_id = "get_audit_log",
    tag = "workspaces",
    params(("id" = String, Path, description = "The workspace's id"), AuditQuery),
    responses(
        (status = 200, description = "Newest first", body = AuditView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
    )
)]
async fn audit(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
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
