//! `/readyz` proves a write (issue 14, items 1 and 2): a database that
//! cannot be written (a full disk, a read-only file or database) is not
//! ready, and once it can be written again, the next webhooks are stored at
//! once. The faults are real: a tmpfs filled to the last byte, a database
//! file made immutable, a PostgreSQL database whose sessions are read-only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use admit::ManualClock;
use serde_json::json;

use crate::helpers::{
    PRIMARY_SECRET, START, TestApp, database_path, database_url, on_postgres, spawn_app,
    spawn_app_in,
};

/// How long a probe's outcome stands (`WRITE_PROBE_SECS` in src/http/ops.rs).
const PROBE_SECS: i64 = 5;

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": "customer.created", "created": 1_795_000_000,
        "api_version": "2026-07-29.dahlia", "livemode": false, "pending_webhooks": 1,
        "data": {"object": {"id": "cus_R1", "object": "customer", "email": "dana@acme.test", "metadata": {}}}
    }))
    .expect("serialises")
}

/// The row of `readiness_probe` as `(probed_at, probes)`.
async fn probe_row(app: &TestApp) -> Option<(i64, i64)> {
    sqlx::query_as::<_, (i64, i64)>("SELECT probed_at, probes FROM readiness_probe")
        .fetch_optional(&mut app.database().await)
        .await
        .expect("read the probe row")
}

/// `/readyz` is 503 `not_ready` and says the database cannot be written,
/// with the database's own words (`cause`).
async fn expect_not_writable(app: &TestApp, cause: &str) {
    let body = app
        .get_without_token("/readyz")
        .await
        .expect_error(503, "not_ready");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot be written") && message.contains(cause),
        "{body}"
    );
}

/// `count` new events delivered one after another, each of which must be
/// stored at once (200). Sequential, so they go through every connection
/// the pool holds.
async fn deliver_all_stored(app: &TestApp, prefix: &str, count: usize) {
    for n in 0..count {
        let response = app
            .post_signed(&event(&format!("evt_{prefix}{n}")), PRIMARY_SECRET)
            .await;
        assert_eq!(
            response.status, 200,
            "delivery {n} after the fault was removed: {}",
            response.text
        );
    }
}

/// A load balancer polling every second does not write every second: the
/// probe's outcome stands for a few seconds of the app's clock.
#[tokio::test]
async fn readiness_writes_at_most_every_few_seconds() {
    let app = spawn_app().await;
    assert_eq!(probe_row(&app).await, None);
    for _ in 0..3 {
        let ready = app.get_without_token("/readyz").await.expect(200);
        assert_eq!(ready["status"], "ready");
    }
    assert_eq!(probe_row(&app).await, Some((START.unix(), 1)));
    app.clock.advance(PROBE_SECS - 1);
    app.get_without_token("/readyz").await.expect(200);
    assert_eq!(
        probe_row(&app).await,
        Some((START.unix(), 1)),
        "no new write yet"
    );
    app.clock.advance(1);
    app.get_without_token("/readyz").await.expect(200);
    assert_eq!(
        probe_row(&app).await,
        Some((START.unix() + PROBE_SECS, 2)),
        "written again"
    );
}

/// A disk that fills up (SQLite: a tmpfs of its own, filled to the last
/// byte): every webhook failed while `/readyz` said 200. Now it is 503
/// until there is room again, and then the next webhooks are stored at
/// once: the connections whose commits failed are not reused (they failed
/// every later `BEGIN` with "attempted to call begin_with at non-zero
/// transaction depth"). Skipped, saying so, on PostgreSQL (whose disk is
/// the server's) and where a tmpfs cannot be mounted (it needs root).
#[tokio::test]
async fn a_full_disk_is_not_ready_and_webhooks_are_stored_at_once_when_there_is_room() {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: fills a SQLite database's disk");
        return;
    }
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let app = spawn_app_in(disk.dir.clone(), Arc::new(ManualClock::new(START))).await;
    app.post_signed(&event("evt_before"), PRIMARY_SECRET)
        .await
        .expect(200);
    app.get_without_token("/readyz").await.expect(200);

    disk.fill(&database_url(disk.dir.path())).await;
    app.clock.advance(PROBE_SECS);
    expect_not_writable(&app, "full").await;
    for n in 0..3 {
        app.post_signed(&event(&format!("evt_full{n}")), PRIMARY_SECRET)
            .await
            .expect_error(500, "internal_error");
    }
    // Reads go on: access checks and the API still answer.
    app.get("/v1/events/evt_before").await.expect(200);

    disk.free();
    deliver_all_stored(&app, "after", 12).await;
    // The probe's outcome stood meanwhile; the next one finds room.
    expect_not_writable(&app, "full").await;
    app.clock.advance(PROBE_SECS);
    app.get_without_token("/readyz").await.expect(200);
    assert_eq!(app.event_count().await, 13);
    app.stop().await;
}

