//! The operator console (`/admin`) as operators and attackers meet it:
//! real Chromium through chromedriver (`browser`) for the pages and forms,
//! plain HTTP without redirects (`routes`) for what a browser would hide,
//! and operators' accounts and sessions (`operators`: `admit operator`, setup
//! links, expiry, cookies, roles). Most tests start from the same world:
//! admit after the fixture purchase with no workspace to provision (a held
//! `missing_workspace` case), a dead support alert, the purchaser's sent
//! `access_delayed` message, an existing workspace to bind to, and operators
//! added with the real `admit operator add`.

mod browser;
mod flows;
mod operators;
mod routes;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{PRIMARY_SECRET, TestApp, database_url, spawn_app_with};

/// The purchaser of the fixture story: what must never leak to the signed out.
pub const EMAIL: &str = "dana@acme.test";
pub const CUSTOMER: &str = "cus_AcmeDana0001";
pub const SUBSCRIPTION: &str = "sub_AcmePro0001";
/// The workspace support binds the purchase to.
pub const WS: &str = "ws_rocketgarage";
pub const WS_NAME: &str = "Rocket Garage";
/// The fixture's `checkout.session.completed`, held with the case.
pub const CHECKOUT_EVENT: &str = "evt_ejghkCYTDodEotgnscB3P9wF";
pub const PASSWORD: &str = "correct horse battery staple 42";

const PURCHASE: &[&str] = &[
    "current/customer_created.json",
    "current/customer_subscription_created.json",
    "current/invoice_paid.json",
    "current/invoice_payment_succeeded.json",
    "current/customer_subscription_updated_active.json",
    "current/checkout_session_completed.json",
];

/// A test app in the state every console test starts from.
pub struct World {
    pub app: TestApp,
    /// The held `missing_workspace` case.
    pub case_id: String,
    /// The dead support alert's outbox id.
    pub dead_message: String,
    /// The purchaser's `access_delayed` message, sent.
    pub sent_message: String,
}

