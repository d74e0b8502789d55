//! Every console route without a session (from the route table admit builds
//! its router with), CSRF on every POST, and the login rate limit, one at a
//! time and all at once: plain HTTP with redirects shown, not followed.

use super::{
    CHECKOUT_EVENT, CUSTOMER, EMAIL, HttpSession, PASSWORD, SUBSCRIPTION, WS, WS_NAME, World,
    actions, add_operator, case, fields, location, login_form, message, post_form, post_login,
    raw_client, set_cookie, snapshot, world,
};
use crate::helpers::spawn_app;

/// The id a route's `{…}` segment stands for, by the segment before it:
/// the world's own where there is one, so that a page would have data to
/// leak; any id for a kind of page this test does not know yet.
fn id_for(world: &World, resource: &str) -> String {
    match resource {
        "cases" => world.case_id.clone(),
        "events" => CHECKOUT_EVENT.to_owned(),
        "outbox" => world.dead_message.clone(),
        "workspaces" => WS.to_owned(),
        _ => "sample_1".to_owned(),
    }
}

/// `pattern` (e.g. `/admin/cases/{id}/resolve`) with the world's ids in.
fn concrete(world: &World, pattern: &str) -> String {
    let segments: Vec<&str> = pattern.split('/').collect();
    segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            if segment.starts_with('{') && segment.ends_with('}') {
                id_for(world, segments[..i].last().copied().unwrap_or_default())
            } else {
                (*segment).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A method of the route table (`get`, `post`, any case) as HTTP spells it.
fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
        .unwrap_or_else(|e| panic!("{name:?} in admit::http::admin::ROUTES: {e}"))
}

/// Every request the signed-out check makes: every route admit serves
/// ([`admit::http::admin::ROUTES`], made by the macro that builds the
/// router) but the public ones, with the world's ids; HEAD for every page,
/// PUT and DELETE on every page with an id; and the lists with filters.
fn requests(world: &World) -> Vec<(reqwest::Method, String)> {
    let mut requests = Vec::new();
    for (name, pattern) in admit::http::admin::ROUTES {
        if admit::http::admin::PUBLIC_ROUTES.contains(pattern) {
            continue;
        }
        let path = concrete(world, pattern);
        let method = method(name);
        if method == reqwest::Method::GET {
            requests.push((reqwest::Method::HEAD, path.clone()));
            if pattern.contains('{') {
                requests.push((reqwest::Method::PUT, path.clone()));
                requests.push((reqwest::Method::DELETE, path.clone()));
            }
        }
        requests.push((method, path));
    }
    for path in [
        "/admin/search?q=dana%40acme.test".to_owned(),
        "/admin/cases?state=held&kind=missing_workspace&older_than=1h".to_owned(),
        format!("/admin/events?workspace_id={WS}&status=held"),
        "/admin/outbox?state=dead".to_owned(),
        "/admin/workspaces?q=rocket".to_owned(),
    ] {
        requests.push((reqwest::Method::GET, path));
    }
    requests
}

#[test]
fn the_route_table_is_the_consoles() {
    let routes = admit::http::admin::ROUTES;
    for (name, path) in routes {
        let method = method(name);
        assert!(
            method == reqwest::Method::GET || method == reqwest::Method::POST,
            "{name} {path}"
        );
        assert!(
            *path == "/admin" || path.starts_with("/admin/"),
            "{name} {path}"
        );
    }
    for public in admit::http::admin::PUBLIC_ROUTES {
        assert!(
            routes.iter().any(|(_, path)| path == public),
            "{public} is public but not a route"
        );
    }
    for (name, path) in [
        ("post", "/admin/cases/{id}/resolve"),
        ("post", "/admin/outbox/{id}/resend"),
        ("get", "/admin/operators"),
        ("post", "/admin/logout"),
    ] {
        assert!(
            routes
                .iter()
                .any(|(m, p)| m.eq_ignore_ascii_case(name) && *p == path),
            "{name} {path} is not in the table: {routes:?}"
        );
    }
}

/// What no signed-out answer may contain.
const SECRETS: &[&str] = &[EMAIL, CUSTOMER, SUBSCRIPTION, WS_NAME];

#[tokio::test]
async fn without_a_session_every_route_redirects_to_login_or_refuses_and_shows_nothing() {
    let world = world().await;
    let app = &world.app;
    let before = snapshot(&world).await;
    let client = raw_client();
    let requests = requests(&world);
    assert!(requests.len() > 30, "{requests:?}");
    for (method, path) in requests {
        let page = method == reqwest::Method::GET || method == reqwest::Method::HEAD;
        let mut request = client.request(method.clone(), app.url(&path));
        if !page {
            request = request.form(&[
                ("csrf", "0123456789abcdef"),
                ("action", "bind"),
                ("workspace_id", WS),
                ("email", EMAIL),
            ]);
        }
        let response = request.send().await.expect("request reaches admit");
        let status = response.status().as_u16();
        let went = location(&response);
        let body = response.text().await.expect("body");
        if page {
            assert_eq!(status, 303, "{method} {path} signed out: {body}");
            let went = went.strip_prefix(&app.address).unwrap_or(&went);
            let (target, query) = went.split_once('?').unwrap_or((went, ""));
            assert_eq!(target, "/admin/login", "{method} {path} goes to {went}");
            let next = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("{method} {path}: no next in {went}"));
            let asked = path.split('?').next().unwrap_or(&path);
            assert!(
                next.starts_with(asked),
                "{method} {path}: next is {next}, not the page asked for"
            );
        } else {
            assert_eq!(status, 403, "{method} {path} signed out: {body}");
        }
        for secret in SECRETS {
            assert!(
                !body.contains(secret),
                "{method} {path} signed out shows {secret}: {body}"
            );
        }
    }
    app.drain().await;
    assert_eq!(snapshot(&world).await, before, "nothing changed");

    // What is public: the login page and the stylesheet.
    let login = client
        .get(app.url("/admin/login"))
        .send()
        .await
        .expect("GET");
    assert_eq!(login.status().as_u16(), 200);
    let page = login.text().await.expect("body");
    assert!(page.contains("id=\"login\""), "{page}");
    for secret in SECRETS {
        assert!(!page.contains(secret), "{page}");
    }
    let css = client
        .get(app.url("/assets/admin.css"))
        .send()
        .await
        .expect("GET");
    assert_eq!(css.status().as_u16(), 200);
    let setup = client
        .get(app.url("/admin/setup?token=not-a-token"))
        .send()
        .await
        .expect("GET");
    assert_ne!(
        setup.status().as_u16(),
        303,
        "the setup page is not behind the login"
    );
}

