//! The store itself (`Store`): migrations and readiness, the inbox's
//! inserts and reads, upkeep, wake-ups and closing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use admit_core::{EventId, Timestamp};
use tokio::sync::Notify;

use super::{Backend, NOW, event_id, fresh, fresh_unmigrated, test_event};
use crate::StoreError;
use crate::events::{EventSource, EventStatus, InsertOutcome, NewEvent};
use crate::provisioning::EventKeys;

fn event(id: &str) -> NewEvent {
    NewEvent {
        id: event_id(id),
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
        keys: EventKeys::default(),
        billing: None,
        received_ms: 0,
    }
}

/// The newest version every dialect's migrations reach.
fn newest_version() -> i64 {
    crate::migrations::sqlite_versions()
        .max()
        .expect("a migration")
}

#[tokio::test]
async fn readiness_follows_migrations() {
    let store = fresh_unmigrated().await;
    assert!(
        matches!(
            store.check_ready().await,
            Err(StoreError::NotMigrated { missing: 1 })
        ),
        "a store on an empty database is not ready"
    );
    store.migrate().await.expect("migrate");
    store.check_ready().await.expect("ready after migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    store.check_ready().await.expect("still ready");
}

/// A database an older release migrated (or whose last migration failed)
/// is not ready: the first version missing is named.
#[tokio::test]
async fn a_database_missing_a_migration_is_not_ready() {
    let store = fresh().await;
    let newest = newest_version();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&store.db)
        .await
        .expect("as before the newest migration");
    assert!(
        matches!(
            store.check_ready().await,
            Err(StoreError::NotMigrated { missing }) if missing == newest
        ),
        "{:?}",
        store.check_ready().await
    );
    sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 5")
        .execute(&store.db)
        .await
        .expect("a failed migration");
    assert!(
        matches!(
            store.check_ready().await,
            Err(StoreError::NotMigrated { missing: 5 })
        ),
        "a migration that failed is not applied"
    );
}

/// The rows of `readiness_probe`, as `(id, probed_at, probes)`.
async fn probe_rows(store: &super::TestStore) -> Vec<(i64, i64, i64)> {
    sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT CAST(id AS BIGINT), probed_at, probes FROM readiness_probe",
    )
    .fetch_all(&store.db)
    .await
    .expect("read the probe row")
}

/// The write probe commits: one row, stamped with the probe's time, which
/// every instance on the database rewrites (no row per instance to pile
/// up), and which each probe changes (one at the same time as the last
/// still writes).
#[tokio::test]
async fn the_write_probe_commits_one_row_every_instance_shares() {
    let store = fresh().await;
    assert_eq!(probe_rows(&store).await, []);
    store.check_writable(NOW).await.expect("writable");
    assert_eq!(probe_rows(&store).await, [(1, NOW.unix(), 1)]);
    let other = store.instance().await;
    other
        .check_writable(NOW.plus_seconds(5))
        .await
        .expect("another instance");
    store
        .check_writable(NOW.plus_seconds(7))
        .await
        .expect("again");
    store
        .check_writable(NOW.plus_seconds(7))
        .await
        .expect("at the same time");
    assert_eq!(probe_rows(&store).await, [(1, NOW.unix() + 7, 4)]);
}

/// A store on a database it cannot write: the probe fails (where the
/// migration check, a read, passes), reads go on, writes fail. SQLite: a
/// store that opened the file read-only (as SQLite opens a file it may not
/// write); PostgreSQL: sessions started while the database's
/// `default_transaction_read_only` is on (as on a standby). On PostgreSQL
/// the fault is then lifted: the same store's probe passes again by the
/// second probe, and its writes succeed at once (the sessions opened
/// read-only are replaced).
#[tokio::test]
async fn a_database_that_cannot_be_written_fails_the_write_probe_but_not_reads() {
    let store = fresh().await;
    store
        .insert_event(&test_event("evt_before", "invoice.paid", NOW))
        .await
        .expect("insert");
    let database: Option<String> = match store.backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let name: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
                .fetch_one(&store.db)
                .await
                .expect("the database's name");
            store
                .exec(format!(
                    "ALTER DATABASE {name} SET default_transaction_read_only = on"
                ))
                .await;
            Some(name)
        }
    };
    let read_only = match store.backend {
        Backend::Sqlite => crate::connect(&format!("{}?mode=ro", store.url))
            .await
            .expect("open read-only"),
        Backend::Postgres => store.instance().await,
    };
    let failed = read_only.check_writable(NOW.plus_seconds(5)).await;
    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    read_only
        .check_ready()
        .await
        .expect("reads work: the schema is checked");
    // Reads at once: the pool opens more connections, all unable to write.
    let counts = tokio::join!(
        read_only.count_events(),
        read_only.count_events(),
        read_only.count_events(),
        read_only.count_events()
    );
    for count in [counts.0, counts.1, counts.2, counts.3] {
        assert_eq!(count.expect("count"), 1);
    }
    assert!(
        read_only
            .insert_event(&test_event("evt_refused", "invoice.paid", NOW))
            .await
            .is_err()
    );
    let Some(name) = database else {
        return;
    };
    store
        .exec(format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        ))
        .await;
    let mut probes = 1;
    while read_only
        .check_writable(NOW.plus_seconds(10))
        .await
        .is_err()
    {
        probes += 1;
        assert!(probes <= 2, "the probe still fails after the fault is gone");
    }
    for n in 0..5 {
        read_only
            .insert_event(&test_event(&format!("evt_after{n}"), "invoice.paid", NOW))
            .await
            .expect("writes succeed once the probe does");
    }
    let [(1, probed_at, _)] = probe_rows(&store).await[..] else {
        panic!("one probe row");
    };
    assert_eq!(probed_at, NOW.unix() + 10);
}

