//! PostgreSQL side of outbox delivery. A claim picks due rows with
//! `FOR UPDATE SKIP LOCKED` and leases them in the same `UPDATE …
//! RETURNING`, so two instances never hold the same message; the lease
//! column still says how long the claim holds once the statement commits.
//! Every later write is guarded by `state = 'pending'`, so a sent message is
//! never sent again and a failure is never dropped.

use admit_core::{Timestamp, WorkspaceId};
use serde_json::json;

use super::rows::outbox_row;
use super::{OUTBOX_CHANNEL, PgStore, audit};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::outbox::OutboxStore;
use crate::provisioning::OutboxRow;

#[async_trait::async_trait]
impl OutboxStore for PgStore {
    async fn claim_messages(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // A row another instance is claiming this moment is skipped, not
        // waited for; one it claimed and committed meanwhile is checked
        // again under its new lease and left out.
        let rows = sqlx::query(
            "UPDATE outbox SET lease_until = $1 + $2
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE state = 'pending' AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_attempt_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(now.unix())
        .bind(lease_secs)
        .bind(i64::from(limit))
        // Planned each time: see `scope.rs` on generic plans.
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows.iter().map(outbox_row).collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order of its own.
        claimed.sort_by_key(|row| (row.next_attempt_at, row.id));
        Ok(claimed)
    }

    async fn renew_message_lease(
        &self,
        id: i64,
        held: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE outbox SET lease_until = $1
             WHERE id = $2 AND lease_until = $3 AND state = 'pending'",
        )
        .bind(until.unix())
        .bind(id)
        .bind(held.unix())
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release_message(&self, id: i64, lease_until: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET lease_until = NULL
             WHERE id = $1 AND lease_until = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(lease_until.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_sent(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1, lease_until = NULL
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(now.unix())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1,
                 next_attempt_at = COALESCE($2, next_attempt_at),
                 state = CASE WHEN $2 IS NULL THEN 'dead' ELSE 'pending' END,
                 lease_until = NULL
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(error)
        .bind(retry_at.map(Timestamp::unix))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn resend(&self, id: i64, actor: &str, now: Timestamp) -> Result<OutboxRow, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // Locked: a second resend of the same message waits here, then finds
            // it pending and changes nothing.
            let before = sqlx::query("SELECT * FROM outbox WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(outbox_row)
                .transpose()?
                .ok_or(StoreError::OutboxNotFound)?;
            if before.state == "pending" {
                tx.commit().await?;
                return Ok(before);
            }
            let row = sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL,
                     lease_until = NULL
                 WHERE id = $2
                 RETURNING *",
            )
            .bind(now.unix())
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let after = outbox_row(&row)?;
            let workspace_id = before
                .workspace_id
                .clone()
                .map(WorkspaceId::parse)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            audit::insert(
                &mut tx,
                &AuditEntry {
                    at: now,
                    actor: actor.to_owned(),
                    action: "outbox.resend".into(),
                    workspace_id,
                    subject: Some(format!("outbox:{id}")),
                    before: Some(json!({
                        "state": before.state,
                        "attempts": before.attempts,
                        "last_error": before.last_error,
                    })),
                    after: Some(json!({ "state": after.state, "attempts": after.attempts })),
                    cause: None,
                },
            )
            .await?;
            // Due now: every instance's sender wakes at the commit.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(after)
        })
        .await
    }

    async fn get_message(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(outbox_row).transpose()
    }
}
