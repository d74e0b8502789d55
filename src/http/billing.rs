//! `GET /v1/workspaces/{id}/billing` and `GET /v1/access`: what a workspace
//! pays for and who may enter it with which entitlements, right now.

use admit_core::provisioning::{Access, access, effective_plan, member_access};
use admit_core::{BillingState, Email, Timestamp, WorkspaceId};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::params::{ApiPath, ApiQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workspaces/{id}/billing", get(billing))
        .route("/v1/access", get(check_access))
}

/// The billing state as the API shows it. `subscription_plan` is the plan in
/// force now (the free tier's key once no paid plan applies: after a
/// cancellation, the end of the grace period, or the end of a period whose
/// cancellation was scheduled); all fields are null before any payment.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(as = Billing)]
pub struct BillingView {
    /// Stripe's subscription status (`active`, `trialing`, `past_due`,
    /// `unpaid`, `canceled`, `incomplete`, `incomplete_expired`, `paused`).
    #[schema(required = true)]
    pub subscription_status: Option<&'static str>,
    /// The catalog key of the plan in force now.
    #[schema(required = true)]
    pub subscription_plan: Option<String>,
    #[schema(required = true)]
    pub stripe_customer_id: Option<String>,
    #[schema(required = true)]
    pub stripe_subscription_id: Option<String>,
    /// Unix seconds, like every time admit returns.
    #[schema(required = true)]
    pub current_period_end: Option<i64>,
    #[schema(required = true)]
    pub cancel_at_period_end: Option<bool>,
    /// When the subscription is scheduled to end (Unix seconds).
    #[schema(required = true)]
    pub cancel_at: Option<i64>,
    #[schema(required = true)]
    pub purchaser_email: Option<String>,
    /// The Stripe event that last changed this state.
    #[schema(required = true)]
    pub updated_by_event: Option<String>,
    #[schema(required = true)]
    pub past_due_since: Option<i64>,
    #[schema(required = true)]
    pub grace_period_ends: Option<i64>,
    /// Why `subscription_plan` is the plan in force.
    #[schema(required = true)]
    pub plan_reason: Option<&'static str>,
}

pub fn billing_view(state: Option<&BillingState>, app: &AppState, now: Timestamp) -> BillingView {
    let Some(state) = state.filter(|s| **s != BillingState::default()) else {
        return BillingView::default();
    };
    let config = &app.config;
    let (plan, plan_reason) = effective_plan(state, &config.catalog, config.grace_period_secs, now);
    BillingView {
        subscription_status: state.subscription_status.map(|s| s.as_str()),
        subscription_plan: Some(plan.as_str().to_owned()),
        stripe_customer_id: state
            .stripe_customer_id
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        stripe_subscription_id: state
            .stripe_subscription_id
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        current_period_end: state.current_period_end.map(Timestamp::unix),
        cancel_at_period_end: Some(state.cancel_at_period_end),
        // The scheduled end: `cancel_at`, else the period end when
        // `cancel_at_period_end` (rows written before it was stored).
        cancel_at: admit_core::scheduled_end(
            state.cancel_at,
            state.cancel_at_period_end,
            state.current_period_end,
        )
        .map(Timestamp::unix),
        purchaser_email: state
            .purchaser_email
            .as_ref()
            .map(|e| e.as_str().to_owned()),
        updated_by_event: state
            .updated_by_event
            .as_ref()
            .map(|e| e.as_str().to_owned()),
        past_due_since: state.past_due_since.map(Timestamp::unix),
        grace_period_ends: state
            .past_due_since
            .map(|s| s.plus_seconds(config.grace_period_secs).unix()),
        plan_reason: Some(plan_reason.as_str()),
    }
}

/// The four billing fields and the rest of the billing state.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/billing",
    operation_id = "get_billing",
    tag = "billing",
    params(("id" = String, Path, description = "The workspace's id")),
    responses(
        (status = 200, description = "The billing state (all null before any payment)", body = BillingView),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
    )
)]
async fn billing(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BillingView>, ApiError> {
    let id = WorkspaceId::parse(id).map_err(|_| ApiError::WorkspaceNotFound)?;
    if state.store.get_workspace(&id).await?.is_none() {
        return Err(ApiError::WorkspaceNotFound);
    }
    let billing = state.store.get_billing(&id).await?;
    Ok(Json(billing_view(
        billing.as_ref(),
        &state,
        state.clock.now(),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AccessQuery {
    #[param(required = true, pattern = r"^[A-Za-z0-9_-]{1,255}$")]
    workspace_id: Option<String>,
    /// The person asking to enter.
    #[param(required = true, format = Email, max_length = 254)]
    email: Option<String>,
}

/// Whether a person may enter a workspace now, as whom, with which plan.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Access)]
pub struct AccessView {
    pub allowed: bool,
    /// `owner`, `admin` or `member`; null for a non-member.
    #[schema(required = true)]
    pub role: Option<&'static str>,
    /// The catalog key of the plan in force.
    pub plan: String,
    #[schema(required = true)]
    pub subscription_status: Option<&'static str>,
    pub entitlements: EntitlementsView,
    /// Why access is allowed or refused: `active`, `trialing`, `past_due_grace`,
    /// `past_due_grace_expired`, `period_ended`, `canceled`, `unpaid`, `paused`,
    /// `incomplete`, `free_tier`, `plan_not_in_catalog`, `not_a_member`,
    /// `workspace_not_found`.
    pub reason: &'static str,
}

/// The plan's features and limits.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Entitlements)]
pub struct EntitlementsView {
    pub features: Vec<String>,
    pub limits: BTreeMap<String, i64>,
}

impl From<Access> for AccessView {
    fn from(a: Access) -> Self {
        Self {
            allowed: a.allowed,
            role: a.role.map(|r| r.as_str()),
            plan: a.plan.to_string(),
            subscription_status: a.subscription_status.map(|s| s.as_str()),
            entitlements: EntitlementsView {
                features: a.entitlements.features.into_iter().collect(),
                limits: a.entitlements.limits,
            },
            reason: a.reason.as_str(),
        }
    }
}

/// Role, plan, status, entitlements and the reason, for one person and
/// workspace: what an application asks before letting someone in.
#[utoipa::path(
    get,
    path = "/v1/access",
    operation_id = "check_access",
    tag = "billing",
    params(AccessQuery),
    responses(
        (status = 200, description = "The answer, allowed or not", body = AccessView),
        (status = 400, description = "`invalid_request` (a parameter is missing), `email_invalid`, `workspace_id_invalid`", body = ErrorBody),
    )
)]
async fn check_access(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AccessQuery>,
) -> Result<Json<AccessView>, ApiError> {
    let (Some(workspace_id), Some(email)) = (query.workspace_id, query.email) else {
        return Err(ApiError::InvalidRequest(
            "workspace_id and email are both required".into(),
        ));
    };
    let email = Email::parse(&email).map_err(|e| ApiError::EmailInvalid(e.to_string()))?;
    let id = WorkspaceId::parse(workspace_id)
        .map_err(|e| ApiError::WorkspaceIdInvalid(e.to_string()))?;
    let facts = state.store.access_facts(&id, &email).await?;
    let (catalog, grace, now) = (
        &state.config.catalog,
        state.config.grace_period_secs,
        state.clock.now(),
    );
    let answer = match facts {
        Some((role, billing)) => {
            member_access(role, &billing.unwrap_or_default(), catalog, grace, now)
        }
        None => access(None, &email, &BillingState::default(), catalog, grace, now),
    };
    Ok(Json(answer.into()))
}
