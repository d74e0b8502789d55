//! `GET /v1/cases` and `POST /v1/cases/{id}/resolve`: held cases and what
//! support decides about them. Resolving re-runs provisioning for the events
//! the case held.

use admit_core::provisioning::CaseKind;
use admit_core::{Role, WorkspaceId};
use admit_store::{Actor, CaseQuery, CaseResolution, StoredCase};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;
use super::json::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cases", get(list))
        .route("/v1/cases/{id}", get(read))
        .route("/v1/cases/{id}/resolve", post(resolve))
}

pub fn case_view(case: &StoredCase) -> Value {
    json!({
        "id": case.id,
        "kind": case.kind,
        "scenario": case.scenario,
        "workspace_id": case.workspace_id,
        "purchaser_email": case.purchaser_email,
        "stripe_customer_id": case.customer_id,
        "stripe_subscription_id": case.subscription_id,
        "checkout_session_id": case.checkout_session_id,
        "event_ids": case.event_ids,
        "state": case.state,
        "created_at": case.created_at.unix(),
        "details": case.details,
        "actions": case_actions(&case.kind),
        "resolution": case.resolution,
        "resolution_workspace_id": case.resolution_workspace,
        "resolution_role": case.resolution_role,
        "resolution_note": case.resolution_note,
        "resolved_by": case.resolved_by,
        "resolved_at": case.resolved_at.map(|t| t.unix()),
    })
}

/// The resolution actions a case of this kind accepts (the core's rule).
fn case_actions(kind: &str) -> &'static [&'static str] {
    admit_core::provisioning::case_actions(CaseKind::parse(kind))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    workspace_id: Option<String>,
    stripe_id: Option<String>,
    email: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = super::state_filter(query.state.as_deref(), &["held", "resolved"])?;
    let kind = query
        .kind
        .filter(|k| !k.is_empty())
        .map(|k| {
            let known = CaseKind::parse(&k).is_some() || k == "duplicate_customer";
            if known {
                Ok(k)
            } else {
                Err(ApiError::InvalidRequest(format!(
                    "kind {k:?} is not a case kind"
                )))
            }
        })
        .transpose()?;
    let page = state
        .store
        .cases(&CaseQuery {
            state: filter.map(str::to_owned),
            kind,
            workspace: super::workspace_filter(query.workspace_id)?,
            stripe_id: query.stripe_id.filter(|s| !s.is_empty()),
            email: super::email_filter(query.email)?,
            created_before: None,
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Cases)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    Ok(Json(json!({
        "cases": page.items.iter().map(case_view).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let case = state
        .store
        .get_case(&id)
        .await?
        .ok_or(ApiError::CaseNotFound)?;
    Ok(Json(case_view(&case)))
}

#[derive(Debug, Deserialize)]
struct Resolve {
    action: String,
    workspace_id: Option<String>,
    role: Option<String>,
    note: Option<String>,
}

fn workspace(raw: Option<String>, fallback: Option<&str>) -> Result<WorkspaceId, ApiError> {
    let raw = raw.or_else(|| fallback.map(str::to_owned)).ok_or_else(|| {
        ApiError::ResolutionInvalid("workspace_id is required for this action".into())
    })?;
    WorkspaceId::parse(raw).map_err(|e| ApiError::WorkspaceIdInvalid(e.to_string()))
}

async fn resolve(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Json<Value>, ApiError> {
    let case = state
        .store
        .get_case(&id)
        .await?
        .ok_or(ApiError::CaseNotFound)?;
    let note = body
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let resolution = match body.action.as_str() {
        "bind" => CaseResolution::Bind {
            workspace: workspace(body.workspace_id, None)?,
        },
        "invite_purchaser" => CaseResolution::InvitePurchaser {
            workspace: workspace(body.workspace_id, case.workspace_id.as_deref())?,
            role: match body.role.as_deref() {
                None => Role::Member,
                Some(raw) => Role::parse(raw).ok_or(ApiError::RoleInvalid)?,
            },
        },
        "mark_refunded" => CaseResolution::MarkRefunded { note },
        "dismiss" => CaseResolution::Dismiss { note },
        _ => {
            return Err(ApiError::InvalidRequest(
                "action must be one of bind, invite_purchaser, mark_refunded, dismiss".into(),
            ));
        }
    };
    let resolved = state
        .store
        .resolve_case(&id, &resolution, &Actor::api(), state.clock.now())
        .await?;
    tracing::info!(case_id = %resolved.id, action = resolution.as_str(), "case resolved");
    state.wake.notify_one();
    Ok(Json(case_view(&resolved)))
}
