//! The PostgreSQL implementation of [`Store`]: several admit instances on
//! one database.
//!
//! Transactions run at READ COMMITTED. What a single process gets from
//! SQLite's one writer, this dialect gets from row locks: claims take rows
//! with `FOR UPDATE SKIP LOCKED` (two instances never hold the same event or
//! message), a derivation's commit locks the version rows of every key its
//! scope read (see `provisioning.rs`), and a change to a workspace's members
//! locks the workspace row first (the last-owner rule). A commit that adds
//! events notifies [`EVENTS_CHANNEL`], so every instance's processor wakes
//! at once.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use admit_core::{EventId, Timestamp};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

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
use crate::{DatabaseOptions, Store, StoreError, bodies, migrations};

/// Notified once new events are stored (see [`notify`]).
pub(crate) const EVENTS_CHANNEL: &str = "admit_events";
/// Notified when an outbox message becomes due to send.
pub(crate) const OUTBOX_CHANNEL: &str = "admit_outbox";

/// Connections when `ADMIT_DATABASE_POOL_SIZE` does not say: every
/// instance holds this many, so several instances stay well within
/// PostgreSQL's default of 100.
const DEFAULT_POOL: u32 = 10;

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The `LISTEN` connections, apart from `pool`: a listener holds its
    /// connection for as long as it listens.
    listening: PgPool,
    /// The `LISTEN` tasks `subscribe` started, stopped by `close`.
    listeners: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Which idle connections the pool hands out again (see `health`).
    health: Arc<PoolHealth>,
}

impl PgStore {
    pub async fn connect(url: &str, database: &DatabaseOptions) -> Result<Self, StoreError> {
        // `sslmode`, `sslrootcert`, host, port, user and database come from
        // the URL; a password given apart from it takes precedence.
        let mut options = PgConnectOptions::from_str(url)?
            .application_name("admit")
            // A frozen instance (stopped, not killed) must not hold version
            // rows and claims for ever: its session ends after a minute
            // idle inside a transaction, and a lock waited on for half a
            // minute is given up (a commit derives again; an API call
            // answers 500 and may be retried).
            .options([
                ("idle_in_transaction_session_timeout", "60s"),
                ("lock_timeout", "30s"),
            ]);
        if let Some(password) = &database.password {
            options = options.password(password);
        }
        let health = Arc::new(PoolHealth::new());
        let keep = health.clone();
        let pool = PgPoolOptions::new()
            .max_connections(database.pool_size.unwrap_or(DEFAULT_POOL))
            .acquire_timeout(Duration::from_secs(10))
            // The ping on acquire sends the rollback a dropped transaction
            // queued; `before_acquire` relies on it.
            .test_before_acquire(true)
            // A connection left inside a transaction is closed, not handed
            // out to fail every BEGIN: see `health`.
            .before_acquire(move |conn, meta| {
                let keep = keep.keep(conn.is_in_transaction(), &meta);
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(options.clone())
            .await?;
        let listening = PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            listening,
            listeners: Arc::default(),
            health,
        })
    }
}

/// Rows a multi-row inbox insert writes at most (20 parameters a row, well
/// within PostgreSQL's 65,535).
const INSERT_CHUNK: usize = 256;