#[tokio::test]
async fn insert_is_idempotent_by_event_id_and_round_trips() {
    let store = fresh().await;
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
    assert_eq!(stored.created, first.created);
    assert_eq!(stored.event_type, "customer.created");
    assert_eq!(stored.api_version.as_deref(), Some("2026-07-29.dahlia"));
    assert!(!stored.livemode);
    assert_eq!(stored.object_type, "customer");
    assert_eq!(stored.object_id.as_deref(), Some("cus_1"));
    assert_eq!(stored.customer_id.as_deref(), Some("cus_1"));
    assert_eq!(stored.source, "webhook");
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.last_error, None);
    assert_eq!(stored.body_error, None);
    assert!(
        store
            .get_event(&EventId::parse("evt_missing").expect("id"))
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_body_is_stored_compressed_and_read_back_byte_for_byte() {
    let store = fresh().await;
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
    .fetch_one(&store.db)
    .await
    .expect("row");
    assert_eq!(encoding, "lz4");
    assert_eq!(raw, i64::try_from(body.len()).expect("small"));
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
        "UPDATE stripe_event_bodies SET payload = $1, encoding = 'identity', raw_length = NULL
         WHERE id = 'evt_Body1'",
    )
    .bind(body.clone())
    .execute(&store.db)
    .await
    .expect("as before migration 10");
    let read = store
        .get_event(&new.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read.payload, body);

    // Every byte value, and an empty body, come back as they went in.
    let mut binary = event("evt_Body2");
    binary.payload = (0..=255u8).cycle().take(3000).collect();
    let mut empty = event("evt_Body3");
    empty.payload = Vec::new();
    store
        .insert_events(&[binary.clone(), empty.clone()])
        .await
        .expect("insert");
    for sent in [binary, empty] {
        let read = store
            .get_event(&sent.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(read.payload, sent.payload);
        assert_eq!(read.body_error, None);
    }
}

/// A damaged body does not hide its event: the row reads, and says why
/// its body cannot be.
#[tokio::test]
async fn a_damaged_body_is_reported_not_fatal() {
    let store = fresh().await;
    store
        .insert_event(&event("evt_Damaged"))
        .await
        .expect("insert");
    sqlx::query(
        "UPDATE stripe_event_bodies SET payload = $1, encoding = 'lz4', raw_length = 4096
         WHERE id = 'evt_Damaged'",
    )
    .bind(b"\xff\xff not lz4".to_vec())
    .execute(&store.db)
    .await
    .expect("damage");
    let read = store
        .get_event(&event_id("evt_Damaged"))
        .await
        .expect("the row reads")
        .expect("stored");
    assert!(read.payload.is_empty());
    assert!(read.body_error.is_some(), "{read:?}");
}

#[tokio::test]
async fn upkeep_leaves_every_event_readable() {
    let store = fresh().await;
    store.maintain().await.expect("upkeep on an empty store");
    let events: Vec<NewEvent> = (0..20)
        .map(|i| test_event(&format!("evt_upkeep{i}"), "invoice.paid", NOW))
        .collect();
    store.insert_events(&events).await.expect("insert");
    store.maintain().await.expect("upkeep");
    store.maintain().await.expect("upkeep again");
    assert_eq!(store.count_events().await.expect("count"), 20);
    for event in &events {
        assert!(store.get_event(&event.id).await.expect("read").is_some());
    }
}

#[tokio::test]
async fn a_closed_store_does_no_more_work() {
    let store = fresh().await;
    store
        .insert_event(&test_event("evt_before", "invoice.paid", NOW))
        .await
        .expect("insert");
    store.close().await;
    assert!(matches!(
        store.count_events().await,
        Err(StoreError::Database(_))
    ));
    assert!(
        store
            .insert_event(&test_event("evt_after", "invoice.paid", NOW))
            .await
            .is_err()
    );
    // What was committed before the close is kept.
    let reopened = store.instance().await;
    assert_eq!(reopened.count_events().await.expect("count"), 1);
}

/// Whether `notify` is woken within `wait`.
async fn woken(notify: &Notify, wait: Duration) -> bool {
    tokio::time::timeout(wait, notify.notified()).await.is_ok()
}

/// PostgreSQL: a store's subscribers wake when another instance stores
/// events, requeues one, or makes a message due. SQLite is one process
/// whose workers wake each other: `subscribe` does nothing there.
#[tokio::test]
async fn another_instance_storing_events_wakes_the_subscribers() {
    let store = fresh().await;
    let (events, outbox) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    store.subscribe(events.clone(), outbox.clone());
    if store.backend == Backend::Sqlite {
        return;
    }
    let other = store.instance().await;
    // The listener starts in the background: insert until one wake-up
    // arrives (at most 10 s), then each later insert wakes it.
    let mut n = 0;
    loop {
        n += 1;
        let event = test_event(&format!("evt_wake{n}"), "invoice.paid", NOW);
        other.insert_event(&event).await.expect("insert");
        if woken(&events, Duration::from_millis(500)).await {
            break;
        }
        assert!(n < 20, "no wake-up for stored events");
    }
    other
        .insert_event(&test_event("evt_wake_last", "invoice.paid", NOW))
        .await
        .expect("insert");
    assert!(
        woken(&events, Duration::from_secs(5)).await,
        "a later insert"
    );
    let duplicate = other
        .insert_event(&test_event("evt_wake_last", "invoice.paid", NOW))
        .await
        .expect("insert");
    assert_eq!(duplicate, InsertOutcome::Duplicate);
    // A wake-up of an earlier insert that arrived late is kept as one
    // permit: let any such arrive and take it before listening for none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = woken(&events, Duration::from_millis(10)).await;
    assert!(
        !woken(&events, Duration::from_millis(300)).await,
        "a duplicate stores nothing and wakes nobody"
    );
    assert!(
        other
            .requeue_event(
                &event_id("evt_wake_last"),
                &crate::Actor::operator("sam", admit_core::OperatorRole::Support),
                NOW
            )
            .await
            .expect("requeue")
    );
    assert!(woken(&events, Duration::from_secs(5)).await, "a requeue");

    // The same for the outbox: a resent message is due at once.
    let mut n = 0;
    loop {
        n += 1;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (idempotency_key, kind, recipient, payload, state,
                 next_attempt_at, created_at)
             VALUES ($1, 'onboarding', 'dana@acme.test', '{}', 'dead', 1, 1) RETURNING id",
        )
        .bind(format!("k:wake{n}"))
        .fetch_one(&store.db)
        .await
        .expect("a dead message");
        other.resend(id, "api", NOW).await.expect("resend");
        if woken(&outbox, Duration::from_millis(500)).await {
            break;
        }
        assert!(n < 20, "no wake-up for a resent message");
    }
}

/// The suite tests the backend it was asked to: a PostgreSQL run that
/// quietly fell back to SQLite would prove nothing.
#[tokio::test]
async fn the_suite_runs_on_the_backend_the_variable_names() {
    let store = fresh().await;
    let asked = std::env::var("ADMIT_TEST_DATABASE_URL").unwrap_or_default();
    let expected = if asked.starts_with("postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert_eq!(store.backend, expected);
    let version: String = match store.backend {
        Backend::Sqlite => sqlx::query_scalar("SELECT sqlite_version()"),
        Backend::Postgres => sqlx::query_scalar("SELECT version()"),
    }
    .fetch_one(&store.db)
    .await
    .expect("the database answers");
    assert!(
        store.backend == Backend::Sqlite || version.starts_with("PostgreSQL"),
        "{version}"
    );
    assert!(format!("{:?}", store.store).contains(match store.backend {
        Backend::Sqlite => "SqliteStore",
        Backend::Postgres => "PgStore",
    }));
}
