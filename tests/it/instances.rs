//! Several `admit serve` processes on one PostgreSQL database, as behind a
//! load balancer: the lifecycles of 2,000 workspaces (30 % of the events
//! delivered twice, all shuffled) are sprayed at random instances at once,
//! one instance is SIGKILLed mid-way and started again, and afterwards the
//! database holds exactly what one process computes from the same events.
//! Only on PostgreSQL: SQLite is one process's database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use admit::simulate::{Event, Purchase};
use admit::{ManualClock, SystemClock};
use admit_core::WorkspaceId;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::RwLock;

use crate::helpers::{
    APP_TOKEN, PRIMARY_SECRET, database_url, on_postgres, prepare_database, spawn_app_in_with,
};

const WORKSPACES: usize = 2_000;
const PRICE: &str = "price_AdmitProMonthly01";
const DAY: i64 = 86_400;
const INSTANCES: usize = 3;

fn owner(workspace: &str) -> String {
    format!("owner@{workspace}.test")
}

/// Each workspace's purchase and what happens to it over four months: a
/// renewal for all, a failed renewal for two in three, a scheduled or an
/// immediate cancellation for some, a dispute for one in sixteen (a held
/// case), and one purchaser in twenty who is not the workspace's owner.
fn lifecycles(now: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for n in 0..WORKSPACES {
        let workspace = format!("ws_multi{n:05}");
        let email = if n % 20 == 7 {
            format!("someone{n}@elsewhere.test")
        } else {
            owner(&workspace)
        };
        let mut purchase = Purchase::new(&email, Some(&workspace), PRICE);
        let start = now - 120 * DAY + i64::try_from(n).unwrap_or(0);
        purchase.t = start;
        purchase.created = Some(start);
        events.extend(purchase.checkout());
        purchase.t = start + 30 * DAY;
        events.extend(purchase.renewal());
        if n % 3 != 0 {
            purchase.t = start + 60 * DAY;
            events.extend(purchase.renewal_failed());
        }
        purchase.t = start + 61 * DAY;
        match n % 8 {
            1 | 2 => events.extend(purchase.cancel(true)),
            5 => events.extend(purchase.cancel(false)),
            _ => {}
        }
        if n % 16 == 3 {
            purchase.t = start + 62 * DAY;
            events.extend(purchase.dispute());
        }
    }
    events
}

