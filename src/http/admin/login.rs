//! Sign-in, sign-out and the one-time setup of an operator's password.

use std::net::{IpAddr, SocketAddr};

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
use crate::operators::{check_password, hash_password, verify_password};

/// Failed sign-ins counted over this window…
const WINDOW_SECS: i64 = 15 * 60;
/// …at most this many for one operator name…
const MAX_FAILURES_PER_NAME: u64 = 5;
/// …and this many from one client address.
const MAX_FAILURES_PER_ADDRESS: u64 = 20;

/// The peer's address, when the server records it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    setup: Option<String>,
}

/// Only a console path: a sign-in never sends anyone elsewhere.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/admin")
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.starts_with("/admin/login") =>
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
        set_cookie(state, LOGIN_CSRF_COOKIE, &token, 60 * 60),
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
    Form(form): Form<SignIn>,
) -> Result<Response, ConsoleError> {
    let now = state.clock.now();
    let since = now.plus_seconds(-WINDOW_SECS);
    let name = form.name.trim().to_lowercase();
    let name_key = format!("name:{name}");
    let addr_key = addr.map(|a| format!("addr:{a}"));
    let mut limited = state.store.login_failures(&name_key, since).await? >= MAX_FAILURES_PER_NAME;
    if let Some(key) = &addr_key {
        limited |= state.store.login_failures(key, since).await? >= MAX_FAILURES_PER_ADDRESS;
    }
    if limited {
        tracing::warn!(operator = %name, "console sign-in refused: too many failures");
        return Err(ConsoleError::TooManyAttempts {
            minutes: WINDOW_SECS / 60,
        });
    }
    let credentials = state.store.operator_credentials(&name).await?;
    let hash = credentials.as_ref().and_then(|c| c.password_hash.clone());
    let password = form.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
        .await
        .map_err(|e| ConsoleError::Internal(e.into()))?;
    let next = safe_next(form.next.as_deref()).to_owned();
    let Some(credentials) = credentials.filter(|_| matches) else {
        state.store.record_login_failure(&name_key, now).await?;
        if let Some(key) = &addr_key {
            state.store.record_login_failure(key, now).await?;
        }
        tracing::info!(operator = %name, "console sign-in failed");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That name and password do not match an operator."),
            None,
        );
    };
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
    headers.append(
        SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &token, LIFETIME_SECS),
    );
    let (name, value) = expire_cookie(&state, LOGIN_CSRF_COOKIE);
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
    let (name, value) = expire_cookie(&state, SESSION_COOKIE);
    response.headers_mut().append(name, value);
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

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
        set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, 60 * 60),
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
    let problem = check_password(&form.password)
        .err()
        .map(|e| e.to_string())
        .or_else(|| {
            (form.password != form.password_confirm)
                .then(|| crate::operators::CredentialError::PasswordsDiffer.to_string())
        });
    if let Some(problem) = problem {
        return setup_page(&state, StatusCode::BAD_REQUEST, &form.token, Some(&problem));
    }
    let password = form.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ConsoleError::Internal(e.into()))?
        .map_err(ConsoleError::Internal)?;
    let redeemed = state
        .store
        .complete_operator_setup(&hash_token(&form.token), &hash, state.clock.now())
        .await?;
    match redeemed {
        Some(operator) => {
            tracing::info!(operator = %operator.name, "console operator set a password");
            Ok(Redirect::to("/admin/login?setup=done").into_response())
        }
        None => setup_page(
            &state,
            StatusCode::BAD_REQUEST,
            "",
            Some(
                "This setup link is unknown, used or expired. Ask an admin for a new one (admit operator remove NAME, then admit operator add NAME --role ROLE).",
            ),
        ),
    }
}
