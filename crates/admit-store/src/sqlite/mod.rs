//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! WAL lets readers run beside the one writer; `synchronous = FULL` because a
//! 2xx to Stripe promises the event survives a power cut; the busy timeout
//! turns writer contention into waiting instead of `SQLITE_BUSY`.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use admit_core::{EventId, Timestamp};
use sqlx::Connection as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

mod apply;
mod audit;

mod cases;
mod directory;
mod list;
mod operators;
mod ops;
mod outbox;
mod provisioning;
mod rows;
mod scope;
mod session;
mod signin;

use crate::events::{InsertOutcome, NewEvent, StoredEvent};
use crate::health::PoolHealth;
use crate::values::json_text;
use crate::{Store, StoreError, bodies, migrations};

/// Connections when `ADMIT_DATABASE_POOL_SIZE` does not say (3 and 16 were
/// measured too; 8 served access checks best, docs/benchmarks.md).
const DEFAULT_POOL: u32 = 8;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// How [`Store::check_writable`] opens its connection: the pool's
    /// options, except that a missing file is not created.
    probe: SqliteConnectOptions,
    /// Which idle connections the pool hands out again (see `health`).
    health: Arc<PoolHealth>,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// With `pool_size` connections (`ADMIT_DATABASE_POOL_SIZE`) instead of
    /// the default: SQLite has one writer whatever the size, so more only
    /// serve more reads at once.
    pub async fn connect_with(url: &str, pool_size: Option<u32>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Checkpoints are `maintain`'s, in the background; a commit only
            // checkpoints itself if that falls far behind.
            .pragma("wal_autocheckpoint", "16384");
        let health = Arc::new(PoolHealth::new());
        let keep = health.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size.unwrap_or(DEFAULT_POOL))
            // The ping on acquire runs behind a rollback a dropped
            // transaction queued; `before_acquire` relies on it.
            .test_before_acquire(true)
            // A connection left inside a transaction (a COMMIT on a full
            // disk failed, and so did the ROLLBACK after it) is closed, not
            // handed out to fail every BEGIN for good: see `health`.
            .before_acquire(move |conn, meta| {
                let keep = keep.keep(conn.is_in_transaction(), &meta);
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            probe: options.create_if_missing(false),
            health,
        })
    }
}

/// Rows a multi-row inbox insert writes at most.
const INSERT_CHUNK: usize = 256;

