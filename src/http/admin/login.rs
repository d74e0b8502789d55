//! Sign-in, sign-out and the one-time setup of an operator's password.
//!
//! Sign-in attempts are counted before the password is checked, in the
//! database (so concurrent attempts and other instances count too): per
//! name and client address, and per name alone with a higher ceiling for a
//! guesser who spreads over many addresses. Argon2 runs on the blocking pool
//! behind a small semaphore, so a flood of forms cannot take the memory.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::page::{ConsoleError, render};
use super::session::{
    IDLE_SECS, LIFETIME_SECS, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SignedIn, cookie, expire_cookie,
    hash_token, random_token, set_cookie,
};
use crate::http::AppState;
use crate::operators::{
    CredentialError, check_name, check_password, hash_password, verify_password,
};

/// Sign-in attempts are counted over this window…
const WINDOW_SECS: i64 = 15 * 60;
/// …at most this many for one name from one client address…
const MAX_PER_NAME_AND_ADDRESS: u64 = 5;
/// …and this many for one name from anywhere.
const MAX_PER_NAME: u64 = 50;
/// How long a sign-in waits for a free argon2 slot before it answers 503.
const HASHING_WAIT: Duration = Duration::from_secs(10);
/// The double-submit token of the sign-in and setup forms lives this long.
const FORM_TOKEN_SECS: i64 = 60 * 60;

/// The peer's address, when the server records it: an IPv6 peer's /64, as
/// the public rate limit counts it (one client, however it rotates).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| crate::http::limit::client_key(info.0.ip())),
        ))
    }
}

/// Runs argon2 (`work`) on the blocking pool once a hashing slot is free.
async fn with_hashing_slot<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConsoleError> {
    let permit = tokio::time::timeout(HASHING_WAIT, state.console.hashing.acquire())
        .await
        .map_err(|_| ConsoleError::Busy)?
        .map_err(|_| ConsoleError::Busy)?;
    let result = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ConsoleError::Internal(e.into()));
    drop(permit);
    result
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    setup: Option<String>,
}

/// Only a console path: a sign-in never sends anyone elsewhere, and never
/// to a value a `Location` header cannot carry.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if (next == "/admin" || next.starts_with("/admin/") || next.starts_with("/admin?"))
                && !next.starts_with("/admin/login")
                && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            next
        }
        _ => "/admin",
    }
}

/// The form, with a fresh double-submit token in a cookie.
fn login_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, ConsoleError> {
    let token = random_token()?;
    let mut response = render(
        "login.html",
        None,
        json!({"title": "Sign in", "csrf": token, "next": next, "error": error, "notice": notice}),
    )?;
    *response.status_mut() = status;
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, &token, Some(FORM_TOKEN_SECS))?,
    );
    Ok(response)
}

pub async fn form(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ConsoleError> {
    let notice = (query.setup.as_deref() == Some("done"))
        .then_some("Your password is set. Sign in with it.");
    login_page(
        &state,
        StatusCode::OK,
        safe_next(query.next.as_deref()),
        None,
        notice,
    )
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let since = now.plus_seconds(-WINDOW_SECS);
    let typed = form.name.trim().to_lowercase();
    // A name no operator can have is counted as one key, not stored as typed.
    let name = check_name(&typed).unwrap_or("(invalid)").to_owned();
    let address = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let name_key = format!("name:{name}");
    let pair_key = format!("name:{name}@{address}");
    let for_pair = state
        .store
        .count_login_attempt(&pair_key, now, since)
        .await?;
    let for_name = state
        .store
        .count_login_attempt(&name_key, now, since)
        .await?;
    if for_pair > MAX_PER_NAME_AND_ADDRESS || for_name > MAX_PER_NAME {
        tracing::warn!("console sign-in refused: too many attempts for one operator name");
        return Err(ConsoleError::TooManyAttempts {
            minutes: WINDOW_SECS / 60,
        });
    }
    let credentials = state.store.operator_credentials(&name).await?;
    let known = credentials.is_some();
    let hash = credentials.as_ref().and_then(|c| c.password_hash.clone());
    let password = form.password;
    let matches =
        with_hashing_slot(&state, move || verify_password(&password, hash.as_deref())).await?;
    let next = safe_next(form.next.as_deref()).to_owned();
    let Some(credentials) = credentials.filter(|_| matches) else {
        // Only a real operator's name is logged: what was typed may be an
        // email address, or a password typed into the wrong field.
        if known {
            tracing::info!(operator = %name, "console sign-in failed");
        } else {
            tracing::info!("console sign-in failed for a name that is no operator");
        }
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That name and password do not match an operator."),
            None,
        );
    };
    state.store.clear_login_attempts(&pair_key).await?;
    state.store.clear_login_attempts(&name_key).await?;
    // A session the browser still carried ends: one browser, one session.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        state
            .store
            .end_operator_session(&hash_token(old), now)
            .await?;
    }
    let token = random_token()?;
    state
        .store
        .start_operator_session(
            &hash_token(&token),
            &credentials.operator.name,
            now,
            now.plus_seconds(LIFETIME_SECS),
            IDLE_SECS,
        )
        .await?;
    tracing::info!(operator = %credentials.operator.name, role = credentials.operator.role.as_str(), "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    // No Max-Age: the cookie ends with the browser; the session's own ends hold too.
    headers.append(
        SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &token, None)?,
    );
    let (name, value) = expire_cookie(&state, LOGIN_CSRF_COOKIE)?;
    headers.append(name, value);
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    me: SignedIn,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state
            .store
            .end_operator_session(&hash_token(token), state.clock.now())
            .await?;
    }
    tracing::info!(operator = %me.operator.name, "console sign-out");
    let mut response = Redirect::to("/admin/login").into_response();
    let (name, value) = expire_cookie(&state, SESSION_COOKIE)?;
    response.headers_mut().append(name, value);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

