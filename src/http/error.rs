//! The one mapping from failures to HTTP. Every error a client sees is
//! `{"error": {"code": "…", "message": "…"}}` with a stable code from this
//! table; internal causes are logged once here and never shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    SignatureHeaderInvalid(String),
    #[error("no signature matches a configured webhook secret")]
    SignatureMismatch,
    #[error("{0}")]
    TimestampOutsideTolerance(String),
    #[error("{0}")]
    EventMalformed(String),
    #[error("the body is larger than the {limit} bytes a Stripe event may have")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("a valid `Authorization: Bearer <app token>` header is required")]
    Unauthorized,
    #[error("no event with this id has been received")]
    EventNotFound,
    #[error("not found")]
    RouteNotFound,
    #[error("the service is not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::SignatureHeaderInvalid(_) => "signature_header_invalid",
            ApiError::SignatureMismatch => "signature_mismatch",
            ApiError::TimestampOutsideTolerance(_) => "timestamp_outside_tolerance",
            ApiError::EventMalformed(_) => "event_malformed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyUnreadable => "body_unreadable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::EventNotFound => "event_not_found",
            ApiError::RouteNotFound => "not_found",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::SignatureHeaderInvalid(_)
            | ApiError::SignatureMismatch
            | ApiError::TimestampOutsideTolerance(_)
            | ApiError::EventMalformed(_)
            | ApiError::BodyUnreadable => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::EventNotFound | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<admit_store::StoreError> for ApiError {
    fn from(e: admit_store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            // `{:#}` prints the whole cause chain on one line.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}
