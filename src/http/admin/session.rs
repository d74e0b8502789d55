//! Who is signed in, and the gate every console request passes: a session
//! for every page but the sign-in forms, and a CSRF token on every POST.
//!
//! The session cookie holds a random token; the store keeps only its SHA-256.
//! A session's CSRF token is derived from the session token (so no second
//! secret is stored), and the sign-in and setup forms, which have no session
//! yet, carry a double-submit token: a random cookie the form must repeat.

use admit_core::OperatorRole;
use admit_store::Operator;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::PUBLIC_ROUTES;
use super::page::ConsoleError;
use crate::http::AppState;
pub use crate::operators::{hash_token, random_token};

pub const SESSION_COOKIE: &str = "admit_session";
pub const LOGIN_CSRF_COOKIE: &str = "admit_login_csrf";
/// A session ends this long after its last request…
pub const IDLE_SECS: i64 = 30 * 60;
/// …and this long after sign-in, whatever happens.
pub const LIFETIME_SECS: i64 = 12 * 60 * 60;
/// Forms are small; a larger body is refused before it is read.
const FORM_LIMIT: usize = 64 * 1024;

/// The signed-in operator, put in the request by [`guard`].
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub operator: Operator,
    /// The token this session's forms carry.
    pub csrf: String,
}

impl SignedIn {
    pub fn may_act(&self) -> bool {
        self.operator.role >= OperatorRole::Support
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ConsoleError> {
        parts
            .extensions
            .get::<SignedIn>()
            .cloned()
            .ok_or(ConsoleError::Forbidden("sign in first"))
    }
}

/// A signed-in operator who may change things (`support` or `admin`).
#[derive(Debug, Clone)]
pub struct Acting(pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        let signed_in = SignedIn::from_request_parts(parts, state).await?;
        if signed_in.may_act() {
            Ok(Acting(signed_in))
        } else {
            Err(ConsoleError::Forbidden(
                "a viewer reads the console and changes nothing: ask a support operator",
            ))
        }
    }
}

/// The CSRF token of the session whose cookie holds `session_token`.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"admit console csrf\0");
    hasher.update(session_token.as_bytes());
    hex::encode(hasher.finalize())
}

fn same(a: &str, b: &str) -> bool {
    // Hashing first makes the comparison constant-time in the length too.
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` for the console: never readable by scripts, sent only to
/// `/admin`, on same-site navigation, and only over TLS when admit is public
/// on https. Without `max_age` it ends with the browser.
pub fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: Option<i64>,
) -> Result<HeaderValue, ConsoleError> {
    let secure = if state.config.mail.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age.map_or_else(String::new, |secs| format!("; Max-Age={secs}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/admin; HttpOnly; SameSite=Lax{max_age}{secure}"
    ))
    .map_err(|e| ConsoleError::Internal(anyhow::anyhow!("cookie {name}: {e}")))
}

/// Admits a console request or refuses it: no session → sign-in (GET) or
/// 403; a POST whose `csrf` field does not match → 403.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

async fn check(state: &AppState, request: Request) -> Result<Request, Response> {
    let path = request.uri().path().to_owned();
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if PUBLIC_ROUTES.contains(&path.as_str()) {
        if reading {
            return Ok(request);
        }
        let expected = cookie(request.headers(), LOGIN_CSRF_COOKIE).map(str::to_owned);
        let (request, presented) = csrf_field(request).await?;
        return match (expected, presented) {
            (Some(expected), Some(presented)) if same(&expected, &presented) => Ok(request),
            _ => Err(ConsoleError::Forbidden(
                "the form has expired or was not sent from this console: reload the page and try again",
            )
            .into_response()),
        };
    }
    let token = cookie(request.headers(), SESSION_COOKIE).map(str::to_owned);
    let session = match &token {
        Some(token) => state
            .store
            .operator_session(&hash_token(token), state.clock.now(), IDLE_SECS)
            .await
            .map_err(|e| ConsoleError::from(e).into_response())?,
        None => None,
    };
    let (Some(token), Some(session)) = (token, session) else {
        return Err(if reading {
            let next = request
                .uri()
                .path_and_query()
                .map_or(path.clone(), |p| p.to_string());
            let target = format!(
                "/admin/login?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            Redirect::to(&target).into_response()
        } else {
            ConsoleError::Forbidden("sign in first").into_response()
        });
    };
    let signed_in = SignedIn {
        operator: session.operator,
        csrf: csrf_token(&token),
    };
    let mut request = if reading {
        request
    } else {
        let (request, presented) = csrf_field(request).await?;
        if !presented.is_some_and(|p| same(&p, &signed_in.csrf)) {
            tracing::warn!(operator = %signed_in.operator.name, path = %path, "console POST refused: CSRF token missing or wrong");
            return Err(ConsoleError::Forbidden(
                "the form has expired or was not sent from this console: reload the page and try again",
            )
            .into_response());
        }
        request
    };
    request.extensions_mut().insert(signed_in);
    Ok(request)
}

/// Reads a form body for its `csrf` field and puts the body back.
async fn csrf_field(request: Request) -> Result<(Request, Option<String>), Response> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        ConsoleError::BadRequest("the form is larger than the console accepts".into())
            .into_response()
    })?;
    // No field of any form may hold NUL (PostgreSQL refuses it in text).
    if form_urlencoded::parse(&bytes).any(|(key, value)| key.contains('\0') || value.contains('\0'))
    {
        return Err(
            ConsoleError::BadRequest("the form holds a NUL character".into()).into_response(),
        );
    }
    let presented = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), presented))
}

/// Clears a cookie.
pub fn expire_cookie(
    state: &AppState,
    name: &str,
) -> Result<(axum::http::HeaderName, HeaderValue), ConsoleError> {
    Ok((SET_COOKIE, set_cookie(state, name, "", Some(0))?))
}
