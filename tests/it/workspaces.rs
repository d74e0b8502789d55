//! `/v1/workspaces`: creating workspaces, managing members, the last-owner
//! rule, the audit log, and request errors in our format.

use serde_json::{Value, json};

use crate::helpers::{START, TestApp, spawn_app};

/// Creates `id` owned by `owner` and returns the response body.
async fn create(app: &TestApp, id: &str, owner: &str) -> Value {
    app.post_json(
        "/v1/workspaces",
        &json!({"id": id, "name": "Acme Rockets", "owner_email": owner}),
    )
    .await
    .expect(201)
}

fn member_path(id: &str, email: &str) -> String {
    format!("/v1/workspaces/{id}/members/{email}")
}

async fn put_role(
    app: &TestApp,
    id: &str,
    email: &str,
    role: &str,
) -> crate::helpers::TestResponse {
    app.put_json(&member_path(id, email), &json!({"role": role}))
        .await
}

#[tokio::test]
async fn creates_a_workspace_with_the_given_id_and_reads_it_back() {
    let app = spawn_app().await;
    let created = app
        .post_json(
            "/v1/workspaces",
            &json!({"id": "acme-rockets_01", "name": "  Acme Rockets ", "owner_email": "  Dana@ACME.test "}),
        )
        .await
        .expect(201);
    let expected = json!({
        "id": "acme-rockets_01",
        "name": "Acme Rockets",
        "created_at": START.unix(),
        "members": [{"email": "dana@acme.test", "role": "owner"}],
        "billing": {
            "subscription_status": null, "subscription_plan": null, "stripe_customer_id": null,
            "stripe_subscription_id": null, "current_period_end": null, "cancel_at_period_end": null,
            "cancel_at": null, "purchaser_email": null, "updated_by_event": null, "past_due_since": null,
            "grace_period_ends": null, "plan_reason": null,
        },
    });
    assert_eq!(created, expected);
    assert_eq!(
        app.get("/v1/workspaces/acme-rockets_01").await.expect(200),
        expected
    );
}

#[tokio::test]
async fn generates_an_id_when_none_is_given() {
    let app = spawn_app().await;
    let body = json!({"name": "Acme", "owner_email": "dana@acme.test"});
    let first = app.post_json("/v1/workspaces", &body).await.expect(201);
    let second = app.post_json("/v1/workspaces", &body).await.expect(201);
    for created in [&first, &second] {
        let id = created["id"].as_str().expect("id is a string");
        let random = id
            .strip_prefix("ws_")
            .expect("generated ids start with ws_");
        assert_eq!(random.len(), 20, "{id}");
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
            "{id}"
        );
        let read = app.get(&format!("/v1/workspaces/{id}")).await.expect(200);
        assert_eq!(&read, created);
    }
    assert_ne!(first["id"], second["id"]);
}

#[tokio::test]
async fn a_taken_id_is_a_conflict() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "acme", "name": "Someone else", "owner_email": "eve@evil.test"}),
    )
    .await
    .expect_error(409, "workspace_exists");
    let kept = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(kept["name"], "Acme Rockets");
    assert_eq!(
        kept["members"],
        json!([{"email": "dana@acme.test", "role": "owner"}])
    );
}

