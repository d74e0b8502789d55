//! Operators without a browser: `admit operator` as a child process, the
//! one-time setup link (once, and not after 24 hours), sessions that expire
//! and end, the cookie's attributes, what roles may see and do, and pages
//! that escape what they show.

use admit::Clock;
use serde_json::{Value, json};

use super::{
    EMAIL, HttpSession, PASSWORD, WS, World, add_operator, admit_cli, case, csrf_in, location,
    post_login, raw_client, set_cookie, set_cookie_header, world,
};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn operator_commands_add_list_and_remove_with_a_hashed_password() {
    let app = spawn_app().await;
    let (code, out, err) = admit_cli(
        &app,
        &[
            "operator",
            "add",
            "sam",
            "--role",
            "support",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added operator sam (support)"), "{out}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));

    let stored = app
        .state
        .store
        .operator_credentials("sam")
        .await
        .expect("read")
        .expect("sam exists");
    let hash = stored.password_hash.expect("a password is set");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(admit::operators::verify_password(PASSWORD, Some(&hash)));

    let (code, _, err) = admit_cli(
        &app,
        &[
            "operator",
            "add",
            "sam",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = admit_cli(
        &app,
        &[
            "operator",
            "add",
            "kim",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 12 characters"), "{err}");
    let (code, _, err) = admit_cli(&app, &["operator", "add", "kim", "--role", "root"], None);
    assert_ne!(code, 0);
    assert!(err.contains("viewer, support or admin"), "{err}");
    let (code, _, err) = admit_cli(
        &app,
        &["operator", "add", "Kim Smith", "--role", "viewer"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("operator name"), "{err}");

    let (code, out, err) = admit_cli(&app, &["operator", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sam ") && l.contains("support") && l.contains("set")),
        "{out}"
    );

    let session = HttpSession::sign_in(&app, "sam").await;
    assert_eq!(session.get(&app, "/admin").await.0, 200);

    let (code, out, err) = admit_cli(&app, &["operator", "remove", "sam"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed operator sam"), "{out}");
    assert_eq!(
        session.get(&app, "/admin").await.0,
        303,
        "a removed operator's session ends"
    );
    let (code, _, err) = admit_cli(&app, &["operator", "remove", "sam"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no operator named"), "{err}");

    let audit = app
        .state
        .store
        .audit_by_action("operator.added", 10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert!(
        !format!("{:?}", audit[0].entry).contains("argon2"),
        "no hash in the audit log"
    );
}

/// `admit operator add NAME --role ROLE` without a password: the setup
/// link it prints, as (path, token).
fn setup_link(app: &TestApp, name: &str, role: &str) -> (String, String) {
    let (code, out, err) = admit_cli(app, &["operator", "add", name, "--role", role], None);
    assert_eq!(code, 0, "{err}");
    let link = out
        .lines()
        .find(|l| l.contains("/admin/setup?token="))
        .unwrap_or_else(|| panic!("no setup link: {out}"))
        .trim()
        .to_owned();
    let path = link
        .strip_prefix(&app.address)
        .unwrap_or_else(|| panic!("the link is on the public URL: {link}"))
        .to_owned();
    let token = path.split("token=").nth(1).expect("token").to_owned();
    (path, token)
}

/// Opens the setup link at `path` and sends its form, with the CSRF cookie
/// and field the page gave: status, body and `Location`.
async fn setup(
    app: &TestApp,
    path: &str,
    token: &str,
    password: &str,
    confirm: &str,
) -> (u16, String, String) {
    let page = raw_client()
        .get(app.url(path))
        .send()
        .await
        .expect("GET the setup link");
    assert_eq!(page.status().as_u16(), 200, "GET {path}");
    let cookie = set_cookie(&page, "admit_login_csrf").expect("csrf cookie");
    let html = page.text().await.expect("page");
    let field = csrf_in(&html, "id=\"setup\"")
        .unwrap_or_else(|| panic!("no csrf field in form#setup: {html}"));
    let response = raw_client()
        .post(app.url("/admin/setup"))
        .header(
            reqwest::header::COOKIE,
            format!("admit_login_csrf={cookie}"),
        )
        .form(&[
            ("csrf", field.as_str()),
            ("token", token),
            ("password", password),
            ("password_confirm", confirm),
        ])
        .send()
        .await
        .expect("POST /admin/setup");
    let status = response.status().as_u16();
    let went = location(&response);
    (status, response.text().await.expect("body"), went)
}

#[tokio::test]
async fn a_setup_link_sets_the_password_once() {
    let app = spawn_app().await;
    let (path, token) = setup_link(&app, "vera", "viewer");
    assert_eq!(
        post_login(&app, "vera", PASSWORD).await.status().as_u16(),
        401,
        "no password yet"
    );
    let (status, body, _) = setup(&app, &path, &token, PASSWORD, "something else entirely").await;
    assert_eq!(status, 400);
    assert!(body.contains("differ"), "{body}");
    let (status, body, went) = setup(&app, &path, &token, PASSWORD, PASSWORD).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(went, "/admin/login?setup=done");
    let other = "another long password";
    let (status, _, _) = setup(&app, &path, &token, other, other).await;
    assert_eq!(status, 400, "a setup link works once");

    let session = HttpSession::sign_in(&app, "vera").await;
    let (status, overview) = session.get(&app, "/admin").await;
    assert_eq!(status, 200);
    assert!(overview.contains("vera (viewer)"), "{overview}");
}

#[tokio::test]
async fn a_setup_link_is_dead_after_24_hours() {
    let app = spawn_app().await;
    let (path, token) = setup_link(&app, "vera", "viewer");
    // `admit operator add` dates the link by the server's clock, not the
    // test app's: the app's starts from there.
    app.clock.set(admit::SystemClock.now());

    // A minute before the end the link still works: a form that fails is
    // refused for its passwords, not for the link.
    app.clock.advance(24 * 60 * 60 - 60);
    let (status, body, _) = setup(&app, &path, &token, PASSWORD, "something else entirely").await;
    assert_eq!(status, 400);
    assert!(body.contains("differ"), "the link was still good: {body}");

    app.clock.advance(2 * 60);
    let (status, body, went) = setup(&app, &path, &token, PASSWORD, PASSWORD).await;
    assert_eq!(status, 400, "a day-old setup link ({went}): {body}");
    assert!(body.contains("expired"), "the page says why: {body}");
    let stored = app
        .state
        .store
        .operator_credentials("vera")
        .await
        .expect("read")
        .expect("vera exists");
    assert!(stored.password_hash.is_none(), "no password was set");
    assert_eq!(
        post_login(&app, "vera", PASSWORD).await.status().as_u16(),
        401,
        "vera cannot sign in"
    );
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_lifetime_and_at_sign_out() {
    let app = spawn_app().await;
    add_operator(&app, "sam", "support");
    let session = HttpSession::sign_in(&app, "sam").await;
    assert_eq!(session.get(&app, "/admin/cases").await.0, 200);

    // Used every 20 minutes, a session lives past its idle limit…
    for step in 1..=3 {
        app.clock.advance(20 * 60);
        let (status, body) = session.get(&app, "/admin/cases").await;
        assert_eq!(status, 200, "after {} minutes: {body}", step * 20);
    }
    // …but not 31 minutes of silence.
    app.clock.advance(31 * 60);
    let expired = session.get_response(&app, "/admin/cases").await;
    assert_eq!(expired.status().as_u16(), 303);
    assert_eq!(location(&expired), "/admin/login?next=%2Fadmin%2Fcases");

    // Nor past 12 hours, however busy: alive at every step before.
    let session = HttpSession::sign_in(&app, "sam").await;
    for step in 1..36 {
        app.clock.advance(20 * 60);
        let (status, body) = session.get(&app, "/admin/cases").await;
        assert_eq!(status, 200, "after {} minutes: {body}", step * 20);
    }
    app.clock.advance(20 * 60);
    assert_eq!(
        session.get(&app, "/admin/cases").await.0,
        303,
        "after 12 hours"
    );

    // Sign-out ends the session in the database, not only in the browser.
    let session = HttpSession::sign_in(&app, "sam").await;
    let csrf = session.csrf(&app, "/admin").await;
    let out = session
        .post_response(&app, "/admin/logout", &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status().as_u16(), 303);
    assert!(
        set_cookie_header(&out, "admit_session").is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is cleared"
    );
    assert_eq!(
        session.get(&app, "/admin").await.0,
        303,
        "the old cookie no longer works"
    );
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_and_secure_on_https() {
    for (public_url, secure) in [
        ("http://127.0.0.1:8080", false),
        ("https://admit.example.com", true),
    ] {
        let app = spawn_app_with(&[("ADMIT_PUBLIC_URL", public_url)]).await;
        add_operator(&app, "sam", "support");
        let response = post_login(&app, "sam", PASSWORD).await;
        assert_eq!(response.status().as_u16(), 303);
        let cookie = set_cookie_header(&response, "admit_session").expect("session cookie");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/admin"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert_eq!(
            cookie.contains("; Secure"),
            secure,
            "{public_url}: {cookie}"
        );
    }
}

#[tokio::test]
async fn pages_escape_what_they_show_and_allow_no_scripts() {
    let app = spawn_app().await;
    add_operator(&app, "ada", "admin");
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_xss", "name": "<script>alert(1)</script>", "owner_email": "o@xss.test"}),
    )
    .await
    .expect(201);
    let ada = HttpSession::sign_in(&app, "ada").await;
    for path in [
        "/admin/workspaces/ws_xss",
        "/admin/workspaces",
        "/admin/search?q=script",
    ] {
        let page = ada.get_response(&app, path).await;
        assert_eq!(page.status().as_u16(), 200, "{path}");
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            policy.contains("default-src 'none'") && !policy.contains("script-src"),
            "{policy}"
        );
        assert_eq!(page.headers()["cache-control"], "no-store");
        let html = page.text().await.expect("page");
        assert!(!html.contains("<script"), "{path}: {html}");
        assert!(html.contains("&lt;script&gt;"), "{path}");
    }
    // An admin sees the operators; a support operator does not.
    assert_eq!(ada.get(&app, "/admin/operators").await.0, 200);
    add_operator(&app, "sam", "support");
    let sam = HttpSession::sign_in(&app, "sam").await;
    assert_eq!(sam.get(&app, "/admin/operators").await.0, 403);
}

/// A workspace that has nothing to do with the held case.
const ELSEWHERE: &str = "ws_elsewhere";

/// The workspace as `/v1` shows it, members included.
async fn workspace(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/workspaces/{id}")).await.expect(200)
}

/// The purchaser's role in the workspace, if a member.
async fn purchaser_role(app: &TestApp, id: &str) -> Option<String> {
    let workspace = workspace(app, id).await;
    workspace["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["email"] == EMAIL)
        .and_then(|m| m["role"].as_str().map(str::to_owned))
}

/// What a refused invitation must leave as it was: the case's state and
/// both workspaces.
async fn unchanged(world: &World) -> (Value, Value, Value) {
    let app = &world.app;
    (
        case(app, &world.case_id).await["state"].clone(),
        workspace(app, WS).await,
        workspace(app, ELSEWHERE).await,
    )
}

/// The `invite_purchaser` form.
fn invite<'a>(csrf: &'a str, workspace: &'a str, role: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("action", "invite_purchaser"),
        ("workspace_id", workspace),
        ("role", role),
    ]
}

#[tokio::test]
async fn support_invites_the_purchaser_only_into_the_cases_workspaces_and_never_as_owner() {
    let world = world().await;
    let app = &world.app;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": ELSEWHERE, "name": "Elsewhere", "owner_email": "olga@elsewhere.test"}),
    )
    .await
    .expect(201);
    add_operator(app, "sam", "support");
    let sam = HttpSession::sign_in(app, "sam").await;
    let csrf = sam.csrf(app, "/admin").await;
    let resolve = format!("/admin/cases/{}/resolve", world.case_id);

    // Held: another workspace is none of the case's.
    let before = unchanged(&world).await;
    let (status, body) = sam
        .post(app, &resolve, &invite(&csrf, ELSEWHERE, "member"))
        .await;
    assert_eq!(status, 400, "support invites into {ELSEWHERE}: {body}");
    assert!(body.contains("role=\"alert\""), "the page says why: {body}");
    app.drain().await;
    assert_eq!(unchanged(&world).await, before, "nothing changed");
    assert_eq!(purchaser_role(app, ELSEWHERE).await, None);

    // Nor as owner, wherever.
    let (status, body) = sam
        .post(app, &resolve, &invite(&csrf, ELSEWHERE, "owner"))
        .await;
    assert_eq!(status, 400, "support invites as owner: {body}");
    assert!(body.contains("only an admin"), "the page says why: {body}");
    app.drain().await;
    assert_eq!(unchanged(&world).await, before, "nothing changed");
    assert_eq!(purchaser_role(app, ELSEWHERE).await, None);

    // A case with no workspace of its own and no candidates offers support
    // no invitation at all: binding is the way.
    let (status, page) = sam
        .get(app, &format!("/admin/cases/{}", world.case_id))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"bind\""), "{page}");
    assert!(!page.contains("id=\"invite_purchaser\""), "{page}");
}

#[tokio::test]
async fn an_admin_invites_the_purchaser_into_any_workspace_and_as_owner() {
    let world = world().await;
    let app = &world.app;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": ELSEWHERE, "name": "Elsewhere", "owner_email": "olga@elsewhere.test"}),
    )
    .await
    .expect(201);
    add_operator(app, "ada", "admin");
    let ada = HttpSession::sign_in(app, "ada").await;
    let csrf = ada.csrf(app, "/admin").await;
    let resolve = format!("/admin/cases/{}/resolve", world.case_id);
    let (status, body) = ada
        .post(app, &resolve, &invite(&csrf, ELSEWHERE, "owner"))
        .await;
    assert_eq!(
        status, 303,
        "an admin invites into {ELSEWHERE} as owner: {body}"
    );
    app.drain().await;
    assert_eq!(
        purchaser_role(app, ELSEWHERE).await.as_deref(),
        Some("owner"),
        "{}",
        workspace(app, ELSEWHERE).await
    );
    let resolved = case(app, &world.case_id).await;
    assert_eq!(resolved["state"], "resolved", "{resolved}");
}

/// With the processor running by itself (as in production), binding waits
/// for the re-provisioning and the page names what it did and the mail it
/// queued.
#[tokio::test]
async fn a_bind_says_what_was_re_provisioned_and_which_mail_was_queued() {
    let app = spawn_app_with(&[("ADMIT_PROCESS_IN_BACKGROUND", "true")]).await;
    for file in super::PURCHASE {
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe")
                .join(file),
        )
        .unwrap_or_else(|e| panic!("fixture {file}: {e}"));
        app.post_signed(&body, crate::helpers::PRIMARY_SECRET)
            .await
            .expect(200);
    }
    let case_id = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let held = app.get("/v1/cases?state=held").await.expect(200);
            if let Some(id) = held["cases"][0]["id"].as_str() {
                break id.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no held case: {held}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": "Rocket Garage", "owner_email": EMAIL}),
    )
    .await
    .expect(201);
    add_operator(&app, "sam", "support");
    let sam = HttpSession::sign_in(&app, "sam").await;
    let csrf = sam.csrf(&app, "/admin").await;
    let (status, body) = sam
        .post(
            &app,
            &format!("/admin/cases/{case_id}/resolve"),
            &[("csrf", &csrf), ("action", "bind"), ("workspace_id", WS)],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    // The processor may still be at work on a loaded machine: the page then
    // says so, and a reload tells the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let result = loop {
        let (_, page) = sam
            .get(&app, &format!("/admin/cases/{case_id}?done=1"))
            .await;
        let result = page
            .split("id=\"result\"")
            .nth(1)
            .and_then(|r| r.split("</div>").next())
            .unwrap_or_else(|| panic!("no #result: {page}"))
            .to_owned();
        if result.contains("Re-provisioned") || std::time::Instant::now() > deadline {
            break result;
        }
        assert!(result.contains("still at work"), "{result}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        result.contains(&format!("Bound to {WS} by operator:sam")),
        "{result}"
    );
    assert!(result.contains("Re-provisioned: the case"), "{result}");
    assert!(result.contains("processed"), "{result}");
    assert!(
        result.contains(&format!("Mail queued: onboarding to {EMAIL}")),
        "{result}"
    );
}
