//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! WAL lets readers run beside the one writer; `synchronous = FULL` because a
//! 2xx to Stripe promises the event survives a power cut; the busy timeout
//! turns writer contention into waiting instead of `SQLITE_BUSY`.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use admit_core::{EventId, Timestamp};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

mod apply;
mod audit;

mod cases;
mod directory;
mod list;
mod ops;
mod outbox;
mod provisioning;
mod rows;
mod scope;
mod session;
mod signin;

use crate::events::{EventStatus, InsertOutcome, NewEvent, StoredEvent};
use crate::values::json_text;
use crate::{Store, StoreError, bodies, migrations};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
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
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

/// A migrated store in a fresh folder, for the store's tests.
#[cfg(test)]
pub(crate) async fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (dir, store)
}

/// A webhook event of `event_type` with an empty body, received at
/// `at`, for the store's tests to shape further.
#[cfg(test)]
pub(crate) fn test_event(id: &str, event_type: &str, at: Timestamp) -> NewEvent {
    NewEvent {
        id: EventId::parse(id).expect("valid event id"),
        event_type: event_type.into(),
        created: at,
        api_version: None,
        livemode: false,
        object_type: event_type.split('.').next().unwrap_or_default().into(),
        object_id: None,
        customer_id: None,
        metadata: Default::default(),
        payload: b"{}".to_vec(),
        headers: Default::default(),
        source: crate::EventSource::Webhook,
        received_at: at,
        keys: crate::provisioning::EventKeys::default(),
        billing: None,
        received_ms: at.unix() * 1000,
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

fn stored_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let id: String = row.try_get("id")?;
    let stored: Option<Vec<u8>> = row.try_get("payload")?;
    let encoding: Option<String> = row.try_get("encoding")?;
    let (payload, body_error) = match bodies::unpack(
        stored.unwrap_or_default(),
        encoding.as_deref().unwrap_or(bodies::IDENTITY),
        row.try_get("raw_length")?,
    ) {
        Ok(body) => (body, None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let status: String = row.try_get("status")?;
    Ok(StoredEvent {
        id: EventId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        event_type: row.try_get("type")?,
        created: Timestamp::from_unix(row.try_get("created")?),
        api_version: row.try_get("api_version")?,
        livemode: row.try_get("livemode")?,
        object_type: row.try_get("object_type")?,
        object_id: row.try_get("object_id")?,
        customer_id: row.try_get("customer_id")?,
        payload,
        body_error,
        source: row.try_get("source")?,
        received_at: Timestamp::from_unix(row.try_get("received_at")?),
        status: EventStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event status {status:?}")))?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        outcome: row.try_get("outcome")?,
        scenario: row.try_get("scenario")?,
        billing: row.try_get("billing")?,
    })
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
        row.as_ref().map(stored_event).transpose()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::EventSource;

    fn event(id: &str) -> NewEvent {
        NewEvent {
            id: EventId::parse(id).expect("valid id"),
            event_type: "customer.created".into(),
            created: Timestamp::from_unix(1_795_000_000),
            api_version: Some("2026-07-29.dahlia".into()),
            livemode: false,
            object_type: "customer".into(),
            object_id: Some("cus_1".into()),
            customer_id: Some("cus_1".into()),
            metadata: BTreeMap::from([("workspace_id".into(), "ws_1".into())]),
            payload: br#"{"id":"evt_x"}"#.to_vec(),
            headers: BTreeMap::from([("stripe-signature".into(), "t=1,v1=00".into())]),
            source: EventSource::Webhook,
            received_at: Timestamp::from_unix(1_795_000_001),
            keys: crate::provisioning::EventKeys::default(),
            billing: None,
            received_ms: 0,
        }
    }

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        (dir, store)
    }

    #[tokio::test]
    async fn readiness_follows_migrations() {
        let (_dir, store) = fresh().await;
        assert!(matches!(
            store.check_ready().await,
            Err(StoreError::NotMigrated { missing: 1 })
        ));
        store.migrate().await.expect("migrate");
        store.check_ready().await.expect("ready after migrate");
        store.migrate().await.expect("migrating twice is a no-op");
    }

    #[tokio::test]
    async fn a_body_is_stored_compressed_and_read_back_byte_for_byte() {
        let (_dir, store) = fresh().await;
        store.migrate().await.expect("migrate");
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/stripe/current/invoice_paid.json"
        ))
        .expect("fixture");
        let mut new = event("evt_Body1");
        new.payload = body.clone();
        store.insert_event(&new).await.expect("insert");
        let (stored, encoding, raw): (Vec<u8>, String, i64) = sqlx::query_as(
            "SELECT payload, encoding, raw_length FROM stripe_event_bodies WHERE id = 'evt_Body1'",
        )
        .fetch_one(&store.pool)
        .await
        .expect("row");
        assert_eq!(encoding, "lz4");
        assert_eq!(raw, body.len() as i64);
        assert!(
            stored.len() * 4 < body.len() * 3,
            "{} of {}",
            stored.len(),
            body.len()
        );
        let read = store
            .get_event(&new.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(read.payload, body);

        // A body stored before bodies were compressed reads as it is.
        sqlx::query(
            "UPDATE stripe_event_bodies SET payload = ?, encoding = 'identity', raw_length = NULL
             WHERE id = 'evt_Body1'",
        )
        .bind(&body)
        .execute(&store.pool)
        .await
        .expect("as before migration 10");
        let read = store
            .get_event(&new.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(read.payload, body);
    }

    #[tokio::test]
    async fn insert_is_idempotent_by_event_id_and_round_trips() {
        let (_dir, store) = fresh().await;
        store.migrate().await.expect("migrate");
        let first = event("evt_A1");
        assert_eq!(
            store.insert_event(&first).await.expect("insert"),
            InsertOutcome::Inserted
        );
        let mut again = first.clone();
        again.payload = b"different".to_vec();
        assert_eq!(
            store.insert_event(&again).await.expect("insert"),
            InsertOutcome::Duplicate
        );
        assert_eq!(store.count_events().await.expect("count"), 1);

        let stored = store
            .get_event(&first.id)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(
            stored.payload, first.payload,
            "the first delivery is kept byte for byte"
        );
        assert_eq!(stored.status, EventStatus::Received);
        assert_eq!(stored.received_at, first.received_at);
        assert_eq!(stored.customer_id.as_deref(), Some("cus_1"));
        assert!(
            store
                .get_event(&EventId::parse("evt_missing").expect("id"))
                .await
                .expect("read")
                .is_none()
        );
    }
}
