//! `POST /v1/workspaces/{id}/checkout`: a Stripe Checkout session for a plan,
//! started by an owner or admin of the workspace. It reuses (or creates, once)
//! the workspace's Stripe customer and records the checkout intent — the
//! trusted binding of DESIGN.md §2.1.

use admit_core::provisioning::CheckoutIntent;
use admit_core::{Email, WorkspaceId};
use admit_stripe::api::{Form, StripeClient};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::params::ApiPath;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/workspaces/{id}/checkout", post(create))
}

/// The plan to buy, and who asks.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CheckoutRequest)]
struct CreateCheckout {
    /// A paid plan's catalog key.
    plan: String,
    /// An owner or admin of the workspace.
    #[schema(format = Email, max_length = 254)]
    initiator_email: String,
    /// Who pays, when not the initiator.
    #[schema(format = Email, max_length = 254)]
    purchaser_email: Option<String>,
    /// `month` or `year` (also `monthly` / `yearly`): picks the plan's price with that interval.
    #[schema(pattern = "^(month|monthly|year|yearly|annual)$")]
    interval: Option<String>,
}

fn stripe_failed(error: admit_stripe::api::StripeError) -> ApiError {
    ApiError::StripeUnavailable(error.into())
}

/// The plan's price for the interval asked for, or its first price.
async fn choose_price(
    client: &StripeClient,
    prices: &[String],
    interval: Option<&str>,
) -> Result<String, ApiError> {
    let Some(interval) = interval else {
        return prices
            .first()
            .cloned()
            .ok_or_else(|| ApiError::PlanInvalid("the plan has no price".into()));
    };
    let wanted = match interval {
        "month" | "monthly" => "month",
        "year" | "yearly" | "annual" => "year",
        other => {
            return Err(ApiError::InvalidRequest(format!(
                "interval must be month or year, not {other:?}"
            )));
        }
    };
    for price in prices {
        let object = client.retrieve_price(price).await.map_err(stripe_failed)?;
        let found = object
            .pointer("/recurring/interval")
            .or_else(|| object.get("interval"))
            .and_then(Value::as_str);
        if found == Some(wanted) {
            return Ok(price.clone());
        }
    }
    Err(ApiError::PlanInvalid(format!(
        "the plan has no {wanted}ly price"
    )))
}

/// A Stripe Checkout session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Checkout)]
struct CheckoutCreated {
    checkout_session_id: String,
    /// Where to send the purchaser.
    url: String,
}

/// Starts a Stripe Checkout session for a plan; only an owner or admin of
/// the workspace may.
#[utoipa::path(
    post,
    path = "/v1/workspaces/{id}/checkout",
    operation_id = "create_checkout",
    tag = "workspaces",
    params(("id" = String, Path, description = "The workspace's id")),
    request_body = CreateCheckout,
    responses(
        (status = 200, description = "The session", body = CheckoutCreated),
        (status = 400, description = "`invalid_request`, `email_invalid`, `plan_invalid`", body = ErrorBody),
        (status = 403, description = "`not_workspace_admin`", body = ErrorBody),
        (status = 404, description = "`workspace_not_found`", body = ErrorBody),
        (status = 409, description = "`already_subscribed`, `checkout_in_progress`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 502, description = "`stripe_unavailable`", body = ErrorBody),
        (status = 503, description = "`stripe_not_configured`, `too_many_connections`", body = ErrorBody),
    )
)]
async fn create(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateCheckout>,
) -> Result<Json<CheckoutCreated>, ApiError> {
    let workspace_id = WorkspaceId::parse(id).map_err(|_| ApiError::WorkspaceNotFound)?;
    let initiator = super::deliverable_email(&body.initiator_email)?;
    let purchaser = body
        .purchaser_email
        .as_deref()
        .map(super::deliverable_email)
        .transpose()?;
    let workspace = state
        .store
        .get_workspace(&workspace_id)
        .await?
        .ok_or(ApiError::WorkspaceNotFound)?;
    // S13: only an owner or admin starts a purchase; nothing is created otherwise.
    if !workspace
        .role_of(&initiator)
        .is_some_and(|r| r.administers())
    {
        return Err(ApiError::NotWorkspaceAdmin);
    }
    let plan = state
        .config
        .catalog
        .get_str(&body.plan)
        .filter(|p| !p.free_tier)
        .ok_or_else(|| {
            ApiError::PlanInvalid(format!("{:?} is not a paid plan of the catalog", body.plan))
        })?
        .clone();
    let client = state.stripe.clone().ok_or(ApiError::StripeNotConfigured)?;

    // One checkout per workspace at a time, whichever instance serves it:
    // the lease lives in the database.
    let holder = crate::signin::new_token()
        .map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "the OS random number generator failed: {e}"
            ))
        })?
        .1;
    lease_checkout(&state, &workspace_id, &holder).await?;
    // Held, and renewed, until this request ends however it ends (a client
    // that goes away drops it too).
    let _lease = HeldLease::hold(state.clone(), workspace_id.clone(), holder);
    create_with_lease(
        &state,
        &client,
        &workspace_id,
        &plan,
        initiator,
        purchaser,
        body.interval.as_deref(),
    )
    .await
}

