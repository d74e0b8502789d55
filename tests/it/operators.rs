//! Console operators end to end without a browser: `admit operator` as a
//! child process, the one-time setup link, sessions that expire and end,
//! the cookie's attributes, roles, and pages that escape what they show.
//! (The browser flows are in `console/`.)

use std::io::Write;
use std::process::{Command, Stdio};

use admit_core::{Actor, OperatorRole};
use admit_store::OperatorSecret;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::{TestApp, database_url, spawn_app, spawn_app_with};

fn admit(app: &TestApp, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
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
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("password written");
    } else {
        drop(child.stdin.take());
    }
    let output = child.wait_with_output().expect("admit exits");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A browser's worth of console: no redirects followed, cookies by hand.
pub struct Console {
    client: reqwest::Client,
    base: String,
    pub cookie: String,
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        })
}

fn set_cookie_header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

impl Console {
    pub fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookie: String::new(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("console answers")
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .expect("console answers")
    }

    /// Signs in through the form; the response of the POST.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> reqwest::Response {
        let form = self.get("/admin/login").await;
        let login_csrf = cookie_value(&form, "admit_login_csrf").expect("login csrf cookie");
        let html = form.text().await.expect("login page");
        let csrf = hidden(&html, "csrf").expect("csrf field");
        assert_eq!(csrf, login_csrf, "the form repeats its cookie");
        self.cookie = format!("admit_login_csrf={login_csrf}");
        let response = self
            .post(
                "/admin/login",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("password", password),
                    ("next", "/admin"),
                ],
            )
            .await;
        if let Some(session) = cookie_value(&response, "admit_session") {
            self.cookie = format!("admit_session={session}");
        }
        response
    }

    /// The CSRF token the signed-in pages carry.
    pub async fn csrf(&self) -> String {
        let html = self.get("/admin").await.text().await.expect("overview");
        hidden(&html, "csrf").expect("the sign-out form's csrf")
    }
}

