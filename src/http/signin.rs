//! `POST /v1/signin-tokens/redeem`: the application exchanges the one-time
//! token from an onboarding email for who signs in where.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::AppCaller;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/signin-tokens/redeem", post(redeem))
}

/// The token from an onboarding email's sign-in link.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SigninToken)]
struct Redeem {
    /// 64 hex digits.
    token: String,
}

/// Who signs in where.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SignIn)]
struct Redeemed {
    email: String,
    workspace_id: String,
    /// `owner`, `admin` or `member`.
    role: &'static str,
}

/// Exchanges a sign-in link's token, once, for who signs in where; the
/// membership is checked again at this moment.
#[utoipa::path(
    post,
    path = "/v1/signin-tokens/redeem",
    operation_id = "redeem_signin_token",
    tag = "sign-in",
    request_body = Redeem,
    responses(
        (status = 200, description = "Redeemed", body = Redeemed),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 403, description = "`not_a_member`", body = ErrorBody),
        (status = 404, description = "`token_not_found`", body = ErrorBody),
        (status = 410, description = "`token_used`, `token_expired`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    )
)]
async fn redeem(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Redeem>,
) -> Result<Json<Redeemed>, ApiError> {
    let token = body.token.trim();
    // Tokens are 64 hex digits; anything else was never issued.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::TokenNotFound);
    }
    let hash = crate::signin::hash_token(token);
    let redeemed = state
        .store
        .redeem_signin_token(&hash, state.clock.now())
        .await?;
    tracing::info!(workspace_id = %redeemed.workspace, "sign-in token redeemed");
    Ok(Json(Redeemed {
        email: redeemed.email.as_str().to_owned(),
        workspace_id: redeemed.workspace.as_str().to_owned(),
        role: redeemed.role.as_str(),
    }))
}
