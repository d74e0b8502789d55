//! Every console route without a session, CSRF on every POST, and the
//! login rate limit: plain HTTP with redirects shown, not followed.

use super::{
    CHECKOUT_EVENT, CUSTOMER, EMAIL, HttpSession, PASSWORD, SUBSCRIPTION, WS, WS_NAME, World,
    actions, add_operator, case, fields, login_form, message, post_form, post_login, raw_client,
    set_cookie, snapshot, world,
};

/// The ids the route table is written with.
struct Ids {
    case_id: String,
    dead_message: String,
}

impl Ids {
    /// Ids of the right shape, for checking the table itself.
    fn sample() -> Self {
        Ids {
            case_id: "case_sample".into(),
            dead_message: "1".into(),
        }
    }

    fn of(world: &World) -> Self {
        Ids {
            case_id: world.case_id.clone(),
            dead_message: world.dead_message.clone(),
        }
    }
}

/// Every `/admin` route of the console contract, with the world's ids.
fn routes(ids: &Ids) -> Vec<(&'static str, String)> {
    let case = &ids.case_id;
    let message = &ids.dead_message;
    vec![
        ("GET", "/admin".into()),
        ("HEAD", "/admin".into()),
        ("GET", "/admin/search?q=dana%40acme.test".into()),
        ("GET", "/admin/cases".into()),
        (
            "GET",
            "/admin/cases?state=held&kind=missing_workspace&older_than=1h".into(),
        ),
        ("GET", format!("/admin/cases/{case}")),
        ("HEAD", format!("/admin/cases/{case}")),
        ("POST", format!("/admin/cases/{case}/resolve")),
        ("DELETE", format!("/admin/cases/{case}")),
        ("GET", "/admin/events".into()),
        (
            "GET",
            format!("/admin/events?workspace_id={WS}&status=held"),
        ),
        ("GET", format!("/admin/events/{CHECKOUT_EVENT}")),
        ("POST", format!("/admin/events/{CHECKOUT_EVENT}/replay")),
        ("GET", "/admin/outbox".into()),
        ("GET", "/admin/outbox?state=dead".into()),
        ("GET", format!("/admin/outbox/{message}")),
        ("GET", format!("/admin/outbox/{message}/preview")),
        ("POST", format!("/admin/outbox/{message}/resend")),
        ("GET", "/admin/workspaces".into()),
        ("GET", "/admin/workspaces?q=rocket".into()),
        ("GET", format!("/admin/workspaces/{WS}")),
        ("POST", format!("/admin/workspaces/{WS}/verify")),
        ("PUT", format!("/admin/workspaces/{WS}")),
        ("GET", "/admin/operators".into()),
        ("POST", "/admin/logout".into()),
    ]
}

/// Whether `path` (query aside) is an instance of the route `pattern` (`{id}` segments).
fn matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (want, got): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| w == g || (w.starts_with('{') && !g.is_empty()))
}

#[test]
fn the_table_covers_every_route_admit_serves() {
    let table = routes(&Ids::sample());
    for (method, pattern) in admit::http::admin::ROUTES {
        if admit::http::admin::PUBLIC_ROUTES.contains(pattern) {
            continue;
        }
        assert!(
            table
                .iter()
                .any(|(m, path)| m == method && matches(pattern, path)),
            "{method} {pattern} is served but not in the signed-out route table"
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
    for (method, path) in routes(&Ids::of(&world)) {
        let mut request = client.request(method.parse().expect("method"), app.url(&path));
        if method != "GET" && method != "HEAD" {
            request = request.form(&[
                ("csrf", "0123456789abcdef"),
                ("action", "bind"),
                ("workspace_id", WS),
                ("email", EMAIL),
            ]);
        }
        let response = request.send().await.expect("request reaches admit");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("body");
        if method == "GET" || method == "HEAD" {
            assert_eq!(status, 303, "{method} {path} signed out: {body}");
            let location = location.strip_prefix(&app.address).unwrap_or(&location);
            let (target, query) = location.split_once('?').unwrap_or((location, ""));
            assert_eq!(target, "/admin/login", "{method} {path} goes to {location}");
            let next = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("{method} {path}: no next in {location}"));
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
    let world = world().await;
    let app = &world.app;
    add_operator(app, "sam", "support");
    add_operator(app, "vera", "viewer");
    for attempt in 1..=5 {
        let response = post_login(app, "sam", "not the password").await;
        let status = response.status().as_u16();
        assert!(
            status != 429 && status != 303,
            "wrong password {attempt}: {status}"
        );
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
}
