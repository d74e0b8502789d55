//! `spawn_app()` and a client whose calls state the status they expect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use admit::config::Sources;
use admit::http::AppState;
use admit::{App, Config, ManualClock};
use admit_core::Timestamp;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const APP_TOKEN: &str = "test-app-token-0123456789abcdef";
pub const PRIMARY_SECRET: &str = "whsec_test_primary_8f2a";
pub const ROTATED_SECRET: &str = "whsec_test_rotated_41cc";
/// The clock every test app starts at (2026-11-18T11:06:40Z), near the fixtures' `created`.
pub const START: Timestamp = Timestamp::from_unix(1_795_000_000);

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub processor: admit::provision::Processor,
    pub sender: admit::mail::sender::Sender,
    pub dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct TestResponse {
    pub status: u16,
    pub text: String,
}

impl TestResponse {
    /// The JSON body, after checking the status; the message shows the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    /// Checks the status of a response that has no body (204).
    #[track_caller]
    pub fn expect_empty(self, status: u16) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert!(self.text.is_empty(), "unexpected body: {}", self.text);
    }

    /// Checks an error response: status and stable code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "unexpected error body: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error explains itself: {body}"
        );
        body
    }
}

pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("admit.db")
}

/// Whether the tests run on PostgreSQL (`ADMIT_TEST_DATABASE_URL`, set by
/// the test command's second pass) rather than SQLite.
pub fn on_postgres() -> bool {
    postgres_server().is_some()
}

fn postgres_server() -> Option<String> {
    std::env::var("ADMIT_TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// Where the URL of `dir`'s PostgreSQL database is kept across restarts.
fn database_url_file(dir: &Path) -> PathBuf {
    dir.join("database-url")
}

/// The database of the test app in `dir`: a SQLite file in `dir`, or on
/// PostgreSQL a database of its own (see [`prepare_database`]).
pub fn database_url(dir: &Path) -> String {
    match std::fs::read_to_string(database_url_file(dir)) {
        Ok(url) => url,
        Err(_) if !on_postgres() => format!("sqlite://{}", database_path(dir).display()),
        Err(_) => panic!("no PostgreSQL database was prepared for {}", dir.display()),
    }
}

/// Makes `dir`'s database on PostgreSQL (a new one on the test server, so
/// tests running at once never share state) unless it exists; its URL.
pub async fn prepare_database(dir: &Path) -> String {
    use sqlx::Connection;
    let Some(server) = postgres_server() else {
        return database_url(dir);
    };
    if let Ok(url) = std::fs::read_to_string(database_url_file(dir)) {
        return url;
    }
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).expect("random name");
    let name = format!(
        "admit_t_{}",
        name.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("the test PostgreSQL server answers (ADMIT_TEST_DATABASE_URL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.expect("close");
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server.as_str(), String::new()),
    };
    let host = base.rsplit_once('/').map_or(base, |(host, _)| host);
    let url = format!("{host}/{name}{query}");
    std::fs::write(database_url_file(dir), &url).expect("remember the database");
    url
}

pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    spawn_app_in(dir, Arc::new(ManualClock::new(START))).await
}

/// Starts admit on a database in `dir` (kept across restarts) with `clock`.
/// `spawn_app` with extra `ADMIT_*` settings.
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    spawn(dir, Arc::new(ManualClock::new(START)), settings).await
}

pub async fn spawn_app_in(dir: Arc<tempfile::TempDir>, clock: Arc<ManualClock>) -> TestApp {
    spawn(dir, clock, &[]).await
}

/// `spawn_app_in` with extra `ADMIT_*` settings.
pub async fn spawn_app_in_with(
    dir: Arc<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    settings: &[(&str, &str)],
) -> TestApp {
    spawn(dir, clock, settings).await
}

/// Where a test app's mail goes unless a test names a transport.
pub fn mail_folder(dir: &Path) -> PathBuf {
    dir.join("mail")
}

