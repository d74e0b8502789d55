//! The operator console at `/admin`: server-rendered pages for support and
//! operations (cases, events, outbox, workspaces, the readiness memo), behind
//! a sign-in with named operators and roles. Every form is CSRF-checked by
//! [`session::guard`] before any handler runs; every action is audited under
//! the operator's name by the store.

mod cases;
mod events;
mod login;
mod operators;
mod outbox;
mod overview;
mod page;
mod search;
mod session;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;

pub use page::ConsoleError;
pub use session::{SESSION_COOKIE, csrf_token};

use super::AppState;

/// Per-instance console state.
#[derive(Debug)]
pub struct ConsoleState {
    memo: overview::MemoCache,
    /// Password hashing is memory-hard (argon2, ~19 MiB each): at most this
    /// many at once, whatever arrives.
    hashing: tokio::sync::Semaphore,
}

/// Concurrent argon2 hashes or verifications per instance.
const HASHING_PERMITS: usize = 2;

impl ConsoleState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            memo: overview::MemoCache::default(),
            hashing: tokio::sync::Semaphore::new(HASHING_PERMITS),
        })
    }
}

/// Declares the console's routes once: the router and [`ROUTES`], the list
/// the route-table test walks, come from the same lines.
macro_rules! console_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every console route: (method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn routes() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

console_routes! {
    get "/admin/login" => login::form,
    post "/admin/login" => login::sign_in,
    get "/admin/setup" => login::setup_form,
    post "/admin/setup" => login::setup,
    post "/admin/logout" => login::sign_out,
    get "/admin" => overview::page,
    get "/admin/search" => search::page,
    get "/admin/cases" => cases::list,
    get "/admin/cases/{id}" => cases::page,
    post "/admin/cases/{id}/resolve" => cases::resolve,
    get "/admin/events" => events::list,
    get "/admin/events/{id}" => events::page,
    post "/admin/events/{id}/replay" => events::replay,
    get "/admin/outbox" => outbox::list,
    get "/admin/outbox/{id}" => outbox::page,
    get "/admin/outbox/{id}/preview" => outbox::preview,
    post "/admin/outbox/{id}/resend" => outbox::resend,
    get "/admin/workspaces" => workspaces::list,
    get "/admin/workspaces/{id}" => workspaces::page,
    post "/admin/workspaces/{id}/verify" => workspaces::verify,
    get "/admin/operators" => operators::page,
}

/// The routes anyone may reach: they show a form and reveal nothing.
pub const PUBLIC_ROUTES: &[&str] = &["/admin/login", "/admin/setup"];

/// The console behind its gate; every path under `/admin`, known or not,
/// passes [`session::guard`] first. The stylesheet lies outside `/admin`:
/// the sign-in page needs it, and it holds nothing.
pub fn router(state: AppState) -> Router<AppState> {
    routes()
        .route("/admin/{*rest}", get(not_found).post(not_found))
        .method_not_allowed_fallback(|| async { ConsoleError::MethodNotAllowed })
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

/// A form field or query parameter, trimmed; `None` when empty.
fn nonempty(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
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