/// Inserts the events the inbox does not hold yet, inside the caller's
/// transaction; returns the ids it inserted.
async fn insert_chunk(
    conn: &mut sqlx::PgConnection,
    events: &[&NewEvent],
    packed: &[(Vec<u8>, &'static str)],
) -> Result<Vec<String>, StoreError> {
    let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
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
    let mut bodies = sqlx::QueryBuilder::<sqlx::Postgres>::new(
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
    // A re-delivery keeps the first body.
    bodies.push(" ON CONFLICT (id) DO NOTHING");
    bodies.build().persistent(false).execute(&mut *conn).await?;
    Ok(inserted)
}

/// Tells every listening instance there is work on `channel`, in a
/// transaction of its own: PostgreSQL serialises the commits of
/// transactions that notify, and one that wrote nothing has no log to sync
/// while it holds that lock, so stored events never wait for each other's
/// fsync for it. A notification is a hint (processors also poll), so one
/// that fails is only logged.
pub(crate) async fn notify(pool: PgPool, channel: &'static str) {
    if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&pool)
        .await
    {
        tracing::debug!(channel, error = %error, "could not notify the other instances");
    }
}

/// Runs a short transaction of an API or operator path again when it lost
/// a race with another instance's commit (a deadlock PostgreSQL broke, a
/// serialisation failure): it was rolled back whole, so running it again
/// is safe, and the caller sees the outcome instead of a 500. A
/// derivation's commit, which takes the version rows first, is never the
/// one that waits on such a path, so these are the ones that lose.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut lost = 0u64;
    loop {
        match attempt().await {
            Err(error) if error.is_lost_race() && lost < 5 => {
                lost += 1;
                tracing::debug!(error = %error.chain(), "lost a race with another instance; running again");
                tokio::time::sleep(Duration::from_millis(20 * lost)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Wakes `wake` on every notification of `channel` until the store closes.
/// A lost connection is re-established by the listener; what was notified
/// meanwhile is found by the processor's poll, so a wake-up is a hint and
/// nothing depends on it arriving.
async fn listen(pool: PgPool, channel: &'static str, wake: Arc<Notify>) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
        };
        let stopped: Result<std::convert::Infallible, sqlx::Error> = listening.await;
        let Err(error) = stopped;
        tracing::warn!(channel, error = %error, "database notifications interrupted; reconnecting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx holds an advisory lock while it migrates: two instances
        // started at once migrate one after the other.
        migrations::postgres().run(&self.pool).await?;
        Ok(())
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: HashSet<i64> = match sqlx::query_scalar::<_, i64>(
            "SELECT version FROM _sqlx_migrations WHERE success",
        )
        .fetch_all(&self.pool)
        .await
        {
            Ok(versions) => versions.into_iter().collect(),
            // undefined_table: no bookkeeping table yet, nothing is applied.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => HashSet::new(),
            Err(e) => return Err(e.into()),
        };
        match migrations::postgres_versions().find(|v| !applied.contains(v)) {
            Some(missing) => Err(StoreError::NotMigrated { missing }),
            None => Ok(()),
        }
    }

    async fn check_writable(&self, now: Timestamp) -> Result<(), StoreError> {
        // Through the pool: the sessions this instance writes with are the
        // ones to test (a connection of its own each time would also fail
        // when the server refuses new connections while the pool serves).
        // One statement, so a transaction of its own; the instances share
        // the row, and hold its lock for the update only.
        let written = sqlx::query(
            "INSERT INTO readiness_probe (id, probed_at, probes) VALUES (1, $1, 1)
             ON CONFLICT (id) DO UPDATE
             SET probed_at = EXCLUDED.probed_at, probes = readiness_probe.probes + 1",
        )
        .bind(now.unix())
        .execute(&self.pool)
        .await;
        self.health.probed(written.is_ok());
        written?;
        Ok(())
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError> {
        // Written in the order of their ids: two instances storing batches
        // that share ids (a redelivery that reached both) wait for each
        // other's rows in one order, where two orders would deadlock. The
        // sort is stable: the first copy of an id in the batch is still the
        // one stored.
        let mut sorted: Vec<&NewEvent> = events.iter().collect();
        sorted.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let packed: Vec<(Vec<u8>, &'static str)> =
            sorted.iter().map(|e| bodies::pack(&e.payload)).collect();
        let mut tx = self.pool.begin().await?;
        let mut inserted = HashSet::new();
        for (chunk, packed) in sorted.chunks(INSERT_CHUNK).zip(packed.chunks(INSERT_CHUNK)) {
            inserted.extend(insert_chunk(&mut tx, chunk, packed).await?);
        }
        tx.commit().await?;
        if !inserted.is_empty() {
            // Awaited, not spawned: a notification still on its way when
            // the store's runtime stops was seen to hold up DROP DATABASE.
            notify(self.pool.clone(), EVENTS_CHANNEL).await;
        }
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
             LEFT JOIN stripe_event_bodies b ON b.id = e.id WHERE e.id = $1",
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
        // Autovacuum is PostgreSQL's own; nothing to do from here.
        Ok(())
    }

    fn subscribe(&self, events: Arc<Notify>, outbox: Arc<Notify>) {
        let tasks = [
            tokio::spawn(listen(self.listening.clone(), EVENTS_CHANNEL, events)),
            tokio::spawn(listen(self.listening.clone(), OUTBOX_CHANNEL, outbox)),
        ];
        if let Ok(mut listeners) = self.listeners.lock() {
            listeners.extend(tasks);
        }
    }

    async fn close(&self) {
        let listeners = self
            .listeners
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for listener in listeners {
            listener.abort();
        }
        self.listening.close().await;
        self.pool.close().await;
    }
}
