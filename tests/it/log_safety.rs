//! What admit logs never holds a secret, an email address or a request body
//! (issue 14, item 12): the real `admit serve`, at `debug` and at `trace`, in
//! JSON and in text, through a whole purchase (workspace, signed checkout
//! events, onboarding email, sign-in token redeemed), a console operator
//! added with `admit operator add` who signs in and reads every page, and
//! forged or malformed webhooks. Everything the processes write, stdout and
//! stderr, is searched for every secret the run used.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{open_database, prepare_database};

/// The workspace owner, who is also the purchaser in the events below.
const OWNER: &str = "quillon.vexmarch@logsafety.test";
const MEMBER: &str = "orrin.teakwell@logsafety.test";
const SUPPORT: &str = "helpdesk.zephyrine@logsafety.test";
const WEBHOOK_SECRET: &str = "whsec_logsafety_9d1e7c4b2a6f0e35";
const FORGED_SECRET: &str = "whsec_forged_3b8e5d0c7a1f4462";
const APP_TOKEN: &str = "apptok-logsafety-5c2e9a7d1b3f8e6a";
const PASSWORD: &str = "plover gantry mizzenmast 83";
const WRONG_PASSWORD: &str = "quartermaster lantern 2291";
const OPERATOR: &str = "vera";
/// Body fragments put into every event: the customer's name, an address
/// line, a description.
const CUSTOMER_NAME: &str = "Quillon Vexmarch-Ballantyne";
const ADDRESS_LINE: &str = "77 Zanzibarquay Crescent";
const DESCRIPTION: &str = "Wintergreen obelisk sextant 4417";
/// In the forged and malformed deliveries only.
const FORGED_FRAGMENT: &str = "Marmalade cassowary 6620";
const MALFORMED_FRAGMENT: &str = "Tangerine halberd 5391";
const HEADER_FRAGMENT: &str = "Periwinkle-bassoon-7082";
const WS: &str = "ws_acme01";
/// A signed event the processor cannot read.
const UNREADABLE_EVENT: &str = "evt_LogSafetyUnreadable01";

const PURCHASE: &[&str] = &[
    "current/customer_created.json",
    "current/customer_subscription_created.json",
    "current/invoice_paid.json",
    "current/invoice_payment_succeeded.json",
    "current/customer_subscription_updated_active.json",
    "current/checkout_session_completed.json",
];

/// How long one run may take, start to stop, and one wait within it.
const RUN_LIMIT: Duration = Duration::from_secs(60);
const WAIT_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn debug_json_logs_hold_no_secret_email_or_body() {
    logs_are_clean("debug", "json").await;
}

#[tokio::test]
async fn debug_text_logs_hold_no_secret_email_or_body() {
    logs_are_clean("debug", "text").await;
}

#[tokio::test]
async fn trace_json_logs_hold_no_secret_email_or_body() {
    logs_are_clean("trace", "json").await;
}

#[tokio::test]
async fn trace_text_logs_hold_no_secret_email_or_body() {
    logs_are_clean("trace", "text").await;
}

/// Lines written by the processes of one run, each tagged with its source.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// Reads `stream` line by line on a thread of its own until it closes.
    fn follow(
        &self,
        source: &str,
        stream: impl Read + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let lines = self.0.clone();
        let source = source.to_owned();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buffer);
                        let line = format!("{source}: {}", strip_ansi(line.trim_end()));
                        lines.lock().expect("lines").push(line);
                    }
                }
            }
        })
    }

    fn push(&self, source: &str, text: &str) {
        let mut lines = self.0.lock().expect("lines");
        for line in text.lines() {
            lines.push(format!("{source}: {}", strip_ansi(line)));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }
}

/// `text` without terminal colour sequences (ESC [ … final byte), which the
/// text format may put between a field's name and its value.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `admit serve` as a child process with only the settings given here.
struct Server {
    child: Child,
    readers: Vec<std::thread::JoinHandle<()>>,
    captured: Captured,
    address: String,
}

fn config_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml")
}

