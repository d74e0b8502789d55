//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! WAL lets readers run beside the one writer; `synchronous = FULL` because a
//! 2xx to Stripe promises the event survives a power cut; the busy timeout
//! turns writer contention into waiting instead of `SQLITE_BUSY`.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use admit_core::EventId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
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
use crate::values::json_text;
use crate::{Store, StoreError, bodies, migrations};

/// Connections when `ADMIT_DATABASE_POOL_SIZE` does not say (3 and 16 were
/// measured too; 8 served access checks best, docs/benchmarks.md).
const DEFAULT_POOL: u32 = 8;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
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
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size.unwrap_or(DEFAULT_POOL))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
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
