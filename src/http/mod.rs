//! The HTTP surface: one router per feature, composed here with the layers
//! every route shares.

mod auth;
pub mod billing;
mod cases;
mod error;
mod events;
mod json;
mod observe;
mod ops;
mod outbox;
mod signin;
pub mod webhooks;
mod welcome;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use admit_store::Store;
use axum::Router;
use axum::middleware;
use tower_http::timeout::TimeoutLayer;

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
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(webhooks::router())
        .merge(events::router())
        .merge(billing::router())
        .merge(cases::router())
        .merge(outbox::router())
        .merge(signin::router())
        .merge(welcome::router())
        .merge(ops::router())
        .merge(workspaces::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::record,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}
