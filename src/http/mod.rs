//! The HTTP surface: one router per feature, composed here with the layers
//! every route shares.

pub mod admin;
mod auth;
pub mod billing;
mod cases;
mod checkout;
mod error;
mod events;
mod json;
pub mod limit;
mod observe;
pub mod openapi;
pub mod ops;
mod outbox;
mod params;
mod signin;
pub mod webhooks;
mod welcome;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use admit_store::Store;
use axum::Router;
use axum::middleware;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The longest pause inside a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub use error::ApiError;
pub use outbox::STATES as OUTBOX_STATES;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;

/// What every handler may reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Poked when an event is stored, so the processor starts at once.
    pub wake: Arc<tokio::sync::Notify>,
    /// The Stripe API, when a key is configured.
    pub stripe: Option<admit_stripe::api::StripeClient>,
    /// Welcome-page fetches per session: (count, last fetch), so a refreshing
    /// page cannot become a request storm against Stripe.
    pub sync_budget: Arc<std::sync::Mutex<std::collections::HashMap<String, (u32, i64)>>>,
    /// The one writer webhooks are stored through (group commit).
    pub ingest: crate::inbox::IngestWriter,
    /// Refused webhook deliveries not yet written to the store.
    pub rejections: Arc<webhooks::RejectionTally>,
    /// The console's per-instance state (its memo cache).
    pub console: Arc<admin::ConsoleState>,
    /// Requests per client to the routes anyone can reach.
    pub public_limit: Arc<limit::PublicLimit>,
    /// This instance's last write probe (`/readyz`), shared by its requests.
    pub write_probe: Arc<tokio::sync::Mutex<ops::LastProbe>>,
}

/// `?state=` of the list routes: one of `allowed`, or `all` / absent for every state.
fn state_filter<'q>(raw: Option<&'q str>, allowed: &[&str]) -> Result<Option<&'q str>, ApiError> {
    match raw {
        None | Some("all") => Ok(None),
        Some(state) if allowed.contains(&state) => Ok(Some(state)),
        Some(_) => Err(ApiError::InvalidRequest(format!(
            "state must be {} or all",
            allowed.join(", ")
        ))),
    }
}

/// `?limit=` of the paged list routes: 100 by default, 1 to 1000.
fn page_size(limit: Option<i64>) -> Result<u32, ApiError> {
    u32::try_from(page_limit(limit)?)
        .map_err(|_| ApiError::InvalidRequest("limit must be between 1 and 1000".into()))
}

/// `?cursor=` of the paged list routes: what a previous page's `next_cursor` said.
fn cursor(
    raw: Option<&str>,
    list: admit_store::ListKind,
) -> Result<Option<admit_store::Cursor>, ApiError> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(raw) => admit_store::Cursor::decode(raw, list)
            .map(Some)
            .ok_or_else(|| {
                ApiError::InvalidRequest("cursor must be a next_cursor this API returned".into())
            }),
    }
}

/// A free-text filter of the list routes (`?type=`, `?stripe_id=`, …):
/// absent when empty; at most 255 characters and no control characters
/// (PostgreSQL refuses NUL in text, and no id or type holds the others).
fn text_filter(raw: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    match raw.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) if value.chars().count() <= 255 && !value.chars().any(char::is_control) => {
            Ok(Some(value))
        }
        Some(_) => Err(ApiError::InvalidRequest(format!(
            "{name} must be at most 255 characters, without control characters"
        ))),
    }
}

/// `?workspace_id=` of the list routes.
fn workspace_filter(raw: Option<String>) -> Result<Option<admit_core::WorkspaceId>, ApiError> {
    raw.filter(|w| !w.is_empty())
        .map(|w| {
            admit_core::WorkspaceId::parse(w)
                .map_err(|e| ApiError::WorkspaceIdInvalid(e.to_string()))
        })
        .transpose()
}

/// `?email=` of the list routes, normalised as admit stores emails.
fn email_filter(raw: Option<String>) -> Result<Option<String>, ApiError> {
    raw.filter(|e| !e.is_empty())
        .map(|e| {
            admit_core::Email::parse(&e)
                .map(String::from)
                .map_err(|error| ApiError::EmailInvalid(error.to_string()))
        })
        .transpose()
}

/// An email admit will send mail to: normalised as admit stores emails, and
/// accepted by the mailer's own parser (an address the mailer refuses would
/// leave its onboarding `dead`).
fn deliverable_email(raw: &str) -> Result<admit_core::Email, ApiError> {
    let email = admit_core::Email::parse(raw).map_err(|e| ApiError::EmailInvalid(e.to_string()))?;
    crate::mail::transport::recipient(email.as_str())
        .map_err(|e| ApiError::EmailInvalid(format!("mail cannot be sent to this address: {e}")))?;
    Ok(email)
}

/// `?limit=` of the list routes: 100 by default, 1 to 1000.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidRequest(
            "limit must be between 1 and 1000".into(),
        ))
    }
}

/// The longest a request may take, its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// 408 `request_timeout` in the error shape for a request still running at
/// [`REQUEST_TIMEOUT`] (tower-http's timeout answers with an empty body).
async fn whole_request_timeout(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::RequestTimeout),
    }
}

/// NUL is no part of any id, filter or search admit takes, and PostgreSQL
/// refuses it in text: a URL that decodes to one is refused at the door,
/// on every route, the console's included.
async fn refuse_nul(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let encoded_nul = request
        .uri()
        .path_and_query()
        .is_some_and(|pq| pq.as_str().contains("%00"));
    if encoded_nul {
        return axum::response::IntoResponse::into_response(ApiError::InvalidRequest(
            "the URL holds a NUL character (%00)".into(),
        ));
    }
    next.run(request).await
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(webhooks::router())
        .merge(events::router())
        .merge(billing::router())
        .merge(cases::router())
        .merge(checkout::router())
        .merge(outbox::router())
        .merge(signin::router())
        .merge(welcome::router())
        .merge(ops::router())
        .merge(workspaces::router())
        .merge(openapi::router())
        // Set on the routes merged so far; the console answers its own,
        // behind its sign-in gate.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .merge(admin::router(state.clone()))
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit::public_routes,
        ))
        .layer(middleware::from_fn(refuse_nul))
        .layer(middleware::from_fn(whole_request_timeout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::record,
        ))
        // A body whose next bytes do not come within this long is a 408
        // (`request_timeout`); so is a whole request still running at
        // REQUEST_TIMEOUT (inside `observe`, so it is counted).
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_still_running_at_the_limit_gets_408_in_the_error_shape() {
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
                    "too late"
                }),
            )
            .route("/quick", axum::routing::get(|| async { "in time" }))
            .layer(middleware::from_fn(whole_request_timeout));
        let slow = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(slow.into_body(), 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "request_timeout");
        let quick = app
            .oneshot(Request::get("/quick").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(quick.status(), StatusCode::OK);
    }
}