/// A checkout lease this request holds: renewed while the request runs
/// (Stripe's retries may outlast one lease), ended when it is dropped. One
/// left behind by a crash lapses by itself.
struct HeldLease {
    state: AppState,
    workspace: WorkspaceId,
    holder: String,
    renewing: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    fn hold(state: AppState, workspace: WorkspaceId, holder: String) -> Self {
        let renewing = tokio::spawn({
            let (state, workspace, holder) = (state.clone(), workspace.clone(), holder.clone());
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(
                        u64::try_from(CHECKOUT_LEASE_SECS / 3).unwrap_or(20),
                    ))
                    .await;
                    let now = state.clock.now();
                    if let Err(error) = state
                        .store
                        .lease_checkout(&workspace, &holder, now, lease_end(now))
                        .await
                    {
                        tracing::warn!(workspace_id = %workspace, error = %crate::telemetry::error_chain(&error), "could not renew a checkout lease");
                    }
                }
            }
        });
        Self {
            state,
            workspace,
            holder,
            renewing,
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewing.abort();
        let (store, workspace, holder) = (
            self.state.store.clone(),
            self.workspace.clone(),
            std::mem::take(&mut self.holder),
        );
        tokio::spawn(async move {
            if let Err(error) = store.end_checkout_lease(&workspace, &holder).await {
                tracing::warn!(workspace_id = %workspace, error = %crate::telemetry::error_chain(&error), "could not end a checkout lease; it lapses by itself");
            }
        });
    }
}

/// How long a checkout lease lasts unless its holder ends it: longer than
/// the Stripe calls of one checkout take, short enough that a crashed
/// holder does not block the workspace for long.
const CHECKOUT_LEASE_SECS: i64 = 60;

/// When a lease taken or renewed at `now` lapses.
fn lease_end(now: admit_core::Timestamp) -> admit_core::Timestamp {
    admit_core::Timestamp::from_unix(now.unix() + CHECKOUT_LEASE_SECS)
}

/// Waits for the workspace's checkout lease, up to 15 s (a checkout holds
/// it for the few Stripe calls it makes).
async fn lease_checkout(
    state: &AppState,
    workspace_id: &WorkspaceId,
    holder: &str,
) -> Result<(), ApiError> {
    for _ in 0..300 {
        let now = state.clock.now();
        if state
            .store
            .lease_checkout(workspace_id, holder, now, lease_end(now))
            .await?
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(ApiError::CheckoutInProgress)
}

/// The checkout itself, while this request holds the workspace's lease.
async fn create_with_lease(
    state: &AppState,
    client: &StripeClient,
    workspace_id: &WorkspaceId,
    plan: &admit_core::Plan,
    initiator: Email,
    purchaser: Option<Email>,
    interval: Option<&str>,
) -> Result<Json<CheckoutCreated>, ApiError> {
    // Most duplicate subscriptions are stopped here, before anyone pays: a
    // workspace with a live subscription changes plan through that
    // subscription (Stripe's customer portal), not through a second checkout.
    if let Some(billing) = state.store.get_billing(workspace_id).await?
        && billing.subscription_status.is_some_and(|s| s.is_live())
    {
        return Err(ApiError::AlreadySubscribed);
    }
    let price = choose_price(client, &plan.prices, interval).await?;
    let now = state.clock.now();
    let customers = state.store.workspace_customers(workspace_id).await?;
    let customer = match admit_core::checkout_customer(&customers) {
        Some(customer) => customer,
        None => {
            let email = purchaser.as_ref().unwrap_or(&initiator);
            // The lease keeps a second customer from being created here; the key
            // derived from the workspace makes a retried request return the same one.
            let key = format!("admit-customer-{workspace_id}");
            let created = client
                .create_customer(
                    email.as_str(),
                    &[("workspace_id", workspace_id.as_str())],
                    &key,
                )
                .await
                .map_err(stripe_failed)?;
            let id = created
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| admit_core::CustomerId::parse(id).ok())
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("Stripe returned a customer without an id"))
                })?;
            state
                .store
                .bind_customer(&id, workspace_id, "checkout", now)
                .await?;
            id
        }
    };
    let success_url = format!(
        "{}/welcome?session_id={{CHECKOUT_SESSION_ID}}",
        state.config.mail.public_url
    );
    let form = Form::new()
        .field("mode", "subscription")
        .field("customer", customer.as_str())
        .line_item(0, &price, 1)
        .field("client_reference_id", workspace_id.as_str())
        .metadata(&[
            ("workspace_id", workspace_id.as_str()),
            ("initiator_email", initiator.as_str()),
            ("plan", plan.key.as_str()),
        ])
        .nested(
            &["subscription_data", "metadata", "workspace_id"],
            workspace_id.as_str(),
        )
        .nested(
            &["subscription_data", "metadata", "plan"],
            plan.key.as_str(),
        )
        .field("success_url", success_url)
        .field("cancel_url", state.config.mail.app_home_url.clone());
    let session_key = format!(
        "admit-checkout-{}",
        crate::signin::new_token()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(
                "the OS random number generator failed: {e}"
            )))?
            .1
    );
    let session = client
        .create_checkout_session(form, &session_key)
        .await
        .map_err(stripe_failed)?;
    let (Some(session_id), Some(url)) = (
        session.get("id").and_then(Value::as_str),
        session.get("url").and_then(Value::as_str),
    ) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "Stripe returned a session without id or url"
        )));
    };
    state
        .store
        .insert_intent(
            &CheckoutIntent {
                session_id: session_id.to_owned(),
                workspace: workspace_id.clone(),
                initiator,
                purchaser,
                plan: plan.key.clone(),
            },
            now,
        )
        .await?;
    tracing::info!(workspace_id = %workspace_id, plan = %plan.key, "checkout session created");
    Ok(Json(CheckoutCreated {
        checkout_session_id: session_id.to_owned(),
        url: url.to_owned(),
    }))
}
