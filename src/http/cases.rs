//! `GET /v1/cases` and `POST /v1/cases/{id}/resolve`: held cases and what
//! support decides about them. Resolving re-runs provisioning for the events
//! the case held.

use admit_core::provisioning::CaseKind;
use admit_core::{Role, WorkspaceId};
use admit_store::{Actor, CaseQuery, CaseResolution, StoredCase};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::params::{ApiPath, ApiQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cases", get(list))
        .route("/v1/cases/{id}", get(read))
        .route("/v1/cases/{id}/resolve", post(resolve))
}

/// A case support holds (or held): what admit could not decide alone.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Case)]
pub struct CaseView {
    pub id: String,
    /// `email_mismatch`, `duplicate_customer`, `missing_workspace`, …
    pub kind: String,
    /// The decision-table row that held it (`S1`…`S18`).
    #[schema(required = true)]
    pub scenario: Option<String>,
    #[schema(required = true)]
    pub workspace_id: Option<String>,
    #[schema(required = true)]
    pub purchaser_email: Option<String>,
    #[schema(required = true)]
    pub stripe_customer_id: Option<String>,
    #[schema(required = true)]
    pub stripe_subscription_id: Option<String>,
    #[schema(required = true)]
    pub checkout_session_id: Option<String>,
    /// The Stripe events the case holds.
    pub event_ids: Vec<String>,
    /// `held` or `resolved`.
    pub state: String,
    pub created_at: i64,
    /// What the decision saw (candidates, emails compared, …).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The actions `POST /v1/cases/{id}/resolve` accepts for this kind.
    pub actions: &'static [&'static str],
    #[schema(required = true)]
    pub resolution: Option<String>,
    #[schema(required = true)]
    pub resolution_workspace_id: Option<String>,
    #[schema(required = true)]
    pub resolution_role: Option<String>,
    #[schema(required = true)]
    pub resolution_note: Option<String>,
    #[schema(required = true)]
    pub resolved_by: Option<String>,
    #[schema(required = true)]
    pub resolved_at: Option<i64>,
}

pub fn case_view(case: &StoredCase) -> CaseView {
    CaseView {
        id: case.id.clone(),
        kind: case.kind.clone(),
        scenario: case.scenario.clone(),
        workspace_id: case.workspace_id.clone(),
        purchaser_email: case.purchaser_email.clone(),
        stripe_customer_id: case.customer_id.clone(),
        stripe_subscription_id: case.subscription_id.clone(),
        checkout_session_id: case.checkout_session_id.clone(),
        event_ids: case.event_ids.clone(),
        state: case.state.clone(),
        created_at: case.created_at.unix(),
        details: case.details.clone(),
        actions: case_actions(&case.kind),
        resolution: case.resolution.clone(),
        resolution_workspace_id: case.resolution_workspace.clone(),
        resolution_role: case.resolution_role.clone(),
        resolution_note: case.resolution_note.clone(),
        resolved_by: case.resolved_by.clone(),
        resolved_at: case.resolved_at.map(|t| t.unix()),
    }
}

/// A page of cases, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CasePage)]
struct CasePage {
    cases: Vec<CaseView>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The states of a case.
pub const STATES: &[&str] = &["held", "resolved"];

/// The kind of the cases `admit reconcile` opens, outside the core's kinds.
pub const DUPLICATE_CUSTOMER: &str = "duplicate_customer";

/// A case id from a path: one no case could have (not printable ASCII, or
/// too long) names no case, and is not sent to the database.
fn case_id(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::CaseNotFound);
    }
    Ok(raw)
}

