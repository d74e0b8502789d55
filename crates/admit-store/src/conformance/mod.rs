//! The conformance suite of the [`Store`] contract: one set of tests that
//! every backend must pass. Each test runs on the backend
//! `ADMIT_TEST_DATABASE_URL` names:
//!
//! - unset, or `sqlite:…`: a fresh SQLite file in a temporary folder;
//! - `postgres://…`: a brand-new database created on that server for the
//!   test (dropped when the test passes, kept for a look when it fails),
//!   collated unlike byte order where the server can (see
//!   `postgres_database`).
//!
//! So `cargo test -p admit-store` checks SQLite, and the same command with
//! `ADMIT_TEST_DATABASE_URL=postgres://…` checks PostgreSQL.
//!
//! Tests go through the trait. Where one must put the database in a state
//! the trait cannot (a row as an older release left it, a row the
//! processor would write, an injected fault), it uses [`TestStore::db`], a
//! connection of its own to the same database, with SQL valid on both
//! dialects (`$1` placeholders, no dialect-only functions); the rare
//! statement that must differ branches on [`TestStore::backend`].

mod concurrency;
mod directory;
mod lists;
mod operators;
mod ops;
mod outbox;
mod provisioning;
mod scope;
mod signin;
mod store;
mod versions;

use std::ops::Deref;
use std::sync::Arc;

use admit_core::{Email, EventId, Timestamp, WorkspaceId};
use sqlx::Connection;
use sqlx::any::AnyPoolOptions;

use crate::Store;
use crate::events::{EventSource, NewEvent};

/// The moment the tests' clocks stand at.
pub(crate) const NOW: Timestamp = Timestamp::from_unix(1_795_000_000);

/// The variable that names the database server to test against.
const SERVER_VARIABLE: &str = "ADMIT_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A store on a database of the test's own, with a raw connection to the
/// same database. Derefs to the store, so a test calls
/// `store.claim_events(..)` on it directly.
pub(crate) struct TestStore {
    pub(crate) store: Arc<dyn Store>,
    /// The test's own connection to the database, behind the store's back.
    pub(crate) db: sqlx::AnyPool,
    pub(crate) backend: Backend,
    /// The store's database, for [`TestStore::instance`].
    url: String,
    /// PostgreSQL: the server (as the variable names it) and the test's
    /// database on it, dropped with the fixture.
    postgres: Option<(String, String)>,
    /// SQLite: the folder of the database file, removed with the fixture.
    _dir: Option<tempfile::TempDir>,
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore")
            .field("backend", &self.backend)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A migrated store on a database of its own.
pub(crate) async fn fresh() -> TestStore {
    let store = fresh_unmigrated().await;
    store.migrate().await.expect("migrate");
    store
}

/// A store on an empty database of its own: nothing is migrated yet.
pub(crate) async fn fresh_unmigrated() -> TestStore {
    sqlx::any::install_default_drivers();
    let server = std::env::var(SERVER_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty());
    let (backend, url, postgres, dir) = match server {
        None => sqlite_database(),
        Some(server) if server.starts_with("sqlite:") => sqlite_database(),
        Some(server) if server.starts_with("postgres:") || server.starts_with("postgresql:") => {
            let (name, url) = postgres_database(&server).await;
            (Backend::Postgres, url, Some((server, name)), None)
        }
        Some(other) => panic!("{SERVER_VARIABLE} names no backend the store has: {other:?}"),
    };
    // The store first: it creates the SQLite file the raw pool opens.
    let store = crate::connect(&url).await.expect("connect the store");
    let db = AnyPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("the test's own connection to the database");
    TestStore {
        store,
        db,
        backend,
        url,
        postgres,
        _dir: dir,
    }
}

type Database = (
    Backend,
    String,
    Option<(String, String)>,
    Option<tempfile::TempDir>,
);

/// A SQLite file in a folder of its own (whatever `sqlite:` URL the
/// variable holds: each test needs a database of its own).
fn sqlite_database() -> Database {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Backend::Sqlite, url, None, Some(dir))
}

/// Creates `admit_c_<16 random hex digits>` on the server; its name and URL.
async fn postgres_database(server: &str) -> (String, String) {
    let name = format!("admit_c_{}", random_hex());
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL server of {SERVER_VARIABLE} answers: {e}"));
    // Where the server can, the database orders text unlike bytes (ICU's
    // `en-US`: `evt_a` before `evt_B`), as many production databases do:
    // a backend that leaves to the default collation an order SQLite gives
    // by bytes is caught. A server without ICU (before 15) gets its default.
    let icu =
        format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
    if sqlx::query(sqlx::AssertSqlSafe(icu))
        .execute(&mut admin)
        .await
        .is_err()
    {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test's database");
    }
    admin.close().await.expect("close the admin connection");
    (name.clone(), database_url(server, &name))
}

/// The URL of database `name` on the server `server` names (the same host,
/// user, password and parameters).
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    format!("{scheme}://{host}/{name}{query}")
}

/// 64 random bits in hex, from the standard library's per-process random
/// hashing keys (no dependency for it), a counter and the clock.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}

impl TestStore {
    /// Another store on the same database, as a second admit instance
    /// would open it (its own pool of connections).
    pub(crate) async fn instance(&self) -> Arc<dyn Store> {
        crate::connect(&self.url)
            .await
            .expect("connect another instance")
    }

    /// Runs one statement on the test's own connection.
    pub(crate) async fn exec(&self, sql: impl Into<String>) {
        let sql = sql.into();
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A real database fault, in the database itself: inserts into `table`
    /// of rows matching `condition` (SQL over `NEW`) abort with `message`.
    pub(crate) async fn inject_fault(
        &self,
        name: &str,
        table: &str,
        condition: &str,
        message: &str,
    ) {
        match self.backend {
            Backend::Sqlite => {
                self.exec(format!(
                    "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition}
                     BEGIN SELECT RAISE(ABORT, '{message}'); END"
                ))
                .await;
            }
            Backend::Postgres => {
                self.exec(format!(
                    "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION '{message}'; END $$"
                ))
                .await;
                self.exec(format!(
                    "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW
                     WHEN ({condition}) EXECUTE FUNCTION {name}()"
                ))
                .await;
            }
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!("the failed test's database is kept: {name}");
            return;
        }
        // The test's runtime may be the one this runs on: the drop gets a
        // thread and a runtime of its own. `FORCE` ends the store's and the
        // raw pool's connections, which close with the fixture anyway.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(async {
                    let mut admin = sqlx::PgConnection::connect(&server).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                })
                .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop a test database: {error}"),
            Err(_) => eprintln!("dropping a test database panicked"),
        }
    }
}

pub(crate) fn ws(raw: &str) -> WorkspaceId {
    WorkspaceId::parse(raw).expect("valid workspace id")
}

pub(crate) fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

pub(crate) fn event_id(raw: &str) -> EventId {
    EventId::parse(raw).expect("valid event id")
}

/// A webhook event of `event_type` with an empty body, received at
/// `at`, for the tests to shape further.
pub(crate) fn test_event(id: &str, event_type: &str, at: Timestamp) -> NewEvent {
    NewEvent {
        id: event_id(id),
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
        source: EventSource::Webhook,
        received_at: at,
        keys: crate::provisioning::EventKeys::default(),
        billing: None,
        received_ms: at.unix() * 1000,
    }
}
