//! Workspaces for the traffic to land in, written straight into the
//! database in one transaction: creating 100,000 through the API would take
//! one commit each and measure nothing the benchmark is about.

use std::path::Path;

use sqlx::Connection;

pub async fn workspaces(db: &Path, ids: &[String]) -> anyhow::Result<()> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let mut tx = conn.begin().await?;
    for id in ids {
        sqlx::query("INSERT OR IGNORE INTO workspaces (id, name, created_at) VALUES (?, ?, 0)")
            .bind(id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO members (workspace_id, email, role, added_at) VALUES (?, ?, 'owner', 0)",
        )
        .bind(id)
        .bind(crate::traffic::owner(id))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// A workspace as the console run seeds it: created when it was, with
/// its members (the first is the owner).
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub created_at: i64,
    /// `(email, role)`.
    pub members: Vec<(String, &'static str)>,
}

/// [`workspaces`] with their creation times and every member.
pub async fn directory(db: &Path, workspaces: &[Workspace]) -> anyhow::Result<()> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let mut tx = conn.begin().await?;
    for workspace in workspaces {
        sqlx::query("INSERT OR IGNORE INTO workspaces (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&workspace.id)
            .bind(&workspace.id)
            .bind(workspace.created_at)
            .execute(&mut *tx)
            .await?;
        for (email, role) in &workspace.members {
            sqlx::query(
                "INSERT OR IGNORE INTO members (workspace_id, email, role, added_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&workspace.id)
            .bind(email)
            .bind(role)
            .bind(workspace.created_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

async fn open(dir: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    let url = format!("sqlite://{}", dir.join("admit.db").display());
    Ok(sqlx::SqliteConnection::connect(&url).await?)
}

/// The database's size on disk once its WAL is checkpointed into it.
pub async fn checkpointed_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut conn = open(dir).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(crate::bytes_of(dir))
}

/// The inbox's own pages (the `stripe_events` table and its indexes), from
/// SQLite's `dbstat`; `None` where the library lacks it.
pub async fn inbox_bytes(dir: &Path) -> anyhow::Result<Option<u64>> {
    let mut conn = open(dir).await?;
    let bytes: Result<i64, _> = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat
         WHERE name IN (SELECT name FROM sqlite_schema
                        WHERE tbl_name IN ('stripe_events', 'stripe_event_bodies'))",
    )
    .fetch_one(&mut conn)
    .await;
    conn.close().await?;
    Ok(bytes.ok().map(|b| u64::try_from(b).unwrap_or(0)))
}

/// The raw bodies stored, byte for byte.
pub async fn payload_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut conn = open(dir).await?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(COALESCE(raw_length, length(payload))), 0) FROM stripe_event_bodies",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// How the stored events ended, e.g. `19000 processed, 40 ignored`.
pub async fn statuses(dir: &Path) -> anyhow::Result<String> {
    let mut conn = open(dir).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM stripe_events GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut conn)
    .await?;
    // A held event in generated traffic is worth a look: say why.
    let held: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT type, COALESCE(outcome, ''), COUNT(*) FROM stripe_events WHERE status = 'held'
         GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(summary(&rows, &held))
}

/// `19000 processed, 40 ignored; held: 3 invoice.paid (awaiting_price)`.
fn summary(rows: &[(String, i64)], held: &[(String, String, i64)]) -> String {
    let mut summary = rows
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (event_type, outcome, n) in held {
        summary.push_str(&format!("; held: {n} {event_type} ({outcome})"));
    }
    summary
}

/// Rows a multi-row seeding insert writes at most (4 parameters a row at
/// most, well within PostgreSQL's 65,535).
const PG_CHUNK: usize = 2_000;

/// [`workspaces`] for a PostgreSQL database: the workspaces and their
/// owners, in one transaction of multi-row inserts.
pub async fn pg_workspaces(url: &str, ids: &[String]) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    for chunk in ids.chunks(PG_CHUNK) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO workspaces (id, name, created_at) ",
        );
        insert.push_values(chunk, |mut row, id| {
            row.push_bind(id).push_bind(id).push_bind(0_i64);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut *tx).await?;
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO members (workspace_id, email, role, added_at) ",
        );
        insert.push_values(chunk, |mut row, id| {
            row.push_bind(id)
                .push_bind(crate::traffic::owner(id))
                .push_bind("owner")
                .push_bind(0_i64);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// [`directory`] for a PostgreSQL database, in multi-row inserts.
pub async fn pg_directory(url: &str, workspaces: &[Workspace]) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    for chunk in workspaces.chunks(PG_CHUNK) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO workspaces (id, name, created_at) ",
        );
        insert.push_values(chunk, |mut row, w| {
            row.push_bind(&w.id)
                .push_bind(&w.id)
                .push_bind(w.created_at);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut *tx).await?;
    }
    let members: Vec<(&str, &str, &str, i64)> = workspaces
        .iter()
        .flat_map(|w| {
            w.members
                .iter()
                .map(|(email, role)| (w.id.as_str(), email.as_str(), *role, w.created_at))
        })
        .collect();
    for chunk in members.chunks(PG_CHUNK) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO members (workspace_id, email, role, added_at) ",
        );
        insert.push_values(chunk, |mut row, (id, email, role, at)| {
            row.push_bind(*id)
                .push_bind(*email)
                .push_bind(*role)
                .push_bind(*at);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// [`statuses`] for a PostgreSQL database.
pub async fn pg_statuses(url: &str) -> anyhow::Result<String> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM stripe_events GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut conn)
    .await?;
    let held: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT type, COALESCE(outcome, ''), COUNT(*) FROM stripe_events WHERE status = 'held'
         GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 5",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(summary(&rows, &held))
}

/// The tables of a PostgreSQL database that were scanned sequentially, the
/// most rows read first: their sequential and index scans, their rows, and
/// whether autovacuum had analyzed them (a new database has no statistics
/// until it does, and the planner may scan where an index would serve).
pub async fn pg_table_scans(url: &str) -> anyhow::Result<String> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), n_live_tup,
                autoanalyze_count + analyze_count
         FROM pg_stat_user_tables WHERE seq_scan > 0
         ORDER BY seq_tup_read DESC, relname LIMIT 5",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows
        .iter()
        .map(|(table, seq, read, idx, live, analyzed)| {
            format!(
                "{table}: {seq} sequential scans reading {:.1}M rows, {idx} index scans, {live} rows, analyzed {analyzed}×",
                *read as f64 / 1e6
            )
        })
        .collect::<Vec<_>>()
        .join(" · "))
}
