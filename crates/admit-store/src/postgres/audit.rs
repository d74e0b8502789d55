//! Audit log rows. Written inside the transaction of the change they record.

use admit_core::{Timestamp, WorkspaceId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::StoreError;
use crate::audit::{AuditEntry, StoredAuditEntry};
use crate::values::{corrupt, parse_workspace};

pub(crate) async fn insert(conn: &mut PgConnection, entry: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, workspace_id, subject, before, after, cause)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.at.unix())
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.workspace_id.as_ref().map(WorkspaceId::as_str))
    .bind(&entry.subject)
    .bind(entry.before.as_ref().map(ToString::to_string))
    .bind(entry.after.as_ref().map(ToString::to_string))
    .bind(&entry.cause)
    .execute(conn)
    .await?;
    Ok(())
}

/// Several entries in one statement (a derivation writes a few at once).
pub(crate) async fn insert_all(
    conn: &mut PgConnection,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    // Within PostgreSQL's 65,535 parameters at 8 a row.
    for rows in entries.chunks(2000) {
        insert_rows(conn, rows).await?;
    }
    Ok(())
}

async fn insert_rows(conn: &mut PgConnection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "INSERT INTO audit_log (at, actor, action, workspace_id, subject, before, after, cause) ",
    );
    insert.push_values(entries, |mut row, entry| {
        row.push_bind(entry.at.unix())
            .push_bind(&entry.actor)
            .push_bind(&entry.action)
            .push_bind(entry.workspace_id.as_ref().map(WorkspaceId::as_str))
            .push_bind(&entry.subject)
            .push_bind(entry.before.as_ref().map(ToString::to_string))
            .push_bind(entry.after.as_ref().map(ToString::to_string))
            .push_bind(&entry.cause);
    });
    // A statement for each row count: not worth a place in the cache.
    insert.build().persistent(false).execute(conn).await?;
    Ok(())
}

pub(crate) async fn for_workspace(
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
    limit: i64,
) -> Result<Vec<StoredAuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, workspace_id, subject, before, after, cause
         FROM audit_log WHERE workspace_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(workspace.as_str())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(audit_row).collect()
}

/// One `audit_log` row.
pub(crate) fn audit_row(row: &PgRow) -> Result<StoredAuditEntry, StoreError> {
    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()
    };
    let workspace_id: Option<String> = row.try_get("workspace_id")?;
    Ok(StoredAuditEntry {
        id: row.try_get("id")?,
        entry: AuditEntry {
            at: Timestamp::from_unix(row.try_get("at")?),
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            workspace_id: workspace_id.map(parse_workspace).transpose()?,
            subject: row.try_get("subject")?,
            before: json("before")?,
            after: json("after")?,
            cause: row.try_get("cause")?,
        },
    })
}