#[tokio::test]
async fn every_post_needs_the_sessions_csrf_token_and_login_needs_its_own() {
    let world = world().await;
    let app = &world.app;
    add_operator(app, "sam", "support");
    let session = HttpSession::sign_in(app, "sam").await;
    let csrf = session.csrf(app, "/admin").await;
    let before = snapshot(&world).await;
    for (label, token) in [
        ("no", None),
        ("a wrong", Some("0123456789abcdef0123456789abcdef")),
    ] {
        for (path, form) in actions(&world, token) {
            let (status, body) = session.post(app, &path, &fields(&form)).await;
            assert_eq!(status, 403, "POST {path} with {label} csrf field: {body}");
        }
    }
    let (status, body) = session.post(app, "/admin/logout", &[]).await;
    assert_eq!(status, 403, "sign-out without the csrf field: {body}");
    app.drain().await;
    assert_eq!(snapshot(&world).await, before, "nothing changed");
    assert_eq!(session.get(app, "/admin").await.0, 200, "still signed in");

    // Only a dead message is sent again: a sent one is refused and stays as it was.
    let sent = message(app, &world.sent_message).await;
    assert_eq!(sent["state"], "sent", "{sent}");
    let resend_sent = format!("/admin/outbox/{}/resend", world.sent_message);
    let (status, body) = session.post(app, &resend_sent, &[("csrf", &csrf)]).await;
    assert_eq!(status, 400, "POST {resend_sent} for a sent message: {body}");
    assert_eq!(
        message(app, &world.sent_message).await,
        sent,
        "the sent message is unchanged"
    );
    assert_eq!(snapshot(&world).await, before, "nothing else changed");

    // With the token each action does what it says.
    for (path, form) in actions(&world, Some(&csrf)) {
        let (status, body) = session.post(app, &path, &fields(&form)).await;
        assert_eq!(status, 303, "POST {path} with the csrf token: {body}");
    }
    assert_eq!(case(app, &world.case_id).await["state"], "resolved");
    assert_eq!(message(app, &world.dead_message).await["state"], "pending");
    app.drain().await;

    // The login form: double-submit cookie and field, both, matching.
    let (cookie, field) = login_form(app).await;
    let (_, other_field) = login_form(app).await;
    assert_ne!(field, other_field, "each login form has a token of its own");
    let login_cookie = format!("admit_login_csrf={cookie}");
    let attempts: [(&str, Option<&str>, Option<&str>); 4] = [
        ("neither cookie nor field", None, None),
        ("the cookie only", Some(login_cookie.as_str()), None),
        ("the field only", None, Some(field.as_str())),
        (
            "a field of another form",
            Some(login_cookie.as_str()),
            Some(other_field.as_str()),
        ),
    ];
    for (label, cookie, csrf) in attempts {
        let mut form = vec![("name", "sam"), ("password", PASSWORD)];
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let (status, body) = post_form(app, "/admin/login", cookie, &form).await;
        assert_eq!(status, 403, "login with {label}: {body}");
    }
    let right = raw_client()
        .post(app.url("/admin/login"))
        .header(reqwest::header::COOKIE, &login_cookie)
        .form(&[
            ("name", "sam"),
            ("password", PASSWORD),
            ("csrf", field.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(right.status().as_u16(), 303, "login with cookie and field");
    assert!(set_cookie(&right, "admit_session").is_some());
}

#[tokio::test]
async fn the_sixth_wrong_password_for_a_name_is_refused_and_so_is_the_right_one_then() {
    let app = &spawn_app().await;
    add_operator(app, "sam", "support");
    add_operator(app, "vera", "viewer");
    for attempt in 1..=5 {
        let response = post_login(app, "sam", "not the password").await;
        let status = response.status().as_u16();
        assert_eq!(status, 401, "wrong password {attempt}");
        assert!(set_cookie(&response, "admit_session").is_none());
        let body = response.text().await.expect("body");
        assert!(body.contains("role=\"alert\""), "the form says why: {body}");
    }
    let response = post_login(app, "sam", "not the password").await;
    assert_eq!(response.status().as_u16(), 429, "the sixth wrong password");
    let response = post_login(app, "sam", PASSWORD).await;
    assert_eq!(
        response.status().as_u16(),
        429,
        "the right password during the window"
    );
    assert!(set_cookie(&response, "admit_session").is_none());

    // Another name from the same address is not held up.
    let response = post_login(app, "vera", PASSWORD).await;
    assert_eq!(response.status().as_u16(), 303, "another operator signs in");

    // After the window the right password works again.
    app.clock.advance(16 * 60);
    let response = post_login(app, "sam", PASSWORD).await;
    assert_eq!(response.status().as_u16(), 303, "after 16 minutes");
}

#[tokio::test]
async fn forty_wrong_passwords_at_once_for_one_name_get_at_most_five_answers() {
    // Eighty requests from one address: the per-address limit on public
    // routes (tested in `hardening`) is off, so the console's own counter answers.
    let app = &crate::helpers::spawn_app_with(&[("ADMIT_PUBLIC_RATE_PER_MINUTE", "0")]).await;
    add_operator(app, "sam", "support");
    // Each attempt with a login form of its own, as forty browsers would.
    let mut forms = Vec::new();
    for _ in 0..40 {
        forms.push(login_form(app).await);
    }
    let mut attempts = tokio::task::JoinSet::new();
    for (cookie, field) in forms {
        let url = app.url("/admin/login");
        attempts.spawn(async move {
            let response = raw_client()
                .post(url)
                .header(
                    reqwest::header::COOKIE,
                    format!("admit_login_csrf={cookie}"),
                )
                .form(&[
                    ("name", "sam"),
                    ("password", "not the password"),
                    ("csrf", field.as_str()),
                ])
                .send()
                .await
                .expect("POST /admin/login");
            response.status().as_u16()
        });
    }
    let statuses = attempts.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (1..=5).contains(&checked),
        "{checked} passwords were checked, not at most 5: {statuses:?}"
    );
    assert_eq!(
        checked + limited,
        40,
        "every other attempt is refused as too many: {statuses:?}"
    );
    let response = post_login(app, "sam", PASSWORD).await;
    assert_eq!(
        response.status().as_u16(),
        429,
        "the right password after them"
    );
}
