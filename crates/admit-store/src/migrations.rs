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
];

fn migrator(embedded: &[Embedded]) -> Migrator {
    Migrator::with_migrations(
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
    )
}

pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub(crate) fn sqlite_versions() -> impl Iterator<Item = i64> {
    SQLITE.iter().map(|m| m.version)
}
