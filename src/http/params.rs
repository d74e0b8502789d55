//! Query strings and path segments that fail in our error format: axum's
//! own rejections answer in plain text (`?limit=abc`, a path that is not
//! UTF-8 once decoded).

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::extract::Query`, rejected as `invalid_request` (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::InvalidRequest(format!(
                    "the query string does not have the expected parameters and types: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// `axum::extract::Path`, rejected as `invalid_request` (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| {
                // A route whose pattern and type disagree is admit's bug.
                if rejection.status().is_server_error() {
                    ApiError::Internal(anyhow::anyhow!(
                        "path extraction: {}",
                        rejection.body_text()
                    ))
                } else {
                    ApiError::InvalidRequest(format!(
                        "the path cannot be read: {}",
                        rejection.body_text()
                    ))
                }
            })
    }
}
