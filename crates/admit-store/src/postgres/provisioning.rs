//! PostgreSQL side of provisioning. A scope is read in a REPEATABLE READ
//! snapshot, without locks. A batch of derivations is written in one
//! transaction that first locks the version rows of every key the batch
//! read or writes (in key order, see `scope_versions`), then checks each
//! derivation against the versions its read saw: two instances committing
//! overlapping scopes are serialised on those rows, and the later one
//! finds the versions moved and derives again. Claims skip rows another
//! instance holds.

use admit_core::provisioning::CheckoutIntent;
use admit_core::{BillingState, CustomerId, Email, EventId, Role, Timestamp, WorkspaceId};

use sqlx::Row;

use super::PgStore;
use super::apply::{apply, create_workspaces};
use super::rows::{
    billing_row, billing_state, corrupt, outbox_row, parse_event_id, parse_workspace, stored_case,
};
use super::scope::{read_scope, scope_versions};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::events::EventStatus;
use crate::provisioning::{
    CaseResolution, CaseWrite, ClaimedEvent, CommitOutcome, EventKeys, History, OutboxRow,
    OutboxWrite, ProvisioningStore, ScopeCommit, ScopeRead, ScopeWrite, SessionStatus, StoredCase,
    replay_audit,
};
use crate::values::parse_role;

/// One snapshot for every lookup of a scope read.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// The workspace an event is linked to, for the audit entry of its replay:
/// the one its subscription, checkout session or customer is linked to
/// (in that order), else the workspace its metadata names, if that exists.
const LINKED_WORKSPACE: &str = r#"SELECT workspace_id FROM (
        SELECT l.workspace_id, 1 AS rank FROM stripe_events e
        JOIN stripe_links l ON l.kind = 'subscription' AND l.stripe_id = e.subscription_id
        WHERE e.id = $1
        UNION ALL
        SELECT l.workspace_id, 2 FROM stripe_events e
        JOIN stripe_links l ON l.kind = 'session' AND l.stripe_id = e.checkout_session_id
        WHERE e.id = $1
        UNION ALL
        SELECT l.workspace_id, 3 FROM stripe_events e
        JOIN stripe_links l ON l.kind = 'customer' AND l.stripe_id = e.customer_id
        WHERE e.id = $1
        UNION ALL
        SELECT e.workspace_hint, 4 FROM stripe_events e
        WHERE e.id = $1
    ) linked
    WHERE workspace_id IN (SELECT id FROM workspaces)
    ORDER BY rank, workspace_id COLLATE "C" LIMIT 1"#;

/// [`LINKED_WORKSPACE`] for event `id`: what `requeue_event` audits a
/// replay on (in its transaction) and `event_workspace` answers.
async fn linked_workspace<'e, E>(
    executor: E,
    id: &EventId,
) -> Result<Option<WorkspaceId>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let workspace: Option<String> = sqlx::query_scalar(LINKED_WORKSPACE)
        .bind(id.as_str())
        .fetch_optional(executor)
        .await?;
    workspace.map(parse_workspace).transpose()
}

/// `received_at`, `received_ms`, id, customer, subscription, session,
/// whether ingress stored a billing event.
type ClaimRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

