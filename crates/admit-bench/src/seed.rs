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
