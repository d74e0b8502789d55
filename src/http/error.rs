//! The one mapping from failures to HTTP. Every error a client sees is
//! `{"error": {"code": "…", "message": "…"}}` with a stable code from this
//! table; internal causes are logged once here and never shown.

use admit_store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

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
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the body must be JSON, sent with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the body is larger than this endpoint accepts")]
    BodyTooLarge,
    #[error("{0}")]
    WorkspaceIdInvalid(String),
    #[error("{0}")]
    EmailInvalid(String),
    #[error("the role must be one of `owner`, `admin` or `member`")]
    RoleInvalid,
    #[error("a workspace with this id already exists")]
    WorkspaceExists,
    #[error("no workspace with this id exists")]
    WorkspaceNotFound,
    #[error(
        "the workspace has a running subscription: cancel it in Stripe (or wait for its end) before removing the workspace"
    )]
    WorkspaceHasSubscription,
    #[error(
        "support has held cases about this workspace: resolve them first (GET /v1/cases?state=held&workspace_id=…)"
    )]
    WorkspaceHasHeldCases,
    #[error("this email address is not a member of the workspace")]
    MemberNotFound,
    #[error(
        "the workspace's last owner cannot be removed or demoted; make another member owner first"
    )]
    LastOwner,
    #[error("not found")]
    RouteNotFound,
    #[error("this route does not answer this method (the Allow header lists those it does)")]
    MethodNotAllowed,
    #[error("the request was not received in time")]
    RequestTimeout,
    #[error("too many requests from this address: retry after the time Retry-After gives")]
    RateLimited,
    #[error("no case with this id")]
    CaseNotFound,
    #[error("this sign-in link is not valid")]
    TokenNotFound,
    #[error("this sign-in link was already used; ask for a new one")]
    TokenUsed,
    #[error("this sign-in link has expired; ask for a new one")]
    TokenExpired,
    #[error("the person this link was for is no longer a member of the workspace")]
    TokenNotAMember,
    #[error("no outbox message with this id")]
    OutboxNotFound,
    #[error("only an owner or admin of the workspace may start a checkout")]
    NotWorkspaceAdmin,
    #[error("{0}")]
    PlanInvalid(String),
    #[error(
        "the workspace already has an active subscription; change its plan through that subscription"
    )]
    AlreadySubscribed,
    #[error("another checkout for this workspace is being created; try again in a moment")]
    CheckoutInProgress,
    #[error("no Stripe API key is configured (ADMIT_STRIPE_API_KEY)")]
    StripeNotConfigured,
    #[error("Stripe could not be reached or refused the request; try again")]
    StripeUnavailable(#[source] anyhow::Error),
    #[error("the case is already resolved")]
    CaseAlreadyResolved,
    #[error("{0}")]
    ResolutionInvalid(String),
    #[error("the service is not ready: {0}")]
    NotReady(String),
    #[error("admit is serving as many connections as it may; retry in a moment")]
    TooManyConnections,
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
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BodyTooLarge => "payload_too_large",
            ApiError::WorkspaceIdInvalid(_) => "workspace_id_invalid",
            ApiError::EmailInvalid(_) => "email_invalid",
            ApiError::RoleInvalid => "role_invalid",
            ApiError::WorkspaceExists => "workspace_exists",
            ApiError::WorkspaceNotFound => "workspace_not_found",
            ApiError::WorkspaceHasSubscription => "workspace_has_subscription",
            ApiError::WorkspaceHasHeldCases => "workspace_has_held_cases",
            ApiError::MemberNotFound => "member_not_found",
            ApiError::LastOwner => "last_owner",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited => "rate_limited",
            ApiError::CaseNotFound => "case_not_found",
            ApiError::TokenNotFound => "token_not_found",
            ApiError::TokenUsed => "token_used",
            ApiError::TokenExpired => "token_expired",
            ApiError::TokenNotAMember => "not_a_member",
            ApiError::OutboxNotFound => "outbox_not_found",
            ApiError::NotWorkspaceAdmin => "not_workspace_admin",
            ApiError::PlanInvalid(_) => "plan_invalid",
            ApiError::AlreadySubscribed => "already_subscribed",
            ApiError::CheckoutInProgress => "checkout_in_progress",
            ApiError::StripeNotConfigured => "stripe_not_configured",
            ApiError::StripeUnavailable(_) => "stripe_unavailable",
            ApiError::CaseAlreadyResolved => "case_already_resolved",
            ApiError::ResolutionInvalid(_) => "resolution_invalid",
            ApiError::NotReady(_) => "not_ready",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::SignatureHeaderInvalid(_)
            | ApiError::SignatureMismatch
            | ApiError::TimestampOutsideTolerance(_)
            | ApiError::EventMalformed(_)
            | ApiError::BodyUnreadable
            | ApiError::InvalidRequest(_)
            | ApiError::WorkspaceIdInvalid(_)
            | ApiError::EmailInvalid(_)
            | ApiError::RoleInvalid => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ResolutionInvalid(_) => StatusCode::BAD_REQUEST,
            ApiError::CaseAlreadyResolved => StatusCode::CONFLICT,
            ApiError::TokenUsed | ApiError::TokenExpired => StatusCode::GONE,
            ApiError::TokenNotAMember | ApiError::NotWorkspaceAdmin => StatusCode::FORBIDDEN,
            ApiError::PlanInvalid(_) => StatusCode::BAD_REQUEST,
            ApiError::AlreadySubscribed | ApiError::CheckoutInProgress => StatusCode::CONFLICT,
            ApiError::StripeNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StripeUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::TokenNotFound | ApiError::OutboxNotFound => StatusCode::NOT_FOUND,
            ApiError::EventNotFound
            | ApiError::CaseNotFound
            | ApiError::RouteNotFound
            | ApiError::WorkspaceNotFound
            | ApiError::MemberNotFound => StatusCode::NOT_FOUND,
            ApiError::WorkspaceExists
            | ApiError::LastOwner
            | ApiError::WorkspaceHasSubscription
            | ApiError::WorkspaceHasHeldCases => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady(_) | ApiError::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A body that could not be read: too large, too slow (its next bytes did
/// not come within the body timeout), or broken off.
pub fn body_refusal(rejection: &axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::BodyTooLarge;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::RequestTimeout;
        }
        cause = error.source();
    }
    ApiError::BodyUnreadable
}

