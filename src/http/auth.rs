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
        let presented = presented_bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if same_secret(presented, state.config.app_token.expose_secret()) {
            Ok(AppCaller)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Whether a presented token is the expected secret. Hashing first makes
/// the comparison constant-time in the length too.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let presented = Sha256::digest(presented.trim().as_bytes());
    bool::from(expected.ct_eq(&presented))
}

/// The bearer token of a request, if it sent one.
pub fn presented_bearer(parts: &axum::http::HeaderMap) -> Option<&str> {
    parts
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The credentials of `Authorization: Bearer <token>`; the scheme's name is
/// case-insensitive (RFC 9110 §11.1), and one or more spaces follow it.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }
}