/// The resolution actions a case of this kind accepts (the core's rule).
fn case_actions(kind: &str) -> &'static [&'static str] {
    admit_core::provisioning::case_actions(CaseKind::parse(kind))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `held`, `resolved` or `all` (the default).
    #[param(schema_with = super::openapi::case_state_filter)]
    state: Option<String>,
    /// A case kind.
    #[param(schema_with = super::openapi::case_kind_filter)]
    kind: Option<String>,
    #[param(pattern = r"^([A-Za-z0-9_-]{1,255})?$")]
    workspace_id: Option<String>,
    /// A `cus_`, `sub_` or `cs_` id the case names.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,255}$")]
    stripe_id: Option<String>,
    /// The purchaser's email.
    #[param(schema_with = super::openapi::email_filter)]
    email: Option<String>,
    /// A previous page's `next_cursor`.
    #[param(pattern = r"^(c\.-?[0-9]{1,18}\.[!-~]{1,255})?$")]
    cursor: Option<String>,
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Held cases and how they were resolved, filtered and paged.
#[utoipa::path(
    get,
    path = "/v1/cases",
    operation_id = "list_cases",
    tag = "cases",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of cases", body = CasePage),
        (status = 400, description = "`invalid_request`, `workspace_id_invalid`, `email_invalid`", body = ErrorBody),
    )
)]
async fn list(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<CasePage>, ApiError> {
    let filter = super::state_filter(query.state.as_deref(), STATES)?;
    let kind = query
        .kind
        .filter(|k| !k.is_empty())
        .map(|k| {
            let known = CaseKind::parse(&k).is_some() || k == DUPLICATE_CUSTOMER;
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
            stripe_id: super::text_filter(query.stripe_id, "stripe_id")?,
            email: super::email_filter(query.email)?,
            created_before: None,
            after: super::cursor(query.cursor.as_deref(), admit_store::ListKind::Cases)?,
            limit: super::page_size(query.limit)?,
        })
        .await?;
    Ok(Json(CasePage {
        cases: page.items.iter().map(case_view).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// One case.
#[utoipa::path(
    get,
    path = "/v1/cases/{id}",
    operation_id = "get_case",
    tag = "cases",
    params(("id" = String, Path, description = "The case's id")),
    responses(
        (status = 200, description = "The case", body = CaseView),
        (status = 404, description = "`case_not_found`", body = ErrorBody),
    )
)]
async fn read(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CaseView>, ApiError> {
    let case = state
        .store
        .get_case(case_id(&id)?)
        .await?
        .ok_or(ApiError::CaseNotFound)?;
    Ok(Json(case_view(&case)))
}

/// What support decided.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Resolution)]
struct Resolve {
    /// `bind`, `invite_purchaser`, `mark_refunded` or `dismiss` (the case's
    /// `actions` say which it accepts).
    #[schema(pattern = "^(bind|invite_purchaser|mark_refunded|dismiss)$")]
    action: String,
    /// The workspace to bind to or invite into.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,255}$")]
    workspace_id: Option<String>,
    /// For `invite_purchaser`: `owner`, `admin` or `member` (the default).
    #[schema(pattern = "^(owner|admin|member)$")]
    role: Option<String>,
    /// Line breaks and tabs are the only control characters it may hold.
    #[schema(pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
    note: Option<String>,
}

fn workspace(raw: Option<String>, fallback: Option<&str>) -> Result<WorkspaceId, ApiError> {
    let raw = raw.or_else(|| fallback.map(str::to_owned)).ok_or_else(|| {
        ApiError::ResolutionInvalid("workspace_id is required for this action".into())
    })?;
    WorkspaceId::parse(raw).map_err(|e| ApiError::WorkspaceIdInvalid(e.to_string()))
}

/// Resolves a held case; the events it held are provisioned again.
#[utoipa::path(
    post,
    path = "/v1/cases/{id}/resolve",
    operation_id = "resolve_case",
    tag = "cases",
    params(("id" = String, Path, description = "The case's id")),
    request_body = Resolve,
    responses(
        (status = 200, description = "The case, resolved", body = CaseView),
        (status = 400, description = "`invalid_request`, `resolution_invalid`, `workspace_id_invalid`, `role_invalid`", body = ErrorBody),
        (status = 404, description = "`case_not_found`, `workspace_not_found`", body = ErrorBody),
        (status = 409, description = "`case_already_resolved`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    )
)]
async fn resolve(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Json<CaseView>, ApiError> {
    let case = state
        .store
        .get_case(case_id(&id)?)
        .await?
        .ok_or(ApiError::CaseNotFound)?;
    let note = body
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if note.as_deref().is_some_and(|n| {
        n.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    }) {
        return Err(ApiError::InvalidRequest(
            "the note must not contain control characters other than line breaks and tabs".into(),
        ));
    }
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