#[async_trait::async_trait]
impl ProvisioningStore for PgStore {
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        // Ties in time go by the ids' bytes (`COLLATE "C"`), as SQLite
        // orders them, whatever the database's collation: every backend
        // hands out the same batch.
        let mut claimed: Vec<ClaimRow> = sqlx::query_as(
            r#"UPDATE stripe_events SET lease_until = $1 + $2, attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM stripe_events
                 WHERE status IN ('received', 'failed')
                   AND (status = 'received'
                        OR (next_attempt_at IS NOT NULL AND next_attempt_at <= $1))
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY received_at, received_ms, id COLLATE "C"
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING received_at, COALESCE(received_ms, received_at * 1000), id,
                       customer_id, subscription_id, checkout_session_id,
                       billing IS NOT NULL"#,
        )
        .bind(now.unix())
        .bind(lease_secs)
        .bind(i64::from(limit))
        // Planned each time: see `scope.rs` on generic plans.
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        // RETURNING has no order of its own.
        claimed.sort();
        claimed
            .into_iter()
            .map(
                |(_, received_ms, id, customer, subscription, session, billed)| {
                    Ok(ClaimedEvent {
                        id: parse_event_id(id)?,
                        received_ms,
                        billed,
                        purchase_keys: [customer, subscription, session]
                            .into_iter()
                            .flatten()
                            .collect(),
                    })
                },
            )
            .collect()
    }

    async fn release_event(&self, id: &EventId, lease_until: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE stripe_events SET lease_until = NULL
             WHERE id = $1 AND lease_until = $2 AND status IN ('received', 'failed')",
        )
        .bind(id.as_str())
        .bind(lease_until.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn read_scope(
        &self,
        claimed: &EventId,
        keys: &EventKeys,
        history: History,
    ) -> Result<ScopeRead, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_SNAPSHOT).await?;
        let read = read_scope(&mut tx, claimed, keys, history).await?;
        tx.rollback().await?;
        Ok(read)
    }

    async fn commit_scopes(
        &self,
        commits: &[ScopeCommit],
        now: Timestamp,
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every key the batch read or writes is locked before anything is
        // decided, so the triggers' bumps of this batch's writes rarely wait
        // on another instance's lock (a crossing that remains is a
        // deadlock PostgreSQL breaks, and the loser derives again).
        let keys = crate::batch::touched_keys(commits);
        let current = match scope_versions(&mut tx, &keys, true).await {
            Ok(current) => current,
            Err(error) if error.is_lost_race() => {
                return Ok(vec![CommitOutcome::Conflict; commits.len()]);
            }
            Err(error) => return Err(error),
        };
        let crate::batch::Plan {
            mut outcomes,
            merged,
            write,
        } = crate::batch::plan(commits, &current);
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        match apply(&mut savepoint, &write, now).await {
            Ok(()) => {
                savepoint.commit().await?;
                for &i in &merged {
                    outcomes[i] = Some(CommitOutcome::Written);
                }
            }
            // One of them fails: each is written alone, so that only the
            // failing one is refused (and says why).
            Err(error) => {
                tracing::warn!(
                    derivations = merged.len(),
                    error = %error.chain(),
                    "a batch's merged write failed; writing each derivation on its own"
                );
                savepoint.rollback().await?;
            }
        }
        for (commit, outcome) in commits.iter().zip(outcomes.iter_mut()) {
            if outcome.is_some() {
                continue;
            }
            let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
            let written = if commit.write.create_workspaces.is_empty() {
                apply(&mut savepoint, &commit.write, now).await
            } else {
                create_workspaces(&mut savepoint, &commit.write, now).await
            };
            *outcome = Some(match written {
                Ok(()) => {
                    savepoint.commit().await?;
                    crate::batch::written_alone(commit)
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    if error.is_lost_race() {
                        CommitOutcome::Conflict
                    } else {
                        CommitOutcome::Failed(error.chain())
                    }
                }
            });
        }
        tx.commit().await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(CommitOutcome::Conflict))
            .collect())
    }

    async fn finish_event_unprovisioned(
        &self,
        id: &EventId,
        status: EventStatus,
        reason: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let failed = status == EventStatus::Failed;
        sqlx::query(
            "UPDATE stripe_events SET status = $1, outcome = $2, last_error = $3,
                 next_attempt_at = $4, lease_until = NULL, scenario = NULL,
                 processed_at = CASE WHEN $5 THEN processed_at
                                     ELSE EXTRACT(EPOCH FROM now())::BIGINT END
             WHERE id = $6 AND status IN ('received', 'failed')",
        )
        .bind(status.as_str())
        .bind(if failed { "error" } else { reason })
        .bind(failed.then_some(reason))
        .bind(retry_at.map(Timestamp::unix))
        .bind(failed)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_billing(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Option<BillingState>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        billing_state(&mut conn, workspace).await
    }

    async fn access_facts(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
    ) -> Result<Option<(Option<Role>, Option<BillingState>)>, StoreError> {
        // One statement is one consistent read, and one round trip on the
        // busiest route.
        let Some(row) = sqlx::query(
            "SELECT (SELECT role FROM members WHERE workspace_id = w.id AND email = $2) AS member_role,
                    b.workspace_id AS billed, b.*
             FROM workspaces w LEFT JOIN billing_states b ON b.workspace_id = w.id
             WHERE w.id = $1",
        )
        .bind(workspace.as_str())
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let role: Option<String> = row.try_get("member_role")?;
        let role = role.as_deref().map(parse_role).transpose()?;
        let billed: Option<String> = row.try_get("billed")?;
        let billing = billed.map(|_| billing_row(&row)).transpose()?;
        Ok(Some((role, billing)))
    }

    async fn get_case(&self, id: &str) -> Result<Option<StoredCase>, StoreError> {
        let row = sqlx::query("SELECT * FROM cases WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_case).transpose()
    }

    async fn resolve_case(
        &self,
        id: &str,
        resolution: &CaseResolution,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<StoredCase, StoreError> {
        super::retrying(|| async move {
            super::cases::resolve_case(self, id, resolution, actor, now).await
        })
        .await
    }

    async fn insert_intent(
        &self,
        intent: &CheckoutIntent,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkout_intents (session_id, workspace_id, initiator_email, purchaser_email, plan, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(&intent.session_id)
        .bind(intent.workspace.as_str())
        .bind(intent.initiator.as_str())
        .bind(intent.purchaser.as_ref().map(Email::as_str))
        .bind(intent.plan.as_str())
        .bind(now.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lease_checkout(
        &self,
        workspace: &WorkspaceId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement: taken when free, expired or already this holder's.
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO checkout_leases (workspace_id, holder, until) VALUES ($1, $2, $4)
             ON CONFLICT (workspace_id) DO UPDATE SET holder = excluded.holder,
                 until = excluded.until
             WHERE checkout_leases.until <= $3 OR checkout_leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(workspace.as_str())
        .bind(holder)
        .bind(now.unix())
        .bind(until.unix())
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn end_checkout_lease(
        &self,
        workspace: &WorkspaceId,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM checkout_leases WHERE workspace_id = $1 AND holder = $2")
            .bind(workspace.as_str())
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn bind_customer(
        &self,
        customer: &CustomerId,
        workspace: &WorkspaceId,
        source: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ('customer', $1, $2, $3, $4)
             ON CONFLICT (kind, stripe_id) DO NOTHING",
        )
        .bind(customer.as_str())
        .bind(workspace.as_str())
        .bind(source)
        .bind(now.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_outbox(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE $1::TEXT IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    async fn workspace_customers(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<admit_core::WorkspaceCustomers, StoreError> {
        let bound: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stripe_id, created_at FROM bindings WHERE kind = 'customer' AND workspace_id = $1",
        )
        .bind(workspace.as_str())
        .fetch_all(&self.pool)
        .await?;
        let billing: Option<String> = sqlx::query_scalar(
            "SELECT stripe_customer_id FROM billing_states
             WHERE workspace_id = $1 AND stripe_customer_id IS NOT NULL",
        )
        .bind(workspace.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(admit_core::WorkspaceCustomers {
            bound: bound
                .into_iter()
                .map(|(id, at)| {
                    Ok((
                        CustomerId::parse(id).map_err(corrupt)?,
                        Timestamp::from_unix(at),
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
            billing: billing
                .map(CustomerId::parse)
                .transpose()
                .map_err(corrupt)?,
        })
    }

    async fn workspace_of_subscription(
        &self,
        subscription: &str,
    ) -> Result<Option<WorkspaceId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT workspace_id FROM stripe_links WHERE kind = 'subscription' AND stripe_id = $1 LIMIT 1",
        )
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        id.map(parse_workspace).transpose()
    }

    async fn count_subscription_events(&self, subscription: &str) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE subscription_id = $1")
                .bind(subscription)
                .fetch_one(&self.pool)
                .await?;
        u64::try_from(count).map_err(corrupt)
    }

    async fn record_case(
        &self,
        case: &CaseWrite,
        messages: &[OutboxWrite],
        audit_entry: &AuditEntry,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // Two instances recording the same case wait for each other here;
            // the second then finds it.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("case:{}", case.key))
                .execute(&mut *tx)
                .await?;
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM cases WHERE case_key = $1")
                    .bind(&case.key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() {
                return Ok(false);
            }
            let write = ScopeWrite {
                cases: vec![case.clone()],
                outbox: messages.to_vec(),
                audit: vec![audit_entry.clone()],
                ..ScopeWrite::default()
            };
            apply(&mut tx, &write, now).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn session_status(&self, session_id: &str) -> Result<SessionStatus, StoreError> {
        super::session::session_status(self, session_id).await
    }

    async fn requeue_event(
        &self,
        id: &EventId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE stripe_events SET status = 'received', next_attempt_at = NULL,
                     lease_until = NULL, scenario = NULL WHERE id = $1",
            )
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Ok(false);
            }
            let workspace = linked_workspace(&mut *tx, id).await?;
            super::audit::insert(&mut tx, &replay_audit(id, actor, workspace, now)).await?;
            tx.commit().await?;
            super::notify(self.pool.clone(), super::EVENTS_CHANNEL).await;
            Ok(true)
        })
        .await
    }

    async fn event_workspace(&self, id: &EventId) -> Result<Option<WorkspaceId>, StoreError> {
        linked_workspace(&self.pool, id).await
    }

    async fn pending_events(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stripe_events
             WHERE status IN ('received', 'failed')
               AND (status = 'received' OR next_attempt_at IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(count).map_err(corrupt)
    }
}
