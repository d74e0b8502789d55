//! `POST /v1/signin-tokens/redeem`: the application exchanges the one-time
//! token from an onboarding email for who signs in where.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::AppCaller;
use super::error::ApiError;
use super::json::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/signin-tokens/redeem", post(redeem))
}

#[derive(Debug, Deserialize)]
struct Redeem {
    token: String,
}

async fn redeem(
    _caller: AppCaller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Redeem>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "email": redeemed.email.as_str(),
        "workspace_id": redeemed.workspace.as_str(),
        "role": redeemed.role.as_str(),
    })))
}
