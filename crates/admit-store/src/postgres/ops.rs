//! PostgreSQL side of the readiness figures, webhook rejections,
//! free-standing audit entries and workspace removal.

use admit_core::{Timestamp, WorkspaceId};
use serde_json::json;
use sqlx::Row;

use super::PgStore;
use super::audit;
use super::rows::billing_row;
use crate::StoreError;
use crate::audit::{AuditEntry, StoredAuditEntry};
use crate::directory::Actor;
use crate::ops::{Backlog, HeldCase, OpsStore, ReadinessFacts};

fn count(row: &sqlx::postgres::PgRow, column: &str) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

// "Verified deliveries" are Stripe's: deliveries admit made itself (`admit
// simulate`, the QA gate) carry a `User-Agent` of `admit-…` and are left out.
// `ILIKE` because SQLite's `LIKE` ignores ASCII case: both dialects leave
// out the same deliveries.

#[async_trait::async_trait]
impl OpsStore for PgStore {
    async fn readiness_facts(&self, since: Timestamp) -> Result<ReadinessFacts, StoreError> {
        let queues = self.backlog().await?;
        let mut conn = self.pool.acquire().await?;
        let inbox = sqlx::query(
            "SELECT
               (SELECT MAX(received_at) FROM stripe_events
                 WHERE source = 'webhook'
                   AND NOT COALESCE(headers::json ->> 'user-agent', '') ILIKE 'admit-%') AS last_webhook,
               (SELECT COUNT(*) FROM stripe_events
                 WHERE source = 'webhook' AND received_at >= $1
                   AND NOT COALESCE(headers::json ->> 'user-agent', '') ILIKE 'admit-%') AS webhooks,
               (SELECT COUNT(*) FROM stripe_events
                 WHERE status = 'ignored' AND outcome = 'livemode_mismatch'
                   AND received_at >= $1) AS mismatches",
        )
        .bind(since.unix())
        .fetch_one(&mut *conn)
        .await?;
        let cases = sqlx::query(
            r#"SELECT id, kind, workspace_id, created_at FROM cases
             WHERE state = 'held' ORDER BY created_at, id COLLATE "C" LIMIT 100"#,
        )
        .fetch_all(&mut *conn)
        .await?;
        let held_cases = cases
            .iter()
            .map(|row| {
                Ok(HeldCase {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    workspace_id: row.try_get("workspace_id")?,
                    created_at: Timestamp::from_unix(row.try_get("created_at")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // `SUM` of a BIGINT is NUMERIC here: cast back to decode as `i64`.
        let rejections = sqlx::query(
            r#"SELECT code, SUM(count)::BIGINT AS n FROM webhook_rejections
             WHERE hour >= $1 GROUP BY code ORDER BY code COLLATE "C""#,
        )
        .bind(since.unix() - since.unix().rem_euclid(3600))
        .fetch_all(&mut *conn)
        .await?;
        let rejections_since = rejections
            .iter()
            .map(|row| Ok((row.try_get("code")?, count(row, "n")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let at = |column: &str| -> Result<Option<Timestamp>, StoreError> {
            let value: Option<i64> = inbox.try_get(column)?;
            Ok(value.map(Timestamp::from_unix))
        };
        Ok(ReadinessFacts {
            backlog: queues.inbox,
            oldest_unprocessed: queues.oldest_unprocessed,
            failed_events: queues.failed_events,
            pending_mail: queues.pending_mail,
            dead_mail: queues.dead_mail,
            held_cases,
            held_total: queues.held.iter().map(|(_, n)| n).sum(),
            last_webhook_at: at("last_webhook")?,
            webhooks_recent: count(&inbox, "webhooks")?,
            mode_mismatches_recent: count(&inbox, "mismatches")?,
            rejections_recent: rejections_since,
        })
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // The event counts run on the partial index over unsettled events:
        // PostgreSQL sees that `status = 'received'` implies its condition.
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM stripe_events WHERE status = 'received') AS backlog,
               (SELECT MIN(received_at) FROM stripe_events WHERE status = 'received') AS oldest,
               (SELECT COUNT(*) FROM stripe_events WHERE status = 'failed') AS failed,
               (SELECT COUNT(*) FROM outbox WHERE state = 'pending') AS pending_mail,
               (SELECT COUNT(*) FROM outbox WHERE state = 'dead') AS dead_mail",
        )
        .fetch_one(&mut *conn)
        .await?;
        let held: Vec<(String, i64, i64)> = sqlx::query_as(
            r#"SELECT kind, COUNT(*), MIN(created_at) FROM cases WHERE state = 'held'
             GROUP BY kind ORDER BY kind COLLATE "C""#,
        )
        .fetch_all(&mut *conn)
        .await?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(Backlog {
            inbox: count(&row, "backlog")?,
            oldest_unprocessed: oldest.map(Timestamp::from_unix),
            failed_events: count(&row, "failed")?,
            pending_mail: count(&row, "pending_mail")?,
            dead_mail: count(&row, "dead_mail")?,
            held_oldest: held
                .iter()
                .map(|(kind, _, oldest)| (kind.clone(), Timestamp::from_unix(*oldest)))
                .collect(),
            held: held
                .into_iter()
                .map(|(kind, n, _)| (kind, u64::try_from(n).unwrap_or(0)))
                .collect(),
        })
    }

    async fn record_rejections(
        &self,
        code: &str,
        count: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // One statement: concurrent instances add to the same hour's row
        // without losing a count.
        sqlx::query(
            "INSERT INTO webhook_rejections (hour, code, count) VALUES ($1, $2, $3)
             ON CONFLICT (hour, code) DO UPDATE SET count = webhook_rejections.count + excluded.count",
        )
        .bind(now.unix() - now.unix().rem_euclid(3600))
        .bind(code)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        audit::insert(&mut conn, entry).await
    }

    async fn audit_by_action(
        &self,
        action: &str,
        limit: u32,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, workspace_id, subject, before, after, cause
             FROM audit_log WHERE action = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(action)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit::audit_row).collect()
    }

    async fn delete_workspace(
        &self,
        workspace: &WorkspaceId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // The workspace row first, as every change to a workspace's members
            // takes it: none lands between these checks and the removal.
            let exists = sqlx::query("SELECT name FROM workspaces WHERE id = $1 FOR UPDATE")
                .bind(workspace.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = exists else {
                return Ok(false);
            };
            let name: String = row.try_get("name")?;
            // Billing states and cases are a derivation's to write, under the
            // version rows of its scope: bumping the workspace's key now makes a
            // derivation that read it and commits later start over (it waits for
            // this transaction and sees its key moved), and one that committed
            // first is seen by the reads below. The removal bumps this key anyway.
            sqlx::query("SELECT admit_bump(ARRAY['w:' || $1])")
                .bind(workspace.as_str())
                .execute(&mut *tx)
                .await?;
            let billing =
                sqlx::query("SELECT * FROM billing_states WHERE workspace_id = $1 FOR UPDATE")
                    .bind(workspace.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .as_ref()
                    .map(billing_row)
                    .transpose()?;
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM cases WHERE workspace_id = $1 AND state = 'held'",
            )
            .bind(workspace.as_str())
            .fetch_one(&mut *tx)
            .await?;
            match admit_core::plan_workspace_removal(billing.as_ref(), u64::try_from(held).unwrap_or(0))
            {
                Ok(()) => {}
                Err(admit_core::RemovalRefused::SubscriptionRunning) => {
                    return Err(StoreError::WorkspaceHasSubscription);
                }
                Err(admit_core::RemovalRefused::CasesHeld) => {
                    return Err(StoreError::WorkspaceHasHeldCases);
                }
            }
            for statement in [
                // Mail about a workspace that is gone is withdrawn, not sent.
                "UPDATE outbox SET state = 'superseded' WHERE workspace_id = $1 AND state = 'pending'",
                "DELETE FROM billing_states WHERE workspace_id = $1",
                "DELETE FROM stripe_links WHERE workspace_id = $1",
                "DELETE FROM bindings WHERE workspace_id = $1",
                "DELETE FROM checkout_intents WHERE workspace_id = $1",
                // Members and sign-in tokens go with it (ON DELETE CASCADE).
                "DELETE FROM workspaces WHERE id = $1",
            ] {
                sqlx::query(statement)
                    .bind(workspace.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            audit::insert(
                &mut tx,
                &AuditEntry {
                    at: now,
                    actor: actor.to_string(),
                    action: "workspace.deleted".to_owned(),
                    workspace_id: Some(workspace.clone()),
                    subject: Some("workspace".to_owned()),
                    before: Some(json!({ "name": name })),
                    after: None,
                    cause: None,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}
