//! Crash safety of the real binary (issue 14, item 11): `admit serve` takes
//! bursts of signed purchases from several clients at once and is SIGKILLed
//! at a random moment, several times; after each kill it is started again on
//! the same port and database and what got no 2xx is posted again, as Stripe
//! would. At the end:
//!
//! - every event acknowledged with a 2xx was stored (checked after every
//!   restart) and, once settled, processed (`processed`, `held` or `ignored`);
//! - each workspace's billing equals that of an uninterrupted, in-order run of
//!   the same events through an in-process app;
//! - no outbox idempotency key is there twice;
//! - each message (by `Message-ID`) reached the SMTP server once, except
//!   that a message the transport accepted from a process killed before it
//!   could mark the row sent may arrive once more from the next process
//!   (at-least-once delivery, see `src/mail/sender.rs`). That is allowed
//!   only where it can be shown: the copies straddle a kill and the row was
//!   not `sent` in the database the killed process left behind.
//!
//! Mail goes to the SMTP test server (`tests/it/smtp_server.py`), not the
//! mail folder: the folder transport names a file by its `Message-ID` and
//! overwrites it on a resend, so it cannot show a second delivery.
//!
//! `ADMIT_CRASH_TRIALS` (default 3, a few seconds) sets how many kills;
//! `ADMIT_CRASH_SEED` replays a run's choices: the purchase stories, each
//! kill point (after how many answers, or how long after the last) and the
//! re-post order (the seed is printed; the event ids are fresh every run,
//! and the interleaving of the clients is the scheduler's).
//!
//! A kill leaves the dead process's leases in the database (60 s on events,
//! 15 s on messages); waiting them out would not fit the test command's
//! minute, so before the last start (and before a random half of the
//! others) the test gives them back the way a graceful shutdown does, as if
//! the machine had been down longer than the leases.
//! `ADMIT_CRASH_WAIT_LEASES=1` never does and waits them out (over a minute).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use admit::simulate::{Event, Purchase};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::helpers::{APP_TOKEN, PRIMARY_SECRET, deliver_signed, spawn_app_in_with};

/// Clients posting at once.
const CLIENTS: usize = 4;
/// New purchases (one workspace each) per trial.
const WORKSPACES_PER_TRIAL: usize = 16;
/// A kill after the burst has been answered comes this long after it, at most.
const MAX_KILL_DELAY_AFTER_MS: u64 = 800;
const PRICE: &str = "price_AdmitProMonthly01";
const DAY: i64 = 86_400;

/// xorshift64*: enough randomness for timings and choices, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).expect("fits");
            items.swap(i, j);
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {raw:?}")),
    )
}

fn unix_now() -> i64 {
    admit::Clock::now(&admit::SystemClock).unix()
}

/// One event to deliver, and the workspace it is about.
#[derive(Clone)]
struct Planned {
    workspace: String,
    event: Event,
}

/// A workspace and the purchase story told about it: a checkout, and
/// sometimes what came after (a renewal, a failed renewal, a cancellation
/// now or at the period end, a dispute), or a purchaser who is not the owner.
fn story(rng: &mut Rng, workspace: &str, owner: &str) -> (Vec<Event>, &'static str) {
    let kind = rng.below(7);
    let purchaser = if kind == 6 {
        owner.replace("owner@", "billing@")
    } else {
        owner.to_owned()
    };
    let mut purchase = Purchase::new(&purchaser, Some(workspace), PRICE);
    // Bought 40 days ago: the period ends (renewed or not) far from now.
    let start = unix_now() - 40 * DAY;
    purchase.t = start;
    purchase.created = Some(start);
    let mut events = purchase.checkout();
    let later = |days: i64| {
        let mut p = purchase.clone();
        p.t = start + days * DAY;
        p
    };
    let name = match kind {
        1 => {
            events.extend(later(30).renewal());
            "renewal"
        }
        2 => {
            events.extend(later(30).renewal_failed());
            "renewal_failed"
        }
        3 => {
            events.extend(later(10).cancel(true));
            "cancel_at_period_end"
        }
        4 => {
            events.extend(later(10).cancel(false));
            "cancel_now"
        }
        5 => {
            events.extend(later(5).dispute());
            "dispute"
        }
        6 => "other_purchaser",
        _ => "checkout",
    };
    (events, name)
}

/// `admit serve` as a child process on a fixed port and database.
struct Admit {
    dir: PathBuf,
    port: u16,
    smtp_url: String,
    child: Option<Child>,
    client: reqwest::Client,
}