impl From<StoreError> for ApiError {
    /// The domain refusals a client can act on get their own codes; anything
    /// else is the service's fault and stays internal.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::WorkspaceExists => ApiError::WorkspaceExists,
            StoreError::WorkspaceNotFound => ApiError::WorkspaceNotFound,
            StoreError::WorkspaceHasSubscription => ApiError::WorkspaceHasSubscription,
            StoreError::WorkspaceHasHeldCases => ApiError::WorkspaceHasHeldCases,
            StoreError::LastOwner => ApiError::LastOwner,
            StoreError::MemberNotFound => ApiError::MemberNotFound,
            StoreError::CaseNotFound => ApiError::CaseNotFound,
            StoreError::TokenNotFound => ApiError::TokenNotFound,
            StoreError::TokenUsed => ApiError::TokenUsed,
            StoreError::TokenExpired => ApiError::TokenExpired,
            StoreError::TokenNotAMember => ApiError::TokenNotAMember,
            StoreError::OutboxNotFound => ApiError::OutboxNotFound,
            StoreError::CaseAlreadyResolved => ApiError::CaseAlreadyResolved,
            StoreError::ResolutionInvalid(reason) => ApiError::ResolutionInvalid(reason.to_owned()),
            StoreError::UnsupportedUrl { .. }
            | StoreError::Database(_)
            | StoreError::Migration(_)
            | StoreError::NotMigrated { .. }
            | StoreError::Decision(_)
            | StoreError::Corrupt(_)
            | StoreError::BatchFailed(_)
            | StoreError::OperatorExists
            | StoreError::WriterStopped => ApiError::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) | ApiError::StripeUnavailable(cause) = &self {
            // `{:#}` prints the whole cause chain on one line.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

/// Every error's body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable; a client branches on it (the table in the document's
    /// description gives each code's status).
    pub code: &'static str,
    /// For people; its wording may change.
    pub message: String,
}

impl ApiError {
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        }
    }

    /// One error of every kind, for the API's documentation: its codes and
    /// their statuses. A variant added to [`ApiError`] must be added here:
    /// tests/it/openapi.rs compares these codes with the arms of [`Self::code`].
    pub fn samples() -> Vec<ApiError> {
        let text = String::new;
        let cause = || anyhow::anyhow!("a cause");
        vec![
            ApiError::SignatureHeaderInvalid(text()),
            ApiError::SignatureMismatch,
            ApiError::TimestampOutsideTolerance(text()),
            ApiError::EventMalformed(text()),
            ApiError::PayloadTooLarge { limit: 0 },
            ApiError::BodyUnreadable,
            ApiError::Unauthorized,
            ApiError::EventNotFound,
            ApiError::InvalidRequest(text()),
            ApiError::UnsupportedMediaType,
            ApiError::BodyTooLarge,
            ApiError::WorkspaceIdInvalid(text()),
            ApiError::EmailInvalid(text()),
            ApiError::RoleInvalid,
            ApiError::WorkspaceExists,
            ApiError::WorkspaceNotFound,
            ApiError::WorkspaceHasSubscription,
            ApiError::WorkspaceHasHeldCases,
            ApiError::MemberNotFound,
            ApiError::LastOwner,
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout,
            ApiError::RateLimited,
            ApiError::CaseNotFound,
            ApiError::TokenNotFound,
            ApiError::TokenUsed,
            ApiError::TokenExpired,
            ApiError::TokenNotAMember,
            ApiError::OutboxNotFound,
            ApiError::NotWorkspaceAdmin,
            ApiError::PlanInvalid(text()),
            ApiError::AlreadySubscribed,
            ApiError::CheckoutInProgress,
            ApiError::StripeNotConfigured,
            ApiError::StripeUnavailable(cause()),
            ApiError::CaseAlreadyResolved,
            ApiError::ResolutionInvalid(text()),
            ApiError::NotReady(text()),
            ApiError::TooManyConnections,
            ApiError::Internal(cause()),
        ]
    }
}
