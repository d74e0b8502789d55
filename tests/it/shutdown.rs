//! Bounded graceful shutdown of the real binary: on SIGTERM `admit serve`
//! stops claiming, finishes or cuts what is in flight within
//! `ADMIT_SHUTDOWN_GRACE_SECS`, and gives back its leases so the next start
//! takes the work at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{APP_TOKEN, PRIMARY_SECRET};

const NOW_SLACK: i64 = 5;

pub struct Server {
    pub child: Child,
    pub base: String,
}

/// A test that fails half-way still stops its server.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn start(dir: &Path, settings: &[(&str, String)]) -> Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_admit"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "ADMIT_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
        )
        .env("ADMIT_LISTEN", format!("127.0.0.1:{port}"))
        .env("ADMIT_DATABASE_URL", crate::helpers::database_url(dir))
        .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
        .env("ADMIT_APP_TOKEN", APP_TOKEN)
        .env("ADMIT_OUTBOX_SETTLE_SECS", "0")
        .env("ADMIT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in settings {
        command.env(key, value);
    }
    let child = command.spawn().expect("admit starts");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn ready(server: &mut Server, client: &reqwest::Client) {
    for _ in 0..300 {
        if let Ok(response) = client.get(format!("{}/readyz", server.base)).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            server.child.try_wait().expect("status").is_none(),
            "admit exited before it was ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("admit did not become ready");
}

pub fn sigterm(server: &Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for the process to exit (bounded); returns how long it took.
pub async fn exits(server: &mut Server, within: Duration) -> Duration {
    let begun = Instant::now();
    while begun.elapsed() < within {
        if let Some(status) = server.child.try_wait().expect("status") {
            assert!(status.success(), "admit exited with {status}");
            return begun.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.child.kill();
    panic!("admit did not exit within {within:?} of SIGTERM");
}

async fn post_signed(client: &reqwest::Client, base: &str, body: Vec<u8>) {
    let now = admit_core::Timestamp::from_unix(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("fits"),
    );
    let header = admit_stripe::signature::sign(&body, PRIMARY_SECRET, now);
    let response = client
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("posted");
    assert_eq!(response.status().as_u16(), 200);
}

fn customer_update(n: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_backlog_{n:05}","object":"event","type":"customer.updated","created":1795000000,"livemode":false,"data":{{"object":{{"id":"cus_Backlog{n:05}","object":"customer","email":"b{n}@backlog.test","metadata":{{}}}}}}}}"#
    )
    .into_bytes()
}

async fn database(dir: &Path) -> sqlx::AnyConnection {
    crate::helpers::open_database(dir).await
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits")
}

#[tokio::test]
async fn sigterm_with_a_large_backlog_exits_within_the_grace_period_and_the_next_start_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    crate::helpers::prepare_database(dir.path()).await;
    let client = reqwest::Client::new();
    let grace = [("ADMIT_SHUTDOWN_GRACE_SECS", "2".to_owned())];

    // Fill the inbox with nobody processing it.
    let mut ingest = start(
        dir.path(),
        &[("ADMIT_PROCESS_IN_BACKGROUND", "false".to_owned())],
    );
    ready(&mut ingest, &client).await;
    let backlog = 1500;
    for n in 0..backlog {
        post_signed(&client, &ingest.base, customer_update(n)).await;
    }
    sigterm(&ingest);
    exits(&mut ingest, Duration::from_secs(30)).await;

    // A processor starts on it and is asked to stop at once.
    let mut server = start(dir.path(), &grace);
    ready(&mut server, &client).await;
    sigterm(&server);
    exits(&mut server, Duration::from_secs(30)).await;
    let mut pool = database(dir.path()).await;
    let (left, leased): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'received'),
                COUNT(*) FILTER (WHERE lease_until > $1) FROM stripe_events",
    )
    .bind(unix_now() - NOW_SLACK)
    .fetch_one(&mut pool)
    .await
    .expect("count");
    assert!(
        left > 0,
        "SIGTERM must not wait for the whole backlog (it drained all {backlog})"
    );
    assert_eq!(leased, 0, "no lease is left for the next start to wait out");
    sqlx::Connection::close(pool).await.expect("close");

    // The next start finishes the rest.
    let mut server = start(dir.path(), &grace);
    ready(&mut server, &client).await;
    let mut pool = database(dir.path()).await;
    let begun = Instant::now();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE status = 'received'")
                .fetch_one(&mut pool)
                .await
                .expect("count");
        if left == 0 {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(180),
            "{left} events still waiting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::Connection::close(pool).await.expect("close");
    sigterm(&server);
    exits(&mut server, Duration::from_secs(30)).await;
}

/// An SMTP server that accepts connections and never says a word.
async fn silent_smtp() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn sigterm_while_a_mail_server_hangs_exits_and_the_message_goes_out_next_start() {
    let dir = tempfile::tempdir().expect("dir");
    crate::helpers::prepare_database(dir.path()).await;
    let client = reqwest::Client::new();
    let (port, hung) = silent_smtp().await;
    let mut server = start(
        dir.path(),
        &[
            ("ADMIT_SHUTDOWN_GRACE_SECS", "2".to_owned()),
            ("ADMIT_MAIL_URL", format!("smtp://127.0.0.1:{port}")),
        ],
    );
    ready(&mut server, &client).await;
    let response = client
        .post(format!("{}/v1/workspaces", server.base))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"id": "ws_acme01", "name": "Acme Rockets", "owner_email": "dana@acme.test"}))
        .send()
        .await
        .expect("create workspace");
    assert_eq!(response.status().as_u16(), 201);
    for file in [
        "customer_subscription_created.json",
        "invoice_paid.json",
        "customer_subscription_updated_active.json",
        "checkout_session_completed.json",
    ] {
        let body = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe/current")
                .join(file),
        )
        .expect("fixture");
        post_signed(&client, &server.base, body).await;
    }
    // Wait until the sender is stuck on the silent server.
    let mut pool = database(dir.path()).await;
    let begun = Instant::now();
    loop {
        let leased: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND lease_until IS NOT NULL",
        )
        .fetch_one(&mut pool)
        .await
        .expect("count");
        if leased > 0 {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "no message was ever claimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&server);
    exits(&mut server, Duration::from_secs(30)).await;
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND lease_until > $1",
    )
    .bind(unix_now() - NOW_SLACK)
    .fetch_one(&mut pool)
    .await
    .expect("count");
    assert_eq!(leased, 0, "the cut-short message's lease was given back");
    sqlx::Connection::close(pool).await.expect("close");
    hung.abort();

    // The next start (with a working transport) sends it at once, not after the 300 s lease.
    let mail = dir.path().join("mail");
    let mut server = start(
        dir.path(),
        &[("ADMIT_MAIL_URL", format!("file://{}", mail.display()))],
    );
    ready(&mut server, &client).await;
    let begun = Instant::now();
    loop {
        let written = std::fs::read_dir(&mail).map_or(0, |entries| entries.count());
        if written > 0 {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the message did not go out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&server);
    exits(&mut server, Duration::from_secs(30)).await;
}
