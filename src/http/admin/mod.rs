//! The operator console at `/admin`: server-rendered pages for support and
//! operations (cases, events, outbox, workspaces, the readiness memo), behind
//! a sign-in with named operators and roles. Every form is CSRF-checked by
//! [`session::guard`] before any handler runs; every action is audited under
//! the operator's name by the store.

mod cases;
mod events;
mod login;
mod outbox;
mod overview;
mod page;
mod search;
mod session;
mod workspaces;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use page::{ConsoleError, format_time};
pub use session::{SESSION_COOKIE, csrf_token, hash_token, random_token};

use super::AppState;

/// Memo renders are cached this long: the memo checks the mail transport
/// and Stripe, which an overview page load must not wait for each time.
const MEMO_TTL_SECS: i64 = 30;

/// Per-instance console state.
#[derive(Debug, Default)]
pub struct ConsoleState {
    memo: Mutex<Option<(i64, crate::readiness::Report)>>,
}

impl ConsoleState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Every console route: (method, path). The route-table test walks this
/// list; a route added below and missing here fails that test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("GET", "/admin/setup"),
    ("POST", "/admin/setup"),
    ("POST", "/admin/logout"),
    ("GET", "/admin"),
    ("GET", "/admin/search"),
    ("GET", "/admin/cases"),
    ("GET", "/admin/cases/{id}"),
    ("POST", "/admin/cases/{id}/resolve"),
    ("GET", "/admin/events"),
    ("GET", "/admin/events/{id}"),
    ("POST", "/admin/events/{id}/replay"),
    ("GET", "/admin/outbox"),
    ("GET", "/admin/outbox/{id}"),
    ("GET", "/admin/outbox/{id}/preview"),
    ("POST", "/admin/outbox/{id}/resend"),
    ("GET", "/admin/workspaces"),
    ("GET", "/admin/workspaces/{id}"),
    ("POST", "/admin/workspaces/{id}/verify"),
    ("GET", "/admin/operators"),
];

/// The routes anyone may reach: they show a form and reveal nothing.
pub const PUBLIC_ROUTES: &[&str] = &["/admin/login", "/admin/setup"];

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(login::form).post(login::sign_in))
        .route("/admin/setup", get(login::setup_form).post(login::setup))
        .route("/admin/logout", post(login::sign_out))
        .route("/admin", get(overview::page))
        .route("/admin/search", get(search::page))
        .route("/admin/cases", get(cases::list))
        .route("/admin/cases/{id}", get(cases::page))
        .route("/admin/cases/{id}/resolve", post(cases::resolve))
        .route("/admin/events", get(events::list))
        .route("/admin/events/{id}", get(events::page))
        .route("/admin/events/{id}/replay", post(events::replay))
        .route("/admin/outbox", get(outbox::list))
        .route("/admin/outbox/{id}", get(outbox::page))
        .route("/admin/outbox/{id}/preview", get(outbox::preview))
        .route("/admin/outbox/{id}/resend", post(outbox::resend))
        .route("/admin/workspaces", get(workspaces::list))
        .route("/admin/workspaces/{id}", get(workspaces::page))
        .route("/admin/workspaces/{id}/verify", post(workspaces::verify))
        .route("/admin/operators", get(workspaces::operators))
        .route("/admin/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn_with_state(state, session::guard))
        .route("/assets/admin.css", get(stylesheet))
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound("no such page")
}

const STYLESHEET: &str = include_str!("assets/admin.css");

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

/// `?done=1`: the page an action redirected to, which says what it did.
#[derive(Debug, serde::Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// Rows per page of a console list.
const LIST_SIZE: u32 = 50;

/// `?cursor=` of a list page.
fn list_cursor(
    raw: Option<&str>,
    list: admit_store::ListKind,
) -> Result<Option<admit_store::Cursor>, ConsoleError> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(raw) => admit_store::Cursor::decode(raw, list)
            .map(Some)
            .ok_or_else(|| {
                ConsoleError::BadRequest("this page link is not one the console made".into())
            }),
    }
}

/// The link to a list's next page, keeping its filters.
fn next_href(
    path: &str,
    filters: &[(&str, String)],
    next: Option<&admit_store::Cursor>,
) -> Option<String> {
    let next = next?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in filters.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(key, value);
    }
    query.append_pair("cursor", &next.encode());
    Some(format!("{path}?{}", query.finish()))
}