const SETUP_LINK_DEAD: &str = "This setup link is unknown, used or expired. Ask an admin for a new one (admit operator remove NAME, then admit operator add NAME --role ROLE).";

fn setup_page(
    state: &AppState,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
) -> Result<Response, ConsoleError> {
    let csrf = random_token()?;
    let mut response = render(
        "setup.html",
        None,
        json!({"title": "Set your password", "csrf": csrf, "token": token, "error": error,
               "min_chars": crate::operators::MIN_PASSWORD_CHARS}),
    )?;
    *response.status_mut() = status;
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, Some(FORM_TOKEN_SECS))?,
    );
    Ok(response)
}

pub async fn setup_form(
    State(state): State<AppState>,
    Query(query): Query<SetupQuery>,
) -> Result<Response, ConsoleError> {
    setup_page(&state, StatusCode::OK, &query.token, None)
}

#[derive(Debug, Deserialize)]
pub struct Setup {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn setup(
    State(state): State<AppState>,
    Form(form): Form<Setup>,
) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let token_hash = hash_token(&form.token);
    // Nothing is hashed for a link that cannot be redeemed.
    if state
        .store
        .setup_token_operator(&token_hash, now)
        .await?
        .is_none()
    {
        return setup_page(&state, StatusCode::BAD_REQUEST, "", Some(SETUP_LINK_DEAD));
    }
    let problem = match check_password(&form.password) {
        Err(e) => Some(e),
        Ok(()) if form.password != form.password_confirm => Some(CredentialError::PasswordsDiffer),
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        return setup_page(
            &state,
            StatusCode::BAD_REQUEST,
            &form.token,
            Some(&problem.to_string()),
        );
    }
    let password = form.password;
    let hash = with_hashing_slot(&state, move || hash_password(&password)).await??;
    match state
        .store
        .complete_operator_setup(&token_hash, &hash, now)
        .await?
    {
        Some(operator) => {
            tracing::info!(operator = %operator.name, "console operator set a password");
            Ok(Redirect::to("/admin/login?setup=done").into_response())
        }
        None => setup_page(&state, StatusCode::BAD_REQUEST, "", Some(SETUP_LINK_DEAD)),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_sign_in_sends_only_to_console_paths() {
        for kept in [
            "/admin",
            "/admin/cases/case_1",
            "/admin?x=1",
            "/admin/events?status=failed",
        ] {
            assert_eq!(safe_next(Some(kept)), kept);
        }
        for refused in [
            "//evil.test",
            "https://evil.test/admin",
            "/admin.evil.test",
            "/administrator",
            "/admin\\@evil.test",
            "/admin/login?next=/admin",
            "/admin/cases\r\nSet-Cookie: x=1",
            "/admin/ü",
            "",
        ] {
            assert_eq!(safe_next(Some(refused)), "/admin", "{refused:?}");
        }
        assert_eq!(safe_next(None), "/admin");
    }
}