impl Drop for Admit {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Admit {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("admit.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn spawn(&self) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("admit's log");
        Command::new(env!("CARGO_BIN_EXE_admit"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "ADMIT_CONFIG",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
            )
            .env("ADMIT_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "ADMIT_DATABASE_URL",
                crate::helpers::database_url(&self.dir),
            )
            .env("ADMIT_WEBHOOK_SECRETS", PRIMARY_SECRET)
            .env("ADMIT_APP_TOKEN", APP_TOKEN)
            .env("ADMIT_OUTBOX_SETTLE_SECS", "0")
            .env("ADMIT_MAIL_URL", &self.smtp_url)
            .env("ADMIT_SUPPORT_EMAIL", "support@admit.test")
            .env("ADMIT_LOG", "warn")
            .env("ADMIT_PUBLIC_RATE_PER_MINUTE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("admit starts")
    }

    /// Starts admit and waits until `/readyz` answers 200. The port of a
    /// killed process may take a moment to be free again: an exit before
    /// ready is retried for a while.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "admit is already running");
        // No connection of the killed process's is reused.
        self.client = reqwest::Client::new();
        // Generous: the suite runs beside this test on a loaded 2-core box.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut child = self.spawn();
        loop {
            if let Ok(response) = self
                .client
                .get(format!("{}/readyz", self.base()))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                && response.status().is_success()
            {
                self.child = Some(child);
                return;
            }
            if let Some(status) = child.try_wait().expect("status") {
                assert!(
                    Instant::now() < deadline,
                    "admit keeps exiting before it is ready ({status}):\n{}",
                    self.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                child = self.spawn();
                continue;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("admit did not become ready:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and reaps the process.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("admit is running");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "admit had exited on its own before the kill ({status}):\n{}",
            self.log_tail()
        );
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base()))
            .bearer_auth(APP_TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path} answered {status}: {body}");
        body
    }

    /// Every item of a paged list (`key` is the array's name).
    async fn all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page = self
                .get(&match &cursor {
                    Some(cursor) => format!("{path}{separator}limit=1000&cursor={cursor}"),
                    None => format!("{path}{separator}limit=1000"),
                })
                .await;
            items.extend(page[key].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }

    async fn create_workspace(&self, id: &str, owner: &str) {
        let response = self
            .client
            .post(format!("{}/v1/workspaces", self.base()))
            .bearer_auth(APP_TOKEN)
            .json(&json!({"id": id, "name": id, "owner_email": owner}))
            .send()
            .await
            .expect("create a workspace");
        assert_eq!(response.status().as_u16(), 201, "create {id}");
    }
}

/// The SMTP test server (`tests/it/smtp_server.py`) in a folder of the
/// test's own, started once for the whole run: it stores each message it
/// accepts as `<n>.json` (headers included), numbered in arrival order, the
/// file's time being when it was accepted.
struct Smtp {
    port: u16,
    folder: PathBuf,
    child: Child,
}

/// One message the SMTP server accepted.
struct Delivered {
    /// Its arrival number, from 1.
    number: usize,
    message_id: String,
    at: SystemTime,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    async fn start(dir: &Path) -> Self {
        let port = crate::smtp::free_port();
        let folder = dir.join("smtp");
        std::fs::create_dir_all(&folder).expect("smtp folder");
        let log = std::fs::File::create(folder.join("server.log")).expect("smtp log");
        let child = Command::new(crate::helpers::test_python(
            "aiosmtpd",
            "the crash-safety test",
        ))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py"))
        .args(["--port", &port.to_string()])
        .arg("--maildir")
        .arg(folder.join("received"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start the SMTP server");
        let mut smtp = Self {
            port,
            folder,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            let log = std::fs::read_to_string(smtp.folder.join("server.log")).unwrap_or_default();
            assert!(
                smtp.child.try_wait().expect("status").is_none(),
                "the SMTP server exited: {log}"
            );
            assert!(
                Instant::now() < deadline,
                "the SMTP server did not listen: {log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        smtp
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Delivered> {
        let Ok(entries) = std::fs::read_dir(self.folder.join("received")) else {
            return Vec::new();
        };
        let mut delivered: Vec<Delivered> = entries
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .map(|path| {
                let number = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .expect("a numbered message");
                let parsed: Value = serde_json::from_str(
                    &std::fs::read_to_string(&path).expect("read a received message"),
                )
                .expect("JSON");
                Delivered {
                    number,
                    message_id: parsed["headers"]["message-id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    at: std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .expect("mtime"),
                }
            })
            .collect();
        delivered.sort_by_key(|d| d.number);
        delivered
    }
}

/// How admit answered one post: its status (`None` when no answer came)
/// and whether it said it had the event already.
#[derive(Clone, Copy)]
struct Answer {
    status: Option<u16>,
    duplicate: bool,
}

/// Posts one event signed now.
async fn post(client: &reqwest::Client, base: &str, event: &Event) -> Answer {
    let now = admit::Clock::now(&admit::SystemClock);
    let header = admit_stripe::signature::sign(&event.body, PRIMARY_SECRET, now);
    let response = client
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(event.body.clone())
        .send()
        .await;
    let Ok(response) = response else {
        return Answer {
            status: None,
            duplicate: false,
        };
    };
    // The status line is the acknowledgement: admit answers once the
    // event is committed, so a body cut by the kill changes nothing.
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Answer {
        status: Some(status),
        duplicate: body["duplicate"] == true,
    }
}

/// What the clients saw, over the whole run.
#[derive(Default)]
struct Ledger {
    posts: usize,
    acknowledged: BTreeSet<String>,
    reposts: usize,
    /// Posted again and answered "duplicate": stored before the kill cut
    /// the answer to an earlier post.
    stored_unanswered: usize,
    /// Answers other than 2xx (no answer is 0).
    refused: BTreeMap<u16, usize>,
}

impl Ledger {
    fn record(&mut self, event: &Planned, answer: Answer, posted_before: bool) -> bool {
        self.posts += 1;
        if posted_before {
            self.reposts += 1;
        }
        match answer.status {
            Some(status) if (200..300).contains(&status) => {
                self.stored_unanswered += usize::from(posted_before && answer.duplicate);
                self.acknowledged.insert(event.event.id.clone());
                true
            }
            other => {
                *self.refused.entry(other.unwrap_or(0)).or_default() += 1;
                false
            }
        }
    }
}

/// Posts every event, a client per lane (each its lane in order); the
/// answers by index. `answered` counts the posts done, for the killer.
async fn burst(
    base: &str,
    lanes: Vec<Vec<(usize, Planned)>>,
    answered: Arc<AtomicUsize>,
) -> Vec<(usize, Answer)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let client = client.clone();
            let base = base.to_owned();
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for (index, planned) in lane {
                    answers.push((index, post(&client, &base, &planned.event).await));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("client task"));
    }
    answers
}

/// The SMTP server's count of messages, once it has stopped changing (a
/// message whose DATA was complete when the sender died is still stored).
async fn settled_mail_count(smtp: &Smtp) -> usize {
    let mut count = smtp.received().len();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = smtp.received().len();
        if again == count {
            return count;
        }
        count = again;
    }
}

/// The outbox as the killed process left it: idempotency key → state.
async fn outbox_states(db: &mut sqlx::AnyConnection) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT idempotency_key, state FROM outbox")
        .fetch_all(&mut *db)
        .await
        .expect("read the outbox");
    rows.into_iter().collect()
}

/// Gives back the leases a killed process held, as its graceful shutdown
/// would have (`release_event`, `release_message`): as if it had been down
/// longer than the leases.
async fn expire_leases(db: &mut sqlx::AnyConnection) {
    for statement in [
        "UPDATE stripe_events SET lease_until = NULL WHERE status IN ('received', 'failed')",
        "UPDATE outbox SET lease_until = NULL WHERE state = 'pending'",
    ] {
        sqlx::query(statement)
            .execute(&mut *db)
            .await
            .expect("release the leases");
    }
}

/// The part of a `Message-ID` admit derives from the idempotency key.
fn message_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_bursts_loses_and_doubles_nothing() {
    let begun = Instant::now();
    let seed = env_number("ADMIT_CRASH_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        u64::try_from(nanos % u128::from(u64::MAX)).expect("fits") ^ u64::from(std::process::id())
    });
    let trials = usize::try_from(env_number("ADMIT_CRASH_TRIALS").unwrap_or(3))
        .expect("fits")
        .max(1);
    let wait_leases = std::env::var("ADMIT_CRASH_WAIT_LEASES").is_ok_and(|v| v == "1");
    eprintln!(
        "crash safety: ADMIT_CRASH_SEED={seed} ADMIT_CRASH_TRIALS={trials} on {}",
        if crate::helpers::on_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let mut rng = Rng::new(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    crate::helpers::prepare_database(dir.path()).await;
    let smtp = Smtp::start(dir.path()).await;
    let mut admit = Admit {
        dir: dir.path().to_owned(),
        port: crate::smtp::free_port(),
        smtp_url: smtp.url(),
        child: None,
        client: reqwest::Client::new(),
    };
    admit.start().await;

    let mut workspaces: Vec<(String, String)> = Vec::new();
    let mut all_events: Vec<Planned> = Vec::new();
    let mut stories: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ledger = Ledger::default();
    // Posted and not acknowledged: to post again after the restart.
    let mut unanswered: Vec<Planned> = Vec::new();
    // After kill k: the SMTP server's message count, and the outbox's states.
    let mut boundaries: Vec<usize> = Vec::new();
    let mut outbox_at_kill: Vec<BTreeMap<String, String>> = Vec::new();
    let mut kills_while_posting = 0;
    let mut kill_times: Vec<SystemTime> = Vec::new();

    for trial in 0..trials {
        // New purchases, their workspaces made first (before the killer runs).
        let mut fresh: Vec<Planned> = Vec::new();
        for n in 0..WORKSPACES_PER_TRIAL {
            let workspace = format!("ws_crash_{trial}_{n}");
            let owner = format!("owner@crash{trial}x{n}.test");
            admit.create_workspace(&workspace, &owner).await;
            let (events, name) = story(&mut rng, &workspace, &owner);
            *stories.entry(name).or_default() += 1;
            for event in events {
                fresh.push(Planned {
                    workspace: workspace.clone(),
                    event,
                });
            }
            workspaces.push((workspace, owner));
        }
        all_events.extend(fresh.iter().cloned());

        // Each client: its share of the re-posts (shuffled: Stripe retries
        // each event on its own schedule), then its workspaces' events in order.
        let mut again = std::mem::take(&mut unanswered);
        rng.shuffle(&mut again);
        let reposted_ids: BTreeSet<String> = again.iter().map(|p| p.event.id.clone()).collect();
        let planned: Vec<Planned> = again.into_iter().chain(fresh).collect();
        let mut lanes: Vec<Vec<(usize, Planned)>> = vec![Vec::new(); CLIENTS];
        let lane_of: BTreeMap<&str, usize> = workspaces
            .iter()
            .enumerate()
            .map(|(i, (w, _))| (w.as_str(), i % CLIENTS))
            .collect();
        for (index, p) in planned.iter().enumerate() {
            let lane = if reposted_ids.contains(&p.event.id) {
                index % CLIENTS
            } else {
                lane_of[p.workspace.as_str()]
            };
            lanes[lane].push((index, p.clone()));
        }

        // The kill point: after a random number of answers (requests in
        // flight then), or a random moment after the last answer (events
        // being processed, messages being sent), about one time in four.
        let total = planned.len();
        let target = usize::try_from(rng.below(total as u64 * 4 / 3 + 1)).expect("fits");
        let after = Duration::from_millis(rng.below(MAX_KILL_DELAY_AFTER_MS));
        let answered = Arc::new(AtomicUsize::new(0));
        let base = admit.base();
        let posting = tokio::spawn({
            let answered = answered.clone();
            async move { burst(&base, lanes, answered).await }
        });
        let when = if target < total {
            let deadline = Instant::now() + Duration::from_secs(30);
            while answered.load(Ordering::SeqCst) < target && !posting.is_finished() {
                assert!(Instant::now() < deadline, "the burst stalls");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            format!(
                "after {} of {total} answers",
                answered.load(Ordering::SeqCst)
            )
        } else {
            while !posting.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(after).await;
            format!("{after:?} after the last of {total} answers")
        };
        kills_while_posting += usize::from(!posting.is_finished());
        kill_times.push(SystemTime::now());
        admit.kill();
        let answers = posting.await.expect("burst");
        for (index, answer) in answers {
            let p = &planned[index];
            if !ledger.record(p, answer, reposted_ids.contains(&p.event.id)) {
                unanswered.push(p.clone());
            }
        }

        boundaries.push(settled_mail_count(&smtp).await);
        let mut db = crate::helpers::open_database(dir.path()).await;
        outbox_at_kill.push(outbox_states(&mut db).await);
        let last = trial + 1 == trials;
        if !wait_leases && (last || rng.below(2) == 0) {
            expire_leases(&mut db).await;
        }
        db.close().await.expect("close");
        admit.start().await;

        // What was acknowledged before the kill is there after it.
        let stored: BTreeSet<String> = admit
            .all("/v1/events", "events")
            .await
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        let lost: Vec<&String> = ledger.acknowledged.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "trial {trial} (ADMIT_CRASH_SEED={seed}): acknowledged events missing after the kill: {lost:?}"
        );
        eprintln!(
            "  trial {trial}: killed {when}; {} posts unanswered",
            unanswered.len(),
        );
    }

    // Stripe keeps retrying what got no 2xx: post it until it does.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !unanswered.is_empty() {
        assert!(
            Instant::now() < deadline,
            "events still refused after the last restart: {}",
            unanswered.len()
        );
        let mut still = Vec::new();
        for p in std::mem::take(&mut unanswered) {
            let answer = post(&client, &admit.base(), &p.event).await;
            if !ledger.record(&p, answer, true) {
                still.push(p);
            }
        }
        if !still.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unanswered = still;
    }

    // Let it settle: nothing left to process or to send.
    let settle_begun = Instant::now();
    let deadline = settle_begun + Duration::from_secs(if wait_leases { 180 } else { 90 });
    loop {
        let received = admit.get("/v1/events?status=received&limit=1").await;
        let failed = admit.get("/v1/events?status=failed&limit=1").await;
        let pending = admit.get("/v1/outbox?state=pending&limit=1").await;
        let busy = [&received["events"], &failed["events"], &pending["messages"]]
            .iter()
            .any(|list| list.as_array().is_some_and(|a| !a.is_empty()));
        if !busy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admit did not settle (ADMIT_CRASH_SEED={seed}): received {received}, failed {failed}, pending {pending}\n{}",
            admit.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle_time = settle_begun.elapsed();

    // Every event stored once and processed.
    let stored: BTreeMap<String, Value> = admit
        .all("/v1/events", "events")
        .await
        .into_iter()
        .filter_map(|e| Some((e["id"].as_str()?.to_owned(), e)))
        .collect();
    assert_eq!(ledger.acknowledged.len(), all_events.len());
    for p in &all_events {
        let event = stored
            .get(&p.event.id)
            .unwrap_or_else(|| panic!("acknowledged event {} is not stored", p.event.id));
        assert!(
            matches!(
                event["status"].as_str(),
                Some("processed" | "held" | "ignored")
            ),
            "event {} ({}) is not processed: {event}",
            p.event.id,
            p.event.event_type
        );
    }
    assert_eq!(stored.len(), all_events.len(), "no event stored twice");

    // The same events, once each, in order, without a crash.
    let reference = {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let clock = Arc::new(admit::ManualClock::new(admit::Clock::now(
            &admit::SystemClock,
        )));
        let app = spawn_app_in_with(dir, clock, &[]).await;
        for (workspace, owner) in &workspaces {
            app.post_json(
                "/v1/workspaces",
                &json!({"id": workspace, "name": workspace, "owner_email": owner}),
            )
            .await
            .expect(201);
        }
        let events: Vec<Event> = all_events.iter().map(|p| p.event.clone()).collect();
        deliver_signed(&app, &events).await;
        app.drain().await;
        app.drain_mail().await;
        let mut billing = BTreeMap::new();
        for (workspace, _) in &workspaces {
            billing.insert(
                workspace.clone(),
                app.get(&format!("/v1/workspaces/{workspace}/billing"))
                    .await
                    .expect(200),
            );
        }
        let mut outcomes: BTreeMap<String, Value> = BTreeMap::new();
        let mut path = "/v1/events?limit=1000".to_owned();
        loop {
            let page = app.get(&path).await.expect(200);
            for event in page["events"].as_array().cloned().unwrap_or_default() {
                let id = event["id"].as_str().expect("an id").to_owned();
                outcomes.insert(id, event);
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/events?limit=1000&cursor={cursor}"),
                None => break,
            }
        }
        app.stop().await;
        (billing, outcomes)
    };
    let (reference_billing, reference_outcomes) = reference;
    for (workspace, _) in &workspaces {
        let billing = admit
            .get(&format!("/v1/workspaces/{workspace}/billing"))
            .await;
        assert_eq!(
            billing, reference_billing[workspace],
            "billing of {workspace} differs from an uninterrupted run (ADMIT_CRASH_SEED={seed})"
        );
    }
    let mut outcome_differences = Vec::new();
    for (id, event) in &stored {
        let reference = &reference_outcomes[id];
        let pick = |e: &Value| (e["status"].clone(), e["outcome"].clone());
        if pick(event) != pick(reference) {
            outcome_differences.push(format!(
                "{id} {}: {:?} vs uninterrupted {:?}",
                event["type"],
                pick(event),
                pick(reference)
            ));
        }
    }

    // The outbox: every key once.
    let outbox = admit.all("/v1/outbox", "messages").await;
    let mut keys: BTreeMap<String, &Value> = BTreeMap::new();
    for message in &outbox {
        let key = message["idempotency_key"]
            .as_str()
            .expect("a key")
            .to_owned();
        assert!(
            keys.insert(key.clone(), message).is_none(),
            "outbox key {key} is there twice"
        );
    }

    // The mail: each Message-ID once per process that got as far as
    // sending it and died before marking it sent.
    let by_hash: BTreeMap<String, &String> = keys.keys().map(|k| (message_hash(k), k)).collect();
    let received = smtp.received();
    let mut copies: BTreeMap<String, Vec<&Delivered>> = BTreeMap::new();
    for message in &received {
        let hash = message
            .message_id
            .trim()
            .trim_start_matches('<')
            .split('@')
            .next()
            .unwrap_or_default();
        let key = by_hash
            .get(hash)
            .unwrap_or_else(|| panic!("a message no outbox row warrants: {}", message.message_id));
        copies.entry((*key).clone()).or_default().push(message);
    }
    // The process a message came from: the number of kills before it arrived.
    let generation = |d: &Delivered| boundaries.iter().take_while(|b| d.number > **b).count();
    // A copy more is allowed only where the first was accepted from a
    // process that was killed before it marked the row sent: each pair of
    // copies straddles a kill, and the database that kill left shows the
    // row not `sent`. (So a key has at most one copy per process, one
    // more than the kills.)
    let mut duplicates = Vec::new();
    for (key, delivered) in &copies {
        for pair in delivered.windows(2) {
            let (first, second) = (generation(pair[0]), generation(pair[1]));
            let numbers = (pair[0].number, pair[1].number);
            assert!(
                first < second,
                "{key} was delivered twice by one process (messages {numbers:?}, ADMIT_CRASH_SEED={seed})"
            );
            let state = outbox_at_kill[first].get(key).map(String::as_str);
            assert_ne!(
                state,
                Some("sent"),
                "{key} was delivered again although the killed process had marked it sent \
                 (messages {numbers:?}, ADMIT_CRASH_SEED={seed})"
            );
            // When the SMTP server stored the first copy, against the kill:
            // before it, the window between acceptance and `mark_sent` was
            // open at least that long; after it, admit had sent the whole
            // message and was waiting for the server's answer.
            let when = match kill_times[first].duration_since(pair[0].at) {
                Ok(before) => format!("stored {before:?} before it"),
                Err(after) => format!("stored {:?} after it", after.duration()),
            };
            duplicates.push(format!("{key}: kill {first}, first copy {when}"));
        }
    }
    for (key, message) in &keys {
        if message["state"] == "sent" {
            assert!(
                copies.contains_key(key),
                "{key} is marked sent but the SMTP server never got it"
            );
        } else {
            assert_eq!(
                message["state"], "superseded",
                "{key} was neither sent nor withdrawn: {message}"
            );
        }
    }

    eprintln!(
        "crash safety: seed {seed}, {trials} trials ({kills_while_posting} kills while posting), \
         {} workspaces {stories:?}, {} events, {} posts, {} acknowledged, {} re-posted \
         ({} of them stored before the kill cut the answer), refused {:?} (0 = no answer), \
         {} messages in the outbox, {} received by SMTP, {} duplicates (each cut by a kill \
         between acceptance and mark_sent); settled in {settle_time:?}, {:?} in all",
        workspaces.len(),
        all_events.len(),
        ledger.posts,
        ledger.acknowledged.len(),
        ledger.reposts,
        ledger.stored_unanswered,
        ledger.refused,
        keys.len(),
        received.len(),
        duplicates.len(),
        begun.elapsed(),
    );
    for duplicate in duplicates.iter().take(5) {
        eprintln!("  duplicate {duplicate}");
    }
    if duplicates.len() > 5 {
        eprintln!("  … and {} more duplicates", duplicates.len() - 5);
    }
    if !outcome_differences.is_empty() {
        eprintln!(
            "outcomes that differ from the uninterrupted run ({}):\n  {}",
            outcome_differences.len(),
            outcome_differences.join("\n  ")
        );
    }
}