/// A database file that became read-only (made immutable: as root, file
/// modes do not stop writes): admit restarted on it serves reads while no
/// write can succeed, as SQLite opens a file it cannot write read-only,
/// quietly. `/readyz` is 503 until the file can be written again; then the
/// probe succeeds and the connections opened read-only are replaced, so
/// webhooks are stored again. Skipped, saying so, on PostgreSQL and where
/// a tmpfs cannot be mounted or its files made immutable.
#[tokio::test]
async fn a_read_only_database_file_is_not_ready_until_it_can_be_written() {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: makes a SQLite database file read-only");
        return;
    }
    let Some(disk) = Tmpfs::mount("64m") else {
        return;
    };
    let clock = Arc::new(ManualClock::new(START));
    let app = spawn_app_in(disk.dir.clone(), clock.clone()).await;
    app.post_signed(&event("evt_before"), PRIMARY_SECRET)
        .await
        .expect(200);
    app.stop().await;

    let Some(immutable) = Immutable::set(&database_path(disk.dir.path())) else {
        return;
    };
    let app = spawn_app_in(disk.dir.clone(), clock).await;
    expect_not_writable(&app, "readonly").await;
    app.post_signed(&event("evt_refused"), PRIMARY_SECRET)
        .await
        .expect_error(500, "internal_error");
    app.get("/v1/events/evt_before").await.expect(200);

    drop(immutable);
    app.clock.advance(PROBE_SECS);
    app.get_without_token("/readyz").await.expect(200);
    deliver_all_stored(&app, "after", 12).await;
    assert_eq!(app.event_count().await, 13);
    app.stop().await;
}

/// PostgreSQL's sessions become read-only (`default_transaction_read_only`,
/// as on a standby after a failover; the sessions admit held are ended so
/// it opens new ones): `/readyz` is 503. Once the database takes writes
/// again, `/readyz` is 200 by the second probe and the webhooks after it
/// are stored at once: the sessions opened read-only are replaced.
/// Skipped, saying so, on SQLite.
#[tokio::test]
async fn a_read_only_postgres_database_is_not_ready_until_it_can_be_written() {
    if !on_postgres() {
        eprintln!("SKIPPED on SQLite: makes a PostgreSQL database read-only");
        return;
    }
    let app = spawn_app().await;
    app.post_signed(&event("evt_before"), PRIMARY_SECRET)
        .await
        .expect(200);
    app.get_without_token("/readyz").await.expect(200);

    let mut db = app.database().await;
    let name: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
        .fetch_one(&mut db)
        .await
        .expect("the database's name");
    let run = |sql: String| {
        let url = database_url(app.dir.path());
        async move {
            use sqlx::Connection;
            let mut db = sqlx::AnyConnection::connect(&url).await.expect("connect");
            // A session of the test's own may write even while the fault stands.
            for sql in ["SET default_transaction_read_only = off".to_owned(), sql] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut db)
                    .await
                    .expect("statement");
            }
        }
    };
    run(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .await;
    // End admit's sessions: the ones it opens next are read-only.
    run(format!(
        "SELECT CAST(pg_terminate_backend(pid) AS TEXT) FROM pg_stat_activity
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;
    app.clock.advance(PROBE_SECS);
    expect_not_writable(&app, "read-only transaction").await;
    app.post_signed(&event("evt_refused"), PRIMARY_SECRET)
        .await
        .expect_error(500, "internal_error");
    app.get("/v1/events/evt_before").await.expect(200);

    run(format!(
        "ALTER DATABASE {name} RESET default_transaction_read_only"
    ))
    .await;
    let mut probes = 0;
    loop {
        app.clock.advance(PROBE_SECS);
        probes += 1;
        if app.get_without_token("/readyz").await.status == 200 {
            break;
        }
        assert!(probes < 2, "still not ready after {probes} probes");
    }
    deliver_all_stored(&app, "after", 12).await;
    assert_eq!(app.event_count().await, 13);
    app.stop().await;
}

/// A tmpfs of its own, of a fixed size, on a temporary folder: a disk that
/// can be filled for real. Unmounted when dropped.
struct Tmpfs {
    dir: Arc<tempfile::TempDir>,
}

impl Tmpfs {
    /// `None`, saying so on stderr, where mounting is not permitted.
    fn mount(size: &str) -> Option<Self> {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "SKIPPED: this test mounts a tmpfs (as root) for a disk it can fill or files it \
                 can make immutable, and mounting is not permitted here"
            );
            return None;
        }
        Some(Self { dir })
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Fills the disk to the last byte. First the write-ahead log of the
    /// database at `url` is truncated (a checkpoint): SQLite reuses a log's
    /// space once it is checkpointed, so a commit must need new space.
    async fn fill(&self, url: &str) {
        use sqlx::Connection;
        use std::io::Write as _;
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        let (busy,): (i64,) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .expect("checkpoint");
        assert_eq!(busy, 0, "the log is truncated");
        conn.close().await.expect("close");
        let mut file = std::fs::File::create(self.filler()).expect("filler");
        for chunk in [1 << 16, 1 << 12, 1 << 9] {
            while file.write_all(&vec![0; chunk]).is_ok() {}
        }
    }

    /// Makes room again.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a connection still closing must not keep it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A file made immutable (`chattr +i`): no one may open it for writing,
/// root included. Made mutable again when dropped.
struct Immutable(PathBuf);

impl Immutable {
    /// `None`, saying so on stderr, where the file system does not support it.
    fn set(path: &Path) -> Option<Self> {
        let output = Command::new("chattr").arg("+i").arg(path).output();
        match output {
            Ok(output) if output.status.success() => Some(Self(path.to_owned())),
            outcome => {
                eprintln!(
                    "SKIPPED: cannot make {} immutable: {outcome:?}",
                    path.display()
                );
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}
