//! How console pages are made: templates embedded in the binary
//! (`templates/`), HTML-escaped, served with headers that keep them out of
//! caches and frames and forbid every script and outside request; and the
//! console's errors as pages.

use std::sync::LazyLock;

use admit_store::StoreError;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{Value, json};

use super::session::SignedIn;

/// No scripts at all; styles and frames only from admit itself.
const POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: [(&str, &str); 16] = templates![
    "_layout.html",
    "_macros.html",
    "login.html",
    "setup.html",
    "error.html",
    "overview.html",
    "search.html",
    "cases.html",
    "case.html",
    "events.html",
    "event.html",
    "outbox.html",
    "message.html",
    "workspaces.html",
    "workspace.html",
    "operators.html",
];

static ENVIRONMENT: LazyLock<Result<Environment<'static>, minijinja::Error>> =
    LazyLock::new(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.add_filter("time", |unix: Option<i64>| {
            unix.map_or_else(|| "—".to_owned(), crate::clock::format_utc)
        });
        env.add_filter("age", |seconds: i64| admit_core::readiness::age(seconds));
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    });

/// Renders `template` with `context`; `me` is the signed-in operator.
pub fn render(
    template: &str,
    me: Option<&SignedIn>,
    mut context: Value,
) -> Result<Response, ConsoleError> {
    html(StatusCode::OK, template, me, &mut context)
}

fn html(
    status: StatusCode,
    template: &str,
    me: Option<&SignedIn>,
    context: &mut Value,
) -> Result<Response, ConsoleError> {
    if let (Some(me), Some(map)) = (me, context.as_object_mut()) {
        map.insert(
            "me".into(),
            json!({
                "name": me.operator.name,
                "role": me.operator.role.as_str(),
                "may_act": me.may_act(),
                "is_admin": me.operator.role == admit_core::OperatorRole::Admin,
                "csrf": me.csrf,
            }),
        );
    }
    let env = ENVIRONMENT
        .as_ref()
        .map_err(|e| ConsoleError::Internal(anyhow::anyhow!("console templates: {e}")))?;
    let body = env
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from_serialize(&*context)))
        .map_err(|e| ConsoleError::Internal(anyhow::anyhow!("console template {template}: {e}")))?;
    Ok(respond(status, "text/html; charset=utf-8", POLICY, body))
}

/// A response with the console's headers and `policy` as its CSP.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    policy: &'static str,
    body: String,
) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-store"),
            (CONTENT_SECURITY_POLICY, policy),
            (X_FRAME_OPTIONS, "DENY"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// What can go wrong in the console, each as a page with its status.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("this page does not answer this method")]
    MethodNotAllowed,
    #[error("too many failed sign-ins: wait {minutes} minutes and try again")]
    TooManyAttempts { minutes: i64 },
    #[error("admit is busy checking passwords: try again in a moment")]
    Busy,
    #[error("something went wrong inside admit; the log has the details")]
    Internal(#[source] anyhow::Error),
}

impl From<anyhow::Error> for ConsoleError {
    fn from(error: anyhow::Error) -> Self {
        ConsoleError::Internal(error)
    }
}

impl From<StoreError> for ConsoleError {
    fn from(error: StoreError) -> Self {
        ConsoleError::Internal(error.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            ConsoleError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            ConsoleError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            ConsoleError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
            }
            ConsoleError::TooManyAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "Too many attempts")
            }
            ConsoleError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy"),
            ConsoleError::Internal(error) => {
                tracing::error!(error = %crate::telemetry::error_chain(error.as_ref()), "console request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
            }
        };
        let mut context = json!({"title": title, "message": self.to_string()});
        html(status, "error.html", None, &mut context).unwrap_or_else(|_| {
            respond(
                status,
                "text/plain; charset=utf-8",
                POLICY,
                format!("{title}: {self}"),
            )
        })
    }
}