async fn add_operator(app: &TestApp, name: &str, role: OperatorRole, password: &str) {
    let hash = admit::operators::hash_password(password).expect("hash");
    app.state
        .store
        .add_operator(
            name,
            role,
            &OperatorSecret::PasswordHash(hash),
            &Actor::System(admit_core::SystemTask::OperatorCli),
            app.clock_now(),
        )
        .await
        .expect("operator added");
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn operator_commands_add_list_and_remove_with_a_hashed_password() {
    let app = spawn_app().await;
    let (code, out, err) = admit(
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

    let (code, _, err) = admit(
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
    let (code, _, err) = admit(
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
    let (code, _, err) = admit(&app, &["operator", "add", "kim", "--role", "root"], None);
    assert_ne!(code, 0);
    assert!(err.contains("viewer, support or admin"), "{err}");
    let (code, _, err) = admit(
        &app,
        &["operator", "add", "Kim Smith", "--role", "viewer"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("operator name"), "{err}");

    let (code, out, err) = admit(&app, &["operator", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sam ") && l.contains("support") && l.contains("set")),
        "{out}"
    );

    let mut console = Console::new(&app);
    assert_eq!(console.sign_in("sam", PASSWORD).await.status(), 303);
    assert_eq!(console.get("/admin").await.status(), 200);

    let (code, out, err) = admit(&app, &["operator", "remove", "sam"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed operator sam"), "{out}");
    let after = console.get("/admin").await;
    assert_eq!(after.status(), 303, "a removed operator's session ends");
    let (code, _, err) = admit(&app, &["operator", "remove", "sam"], None);
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

#[tokio::test]
async fn a_setup_link_sets_the_password_once() {
    let app = spawn_app().await;
    let (code, out, err) = admit(&app, &["operator", "add", "vera", "--role", "viewer"], None);
    assert_eq!(code, 0, "{err}");
    let link = out
        .lines()
        .find(|l| l.contains("/admin/setup?token="))
        .unwrap_or_else(|| panic!("no setup link: {out}"))
        .trim()
        .to_owned();
    let path = link
        .strip_prefix(&app.address)
        .unwrap_or_else(|| panic!("the link is on the public URL: {link}"));
    let token = path.split("token=").nth(1).expect("token").to_owned();

    let mut console = Console::new(&app);
    assert_eq!(
        console.sign_in("vera", PASSWORD).await.status(),
        401,
        "no password yet"
    );
    let differ = setup(
        &mut console,
        path,
        &token,
        PASSWORD,
        "something else entirely",
    )
    .await;
    assert_eq!(differ.status(), 400);
    assert!(differ.text().await.expect("page").contains("differ"));
    let done = setup(&mut console, path, &token, PASSWORD, PASSWORD).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/admin/login?setup=done");
    let again = setup(
        &mut console,
        path,
        &token,
        "another long password",
        "another long password",
    )
    .await;
    assert_eq!(again.status(), 400, "a setup link works once");

    assert_eq!(console.sign_in("vera", PASSWORD).await.status(), 303);
    let overview = console.get("/admin").await;
    assert_eq!(overview.status(), 200);
    assert!(
        overview
            .text()
            .await
            .expect("page")
            .contains("vera (viewer)")
    );
}

/// Opens a setup link and sends its form.
async fn setup(
    console: &mut Console,
    path: &str,
    token: &str,
    password: &str,
    confirm: &str,
) -> reqwest::Response {
    let page = console.get(path).await;
    assert_eq!(page.status(), 200);
    let csrf = cookie_value(&page, "admit_login_csrf").expect("csrf cookie");
    let html = page.text().await.expect("page");
    assert!(html.contains("id=\"setup\""), "{html}");
    console.cookie = format!("admit_login_csrf={csrf}");
    console
        .post(
            "/admin/setup",
            &[
                ("csrf", csrf.as_str()),
                ("token", token),
                ("password", password),
                ("password_confirm", confirm),
            ],
        )
        .await
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_lifetime_and_at_sign_out() {
    let app = spawn_app().await;
    add_operator(&app, "sam", OperatorRole::Support, PASSWORD).await;
    let mut console = Console::new(&app);
    console.sign_in("sam", PASSWORD).await;
    assert_eq!(console.get("/admin/cases").await.status(), 200);

    // Used every 20 minutes, a session lives past its idle limit…
    for _ in 0..3 {
        app.clock.advance(20 * 60);
        assert_eq!(console.get("/admin/cases").await.status(), 200);
    }
    // …but not 31 minutes of silence.
    app.clock.advance(31 * 60);
    let expired = console.get("/admin/cases").await;
    assert_eq!(expired.status(), 303);
    assert_eq!(
        expired.headers()["location"],
        "/admin/login?next=%2Fadmin%2Fcases"
    );

    // Nor past 12 hours, however busy.
    console.sign_in("sam", PASSWORD).await;
    for _ in 0..36 {
        app.clock.advance(20 * 60);
        console.get("/admin").await;
    }
    assert_eq!(console.get("/admin").await.status(), 303);

    // Sign-out ends the session in the database, not only in the browser.
    console.sign_in("sam", PASSWORD).await;
    let csrf = console.csrf().await;
    let out = console.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert!(
        set_cookie_header(&out, "admit_session").is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is cleared"
    );
    assert_eq!(
        console.get("/admin").await.status(),
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
        add_operator(&app, "sam", OperatorRole::Support, PASSWORD).await;
        let mut console = Console::new(&app);
        let response = console.sign_in("sam", PASSWORD).await;
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
async fn failed_sign_ins_are_limited_per_name() {
    let app = spawn_app().await;
    add_operator(&app, "sam", OperatorRole::Support, PASSWORD).await;
    let mut console = Console::new(&app);
    for _ in 0..5 {
        assert_eq!(
            console.sign_in("sam", "wrong password!!").await.status(),
            401
        );
    }
    assert_eq!(
        console.sign_in("sam", PASSWORD).await.status(),
        429,
        "even the right password waits"
    );
    app.clock.advance(16 * 60);
    assert_eq!(console.sign_in("sam", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn pages_escape_what_they_show_and_allow_no_scripts() {
    let app = spawn_app().await;
    add_operator(&app, "ada", OperatorRole::Admin, PASSWORD).await;
    app.post_json(
        "/v1/workspaces",
        &json!({"id": "ws_xss", "name": "<script>alert(1)</script>", "owner_email": "o@xss.test"}),
    )
    .await
    .expect(201);
    let mut console = Console::new(&app);
    console.sign_in("ada", PASSWORD).await;
    for path in [
        "/admin/workspaces/ws_xss",
        "/admin/workspaces",
        "/admin/search?q=script",
    ] {
        let page = console.get(path).await;
        assert_eq!(page.status(), 200, "{path}");
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
    assert_eq!(console.get("/admin/operators").await.status(), 200);
    add_operator(&app, "sam", OperatorRole::Support, PASSWORD).await;
    let mut support = Console::new(&app);
    support.sign_in("sam", PASSWORD).await;
    assert_eq!(support.get("/admin/operators").await.status(), 403);
}
