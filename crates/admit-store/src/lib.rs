//! admit's storage: one interface ([`Store`]) for everything the shell
//! persists, and its implementations. SQLite is the embedded default; a
//! PostgreSQL implementation plugs in behind the same trait (callers hold an
//! `Arc<dyn Store>` and never see the dialect).

pub mod audit;
mod batch;
mod bodies;
#[cfg(test)]
mod conformance;
pub mod directory;
mod error;
mod events;
mod health;
pub mod list;
mod migrations;
pub mod operators;
pub mod ops;
pub mod outbox;
mod postgres;
pub mod provisioning;
mod rows;
mod scope;
pub mod signin;
mod sqlite;
mod values;

use std::sync::Arc;

use admit_core::{EventId, Timestamp};

pub use audit::{AuditEntry, StoredAuditEntry};
pub use directory::{Actor, DirectoryStore, MemberChange};
pub use error::StoreError;
pub use events::{EventSource, EventStatus, InsertOutcome, NewEvent, StoredEvent};
pub use list::{
    AuditQuery, CaseQuery, Cursor, EventQuery, EventSummary, ListKind, ListStore, OutboxQuery,
    Page, WorkspaceQuery, WorkspaceSummary,
};
pub use operators::{
    Operator, OperatorCredentials, OperatorSecret, OperatorSession, OperatorStore,
};
pub use ops::{Backlog, HeldCase, OpsStore, ReadinessFacts};
pub use outbox::OutboxStore;
pub use postgres::PgStore;
pub use provisioning::{
    CaseResolution, CaseWrite, CheckpointWrite, ClaimedEvent, CommitOutcome, EventKeys,
    EventStatusWrite, History, OutboxRow, OutboxWrite, ProvisioningStore, ScopeCommit, ScopeEvent,
    ScopeRead, ScopeSnapshot, ScopeWrite, SessionPayment, SessionStatus, StoredCase,
    WorkspaceCreation,
};
pub use signin::{RedeemedToken, SigninStore};
pub use sqlite::SqliteStore;

/// Everything admit persists. Each method is one transaction.
#[async_trait::async_trait]
pub trait Store:
    DirectoryStore
    + ProvisioningStore
    + ListStore
    + OutboxStore
    + SigninStore
    + OpsStore
    + OperatorStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Runs the embedded migrations of this dialect that are not applied yet.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// `Ok` when the database answers and every embedded migration is applied.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// `Ok` when a write can be committed now: upserts the one row of
    /// `readiness_probe` (stamped `now`; every instance on the database
    /// shares it) in a transaction of its own, a moment's hold of the write
    /// lock. SQLite writes through a connection opened for the probe (as
    /// the pool would open its next one: a file that became read-only
    /// fails here, a full disk fails the commit); PostgreSQL through the
    /// pool. After a failure, and after the first success that follows
    /// one, the pool replaces the connections it holds (see `health`). For
    /// `/readyz`, which runs it every few seconds at most.
    async fn check_writable(&self, now: Timestamp) -> Result<(), StoreError>;

    /// Stores a verified event unless one with the same id is already stored.
    /// Returns only after the insert committed.
    async fn insert_event(&self, event: &NewEvent) -> Result<InsertOutcome, StoreError> {
        let mut outcomes = self.insert_events(std::slice::from_ref(event)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no outcome for the insert".into()))
    }

    /// Stores several events in one transaction (one commit, one sync), each
    /// unless its id is stored already (also earlier in the same batch).
    /// The outcomes are in the order of `events`.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>, StoreError>;

    async fn get_event(&self, id: &EventId) -> Result<Option<StoredEvent>, StoreError>;

    /// How many events are stored; for operators and tests.
    async fn count_events(&self) -> Result<u64, StoreError>;

    /// Background upkeep, run every second or so off the request path
    /// (SQLite: a passive WAL checkpoint, so no webhook's commit pays for
    /// copying the log into the database).
    async fn maintain(&self) -> Result<(), StoreError>;

    /// Wakes `events` when another instance stores events and `outbox`
    /// when a message becomes due, for as long as the store is open. A
    /// single process (SQLite) wakes its workers itself: nothing to do.
    fn subscribe(&self, events: Arc<tokio::sync::Notify>, outbox: Arc<tokio::sync::Notify>) {
        let _ = (events, outbox);
    }

    /// Closes connections; pending writes are finished first.
    async fn close(&self);
}

/// How to reach the database beyond its URL.
#[derive(Clone, Default)]
pub struct DatabaseOptions {
    /// The password, from the environment or a file, never from a log line:
    /// it takes precedence over one in the URL.
    pub password: Option<String>,
    /// Connections each instance holds; the dialect's default when `None`.
    pub pool_size: Option<u32>,
}

impl std::fmt::Debug for DatabaseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseOptions")
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Opens the store a database URL names (`sqlite://path`, `sqlite::memory:`,
/// `postgres://user@host/db?sslmode=…`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(url, &DatabaseOptions::default()).await
}

/// [`connect`] with a password and pool size given apart from the URL.
pub async fn connect_with(
    url: &str,
    options: &DatabaseOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(
            SqliteStore::connect_with(url, options.pool_size).await?,
        ));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Ok(Arc::new(PgStore::connect(url, options).await?));
    }
    Err(StoreError::UnsupportedUrl {
        reason: "the database URL must start with sqlite:// or postgres://",
    })
}
