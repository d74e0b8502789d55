//! JSON request bodies that fail in our error format: axum's own rejections
//! answer in plain text with codes of their own choosing.

use std::error::Error as _;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::Json`, rejected as `invalid_request` (400) when the body is not
/// JSON or not the expected shape, and `unsupported_media_type` (415) when
/// the content type is not JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejected(&rejection)),
        }
    }
}

fn rejected(rejection: &JsonRejection) -> ApiError {
    // axum's message prefixes the useful part (serde's "missing field `name`
    // at line 1 column 2", with the path to the field) with its own wording.
    let detail = rejection
        .source()
        .map_or_else(|| rejection.body_text(), ToString::to_string);
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::InvalidRequest(format!("the body is not valid JSON: {detail}"))
        }
        JsonRejection::JsonDataError(_) => ApiError::InvalidRequest(format!(
            "the body does not have the expected fields and types: {detail}"
        )),
        JsonRejection::BytesRejection(bytes) => super::error::body_refusal(bytes),
        _ => ApiError::InvalidRequest(rejection.body_text()),
    }
}