#[tokio::test]
async fn creation_input_is_validated() {
    let app = spawn_app().await;
    let app = &app;
    let post = |body: Value| async move { app.post_json("/v1/workspaces", &body).await };

    post(json!({"id": "ws 1", "name": "Acme", "owner_email": "dana@acme.test"}))
        .await
        .expect_error(400, "workspace_id_invalid");
    post(json!({"id": "", "name": "Acme", "owner_email": "dana@acme.test"}))
        .await
        .expect_error(400, "workspace_id_invalid");
    post(json!({"name": "   ", "owner_email": "dana@acme.test"}))
        .await
        .expect_error(400, "invalid_request");
    post(json!({"name": "x".repeat(201), "owner_email": "dana@acme.test"}))
        .await
        .expect_error(400, "invalid_request");
    let longest = post(json!({"name": "é".repeat(200), "owner_email": "dana@acme.test"}))
        .await
        .expect(201);
    assert_eq!(
        longest["name"],
        "é".repeat(200),
        "the limit counts characters"
    );
    for email in ["dana", "dana@acme", "", "da na@acme.test"] {
        post(json!({"name": "Acme", "owner_email": email}))
            .await
            .expect_error(400, "email_invalid");
    }
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests_that_say_why() {
    let app = spawn_app().await;
    let missing = app
        .post_json("/v1/workspaces", &json!({"owner_email": "dana@acme.test"}))
        .await
        .expect_error(400, "invalid_request");
    let message = missing["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("missing field `name`"), "{message}");

    let wrong_type = app
        .post_json(
            "/v1/workspaces",
            &json!({"name": 42, "owner_email": "dana@acme.test"}),
        )
        .await
        .expect_error(400, "invalid_request");
    let message = wrong_type["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("invalid type"), "{message}");

    let not_json = app
        .post_raw("/v1/workspaces", "{\"name\": ", "application/json")
        .await
        .expect_error(400, "invalid_request");
    let message = not_json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not valid JSON"), "{message}");

    app.put_json(
        &member_path("acme", "sam@acme.test"),
        &json!({"rank": "admin"}),
    )
    .await
    .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn bodies_must_be_sent_as_json() {
    let app = spawn_app().await;
    let body = r#"{"name": "Acme", "owner_email": "dana@acme.test"}"#;
    app.post_raw("/v1/workspaces", body, "text/plain")
        .await
        .expect_error(415, "unsupported_media_type");
    app.post_raw("/v1/workspaces", body, "application/x-www-form-urlencoded")
        .await
        .expect_error(415, "unsupported_media_type");
    app.post_raw("/v1/workspaces", body, "application/json; charset=utf-8")
        .await
        .expect(201);
}

#[tokio::test]
async fn every_route_needs_the_app_token() {
    let app = spawn_app().await;
    app.post_json_without_token(
        "/v1/workspaces",
        &json!({"name": "Acme", "owner_email": "dana@acme.test"}),
    )
    .await
    .expect_error(401, "unauthorized");
    create(&app, "acme", "dana@acme.test").await;
    app.get_without_token("/v1/workspaces/acme")
        .await
        .expect_error(401, "unauthorized");
    app.get_without_token("/v1/workspaces/acme/audit")
        .await
        .expect_error(401, "unauthorized");
    for request in [
        app.client
            .put(app.url(&member_path("acme", "sam@acme.test"))),
        app.client
            .delete(app.url(&member_path("acme", "dana@acme.test"))),
    ] {
        let response = request
            .json(&json!({"role": "owner"}))
            .send()
            .await
            .expect("request reaches admit");
        assert_eq!(response.status().as_u16(), 401);
    }
    let read = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(read["members"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn unknown_workspaces_are_not_found() {
    let app = spawn_app().await;
    app.get("/v1/workspaces/nowhere")
        .await
        .expect_error(404, "workspace_not_found");
    app.get("/v1/workspaces/not%20an%20id")
        .await
        .expect_error(404, "workspace_not_found");
    put_role(&app, "nowhere", "sam@acme.test", "admin")
        .await
        .expect_error(404, "workspace_not_found");
    app.delete(&member_path("nowhere", "sam@acme.test"))
        .await
        .expect_error(404, "workspace_not_found");
    app.get("/v1/workspaces/nowhere/audit")
        .await
        .expect_error(404, "workspace_not_found");
}

#[tokio::test]
async fn members_are_added_changed_and_removed() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;

    let added = put_role(&app, "acme", "sam@acme.test", "member")
        .await
        .expect(200);
    assert_eq!(
        added,
        json!({"email": "sam@acme.test", "role": "member", "change": "added"})
    );
    let same = put_role(&app, "acme", "sam@acme.test", "member")
        .await
        .expect(200);
    assert_eq!(same["change"], "unchanged");
    let promoted = put_role(&app, "acme", "sam@acme.test", "admin")
        .await
        .expect(200);
    assert_eq!(promoted["change"], "role_changed");
    assert_eq!(promoted["role"], "admin");

    let read = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(
        read["members"],
        json!([
            {"email": "dana@acme.test", "role": "owner"},
            {"email": "sam@acme.test", "role": "admin"},
        ])
    );

    app.delete(&member_path("acme", "sam@acme.test"))
        .await
        .expect_empty(204);
    app.delete(&member_path("acme", "sam@acme.test"))
        .await
        .expect_error(404, "member_not_found");
    let read = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(read["members"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn member_input_is_validated() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;
    for role in ["Owner", "superuser", ""] {
        put_role(&app, "acme", "sam@acme.test", role)
            .await
            .expect_error(400, "role_invalid");
    }
    for email in ["sam", "sam@acme", "sam%40acme%40test.test"] {
        put_role(&app, "acme", email, "member")
            .await
            .expect_error(400, "email_invalid");
        app.delete(&member_path("acme", email))
            .await
            .expect_error(400, "email_invalid");
    }
    let read = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(read["members"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn emails_in_paths_are_decoded_and_normalised() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;
    let added = put_role(&app, "acme", "%20Sam%40ACME.Test%20", "admin")
        .await
        .expect(200);
    assert_eq!(added["email"], "sam@acme.test");
    assert_eq!(added["change"], "added");
    let again = put_role(&app, "acme", "sam@acme.test", "admin")
        .await
        .expect(200);
    assert_eq!(again["change"], "unchanged");
    app.delete(&member_path("acme", "SAM@acme.test"))
        .await
        .expect_empty(204);
}

#[tokio::test]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;
    app.delete(&member_path("acme", "dana@acme.test"))
        .await
        .expect_error(409, "last_owner");
    for role in ["admin", "member"] {
        put_role(&app, "acme", "dana@acme.test", role)
            .await
            .expect_error(409, "last_owner");
    }
    assert_eq!(
        put_role(&app, "acme", "dana@acme.test", "owner")
            .await
            .expect(200)["change"],
        "unchanged",
        "re-stating the owner's role changes nothing and is allowed"
    );

    put_role(&app, "acme", "lee@acme.test", "owner")
        .await
        .expect(200);
    app.delete(&member_path("acme", "dana@acme.test"))
        .await
        .expect_empty(204);
    let read = app.get("/v1/workspaces/acme").await.expect(200);
    assert_eq!(
        read["members"],
        json!([{"email": "lee@acme.test", "role": "owner"}])
    );
    put_role(&app, "acme", "lee@acme.test", "member")
        .await
        .expect_error(409, "last_owner");
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_newest_first() {
    let app = spawn_app().await;
    create(&app, "acme", "dana@acme.test").await;
    app.clock.advance(60);
    put_role(&app, "acme", "sam@acme.test", "member")
        .await
        .expect(200);
    app.clock.advance(60);
    put_role(&app, "acme", "sam@acme.test", "member")
        .await
        .expect(200);
    put_role(&app, "acme", "sam@acme.test", "owner")
        .await
        .expect(200);
    app.clock.advance(60);
    app.delete(&member_path("acme", "sam@acme.test"))
        .await
        .expect_empty(204);
    // Refused changes leave no trace.
    app.delete(&member_path("acme", "dana@acme.test"))
        .await
        .expect_error(409, "last_owner");

    let log = app.get("/v1/workspaces/acme/audit").await.expect(200);
    let entries = log["entries"].as_array().expect("entries");
    let summary: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!([
                e["at"].as_i64().map(|at| at - START.unix()),
                e["actor"],
                e["action"],
                e["subject"],
                e["before"],
                e["after"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!([180, "api", "member.removed", "member:sam@acme.test", {"role": "owner"}, null]),
            json!([120, "api", "member.role_changed", "member:sam@acme.test", {"role": "member"}, {"role": "owner"}]),
            json!([60, "api", "member.added", "member:sam@acme.test", null, {"role": "member"}]),
            json!([0, "api", "member.added", "member:dana@acme.test", null, {"role": "owner"}]),
            json!([0, "api", "workspace.created", "workspace", null, {"name": "Acme Rockets"}]),
        ]
    );
    let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(entries.iter().all(|e| e["cause"].is_null()));

    let newest = app
        .get("/v1/workspaces/acme/audit?limit=2")
        .await
        .expect(200);
    assert_eq!(newest["entries"], json!(entries[..2]));
    for bad in ["0", "-1", "1001", "many"] {
        app.get(&format!("/v1/workspaces/acme/audit?limit={bad}"))
            .await
            .expect_error(400, "invalid_request");
    }
    app.get("/v1/workspaces/acme/audit?limit=1000")
        .await
        .expect(200);
}

#[tokio::test]
async fn concurrent_changes_never_leave_a_workspace_without_an_owner() {
    let app = spawn_app().await;
    create(&app, "acme", "o0@acme.test").await;
    let owners: Vec<String> = (0..10).map(|i| format!("o{i}@acme.test")).collect();
    for owner in &owners[1..] {
        put_role(&app, "acme", owner, "owner").await.expect(200);
    }

    // Each owner is both removed and demoted, all at once: every one of the
    // 20 requests would take an owner away if it were allowed to.
    let requests = owners.iter().flat_map(|owner| {
        let path = member_path("acme", owner);
        [
            app.client
                .delete(app.url(&path))
                .bearer_auth(crate::helpers::APP_TOKEN),
            app.client
                .put(app.url(&path))
                .bearer_auth(crate::helpers::APP_TOKEN)
                .json(&json!({"role": "member"})),
        ]
    });
    let responses = futures::future::join_all(requests.map(|request| async move {
        let response = request.send().await.expect("request reaches admit");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }))
    .await;

    let mut refused = 0;
    for (status, body) in &responses {
        match status {
            // A demotion may follow the removal and add the address back.
            200 | 204 => {}
            409 => {
                assert!(body.contains("last_owner"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(refused >= 1, "the last owner was kept at least once");

    let read = app.get("/v1/workspaces/acme").await.expect(200);
    let owners_left: Vec<&Value> = read["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == "owner")
        .collect();
    assert_eq!(owners_left.len(), 1, "{read}");
}
