//! `/v1` authentication: the application's bearer token, as an extractor.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Proof that the request carried the app token.
#[derive(Debug)]
pub struct AppCaller;

impl FromRequestParts<AppState> for AppCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        // Hashing first makes the comparison constant-time in the length too.
        let expected = Sha256::digest(state.config.app_token.expose_secret().as_bytes());
        let presented = Sha256::digest(presented.trim().as_bytes());
        if bool::from(expected.ct_eq(&presented)) {
            Ok(AppCaller)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