async fn spawn(
    dir: Arc<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    settings: &[(&str, &str)],
) -> TestApp {
    let url = prepare_database(dir.path()).await;
    let sources = Sources {
        file: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml")),
        env: vec![
            // Tests step the processor themselves (`drain`) and see emails at once.
            ("ADMIT_PROCESS_IN_BACKGROUND".into(), "false".into()),
            ("ADMIT_OUTBOX_SETTLE_SECS".into(), "0".into()),
            ("ADMIT_SUPPORT_EMAIL".into(), "support@admit.test".into()),
            ("ADMIT_LISTEN".into(), "127.0.0.1:0".into()),
            ("ADMIT_DATABASE_URL".into(), url),
            (
                "ADMIT_WEBHOOK_SECRETS".into(),
                format!("{PRIMARY_SECRET}, {ROTATED_SECRET}"),
            ),
            ("ADMIT_APP_TOKEN".into(), APP_TOKEN.into()),
            (
                "ADMIT_MAIL_URL".into(),
                format!("file://{}", mail_folder(dir.path()).display()),
            ),
            ("ADMIT_LOG".into(), "warn".into()),
        ]
        .into_iter()
        .chain(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .collect(),
    };
    let config = Config::load(&sources).expect("test configuration is valid");
    let app = App::build(config, clock.clone()).await.expect("app builds");
    let state = app.state().clone();
    let processor = app.processor();
    let sender = app.sender();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run(listener, async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        clock,
        state,
        processor,
        sender,
        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let response = request.send().await.expect("request reaches admit");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        TestResponse { status, text }
    }

    /// Posts `body` with a Stripe-Signature header made with `secret` at the app's current time.
    pub async fn post_signed(&self, body: &[u8], secret: &str) -> TestResponse {
        let header = admit_stripe::signature::sign(body, secret, self.clock_now());
        self.post_webhook(body.to_vec(), Some(&header)).await
    }

    pub async fn post_webhook(&self, body: Vec<u8>, signature: Option<&str>) -> TestResponse {
        let mut request = self
            .client
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json; charset=utf-8")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.client.get(self.url(path)).bearer_auth(APP_TOKEN))
            .await
    }

    pub async fn get_without_token(&self, path: &str) -> TestResponse {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> TestResponse {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(APP_TOKEN)
                .json(body),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> TestResponse {
        self.send(
            self.client
                .put(self.url(path))
                .bearer_auth(APP_TOKEN)
                .json(body),
        )
        .await
    }

    /// Posts `body` as is with `content_type`, for requests that are not well-formed JSON.
    pub async fn post_raw(&self, path: &str, body: &str, content_type: &str) -> TestResponse {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(APP_TOKEN)
                .header("content-type", content_type)
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn post_json_without_token(&self, path: &str, body: &Value) -> TestResponse {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(self.client.delete(self.url(path)).bearer_auth(APP_TOKEN))
            .await
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("metrics body")
    }

    /// A connection of the test's own to the app's database (either
    /// dialect), to cause real faults (triggers) or corrupt rows behind
    /// admit's back.
    pub async fn database(&self) -> sqlx::AnyConnection {
        open_database(self.dir.path()).await
    }

    pub async fn event_count(&self) -> u64 {
        self.state.store.count_events().await.expect("count events")
    }

    /// Runs the inbox processor until nothing is due; fails the test on a store error.
    pub async fn drain(&self) -> usize {
        let done = self.processor.drain().await.expect("the processor runs");
        assert_eq!(
            self.state.store.pending_events().await.expect("count"),
            0,
            "work left in the inbox"
        );
        done
    }

    /// Runs the outbox sender until nothing is due; returns how many attempts it made.
    /// Failed messages stay pending with a retry time in the future (or `dead`).
    pub async fn drain_mail(&self) -> usize {
        self.sender.drain().await.expect("the sender runs")
    }

    pub fn clock_now(&self) -> Timestamp {
        admit::Clock::now(self.clock.as_ref())
    }

    /// Graceful shutdown; waits until the server has stopped and closed the database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server still running")
    }
}

/// A value of `/metrics` for a series written exactly as Prometheus prints it.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// The Python that runs the tests' peers (aiosmtpd, localstripe):
/// `ADMIT_TEST_PYTHON`, the venv `scripts/test` makes, or `python3`. Fails
/// the test, never skips it, when `module` cannot be imported.
pub fn test_python(module: &str, needed_by: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-services/venv/bin/python");
    let python = std::env::var_os("ADMIT_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| venv.exists().then_some(venv))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let importable = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "{needed_by} need the Python module {module}, which {} cannot import: run scripts/test \
         (it installs it into .test-services/venv and exports ADMIT_TEST_PYTHON), \
         or set ADMIT_TEST_PYTHON to a Python that has it",
        python.display()
    );
    python
}

/// Every stored event as `[id, status, outcome, …fields]`, sorted: what
/// two runs over the same events are compared by.
pub async fn event_outcomes(app: &TestApp, fields: &[&str]) -> Vec<serde_json::Value> {
    let events = app.get("/v1/events?limit=500").await.expect(200);
    let mut outcomes: Vec<serde_json::Value> = events["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            ["id", "status", "outcome"]
                .iter()
                .chain(fields)
                .map(|f| e[*f].clone())
                .collect()
        })
        .collect();
    outcomes.sort_by_key(serde_json::Value::to_string);
    outcomes
}

/// The messages warranted (every outbox row not withdrawn) as
/// `idempotency key recipient`, sorted.
pub async fn outbox_messages(app: &TestApp) -> Vec<String> {
    let mut outbox: Vec<String> = app
        .state
        .store
        .list_outbox(None, 1000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|row| row.state != "superseded")
        .map(|row| format!("{} {}", row.idempotency_key, row.recipient))
        .collect();
    outbox.sort();
    outbox
}

/// Posts each simulated event, signed with the primary secret; each must be stored.
pub async fn deliver_signed(app: &TestApp, events: &[admit::simulate::Event]) {
    for event in events {
        app.post_signed(&event.body, PRIMARY_SECRET)
            .await
            .expect(200);
    }
}

/// A connection of the test's own to `dir`'s database, either dialect.
pub async fn open_database(dir: &Path) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&database_url(dir))
        .await
        .expect("a connection of the test's own")
}

/// A real database fault, in the database itself: `table`'s inserts of
/// rows matching `condition` (SQL over `NEW`) abort with `message`. Either
/// dialect; [`drop_fault`] removes it.
pub async fn inject_fault(
    db: &mut sqlx::AnyConnection,
    name: &str,
    table: &str,
    condition: &str,
    message: &str,
) {
    let statements = if on_postgres() {
        vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION '{message}'; END $$"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW
                 WHEN ({condition}) EXECUTE FUNCTION {name}()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition}
             BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )]
    };
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *db)
            .await
            .expect("inject the fault");
    }
}

/// Removes a fault [`inject_fault`] made on `table`.
pub async fn drop_fault(db: &mut sqlx::AnyConnection, name: &str, table: &str) {
    let statement = if on_postgres() {
        format!("DROP TRIGGER {name} ON {table}")
    } else {
        format!("DROP TRIGGER {name}")
    };
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut *db)
        .await
        .expect("remove the fault");
}
