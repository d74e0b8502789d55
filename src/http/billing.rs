//! `GET /v1/workspaces/{id}/billing` and `GET /v1/access`: what a workspace
//! pays for and who may enter it with which entitlements, right now.

use admit_core::provisioning::{Access, access, effective_plan, member_access};
use admit_core::{BillingState, Email, Timestamp, WorkspaceId};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/workspaces/{id}/billing", get(billing))
        .route("/v1/access", get(check_access))
}

/// The billing state as the API shows it. `subscription_plan` is the plan in
/// force now (the free tier's key once no paid plan applies: after a
/// cancellation, the end of the grace period, or the end of a period whose
/// cancellation was scheduled); all fields are null before any payment.
pub fn billing_view(state: Option<&BillingState>, app: &AppState, now: Timestamp) -> Value {
    let Some(state) = state.filter(|s| **s != BillingState::default()) else {
        return json!({
            "subscription_status": null, "subscription_plan": null, "stripe_customer_id": null,
            "stripe_subscription_id": null, "current_period_end": null, "cancel_at_period_end": null,
            "cancel_at": null, "purchaser_email": null, "updated_by_event": null, "past_due_since": null,
            "grace_period_ends": null, "plan_reason": null,
        });
    };
    let config = &app.config;
    let (plan, plan_reason) = effective_plan(state, &config.catalog, config.grace_period_secs, now);
    json!({
        "subscription_status": state.subscription_status.map(|s| s.as_str()),
        "subscription_plan": plan.as_str(),
        "stripe_customer_id": state.stripe_customer_id.as_ref().map(|c| c.as_str()),
        "stripe_subscription_id": state.stripe_subscription_id.as_ref().map(|s| s.as_str()),
        "current_period_end": state.current_period_end.map(Timestamp::unix),
        "cancel_at_period_end": state.cancel_at_period_end,
        // The scheduled end: `cancel_at`, else the period end when
        // `cancel_at_period_end` (rows written before it was stored).
        "cancel_at": admit_core::scheduled_end(
            state.cancel_at,
            state.cancel_at_period_end,
            state.current_period_end,
        )
        .map(Timestamp::unix),
        "purchaser_email": state.purchaser_email.as_ref().map(Email::as_str),
        "updated_by_event": state.updated_by_event.as_ref().map(|e| e.as_str()),
        "past_due_since": state.past_due_since.map(Timestamp::unix),
        "grace_period_ends": state.past_due_since.map(|s| s.plus_seconds(config.grace_period_secs).unix()),
        "plan_reason": plan_reason.as_str(),
    })
}

async fn billing(
    _caller: AppCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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

#[derive(Debug, Deserialize)]
struct AccessQuery {
    workspace_id: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AccessView {
    pub allowed: bool,
    pub role: Option<&'static str>,
    pub plan: String,
    pub subscription_status: Option<&'static str>,
    pub entitlements: admit_core::Entitlements,
    pub reason: &'static str,
}

impl From<Access> for AccessView {
    fn from(a: Access) -> Self {
        Self {
            allowed: a.allowed,
            role: a.role.map(|r| r.as_str()),
            plan: a.plan.to_string(),
            subscription_status: a.subscription_status.map(|s| s.as_str()),
            entitlements: a.entitlements,
            reason: a.reason.as_str(),
        }
    }
}

async fn check_access(
    _caller: AppCaller,
    State(state): State<AppState>,
    Query(query): Query<AccessQuery>,
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
