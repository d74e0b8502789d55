//! The OpenAPI document of `/v1`: served without a token, equal to the
//! committed `docs/openapi.json`, covering every `/v1` route the router
//! answers and every error code. scripts/api-contract then drives a live
//! admit with schemathesis against it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::helpers::spawn_app;

const COMMITTED: &str = include_str!("../../docs/openapi.json");
const REGENERATE: &str = "regenerate it: cargo run -q -- openapi > docs/openapi.json";

fn committed() -> Value {
    serde_json::from_str(COMMITTED).expect("docs/openapi.json is JSON")
}

#[tokio::test]
async fn the_served_document_needs_no_token_and_equals_the_committed_one() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("admit answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let served = response.text().await.expect("body");
    assert!(
        served == COMMITTED,
        "docs/openapi.json differs from what admit serves; {REGENERATE}"
    );
    let document: Value = serde_json::from_str(&served).expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        document["openapi"]
    );
}

#[test]
fn the_cli_prints_the_committed_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_admit"))
        .arg("openapi")
        .env_clear()
        .output()
        .expect("admit openapi");
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout == COMMITTED.as_bytes(),
        "`admit openapi` differs from docs/openapi.json; {REGENERATE}"
    );
}

/// `(path, method)` of every `/v1` route declared in src/http (the console's
/// routes live in src/http/admin and are not `/v1`).
fn declared_routes() -> BTreeSet<(String, String)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&folder).expect("src/http") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        // `.route("/v1/…", get(a).delete(b))`, possibly over several lines.
        for (at, _) in source.match_indices(".route(") {
            let call = &source[at + ".route".len()..];
            let mut depth = 0;
            let Some(end) = call.char_indices().find_map(|(i, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                (depth == 0).then_some(i)
            }) else {
                continue;
            };
            let call = &call[..end];
            let Some(route) = call.split('"').nth(1).filter(|r| r.starts_with("/v1/")) else {
                continue;
            };
            for method in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{method}(")) {
                    routes.insert((route.to_owned(), method.to_owned()));
                }
            }
        }
    }
    routes
}

#[test]
fn every_v1_route_is_documented_and_nothing_else() {
    let declared = declared_routes();
    assert!(declared.len() >= 20, "found only {declared:?}");
    let document = committed();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    assert_eq!(
        documented
            .symmetric_difference(&declared)
            .collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes declared and documented differ"
    );
}

#[tokio::test]
async fn every_documented_operation_answers_and_needs_the_token_unless_marked_public() {
    let app = spawn_app().await;
    let document = committed();
    for (path, item) in document["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{id}", "ws_nobody")
            .replace("{email}", "someone@nowhere.test");
        for (method, operation) in item.as_object().expect("path item") {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let public = operation["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            let anonymous = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .expect("admit answers");
            let status = anonymous.status().as_u16();
            if public {
                assert_eq!(status, 200, "{method} {path} is public");
            } else {
                assert_eq!(status, 401, "{method} {path} without a token");
                let body: Value = anonymous.json().await.expect("JSON");
                assert_eq!(body["error"]["code"], "unauthorized");
            }
            let documented: BTreeSet<&str> = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(String::as_str)
                .collect();
            assert!(
                documented.contains("401") || public,
                "{method} {path} does not document 401"
            );
            // With the token the route exists (whatever it says of the ids).
            let answered = app
                .client
                .request(method.clone(), app.url(&concrete))
                .bearer_auth(crate::helpers::APP_TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("admit answers");
            let status = answered.status().as_u16().to_string();
            assert!(
                documented.contains(status.as_str()),
                "{method} {path} answered {status}, which it does not document ({documented:?})"
            );
        }
    }
}

#[test]
fn every_error_code_admit_answers_with_is_in_the_document() {
    // The codes as `ApiError::code` spells them, read from its source: a
    // variant left out of `ApiError::samples` would be missing here.
    let source = include_str!("../../src/http/error.rs");
    let body = &source[source.find("pub fn code(&self)").expect("fn code")..];
    let body = &body[..body.find("\n    }\n").expect("end of fn code")];
    let spelled: BTreeSet<&str> = body
        .lines()
        .filter_map(|line| line.split("=> \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(spelled.len() >= 35, "{spelled:?}");
    let document = committed();
    let listed: BTreeSet<&str> =
        document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the code's enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
    assert_eq!(
        spelled.symmetric_difference(&listed).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "error codes and the document's enum differ"
    );
    let description = document["info"]["description"]
        .as_str()
        .expect("description");
    for code in &spelled {
        assert!(
            description.contains(&format!("| `{code}` |")),
            "{code} is not in the description's table"
        );
    }
}

/// Every field of every answer is always sent, as null when it has no value:
/// the document says so (`required`), so a client generated from it need not
/// handle an absent field, and a field that went missing would break the
/// schemathesis run.
#[test]
fn every_response_field_is_required_even_when_nullable() {
    let document = committed();
    let schemas = &document["components"]["schemas"];
    let mut pending: Vec<String> = Vec::new();
    for item in document["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("item").values() {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if status.starts_with('2')
                    && let Some(reference) =
                        response["content"]["application/json"]["schema"]["$ref"].as_str()
                {
                    pending.push(reference.to_owned());
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut checked = 0;
    while let Some(reference) = pending.pop() {
        let name = reference.rsplit('/').next().expect("name").to_owned();
        if !seen.insert(name.clone()) {
            continue;
        }
        let schema = &schemas[&name];
        let mut parts = vec![schema.clone()];
        parts.extend(schema["allOf"].as_array().cloned().unwrap_or_default());
        for part in parts {
            if let Some(reference) = part["$ref"].as_str() {
                pending.push(reference.to_owned());
            }
            let Some(properties) = part["properties"].as_object() else {
                continue;
            };
            let required: BTreeSet<&str> = part["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (field, property) in properties {
                checked += 1;
                assert!(
                    required.contains(field.as_str()),
                    "{name}.{field} is not required"
                );
                let text = property.to_string();
                for (at, _) in text.match_indices("\"$ref\":\"") {
                    let rest = &text[at + 8..];
                    pending.push(rest[..rest.find('"').expect("end")].to_owned());
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} fields checked");
}
