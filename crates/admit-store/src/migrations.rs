//! Migrations embedded in the binary, one folder per dialect with the same
//! version numbers. An applied migration is never edited: sqlx records its
//! checksum and refuses to start on a mismatch.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

struct Embedded {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const SQLITE: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "inbox",
        sql: include_str!("../migrations/sqlite/0001_inbox.sql"),
    },
    Embedded {
        version: 2,
        description: "provisioning",
        sql: include_str!("../migrations/sqlite/0002_provisioning.sql"),
    },
    Embedded {
        version: 3,
        description: "delivery",
        sql: include_str!("../migrations/sqlite/0003_delivery.sql"),
    },
    Embedded {
        version: 4,
        description: "billing semantics",
        sql: include_str!("../migrations/sqlite/0004_billing_semantics.sql"),
    },
    Embedded {
        version: 5,
        description: "scenarios",
        sql: include_str!("../migrations/sqlite/0005_scenarios.sql"),
    },
    Embedded {
        version: 6,
        description: "list indexes",
        sql: include_str!("../migrations/sqlite/0006_list_indexes.sql"),
    },
    Embedded {
        version: 7,
        description: "release gate",
        sql: include_str!("../migrations/sqlite/0007_release.sql"),
    },
    Embedded {
        version: 8,
        description: "throughput",
        sql: include_str!("../migrations/sqlite/0008_throughput.sql"),
    },
    Embedded {
        version: 9,
        description: "subscription checkpoints",
        sql: include_str!("../migrations/sqlite/0009_checkpoints.sql"),
    },
    Embedded {
        version: 10,
        description: "body encoding",
        sql: include_str!("../migrations/sqlite/0010_body_encoding.sql"),
    },
    Embedded {
        version: 11,
        description: "checkout leases",
        sql: include_str!("../migrations/sqlite/0011_checkout_leases.sql"),
    },
    Embedded {
        version: 12,
        description: "scope indexes",
        sql: include_str!("../migrations/sqlite/0012_scope_indexes.sql"),
    },
    Embedded {
        version: 13,
        description: "operators",
        sql: include_str!("../migrations/sqlite/0013_operators.sql"),
    },
];

/// The same versions as [`SQLITE`] (a test holds them equal).
const POSTGRES: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "inbox",
        sql: include_str!("../migrations/postgres/0001_inbox.sql"),
    },
    Embedded {
        version: 2,
        description: "provisioning",
        sql: include_str!("../migrations/postgres/0002_provisioning.sql"),
    },
    Embedded {
        version: 3,
        description: "delivery",
        sql: include_str!("../migrations/postgres/0003_delivery.sql"),
    },
    Embedded {
        version: 4,
        description: "billing semantics",
        sql: include_str!("../migrations/postgres/0004_billing_semantics.sql"),
    },
    Embedded {
        version: 5,
        description: "scenarios",
        sql: include_str!("../migrations/postgres/0005_scenarios.sql"),
    },
    Embedded {
        version: 6,
        description: "list indexes",
        sql: include_str!("../migrations/postgres/0006_list_indexes.sql"),
    },
    Embedded {
        version: 7,
        description: "release gate",
        sql: include_str!("../migrations/postgres/0007_release.sql"),
    },
    Embedded {
        version: 8,
        description: "throughput",
        sql: include_str!("../migrations/postgres/0008_throughput.sql"),
    },
    Embedded {
        version: 9,
        description: "subscription checkpoints",
        sql: include_str!("../migrations/postgres/0009_checkpoints.sql"),
    },
    Embedded {
        version: 10,
        description: "body encoding",
        sql: include_str!("../migrations/postgres/0010_body_encoding.sql"),
    },
    Embedded {
        version: 11,
        description: "checkout leases",
        sql: include_str!("../migrations/postgres/0011_checkout_leases.sql"),
    },
    Embedded {
        version: 12,
        description: "scope indexes",
        sql: include_str!("../migrations/postgres/0012_scope_indexes.sql"),
    },
    Embedded {
        version: 13,
        description: "operators",
        sql: include_str!("../migrations/postgres/0013_operators.sql"),
    },
];

/// Migrations only add, so an instance of the previous release keeps
/// serving after a newer one migrated the database: `ignore_missing` lets
/// it start (and `migrate`) beside versions it does not know, which are
/// left alone; `check_ready` still wants every version it does know.
fn migrator(embedded: &[Embedded]) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        embedded
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(m.sql),
                    false,
                )
            })
            .collect(),
    );
    migrator.set_ignore_missing(true);
    migrator
}

pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub(crate) fn sqlite_versions() -> impl Iterator<Item = i64> {
    SQLITE.iter().map(|m| m.version)
}

pub(crate) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