/// The fixture purchase for a workspace that does not exist (S5 in
/// tests/it/provisioning.rs): held as `missing_workspace`. With no support
/// address configured the support alert is dead after one attempt (a real
/// delivery failure, as in tests/it/mail.rs), while the purchaser's
/// `access_delayed` message is sent.
pub async fn world() -> World {
    // The per-address limit on public routes (tested in `hardening`) would
    // answer these tests' many sign-ins from one address before the
    // console's own attempt counter does.
    let app = spawn_app_with(&[
        ("ADMIT_SUPPORT_EMAIL", ""),
        ("ADMIT_PUBLIC_RATE_PER_MINUTE", "0"),
    ])
    .await;
    for file in PURCHASE {
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe")
                .join(file),
        )
        .unwrap_or_else(|e| panic!("fixture {file}: {e}"));
        app.post_signed(&body, PRIMARY_SECRET).await.expect(200);
    }
    app.drain().await;
    app.drain_mail().await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": WS, "name": WS_NAME, "owner_email": EMAIL}),
    )
    .await
    .expect(201);

    let held = app.get("/v1/cases?state=held").await.expect(200);
    let cases = held["cases"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 1, "one held case: {held}");
    assert_eq!(cases[0]["kind"], "missing_workspace", "{held}");
    let case_id = cases[0]["id"].as_str().expect("case id").to_owned();

    let dead = app.get("/v1/outbox?state=dead").await.expect(200);
    let messages = dead["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 1, "one dead message: {dead}");
    let dead_message = messages[0]["id"].to_string();

    let sent = app.get("/v1/outbox?state=sent").await.expect(200);
    let sent_message = sent["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["recipient"] == EMAIL))
        .unwrap_or_else(|| panic!("a message to the purchaser was sent: {sent}"))["id"]
        .to_string();
    World {
        app,
        case_id,
        dead_message,
        sent_message,
    }
}

/// Runs the real `admit` binary on the app's database, as tests/it/cli.rs
/// does, with `stdin` as its input (none: closed); exit code, stdout, stderr.
pub fn admit_cli(app: &TestApp, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_admit"))
        .args(args)
        .env("ADMIT_DATABASE_URL", database_url(app.dir.path()))
        .env(
            "ADMIT_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/admit-test.toml"),
        )
        .env("ADMIT_PUBLIC_URL", &app.address)
        .env("ADMIT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the admit binary runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    let output = child.wait_with_output().expect("admit exits");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `admit operator add NAME --role ROLE --password-stdin` with [`PASSWORD`].
pub fn add_operator(app: &TestApp, name: &str, role: &str) {
    let (code, out, err) = admit_cli(
        app,
        &["operator", "add", name, "--role", role, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(
        code, 0,
        "admit operator add {name} --role {role} failed: {out}{err}"
    );
}

/// The case as `/v1` shows it.
pub async fn case(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/cases/{id}")).await.expect(200)
}

pub async fn event(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/events/{id}")).await.expect(200)
}

/// The outbox message with this id, from `/v1/outbox`.
pub async fn message(app: &TestApp, id: &str) -> Value {
    let id: i64 = id.parse().expect("an outbox id is a number");
    let all = app.get("/v1/outbox?limit=500").await.expect(200);
    all["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"].as_i64() == Some(id)))
        .cloned()
        .unwrap_or_else(|| panic!("no outbox message {id}: {all}"))
}

/// The workspace's audit entries made by `actor`.
pub async fn audited_by(app: &TestApp, workspace: &str, actor: &str) -> Vec<Value> {
    let audit = app
        .get(&format!("/v1/workspaces/{workspace}/audit"))
        .await
        .expect(200);
    audit["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["actor"] == actor)
        .collect()
}

/// What an operator's action must not have changed: the case, the event
/// and the dead message, as `/v1` shows them.
pub async fn snapshot(world: &World) -> (Value, Value, Value) {
    let app = &world.app;
    let mut case = case(app, &world.case_id).await;
    // Only the state matters; views may carry derived fields.
    case = json!({"state": case["state"], "resolution": case["resolution"]});
    let event = event(app, CHECKOUT_EVENT).await;
    let message = message(app, &world.dead_message).await;
    (case, event, message)
}

/// A client that shows redirects instead of following them, and keeps no cookies.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The whole `Set-Cookie` header (value and attributes) for the cookie `name`.
pub fn set_cookie_header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            v.split(';')
                .next()
                .and_then(|pair| pair.trim().split_once('='))
                .is_some_and(|(key, _)| key == name)
        })
        .map(str::to_owned)
}

/// The value of `name` in a response's `Set-Cookie` headers.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    let header = set_cookie_header(response, name)?;
    let pair = header.split(';').next()?.trim();
    Some(pair.split_once('=')?.1.to_owned())
}

/// The `Location` of a response, "" without one.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The `value` of the first `<input name="csrf">` after `anchor` in `html`
/// (e.g. `id="signout"`; "" for the first in the page).
pub fn csrf_in(html: &str, anchor: &str) -> Option<String> {
    let start = html.find(anchor)?;
    let mut rest = &html[start..];
    while let Some(at) = rest.find("<input") {
        let tag_end = rest[at..].find('>')? + at;
        let tag = &rest[at..tag_end];
        if tag.contains("name=\"csrf\"") || tag.contains("name='csrf'") || tag.contains("name=csrf")
        {
            let value = tag.split("value=").nth(1)?;
            let quote = value.chars().next()?;
            let value = if quote == '"' || quote == '\'' {
                value[1..].split(quote).next()?
            } else {
                value.split([' ', '/']).next()?
            };
            return Some(unescape(value));
        }
        rest = &rest[tag_end..];
    }
    None
}

