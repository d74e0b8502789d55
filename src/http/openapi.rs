//! `GET /v1/openapi.json`: the OpenAPI document of `/v1`, derived from the
//! handlers' annotations and their request and response types, so it cannot
//! drift from them unnoticed (a test keeps `docs/openapi.json` equal to it).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use admit_core::provisioning::{CaseKind, Scenario};

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::{AppState, billing, cases, checkout, events, ops, outbox, signin, workspaces};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "admit",
        description = "Paid-access provisioning for SaaS products that bill through Stripe: \
workspaces and their members, the billing state Stripe's events keep, who may enter with which \
entitlements, the cases support resolves, and the mail admit sends.\n\n\
Every `/v1` route but this document needs `Authorization: Bearer <app token>`. Times are Unix \
seconds. Every error answers `{\"error\": {\"code\", \"message\"}}`; a client branches on the \
code, which is stable (the table below), never on the message."
    ),
    paths(
        workspaces::create,
        workspaces::read,
        workspaces::remove,
        workspaces::put_member,
        workspaces::remove_member,
        workspaces::audit,
        checkout::create,
        billing::billing,
        billing::check_access,
        cases::list,
        cases::read,
        cases::resolve,
        events::list,
        events::read,
        events::replay,
        outbox::list,
        outbox::resend,
        signin::redeem,
        ops::readiness,
        document,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Conventions),
    security(("app_token" = [])),
    tags(
        (name = "workspaces", description = "Workspaces, members, checkout and the audit log"),
        (name = "billing", description = "What a workspace pays for, and who may enter it"),
        (name = "cases", description = "What admit held for support to decide"),
        (name = "events", description = "Stripe's events as admit received and decided them"),
        (name = "outbox", description = "The mail admit sent or will send"),
        (name = "sign-in", description = "The sign-in links of onboarding mail"),
        (name = "readiness", description = "The go/no-go memo"),
        (name = "document", description = "This document"),
    )
)]
struct ApiDoc;

/// What every route has in common, added to each operation: the bearer
/// token, and the answers any route may give (an unreadable URL, no token,
/// too slow a client, too many connections, a fault of admit's).
struct Conventions;

const COMMON: &[(u16, &str)] = &[
    (
        400,
        "`invalid_request`: the URL cannot be read (a NUL character, a path that is not UTF-8)",
    ),
    (401, "`unauthorized`: no valid app token"),
    (408, "`request_timeout`: the request did not arrive in time"),
    (500, "`internal_error`: admit's fault, logged"),
    (
        503,
        "`too_many_connections`: admit serves as many connections as it may",
    ),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "app_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The code's schema lists every code admit answers with.
        let codes = error_codes();
        if let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail")
            && let Some(RefOr::T(Schema::Object(code))) = detail.properties.get_mut("code")
        {
            code.enum_values = Some(codes.keys().map(|c| (*c).into()).collect());
        }
        let description = openapi.info.description.get_or_insert_with(String::new);
        description.push_str("\n\n| code | status |\n|---|---|\n");
        for (code, status) in &codes {
            description.push_str(&format!("| `{code}` | {status} |\n"));
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let public = operation
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| *r == Default::default()));
                for (status, text) in COMMON {
                    if *status == 401 && public {
                        continue;
                    }
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(error_response(text)));
                }
            }
        }
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Error",
                ))))
                .build(),
        )
        .build()
}

fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
        .into()
}

/// `?state=` of `/v1/cases`.
pub fn case_state_filter() -> Schema {
    string_enum(cases::STATES.iter().copied().chain(["all"]))
}

/// `?kind=` of `/v1/cases`: the core's kinds and reconcile's, or empty for all.
pub fn case_kind_filter() -> Schema {
    string_enum(
        [""].into_iter()
            .chain(CaseKind::ALL.map(CaseKind::as_str))
            .chain([cases::DUPLICATE_CUSTOMER]),
    )
}

/// `?status=` of `/v1/events`.
pub fn event_status_filter() -> Schema {
    string_enum(events::STATUSES.iter().copied().chain(["all"]))
}

/// `?scenario=` of `/v1/events`: a row of the decision table, or empty for all.
pub fn scenario_filter() -> Schema {
    string_enum([""].into_iter().chain(Scenario::ALL.map(Scenario::as_str)))
}

/// `?state=` of `/v1/outbox`.
pub fn outbox_state_filter() -> Schema {
    string_enum(outbox::STATES.iter().copied().chain(["all"]))
}

/// An `?email=` filter: an address, or empty for none (as if absent).
pub fn email_filter() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    AnyOfBuilder::new()
        .item(string().max_length(Some(0)))
        .item(
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
                .max_length(Some(254)),
        )
        .build()
        .into()
}

/// Every error code with its status.
pub fn error_codes() -> BTreeMap<&'static str, u16> {
    ApiError::samples()
        .iter()
        .map(|e| (e.code(), e.status().as_u16()))
        .collect()
}

/// The document, as served and committed: pretty JSON and a final newline.
pub fn document_json() -> String {
    let mut openapi = ApiDoc::openapi();
    // The API's version (`/v1`), not the crate's: the document changes only
    // when the API does.
    openapi.info.version = "1".to_owned();
    // Serialising a document of strings and maps cannot fail; the tests
    // would catch it if it did.
    let mut text = openapi
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(document))
}

/// This document. It needs no token: it holds no data.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "get_openapi",
    tag = "document",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of `/v1`", body = Object))
)]
async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