pub(crate) fn postgres_versions() -> impl Iterator<Item = i64> {
    POSTGRES.iter().map(|m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inbox row as a release before version 4 stored it.
    async fn insert(pool: &sqlx::SqlitePool, id: &str, event_type: &str, object: &str) {
        let payload = format!(
            r#"{{"id":"{id}","object":"event","type":"{event_type}","created":1795000000,"data":{{"object":{object}}}}}"#
        );
        sqlx::query(
            "INSERT INTO stripe_events (id, type, created, livemode, object_type, metadata, payload,
                 headers, source, received_at)
             VALUES (?, ?, 1795000000, 0, 'invoice', '{}', ?, '{}', 'webhook', 1795000001)",
        )
        .bind(id)
        .bind(event_type)
        .bind(payload.into_bytes())
        .execute(pool)
        .await
        .expect("insert");
    }

    /// Every file of a dialect's folder is embedded, under the version
    /// its name gives, with its text; none is left out or listed twice.
    fn assert_folder_embedded(dialect: &str, embedded: &[Embedded]) {
        let folder = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
        let mut on_disk: Vec<(i64, String)> = std::fs::read_dir(folder)
            .expect("the migrations folder")
            .map(|entry| {
                let path = entry.expect("an entry").path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let version = name
                    .split('_')
                    .next()
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or_else(|| panic!("{name} starts with its version"));
                (version, std::fs::read_to_string(&path).expect("readable"))
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(i64, String)> = embedded
            .iter()
            .map(|m| (m.version, m.sql.to_owned()))
            .collect();
        assert_eq!(embedded, on_disk, "{dialect}");
    }

    #[test]
    fn every_migration_file_is_embedded_under_its_version() {
        assert_folder_embedded("sqlite", SQLITE);
        assert_folder_embedded("postgres", POSTGRES);
    }

    #[test]
    fn both_dialects_list_the_same_versions_and_descriptions() {
        let listed = |embedded: &[Embedded]| -> Vec<(i64, &str)> {
            embedded
                .iter()
                .map(|m| (m.version, m.description))
                .collect()
        };
        assert_eq!(listed(SQLITE), listed(POSTGRES));
    }

    #[tokio::test]
    async fn an_older_release_starts_on_a_database_a_newer_one_migrated() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        migrator(SQLITE)
            .run(&pool)
            .await
            .expect("the newer release");
        let older = &SQLITE[..SQLITE.len() - 1];
        migrator(older)
            .run(&pool)
            .await
            .expect("the older release migrates beside a version it does not know");
    }

    #[tokio::test]
    async fn version_8_moves_the_bodies_out_and_keeps_every_event_processable() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        migrator(&SQLITE[..7])
            .run(&pool)
            .await
            .expect("versions 1-7");
        insert(
            &pool,
            "evt_before_8",
            "invoice.paid",
            r#"{"id":"in_1","object":"invoice"}"#,
        )
        .await;
        sqlx::query("UPDATE stripe_events SET status = 'processed' WHERE id = 'evt_before_8'")
            .execute(&pool)
            .await
            .expect("settle");
        migrator(SQLITE).run(&pool).await.expect("version 8");
        let (status, billing, body): (String, Option<String>, Vec<u8>) = sqlx::query_as(
            "SELECT e.status, e.billing, b.payload FROM stripe_events e
             JOIN stripe_event_bodies b ON b.id = e.id",
        )
        .fetch_one(&pool)
        .await
        .expect("read");
        assert_eq!(status, "processed");
        assert_eq!(
            billing, None,
            "read from its body when it is processed again"
        );
        assert!(body.starts_with(br#"{"id":"evt_before_8""#));
        // Settling it again bumps the versions of what it names.
        sqlx::query(
            "UPDATE stripe_events SET status = 'received', subscription_id = 'sub_1'
             WHERE id = 'evt_before_8'",
        )
        .execute(&pool)
        .await
        .expect("requeue");
        let version: i64 =
            sqlx::query_scalar("SELECT version FROM scope_versions WHERE key = 'sub_1'")
                .fetch_one(&pool)
                .await
                .expect("version");
        assert_eq!(version, 1);
    }

    #[tokio::test]
    async fn version_4_fills_the_payment_ids_of_events_stored_before_it() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        migrator(&SQLITE[..3])
            .run(&pool)
            .await
            .expect("versions 1-3");
        insert(
            &pool,
            "evt_old_paid",
            "invoice.paid",
            r#"{"id":"in_1","object":"invoice","charge":{"id":"ch_1","object":"charge"},"payment_intent":"pi_1"}"#,
        )
        .await;
        insert(
            &pool,
            "evt_old_customer",
            "customer.created",
            r#"{"id":"cus_1","object":"customer","charge":"ch_not_a_payment"}"#,
        )
        .await;
        migrator(SQLITE).run(&pool).await.expect("version 4");
        let ids: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, charge_id, payment_intent_id FROM stripe_events ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("read");
        assert_eq!(
            ids,
            [
                ("evt_old_customer".into(), None, None),
                (
                    "evt_old_paid".into(),
                    Some("ch_1".into()),
                    Some("pi_1".into())
                ),
            ]
        );
    }
}