fn unescape(value: &str) -> String {
    value
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#43;", "+")
        .replace("&#x3d;", "=")
        .replace("&#x3D;", "=")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A console session opened over plain HTTP, as a browser would: the login
/// form's CSRF cookie and field, then the session cookie.
pub struct HttpSession {
    pub cookie: String,
}

/// GET /admin/login: the login CSRF cookie and the form's field.
pub async fn login_form(app: &TestApp) -> (String, String) {
    let response = raw_client()
        .get(app.url("/admin/login"))
        .send()
        .await
        .expect("GET /admin/login");
    assert_eq!(response.status().as_u16(), 200, "GET /admin/login");
    let cookie = set_cookie(&response, "admit_login_csrf")
        .expect("GET /admin/login sets the admit_login_csrf cookie");
    let html = response.text().await.expect("body");
    let field = csrf_in(&html, "id=\"login\"")
        .or_else(|| csrf_in(&html, ""))
        .unwrap_or_else(|| panic!("no csrf field in the login form: {html}"));
    (cookie, field)
}

/// POSTs the login form with `name` and `password`, with the login CSRF
/// cookie and field as GET /admin/login gave them.
pub async fn post_login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    let (cookie, field) = login_form(app).await;
    raw_client()
        .post(app.url("/admin/login"))
        .header(
            reqwest::header::COOKIE,
            format!("admit_login_csrf={cookie}"),
        )
        .form(&[
            ("name", name),
            ("password", password),
            ("csrf", field.as_str()),
        ])
        .send()
        .await
        .expect("POST /admin/login")
}

impl HttpSession {
    pub async fn sign_in(app: &TestApp, name: &str) -> Self {
        let response = post_login(app, name, PASSWORD).await;
        assert_eq!(response.status().as_u16(), 303, "sign-in of {name}");
        let cookie = set_cookie(&response, "admit_session")
            .unwrap_or_else(|| panic!("sign-in of {name} sets admit_session"));
        HttpSession { cookie }
    }

    /// A session from a cookie value a browser holds.
    pub fn of(cookie: impl Into<String>) -> Self {
        HttpSession {
            cookie: cookie.into(),
        }
    }

    /// GET `path` with the session's cookie: the whole response.
    pub async fn get_response(&self, app: &TestApp, path: &str) -> reqwest::Response {
        raw_client()
            .get(app.url(path))
            .header(reqwest::header::COOKIE, self.header())
            .send()
            .await
            .expect("GET")
    }

    pub async fn get(&self, app: &TestApp, path: &str) -> (u16, String) {
        let response = self.get_response(app, path).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// The CSRF token of the session, from the sign-out form of `path`.
    pub async fn csrf(&self, app: &TestApp, path: &str) -> String {
        let (status, html) = self.get(app, path).await;
        assert_eq!(status, 200, "GET {path} signed in: {html}");
        csrf_in(&html, "id=\"signout\"")
            .unwrap_or_else(|| panic!("no csrf field in form#signout of {path}: {html}"))
    }

    pub async fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let cookie = self.header();
        post_form(app, path, Some(cookie.as_str()), form).await
    }

    /// POSTs `form` to `path` with the session's cookie: the whole response.
    pub async fn post_response(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        raw_client()
            .post(app.url(path))
            .header(reqwest::header::COOKIE, self.header())
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    pub fn header(&self) -> String {
        format!("admit_session={}", self.cookie)
    }
}

/// POSTs `form` to `path` with `cookie` (a whole `Cookie` header) if any; the status and body.
pub async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut request = raw_client().post(app.url(path)).form(form);
    if let Some(cookie) = cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The three actions of the console on the world's case, event and dead
/// message, with `csrf` (None: no field): (path, form).
pub fn actions(world: &World, csrf: Option<&str>) -> Vec<(String, Vec<(String, String)>)> {
    let with_csrf = |mut fields: Vec<(String, String)>| {
        if let Some(csrf) = csrf {
            fields.push(("csrf".into(), csrf.into()));
        }
        fields
    };
    vec![
        (
            format!("/admin/cases/{}/resolve", world.case_id),
            with_csrf(vec![
                ("action".into(), "bind".into()),
                ("workspace_id".into(), WS.into()),
                ("note".into(), "forged".into()),
            ]),
        ),
        (
            format!("/admin/events/{CHECKOUT_EVENT}/replay"),
            with_csrf(vec![]),
        ),
        (
            format!("/admin/outbox/{}/resend", world.dead_message),
            with_csrf(vec![]),
        ),
    ]
}

/// Borrowed form fields for `post_form`.
pub fn fields(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
