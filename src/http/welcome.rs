//! `GET /welcome?session_id=cs_…`: where Stripe Checkout's success URL lands.
//! It says where the purchase stands — ready, finishing, or held — and
//! nothing about any other purchase or workspace.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use admit_store::SessionPayment;

use super::AppState;
use super::error::ApiError;
use crate::mail::welcome::{WelcomeState, render_welcome};

pub fn router() -> Router<AppState> {
    Router::new().route("/welcome", get(welcome))
}

#[derive(Debug, Deserialize)]
struct WelcomeQuery {
    session_id: Option<String>,
    /// How many times the finishing page for a session admit had not heard
    /// of has reloaded itself.
    wait: Option<u32>,
}

/// The success redirect can beat the webhook: a session admit has not heard
/// of gets the finishing page for this many 3-second reloads (two minutes)
/// before it is called unknown.
const UNKNOWN_SESSION_RELOADS: u32 = 40;

/// What the pending page promises: ACH debits settle within 4 business days,
/// SEPA debits usually within 5 and at most about 6 (docs/decisions/0007).
const BANK_DEBIT_BUSINESS_DAYS: u32 = 6;

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            // The state changes within seconds; never serve a stale one.
            (CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// At most this many API fetches per session, at least this far apart: the
/// finishing page refreshes every few seconds and must not become a storm.
const MAX_FETCHES_PER_SESSION: u32 = 5;
const MIN_SECS_BETWEEN_FETCHES: i64 = 5;
const MAX_FETCHES_PER_MINUTE: u32 = 60;
const MAX_TRACKED_SESSIONS: usize = 10_000;
/// Not a session id (those start with `cs_`): the page-wide window.
const GLOBAL_BUDGET: &str = "*";

/// When the webhook has not been processed (or has not come), asks Stripe
/// for the session and its subscription and records them like events, so the
/// purchaser is ready on arrival. Returns whether anything new was recorded.
async fn sync_from_stripe(state: &AppState, session: &str) -> bool {
    let Some(client) = &state.stripe else {
        return false;
    };
    let now = state.clock.now();
    {
        let Ok(mut budget) = state.sync_budget.lock() else {
            return false;
        };
        // Anyone can ask for /welcome with made-up session ids: the whole page
        // gets a budget per minute too, and the bookkeeping stays bounded.
        let (window_count, window_start) = budget
            .get(GLOBAL_BUDGET)
            .copied()
            .filter(|(_, start)| now.unix() - start < 60)
            .unwrap_or((0, now.unix()));
        if window_count >= MAX_FETCHES_PER_MINUTE {
            return false;
        }
        if budget.len() > MAX_TRACKED_SESSIONS {
            budget.clear();
        }
        let (count, last) = budget
            .entry(session.to_owned())
            .or_insert((0, i64::MIN / 2));
        if *count >= MAX_FETCHES_PER_SESSION || now.unix() - *last < MIN_SECS_BETWEEN_FETCHES {
            return false;
        }
        *count += 1;
        *last = now.unix();
        budget.insert(GLOBAL_BUDGET.to_owned(), (window_count + 1, window_start));
    }
    let object = match client.retrieve_checkout_session(session).await {
        Ok(object) => object,
        Err(error) => {
            if !error.is_not_found() {
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "welcome page could not fetch the checkout session");
            }
            return false;
        }
    };
    if object.get("status").and_then(serde_json::Value::as_str) != Some("complete") {
        return false;
    }
    let mut recorded = false;
    if let Some(subscription) = object.get("subscription").filter(|s| s.is_object()) {
        let kind = crate::stripe_sync::subscription_event_type(subscription);
        recorded |= matches!(
            crate::stripe_sync::record_object(&state.store, kind, subscription, now).await,
            Ok(admit_store::InsertOutcome::Inserted)
        );
    }
    recorded |= matches!(
        crate::stripe_sync::record_object(&state.store, "checkout.session.completed", &object, now)
            .await,
        Ok(admit_store::InsertOutcome::Inserted)
    );
    if recorded {
        state.wake.notify_one();
    }
    recorded
}