/// The environment every process of a run gets, and nothing else.
fn settings(dir: &Path, database_url: &str, level: &str, format: &str) -> Vec<(String, String)> {
    [
        ("ADMIT_CONFIG", config_file().display().to_string()),
        ("ADMIT_LISTEN", "127.0.0.1:0".to_owned()),
        ("ADMIT_DATABASE_URL", database_url.to_owned()),
        ("ADMIT_WEBHOOK_SECRETS", WEBHOOK_SECRET.to_owned()),
        ("ADMIT_APP_TOKEN", APP_TOKEN.to_owned()),
        (
            "ADMIT_MAIL_URL",
            format!("file://{}", dir.join("mail").display()),
        ),
        ("ADMIT_OUTBOX_SETTLE_SECS", "0".to_owned()),
        ("ADMIT_SUPPORT_EMAIL", SUPPORT.to_owned()),
        ("ADMIT_LOG", level.to_owned()),
        ("ADMIT_LOG_FORMAT", format.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn admit_command(dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_admit"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl Server {
    fn start(dir: &Path, env: &[(String, String)], captured: &Captured) -> Self {
        let mut child = admit_command(dir, env)
            .arg("serve")
            .stdin(Stdio::null())
            .spawn()
            .expect("admit serve starts");
        let readers = vec![
            captured.follow("serve stdout", child.stdout.take().expect("stdout")),
            captured.follow("serve stderr", child.stderr.take().expect("stderr")),
        ];
        let mut server = Server {
            child,
            readers,
            captured: captured.clone(),
            address: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(port) = server.listening_port() {
                server.address = format!("http://127.0.0.1:{port}");
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "admit serve exited ({status}) before listening:\n{}",
                    server.captured.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "admit serve is not listening after 20 s:\n{}",
                server.captured.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port from the "admit is listening" line, text or JSON.
    fn listening_port(&self) -> Option<u16> {
        self.captured.lines().iter().find_map(|line| {
            if !line.contains("admit is listening") {
                return None;
            }
            let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
            line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// SIGTERM, so the shutdown path logs too; killed if it takes too long.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fixture with the run's own people and distinctive body text in it.
fn fixture(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stripe")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {file}: {e}"));
    text.replace("dana@acme.test", OWNER)
        .replace("Dana Reyes", CUSTOMER_NAME)
        .replace("1 Launchpad Way", ADDRESS_LINE)
        .replace(
            "\"description\": null",
            &format!("\"description\": \"{DESCRIPTION}\""),
        )
        .into_bytes()
}

/// A `Stripe-Signature` header for `body` made with `secret` now; the header
/// and its `v1` signature.
fn signature(body: &[u8], secret: &str) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let now = admit_core::Timestamp::from_unix(i64::try_from(now).expect("fits"));
    let header = admit_stripe::signature::sign(body, secret, now);
    let v1 = header
        .split(',')
        .find_map(|part| part.strip_prefix("v1="))
        .expect("a v1 signature")
        .to_owned();
    (header, v1)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Status and body of a request.
async fn send(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request reaches admit");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn post_webhook(server: &Server, body: Vec<u8>, header: &str) -> (u16, String) {
    send(
        client()
            .post(server.url("/webhooks/stripe"))
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", header)
            .body(body),
    )
    .await
}

/// The value of cookie `name` in a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The `value` of the first `<input name="csrf" …>` in `html`, unescaped.
fn csrf_field(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?.split('"').next()?;
    Some(
        value
            .replace("&#x2f;", "/")
            .replace("&#x2F;", "/")
            .replace("&#43;", "+")
            .replace("&#x3d;", "=")
            .replace("&#x3D;", "=")
            .replace("&amp;", "&"),
    )
}

/// Every 64-hex-digit token after `token=` in the mail folder's messages
/// (quoted-printable soft breaks and `=3D` undone).
fn mailed_tokens(folder: &Path) -> Vec<String> {
    let mut tokens = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let raw = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let text = raw
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("token=") {
            rest = &rest[at + "token=".len()..];
            let token: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            if token.len() == 64 && !tokens.contains(&token) {
                tokens.push(token);
            }
        }
    }
    tokens
}

/// Polls `check` every 100 ms until it gives a value or `limit` is over.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `admit ARGS` with the run's settings and `stdin`; its output is captured
/// with the server's. The exit code.
fn run_admit(
    dir: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: &str,
    captured: &Captured,
) -> i32 {
    let mut child = admit_command(dir, env)
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("the admit binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("stdin written");
    drop(input);
    let output = child.wait_with_output().expect("admit exits");
    let name = format!("admit {}", args.join(" "));
    captured.push(
        &format!("{name} stdout"),
        &String::from_utf8_lossy(&output.stdout),
    );
    captured.push(
        &format!("{name} stderr"),
        &String::from_utf8_lossy(&output.stderr),
    );
    output.status.code().unwrap_or(-1)
}

/// One whole run at `level` in `format`; fails naming every line that holds
/// something it must not.
async fn logs_are_clean(level: &str, format: &str) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = prepare_database(dir.path()).await;
    let env = settings(dir.path(), &database_url, level, format);
    let captured = Captured::default();
    let server = Server::start(dir.path(), &env, &captured);
    // Secrets met on the way: (what, value).
    let mut secrets: Vec<(String, String)> = Vec::new();

    let outcome = tokio::time::timeout(
        RUN_LIMIT,
        drive(&server, dir.path(), &env, &captured, &mut secrets),
    )
    .await;
    server.stop();
    let lines = captured.lines();
    if outcome.is_err() {
        panic!(
            "{level}/{format}: the run took over {RUN_LIMIT:?}; the last lines logged:\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }

    let mut forbidden: Vec<(String, String)> = [
        ("owner email", OWNER),
        ("member email", MEMBER),
        ("support email", SUPPORT),
        ("webhook secret", WEBHOOK_SECRET),
        ("forged webhook secret", FORGED_SECRET),
        ("app token", APP_TOKEN),
        ("operator password", PASSWORD),
        ("wrong password", WRONG_PASSWORD),
        ("argon2 hash", "$argon2"),
        ("customer name (body)", CUSTOMER_NAME),
        ("address line (body)", ADDRESS_LINE),
        ("description (body)", DESCRIPTION),
        ("forged body", FORGED_FRAGMENT),
        ("malformed body", MALFORMED_FRAGMENT),
        ("malformed signature header", HEADER_FRAGMENT),
        ("body JSON", "\"object\":"),
        ("body JSON, escaped", "\\\"object\\\":"),
    ]
    .into_iter()
    .map(|(what, value)| (what.to_owned(), value.to_owned()))
    .collect();
    forbidden.extend(secrets);
    // An email is stored lower-case; look for any spelling.
    let leaks: Vec<String> = lines
        .iter()
        .flat_map(|line| {
            let lower = line.to_lowercase();
            forbidden
                .iter()
                .filter(move |(_, value)| lower.contains(&value.to_lowercase()))
                .map(move |(what, _)| format!("{what}:\n    {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{level}/{format}: {} log line(s) leak:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // The run logged what it is about (so the search above had something to
    // search): requests at debug, the purchase, the redemption, the console.
    let all = lines.join("\n");
    for expected in [
        "admit is listening",
        "webhook stored",
        "webhook rejected",
        "event cannot be read",
        "sign-in token redeemed",
        "/admin/login",
        "/v1/workspaces/{id}/members/{email}",
    ] {
        assert!(
            all.contains(expected),
            "{level}/{format}: nothing logged says {expected:?}:\n{all}"
        );
    }
    if format == "json" {
        let serve_lines = lines
            .iter()
            .filter_map(|l| l.strip_prefix("serve stderr: "));
        for line in serve_lines {
            assert!(
                serde_json::from_str::<Value>(line).is_ok(),
                "{level}/json: a line that is not JSON: {line}"
            );
        }
    }
    eprintln!(
        "log_safety {level}/{format}: {} lines searched in {:.1?}",
        lines.len(),
        started.elapsed()
    );
}

/// The purchase, the sign-in, the console and the refusals, against `server`.
async fn drive(
    server: &Server,
    dir: &Path,
    env: &[(String, String)],
    captured: &Captured,
    secrets: &mut Vec<(String, String)>,
) {
    let http = client();

    // The application creates the workspace and invites a member.
    let (status, body) = send(
        http.post(server.url("/v1/workspaces"))
            .bearer_auth(APP_TOKEN)
            .json(&json!({"id": WS, "name": "Acme Rockets", "owner_email": OWNER})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        http.put(server.url(&format!("/v1/workspaces/{WS}/members/{MEMBER}")))
            .bearer_auth(APP_TOKEN)
            .json(&json!({"role": "member"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Stripe delivers the checkout's events.
    for file in PURCHASE {
        let body = fixture(file);
        let (header, v1) = signature(&body, WEBHOOK_SECRET);
        secrets.push((format!("signature of {file}"), v1));
        let (status, answer) = post_webhook(server, body, &header).await;
        assert_eq!(status, 200, "{file}: {answer}");
    }

    // Refusals: a forged signature, a malformed header, a signed body that is
    // no event, a request without the app token.
    let forged = String::from_utf8(fixture("current/checkout_session_completed.json"))
        .expect("UTF-8")
        .replace(DESCRIPTION, FORGED_FRAGMENT)
        .into_bytes();
    let (header, v1) = signature(&forged, FORGED_SECRET);
    secrets.push(("forged signature".into(), v1));
    let (status, answer) = post_webhook(server, forged.clone(), &header).await;
    assert_eq!(status, 400, "forged: {answer}");
    let (status, answer) = post_webhook(server, forged, &format!("t=1,v1={HEADER_FRAGMENT}")).await;
    assert!((400..500).contains(&status), "malformed header: {answer}");
    let malformed = json!({
        "id": "evt_logsafety_malformed",
        "object": "event",
        "type": "checkout.session.completed",
        "created": MALFORMED_FRAGMENT,
        "livemode": MALFORMED_FRAGMENT,
        "data": {"object": {"id": MALFORMED_FRAGMENT, "email": OWNER}},
    })
    .to_string()
    .into_bytes();
    let (header, v1) = signature(&malformed, WEBHOOK_SECRET);
    secrets.push(("malformed event's signature".into(), v1));
    let (status, answer) = post_webhook(server, malformed, &header).await;
    assert!((400..500).contains(&status), "malformed event: {answer}");
    let (status, _) = send(
        http.get(server.url(&format!("/v1/access?workspace_id={WS}&email={MEMBER}")))
            .bearer_auth(FORGED_SECRET),
    )
    .await;
    assert_eq!(status, 401);

    // The purchase is processed and the onboarding email written.
    eventually("the workspace is on the paid plan", WAIT_LIMIT, || async {
        let (status, body) = send(
            http.get(server.url(&format!("/v1/workspaces/{WS}/billing")))
                .bearer_auth(APP_TOKEN),
        )
        .await;
        let body: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && body["subscription_status"] == "active").then_some(())
    })
    .await;
    let (status, body) = send(
        http.get(server.url(&format!("/v1/access?workspace_id={WS}&email={MEMBER}")))
            .bearer_auth(APP_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A signed event whose envelope is fine and whose subscription is not
    // (its id is no `sub_…` id): stored, then failed by the processor.
    let unreadable = String::from_utf8(fixture("current/customer_subscription_created.json"))
        .expect("UTF-8")
        .replace("evt_IWCYgQc9ZBYsRqzWeJ6Tp0XY", UNREADABLE_EVENT)
        .replacen(
            "\"id\": \"sub_AcmePro0001\"",
            "\"id\": \"not-a-subscription-id\"",
            1,
        )
        .into_bytes();
    let (header, v1) = signature(&unreadable, WEBHOOK_SECRET);
    secrets.push(("unreadable event's signature".into(), v1));
    let (status, answer) = post_webhook(server, unreadable, &header).await;
    assert_eq!(status, 200, "unreadable event: {answer}");
    eventually("the unreadable event is failed", WAIT_LIMIT, || async {
        let (status, body) = send(
            http.get(server.url(&format!("/v1/events/{UNREADABLE_EVENT}")))
                .bearer_auth(APP_TOKEN),
        )
        .await;
        let body: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && body["status"] == "failed").then_some(())
    })
    .await;
    let folder = dir.join("mail");
    let tokens = eventually("a sign-in link is mailed", WAIT_LIMIT, || async {
        let tokens = mailed_tokens(&folder);
        (!tokens.is_empty()).then_some(tokens)
    })
    .await;
    for token in &tokens {
        secrets.push(("sign-in token".into(), token.clone()));
        secrets.push((
            "sign-in token hash".into(),
            admit::signin::hash_token(token),
        ));
    }
    let stored: Vec<String> = {
        let mut db = open_database(dir).await;
        sqlx::query_scalar("SELECT token_hash FROM signin_tokens")
            .fetch_all(&mut db)
            .await
            .expect("read the token hashes")
    };
    assert!(!stored.is_empty(), "a sign-in token is stored");
    for hash in stored {
        secrets.push(("stored sign-in token hash".into(), hash));
    }

    // The application redeems the link, once; then again, and a token never issued.
    let redeem = |token: String| {
        send(
            http.post(server.url("/v1/signin-tokens/redeem"))
                .bearer_auth(APP_TOKEN)
                .json(&json!({ "token": token })),
        )
    };
    let (status, body) = redeem(tokens[0].clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = redeem(tokens[0].clone()).await;
    assert_eq!(status, 410, "{body}");
    let unknown = tokens[0].chars().rev().collect::<String>();
    secrets.push(("unknown sign-in token".into(), unknown.clone()));
    let (status, body) = redeem(unknown).await;
    assert_eq!(status, 404, "{body}");

    // A console operator, added on the command line, signs in.
    let code = run_admit(
        dir,
        env,
        &[
            "operator",
            "add",
            OPERATOR,
            "--role",
            "support",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
        captured,
    );
    assert_eq!(
        code,
        0,
        "admit operator add:\n{}",
        captured.lines().join("\n")
    );
    let login = |password: &'static str| {
        let http = http.clone();
        async move {
            let page = http
                .get(server.url("/admin/login"))
                .send()
                .await
                .expect("GET /admin/login");
            let csrf_cookie = set_cookie(&page, "admit_login_csrf").expect("login CSRF cookie");
            let html = page.text().await.expect("login page");
            let field = csrf_field(&html).expect("login form's CSRF field");
            let response = http
                .post(server.url("/admin/login"))
                .header(
                    reqwest::header::COOKIE,
                    format!("admit_login_csrf={csrf_cookie}"),
                )
                .form(&[
                    ("name", OPERATOR),
                    ("password", password),
                    ("csrf", field.as_str()),
                ])
                .send()
                .await
                .expect("POST /admin/login");
            let session = set_cookie(&response, "admit_session");
            (response.status().as_u16(), csrf_cookie, field, session)
        }
    };
    let (status, cookie, field, session) = login(WRONG_PASSWORD).await;
    assert!(
        session.is_none_or(|s| s.is_empty()),
        "a wrong password opens no session"
    );
    assert_ne!(status, 303, "a wrong password is refused");
    secrets.push(("login CSRF cookie".into(), cookie));
    secrets.push(("login CSRF field".into(), field));
    let (status, cookie, field, session) = login(PASSWORD).await;
    assert_eq!(status, 303, "the operator signs in");
    let session = session.expect("a session cookie");
    secrets.push(("login CSRF cookie".into(), cookie));
    secrets.push(("login CSRF field".into(), field));
    secrets.push(("session cookie".into(), session.clone()));

    // … and reads the console's pages.
    let events: Value = {
        let (status, body) = send(
            http.get(server.url("/v1/events?limit=50"))
                .bearer_auth(APP_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let outbox: Value = {
        let (status, body) = send(http.get(server.url("/v1/outbox")).bearer_auth(APP_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let mut pages = vec![
        "/admin".to_owned(),
        format!("/admin/search?q={OWNER}"),
        "/admin/cases".to_owned(),
        "/admin/events".to_owned(),
        "/admin/outbox".to_owned(),
        "/admin/workspaces".to_owned(),
        format!("/admin/workspaces/{WS}"),
        "/admin/operators".to_owned(),
    ];
    for event in events["events"].as_array().into_iter().flatten().take(3) {
        pages.push(format!(
            "/admin/events/{}",
            event["id"].as_str().unwrap_or_default()
        ));
    }
    for message in outbox["messages"].as_array().into_iter().flatten() {
        pages.push(format!("/admin/outbox/{}", message["id"]));
        pages.push(format!("/admin/outbox/{}/preview", message["id"]));
    }
    let cookie = format!("admit_session={session}");
    let mut csrf = None;
    for page in &pages {
        let (status, html) = send(
            http.get(server.url(page))
                .header(reqwest::header::COOKIE, &cookie),
        )
        .await;
        assert!(
            status == 200 || (page == "/admin/operators" && status == 403),
            "GET {page}: {status} {html}"
        );
        if csrf.is_none() {
            csrf = csrf_field(&html);
        }
    }
    let csrf = csrf.expect("a signed-in page has a CSRF field");
    secrets.push(("session CSRF token".into(), csrf.clone()));
    let (status, body) = send(
        http.post(server.url("/admin/logout"))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(status, 303, "sign-out: {body}");
}