/// Inserts the events the inbox does not hold yet, inside the caller's
/// transaction; returns the ids it inserted.
async fn insert_chunk(
    conn: &mut sqlx::SqliteConnection,
    events: &[NewEvent],
    packed: &[(Vec<u8>, &'static str)],
) -> Result<Vec<String>, StoreError> {
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO stripe_events (id, type, created, api_version, livemode, object_type,
             object_id, customer_id, metadata, headers, source, received_at,
             subscription_id, checkout_session_id, workspace_hint, purchaser_email,
             charge_id, payment_intent_id, billing, received_ms) ",
    );
    insert.push_values(events, |mut row, event| {
        row.push_bind(event.id.as_str())
            .push_bind(&event.event_type)
            .push_bind(event.created.unix())
            .push_bind(&event.api_version)
            .push_bind(event.livemode)
            .push_bind(&event.object_type)
            .push_bind(&event.object_id)
            .push_bind(event.keys.customer.as_ref().or(event.customer_id.as_ref()))
            .push_bind(json_text(&event.metadata))
            .push_bind(json_text(&event.headers))
            .push_bind(event.source.as_str())
            .push_bind(event.received_at.unix())
            .push_bind(&event.keys.subscription)
            .push_bind(&event.keys.session)
            .push_bind(&event.keys.workspace_hint)
            .push_bind(&event.keys.purchaser_email)
            .push_bind(&event.keys.charge)
            .push_bind(&event.keys.payment_intent)
            .push_bind(&event.billing)
            .push_bind(event.received_ms);
    });
    insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let inserted: Vec<String> = insert
        .build_query_scalar::<String>()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    // The bodies of the rows just inserted (a re-delivery keeps the first).
    let mut bodies = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO stripe_event_bodies (id, payload, encoding, raw_length) ",
    );
    bodies.push_values(
        events.iter().zip(packed),
        |mut row, (event, (body, encoding))| {
            row.push_bind(event.id.as_str())
                .push_bind(body)
                .push_bind(*encoding)
                .push_bind(i64::try_from(event.payload.len()).unwrap_or(i64::MAX));
        },
    );
    bodies.push(" ON CONFLICT (id) DO NOTHING");
    bodies.build().persistent(false).execute(&mut *conn).await?;
    Ok(inserted)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        migrations::sqlite().run(&self.pool).await?;
        Ok(())
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: HashSet<i64> = match sqlx::query_scalar::<_, i64>(
            "SELECT version FROM _sqlx_migrations WHERE success = 1",
        )
        .fetch_all(&self.pool)
        .await
        {
            Ok(versions) => versions.into_iter().collect(),
            // No bookkeeping table yet: nothing is applied.
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => {
                HashSet::new()
            }
            Err(e) => return Err(e.into()),
        };
        match migrations::sqlite_versions().find(|v| !applied.contains(v)) {
            Some(missing) => Err(StoreError::NotMigrated { missing }),
            None => Ok(()),
        }
    }

    async fn check_writable(&self, now: Timestamp) -> Result<(), StoreError> {
        // A connection of its own, not the pool's: one opened now finds the
        // file as it is now (a pooled one opened earlier kept a writable
        // handle of a file made read-only since, and one opened while the
        // file was read-only stays read-only). Opening a local file costs
        // far less than the fsync of the commit, every few seconds.
        let written = async {
            let mut conn = SqliteConnection::connect_with(&self.probe).await?;
            // One statement, so one short transaction: the write lock is
            // held for the upsert and the commit's sync, no longer.
            let upsert = sqlx::query(
                "INSERT INTO readiness_probe (id, probed_at, probes) VALUES (1, ?, 1)
                 ON CONFLICT (id) DO UPDATE
                 SET probed_at = excluded.probed_at, probes = readiness_probe.probes + 1",
            )
            .bind(now.unix())
            .execute(&mut conn)
            .await;
            // Closed whatever the outcome; a failure to close it after the
            // write committed changes nothing.
            let _ = conn.close().await;
            upsert
        }
        .await;
        self.health.probed(written.is_ok());
        written?;
        Ok(())
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        // Compressed before the write lock is taken.
        let packed: Vec<(Vec<u8>, &'static str)> =
            events.iter().map(|e| bodies::pack(&e.payload)).collect();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut inserted = std::collections::HashSet::new();
        // One statement per chunk: a statement is a round trip to SQLite's
        // thread, and 20 parameters a row keep a chunk within its limits.
        for (chunk, packed) in events.chunks(INSERT_CHUNK).zip(packed.chunks(INSERT_CHUNK)) {
            inserted.extend(insert_chunk(&mut tx, chunk, packed).await?);
        }
        tx.commit().await?;
        // The first copy of an id in the batch is the one inserted.
        Ok(events
            .iter()
            .map(|event| {
                if inserted.remove(event.id.as_str()) {
                    InsertOutcome::Inserted
                } else {
                    InsertOutcome::Duplicate
                }
            })
            .collect())
    }

    async fn get_event(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT e.*, b.payload, b.encoding, b.raw_length FROM stripe_events e
             LEFT JOIN stripe_event_bodies b ON b.id = e.id WHERE e.id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::events::stored_event).transpose()
    }

    async fn count_events(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(count).map_err(|_| StoreError::Corrupt("negative count".into()))
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Tests of what only SQLite does; the contract every backend keeps is
/// tested once for all of them, in `crate::conformance`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{NOW, test_event};

    /// SQLite-only: `maintain` copies the write-ahead log into the database
    /// file (PostgreSQL has no such step). Seen in the file's size, so it
    /// cannot be asserted through the trait.
    #[tokio::test]
    async fn upkeep_moves_the_write_ahead_log_into_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store.maintain().await.expect("upkeep");
        let before = std::fs::metadata(&path).expect("db file").len();
        let events: Vec<NewEvent> = (0..50)
            .map(|i| NewEvent {
                // Bytes that do not compress: the file must grow by them.
                payload: noise(i, 4000),
                ..test_event(&format!("evt_upkeep{i}"), "invoice.paid", NOW)
            })
            .collect();
        store.insert_events(&events).await.expect("insert");
        assert_eq!(
            std::fs::metadata(&path).expect("db file").len(),
            before,
            "a commit leaves checkpoints to upkeep"
        );
        store.maintain().await.expect("upkeep");
        assert!(
            std::fs::metadata(&path).expect("db file").len() >= before + 50 * 4000,
            "the batch is in the database file"
        );
    }

    /// A disk that fills up, for real: a commit fails with `SQLITE_FULL`,
    /// which SQLite answers by rolling the transaction back itself, so the
    /// rollback after it fails as well. Once space is freed the next
    /// writes succeed at once: the connections those commits failed on are
    /// not handed out again (they failed every later `BEGIN` with
    /// "attempted to call begin_with at non-zero transaction depth").
    /// Needs a tmpfs of its own (root); skipped, and says so, without.
    #[tokio::test]
    async fn after_a_full_disk_the_next_writes_succeed_at_once() {
        let Some(disk) = Tmpfs::mount("16m") else {
            return;
        };
        let path = disk.path().join("t.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
            .insert_event(&test_event("evt_before", "invoice.paid", NOW))
            .await
            .expect("insert");
        store.check_writable(NOW).await.expect("writable");

        disk.fill(&url).await;
        // The probe first: a failed one has the pool replace the
        // connections it holds, which would hide what follows.
        assert!(
            store.check_writable(NOW).await.is_err(),
            "the probe fails (the same time as the last one: still a write)"
        );
        for n in 0..3 {
            let failed = store
                .insert_event(&test_event(&format!("evt_full{n}"), "invoice.paid", NOW))
                .await;
            assert!(
                format!("{:?}", failed).contains("full"),
                "a full disk fails the commit: {failed:?}"
            );
        }
        assert_eq!(store.count_events().await.expect("reads go on"), 1);

        disk.free();
        for n in 0..20 {
            store
                .insert_event(&test_event(&format!("evt_after{n}"), "invoice.paid", NOW))
                .await
                .unwrap_or_else(|e| panic!("write {n} after the disk has room again: {e:?}"));
        }
        store.check_writable(NOW).await.expect("writable again");
        assert_eq!(store.count_events().await.expect("count"), 21);
        store.close().await;
    }

    /// The probe's own connection reaches the same database an in-memory
    /// store's pool holds (`sqlite::memory:`), and creates no file where
    /// the database file is missing.
    #[tokio::test]
    async fn the_probe_writes_to_the_stores_own_database() {
        let memory = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("connect");
        memory.migrate().await.expect("migrate");
        memory.check_writable(NOW).await.expect("in memory");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(store.check_writable(NOW).await.is_err());
        assert!(!path.exists(), "no empty database is created");
    }

    /// A tmpfs of its own, of a fixed size, on a temporary folder
    /// (unmounted when dropped): a disk that can be filled for real.
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        /// `None`, with a note on stderr, where mounting is not permitted.
        fn mount(size: &str) -> Option<Self> {
            let dir = tempfile::tempdir().expect("tempdir");
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !mounted {
                eprintln!(
                    "SKIPPED: this test needs to mount a tmpfs (as root) to fill a disk for real, \
                     and cannot here"
                );
                return None;
            }
            Some(Self { dir })
        }

        fn path(&self) -> &std::path::Path {
            self.dir.path()
        }

        fn filler(&self) -> std::path::PathBuf {
            self.path().join("filler")
        }

        /// Fills the disk to the last byte. First the log of `url`'s
        /// database is truncated (a checkpoint): SQLite reuses a log's
        /// space once checkpointed, so a commit must need new space.
        pub(crate) async fn fill(&self, url: &str) {
            use std::io::Write as _;
            let mut conn = SqliteConnection::connect(url).await.expect("connect");
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
            file.sync_all().ok();
        }

        /// Makes room again.
        fn free(&self) {
            std::fs::remove_file(self.filler()).expect("remove the filler");
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            // Lazily: a connection still closing must not keep it mounted.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    /// `len` pseudo-random bytes (xorshift), different for each `seed`.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }
}