/// Every event once and 30 % of them twice, in a random order.
fn deliveries(events: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = events.to_vec();
    let mut rng = Rng::new();
    for event in events {
        if rng.below(100) < 30 {
            out.push(event.clone());
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("randomness");
        Self(u64::from_le_bytes(seed) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n.max(1) as u64).unwrap_or(0)
    }
}

struct Instance {
    port: u16,
    child: Child,
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `admit serve` on `port`, processing in the background, its log (warnings
/// and errors) appended to `log`.
fn serve(dir: &Path, port: u16, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_admit"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "ADMIT_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
        )
        .env("ADMIT_LISTEN", format!("127.0.0.1:{port}"))
        .env("ADMIT_DATABASE_URL", database_url(dir))
        .env("ADMIT_DATABASE_POOL_SIZE", "8")
        .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
        .env("ADMIT_APP_TOKEN", APP_TOKEN)
        .env("ADMIT_OUTBOX_SETTLE_SECS", "0")
        .env("ADMIT_SUPPORT_EMAIL", "support@admit.test")
        .env(
            "ADMIT_MAIL_URL",
            format!("file://{}", dir.join(format!("mail-{port}")).display()),
        )
        .env("ADMIT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("admit starts")
}

async fn ready(client: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("admit on {port} did not become ready");
}

/// Posts one event as Stripe does: to whichever instance the balancer picks,
/// and again (elsewhere) until one answers 2xx, which means it is stored.
async fn deliver(client: &reqwest::Client, ports: &[u16], event: &Event, rng_seed: usize) {
    for attempt in 0..200 {
        let port = ports[(rng_seed + attempt) % ports.len()];
        let now = admit::Clock::now(&SystemClock);
        let header = admit_stripe::signature::sign(&event.body, PRIMARY_SECRET, now);
        let sent = client
            .post(format!("http://127.0.0.1:{port}/webhooks/stripe"))
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            .body(event.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                assert!(
                    status.is_server_error(),
                    "{} refused with {status}: {text}",
                    event.id
                );
            }
            // The instance is down (killed, restarting): Stripe retries.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was never accepted", event.id);
}

fn admin(workspace: &str) -> String {
    format!("ops@{workspace}.test")
}

/// An operator adds an admin through whichever instance answers; a 5xx
/// fails the test (an instance that is down is tried again elsewhere).
async fn add_admin(client: &reqwest::Client, ports: &[u16], workspace: &str, seed: usize) {
    for attempt in 0..200 {
        let port = ports[(seed + attempt) % ports.len()];
        let sent = client
            .put(format!(
                "http://127.0.0.1:{port}/v1/workspaces/{workspace}/members/{}",
                admin(workspace)
            ))
            .bearer_auth(APP_TOKEN)
            .json(&json!({"role": "admin"}))
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                assert!(status.is_success(), "{workspace}: {status} {text}");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no instance answered for {workspace}");
}

/// What a database ends with: billing per workspace, outbox keys, held
/// cases by key, and events not settled.
#[derive(Debug, PartialEq)]
struct Outcome {
    billing: BTreeMap<String, Option<admit_core::BillingState>>,
    outbox: usize,
    cases: BTreeMap<String, (String, String)>,
    events: usize,
}

async fn outcome(url: &str, workspaces: &[String]) -> Outcome {
    let store = admit_store::connect(url).await.expect("store");
    let mut billing = BTreeMap::new();
    for workspace in workspaces {
        let id = WorkspaceId::parse(workspace.clone()).expect("id");
        billing.insert(
            workspace.clone(),
            store.get_billing(&id).await.expect("billing"),
        );
    }
    store.close().await;
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM outbox")
        .fetch_all(&mut db)
        .await
        .expect("outbox");
    let outbox = keys.iter().collect::<BTreeSet<_>>().len();
    assert_eq!(outbox, keys.len(), "an outbox key exists twice");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT case_key, kind, state FROM cases")
            .fetch_all(&mut db)
            .await
            .expect("cases");
    let cases: BTreeMap<String, (String, String)> = rows
        .iter()
        .map(|(key, kind, state)| (key.clone(), (kind.clone(), state.clone())))
        .collect();
    assert_eq!(cases.len(), rows.len(), "a case exists twice");
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events")
        .fetch_one(&mut db)
        .await
        .expect("count");
    sqlx::Connection::close(db).await.expect("close");
    Outcome {
        billing,
        outbox,
        cases,
        events: usize::try_from(events).expect("count"),
    }
}

/// The file the folder transport writes for a message: its Message-ID's
/// local part.
fn expected_file(idempotency_key: &str) -> String {
    // The domain is not part of the file's name.
    let id = admit::mail::transport::message_id(idempotency_key, "any.domain");
    let local = id
        .trim_start_matches('<')
        .split('@')
        .next()
        .unwrap_or_default();
    format!("{local}.eml")
}

/// The keys of the outbox messages still pending.
async fn pending_messages(url: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let pending: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM outbox WHERE state = 'pending'")
            .fetch_all(&mut db)
            .await
            .expect("pending messages");
    sqlx::Connection::close(db).await.expect("close");
    pending
}

/// The outbox messages recorded as sent: key, kind and attempts.
async fn sent_messages(url: &str) -> Vec<(String, String, i64)> {
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let sent: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, kind, CAST(attempts AS BIGINT) FROM outbox WHERE state = 'sent'",
    )
    .fetch_all(&mut db)
    .await
    .expect("sent messages");
    sqlx::Connection::close(db).await.expect("close");
    sent
}

/// Waits until no event is left to process (none received, none failed)
/// and no message is due to be sent.
async fn settled(url: &str, within: Duration) {
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let begun = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM stripe_events WHERE status IN ('received', 'failed'))
                  + (SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1)",
        )
        .bind(admit::Clock::now(&SystemClock).unix())
        .fetch_one(&mut db)
        .await
        .expect("count");
        if left == 0 {
            return;
        }
        assert!(
            begun.elapsed() < within,
            "{left} events still unsettled after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_nothing_send_nothing_twice_and_end_as_one_process_would() {
    if !on_postgres() {
        eprintln!("several instances share a PostgreSQL database; this pass runs on SQLite");
        return;
    }
    let now = admit::Clock::now(&SystemClock).unix();
    let events = lifecycles(now);
    let sprayed = deliveries(&events);
    assert!(sprayed.len() >= 20_000, "{} deliveries", sprayed.len());
    let workspaces: Vec<String> = (0..WORKSPACES).map(|n| format!("ws_multi{n:05}")).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build()
        .expect("client");

    let dir = tempfile::tempdir().expect("dir");
    prepare_database(dir.path()).await;
    let log = dir.path().join("instances.log");
    // Migrated once, as a deploy does before starting instances.
    let migrate = Command::new(env!("CARGO_BIN_EXE_admit"))
        .arg("migrate")
        .env("ADMIT_DATABASE_URL", database_url(dir.path()))
        .env(
            "ADMIT_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
        )
        .env("ADMIT_LOG", "warn")
        .status()
        .expect("admit migrate");
    assert!(migrate.success());
    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|_| {
            let port = free_port();
            Instance {
                port,
                child: serve(dir.path(), port, &log),
                log: log.clone(),
            }
        })
        .collect();
    for instance in &instances {
        ready(&client, instance.port).await;
    }
    let ports: Arc<RwLock<Vec<u16>>> =
        Arc::new(RwLock::new(instances.iter().map(|i| i.port).collect()));

    // The workspaces, through any instance.
    futures::stream::iter(workspaces.iter().enumerate())
        .for_each_concurrent(16, |(n, workspace)| {
            let client = client.clone();
            let port = instances[n % INSTANCES].port;
            async move {
                let response = client
                    .post(format!("http://127.0.0.1:{port}/v1/workspaces"))
                    .bearer_auth(APP_TOKEN)
                    .json(&json!({"id": workspace, "name": workspace, "owner_email": owner(workspace)}))
                    .send()
                    .await
                    .expect("create workspace");
                assert_eq!(response.status().as_u16(), 201);
            }
        })
        .await;

    // Sprayed at once; halfway through, one instance dies without warning
    // and comes back a moment later on the same address.
    let sent = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let spray = {
        let client = client.clone();
        let sent = sent.clone();
        let ports = ports.clone();
        let sprayed = sprayed.clone();
        tokio::spawn(async move {
            futures::stream::iter(sprayed.into_iter().enumerate())
                .for_each_concurrent(24, |(n, event)| {
                    let client = client.clone();
                    let ports = ports.clone();
                    let sent = sent.clone();
                    async move {
                        let live = ports.read().await.clone();
                        deliver(&client, &live, &event, n.wrapping_mul(2_654_435_761)).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        })
    };
    // Operators work meanwhile, through any instance: each change crosses
    // the commits of its workspace's events and must still be answered,
    // not refused with a 500.
    let operators = {
        let client = client.clone();
        let ports = ports.clone();
        let workspaces = workspaces.clone();
        tokio::spawn(async move {
            futures::stream::iter(workspaces.into_iter().enumerate().step_by(5))
                .for_each_concurrent(4, |(n, workspace)| {
                    let client = client.clone();
                    let ports = ports.clone();
                    async move {
                        let live = ports.read().await.clone();
                        add_admin(&client, &live, &workspace, n).await;
                    }
                })
                .await;
        })
    };
    while sent.load(Ordering::Relaxed) < sprayed.len() / 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = &mut instances[1];
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reaped");
    tokio::time::sleep(Duration::from_secs(1)).await;
    victim.child = serve(dir.path(), victim.port, &victim.log);
    ready(&client, victim.port).await;
    spray.await.expect("every delivery accepted");
    operators.await.expect("every operator change answered");

    let url = database_url(dir.path());
    settled(&url, Duration::from_secs(900)).await;
    eprintln!(
        "{} deliveries of {} events to {INSTANCES} instances (one killed and restarted) settled {:.1} s after the first",
        sprayed.len(),
        events.len(),
        began.elapsed().as_secs_f64()
    );
    let victim_port = instances[1].port;
    for instance in &mut instances {
        let _ = Command::new("kill")
            .args(["-TERM", &instance.child.id().to_string()])
            .status();
    }
    for instance in &mut instances {
        let _ = instance.child.wait();
    }
    let several = outcome(&url, &workspaces).await;
    let store = admit_store::connect(&url).await.expect("store");
    for workspace in workspaces.iter().step_by(5) {
        let found = store
            .get_workspace(&WorkspaceId::parse(workspace.clone()).expect("id"))
            .await
            .expect("read")
            .expect("the workspace");
        assert!(
            found
                .members
                .keys()
                .any(|email| email.as_str() == admin(workspace)),
            "{workspace} lost its admin"
        );
    }
    store.close().await;

    // The oracle: one process, the same events once each in creation order.
    let oracle_dir = Arc::new(tempfile::tempdir().expect("dir"));
    let oracle = spawn_app_in_with(
        oracle_dir.clone(),
        Arc::new(ManualClock::new(admit::Clock::now(&SystemClock))),
        &[],
    )
    .await;
    for workspace in &workspaces {
        oracle
            .post_json(
                "/v1/workspaces",
                &json!({"id": workspace, "name": workspace, "owner_email": owner(workspace)}),
            )
            .await
            .expect(201);
    }
    for chunk in events.chunks(500) {
        for event in chunk {
            oracle
                .post_signed(&event.body, PRIMARY_SECRET)
                .await
                .expect(200);
        }
        oracle.drain().await;
    }
    let one = outcome(&database_url(oracle_dir.path()), &workspaces).await;

    assert_eq!(
        several.events,
        events.len(),
        "an event was lost or stored twice"
    );
    assert_eq!(one.events, events.len());
    let differing: Vec<&String> = workspaces
        .iter()
        .filter(|w| several.billing.get(*w) != one.billing.get(*w))
        .collect();
    assert!(
        differing.is_empty(),
        "{} workspaces differ from one process, e.g. {:?}: {:?} vs {:?}",
        differing.len(),
        differing[0],
        several.billing.get(differing[0]),
        one.billing.get(differing[0])
    );
    // The outbox is not compared with one process's: a notice warranted
    // when its event was processed (the welcome of a purchase whose
    // cancellation had not arrived yet) stays sent, so which notices exist
    // depends on the order events arrived in. Each key exists once (checked
    // in `outcome`) and each message went out once (below).
    assert_eq!(several.cases, one.cases, "the held cases differ");
    assert!(
        one.cases.values().any(|(_, state)| state == "held"),
        "the disputes hold cases"
    );

    // Each message went out once: a message's file (named after its
    // idempotency key) in two instances' folders was sent twice, which only
    // the killed instance may have caused (sent, then killed before it
    // recorded so; at-least-once is all SMTP allows there).
    let mut senders: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for instance in &instances {
        let folder = dir.path().join(format!("mail-{}", instance.port));
        for entry in std::fs::read_dir(&folder).into_iter().flatten() {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            senders.entry(name).or_default().push(instance.port);
        }
    }
    for (name, ports) in &senders {
        assert!(
            ports.len() == 1 || ports.contains(&victim_port),
            "{name} was sent by {ports:?}"
        );
    }
    // At most the messages in flight when the kill came: what one sender
    // claims at once (8).
    let twice = senders.values().filter(|ports| ports.len() > 1).count();
    assert!(twice <= 8, "{twice} messages sent twice");
    // Each message recorded as sent has its file, named after its
    // Message-ID; a file left half-written by the kill is a temporary one.
    let sent = sent_messages(&url).await;
    let missing: Vec<&(String, String, i64)> = sent
        .iter()
        .filter(|(key, _, _)| !senders.contains_key(&expected_file(key)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} messages recorded as sent have no file (key, kind, attempts): {:?}",
        missing.len(),
        sent.len(),
        &missing[..missing.len().min(10)]
    );
    // A message is recorded as sent after its file is written: only the
    // killed instance may have left a file of one it did not record, or a
    // shutdown that cut a send short (the message is pending again).
    let recorded: BTreeSet<String> = sent.iter().map(|(key, _, _)| expected_file(key)).collect();
    let pending: BTreeSet<String> = pending_messages(&url)
        .await
        .iter()
        .map(|key| expected_file(key))
        .collect();
    let stray: Vec<(&String, &Vec<u16>)> = senders
        .iter()
        .filter(|(name, ports)| {
            !name.starts_with('.')
                && !recorded.contains(*name)
                && !pending.contains(*name)
                && **ports != [victim_port]
        })
        .collect();
    assert!(
        stray.is_empty(),
        "files of messages not recorded as sent: {stray:?}"
    );

    // Nothing went wrong quietly: no deadlock or serialisation failure, no
    // error the instances logged.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for line in logged.lines() {
        assert!(
            !line.contains("ERROR")
                && !line.contains("deadlock")
                && !line.contains("could not serialize"),
            "an instance logged: {line}"
        );
    }
}