/// Checkout session ids are Stripe's `cs_…` tokens.
fn plausible_session(id: &str) -> bool {
    id.starts_with("cs_")
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

async fn welcome(
    State(state): State<AppState>,
    Query(query): Query<WelcomeQuery>,
) -> Result<Response, ApiError> {
    let mail = &state.config.mail;
    let support = state.config.support_email.as_ref().map(|e| e.as_str());
    let render = |s: &WelcomeState<'_>| {
        render_welcome(s, &mail.product_name, support).map_err(|e| ApiError::Internal(e.into()))
    };
    let Some(session) = query.session_id.filter(|s| plausible_session(s)) else {
        return Ok(page(StatusCode::NOT_FOUND, render(&WelcomeState::Unknown)?));
    };
    let mut status = state.store.session_status(&session).await?;
    let settled =
        status.held_case.is_some() || (status.workspace.is_some() && status.unprocessed == 0);
    if !settled && sync_from_stripe(&state, &session).await {
        status = state.store.session_status(&session).await?;
    }
    if !status.known {
        let waited = query.wait.unwrap_or(0);
        if waited >= UNKNOWN_SESSION_RELOADS {
            return Ok(page(StatusCode::NOT_FOUND, render(&WelcomeState::Unknown)?));
        }
        // Relative, so it stays under whatever path admit is served at.
        let next = format!("welcome?session_id={session}&wait={}", waited + 1);
        return Ok(page(
            StatusCode::OK,
            render(&WelcomeState::Finishing { next: Some(&next) })?,
        ));
    }
    // The workspace's billing, read once, when the purchase is bound and settled.
    let billing = match (&status.workspace, status.unprocessed) {
        (Some(workspace_id), 0) => state.store.get_billing(workspace_id).await?,
        _ => None,
    };
    // A subscription that holds its workspace's plan is ready, whatever else
    // support is looking at (a dispute, a plan change to an unknown price).
    let holds_the_plan = billing.as_ref().is_some_and(|b| {
        b.subscription_status.is_some_and(|s| s.is_live())
            && status.subscription.is_some()
            && b.stripe_subscription_id.as_ref().map(|s| s.as_str())
                == status.subscription.as_deref()
    });
    if holds_the_plan {
        status.held_case = None;
    }
    if let Some(case_id) = &status.held_case {
        let email = status.purchaser_email.as_deref();
        return Ok(page(
            StatusCode::OK,
            render(&WelcomeState::Held {
                case_id,
                sign_in_email: email,
            })?,
        ));
    }
    if status.unprocessed == 0 {
        match status.payment {
            SessionPayment::Failed => {
                return Ok(page(
                    StatusCode::OK,
                    render(&WelcomeState::PaymentFailed {
                        app_home_url: &mail.app_home_url,
                    })?,
                ));
            }
            SessionPayment::Pending => {
                return Ok(page(
                    StatusCode::OK,
                    render(&WelcomeState::PaymentPending {
                        business_days: BANK_DEBIT_BUSINESS_DAYS,
                    })?,
                ));
            }
            SessionPayment::Unknown => {}
        }
    }
    let live = billing.filter(|b| b.subscription_status.is_some_and(|s| s.is_live()));
    let ready = match (&status.workspace, live) {
        (Some(workspace_id), Some(billing)) => state
            .store
            .get_workspace(workspace_id)
            .await?
            .map(|workspace| (workspace, billing)),
        _ => None,
    };
    let Some((workspace, billing)) = ready else {
        return Ok(page(
            StatusCode::OK,
            render(&WelcomeState::Finishing { next: None })?,
        ));
    };
    let plan_name = billing
        .subscription_plan
        .as_ref()
        .and_then(|p| state.config.catalog.get(p))
        .map_or_else(|| "your plan".to_owned(), |p| p.name.clone());
    // Only a member can sign in; a billing contact who is not one is told so by email.
    let email = status
        .purchaser_email
        .as_deref()
        .and_then(|e| admit_core::Email::parse(e).ok())
        .filter(|e| workspace.role_of(e).is_some());
    let html = render(&WelcomeState::Ready {
        workspace_name: &workspace.name,
        plan_name: &plan_name,
        sign_in_email: email.as_ref().map(|e| e.as_str()),
        app_home_url: &mail.app_home_url,
    })?;
    Ok(page(StatusCode::OK, html))
}
