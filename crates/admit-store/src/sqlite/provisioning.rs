//! SQLite side of provisioning. Every write runs under `BEGIN IMMEDIATE`, so
//! the scope read and the writes it leads to see and leave one consistent
//! state, and concurrent processors take turns instead of failing.

use admit_core::provisioning::{
    CaseKind, CheckoutIntent, ResolutionAction, ResolutionRefused, plan_resolution,
};
use admit_core::{BillingState, CustomerId, Email, EventId, Timestamp, WorkspaceId};
use serde_json::json;

use super::apply::{add_member, apply, create_workspaces, write_keys};
use super::directory::load_workspace;
use super::rows::{
    billing_state, corrupt, json_list, outbox_row, parse_event_id, parse_workspace, stored_case,
};
use super::scope::load_snapshot;
use super::{SqliteStore, audit};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::events::EventStatus;
use crate::provisioning::{
    CaseResolution, CaseWrite, Decide, EventKeys, OutboxRow, OutboxWrite, ProvisionOutcome,
    ProvisioningStore, ScopeWrite, SessionPayment, SessionStatus, StoredCase,
};

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[async_trait::async_trait]
impl ProvisioningStore for SqliteStore {
    async fn set_event_keys(&self, id: &EventId, keys: &EventKeys) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write_keys(&mut conn, id, keys).await
    }

    async fn claim_next_event(
        &self,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<EventId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE stripe_events SET lease_until = ?1 + ?2, attempts = attempts + 1
             WHERE id = (
                 SELECT id FROM stripe_events
                 WHERE (status = 'received'
                        OR (status = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?1))
                   AND (lease_until IS NULL OR lease_until <= ?1)
                 ORDER BY received_at, id
                 LIMIT 1)
             RETURNING id",
        )
        .bind(now.unix())
        .bind(lease_secs)
        .fetch_optional(&self.pool)
        .await?;
        id.map(parse_event_id).transpose()
    }

    async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE stripe_events SET lease_until = NULL
             WHERE id = ? AND status IN ('received', 'failed')",
        )
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn provision(
        &self,
        claimed: &EventId,
        keys: &EventKeys,
        now: Timestamp,
        decide: &Decide<'_>,
    ) -> Result<ProvisionOutcome, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        write_keys(&mut tx, claimed, keys).await?;
        let snapshot = load_snapshot(&mut tx, claimed, keys).await?;
        let write = decide(&snapshot).map_err(StoreError::Decision)?;
        if !write.create_workspaces.is_empty() {
            create_workspaces(&mut tx, &write, now).await?;
            sqlx::query("UPDATE stripe_events SET lease_until = NULL WHERE id = ?")
                .bind(claimed.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(ProvisionOutcome::Again);
        }
        apply(&mut tx, &write, now).await?;
        tx.commit().await?;
        Ok(ProvisionOutcome::Written)
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
            "UPDATE stripe_events SET status = ?, outcome = ?, last_error = ?, next_attempt_at = ?,
                 lease_until = NULL, processed_at = CASE WHEN ? THEN processed_at ELSE unixepoch() END
             WHERE id = ?",
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

    async fn list_cases(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredCase>, StoreError> {
        let rows = sqlx::query("SELECT * FROM cases WHERE ?1 IS NULL OR state = ?1 ORDER BY created_at DESC, id LIMIT ?2")
            .bind(state)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_case).collect()
    }

    async fn get_case(&self, id: &str) -> Result<Option<StoredCase>, StoreError> {
        let row = sqlx::query("SELECT * FROM cases WHERE id = ?")
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let case = sqlx::query("SELECT * FROM cases WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(stored_case)
            .transpose()?
            .ok_or(StoreError::CaseNotFound)?;
        let action = match resolution {
            CaseResolution::Bind { .. } => ResolutionAction::Bind,
            CaseResolution::InvitePurchaser { .. } => ResolutionAction::InvitePurchaser,
            CaseResolution::MarkRefunded { .. } => ResolutionAction::MarkRefunded,
            CaseResolution::Dismiss { .. } => ResolutionAction::Dismiss,
        };
        let plan = plan_resolution(
            CaseKind::parse(&case.kind),
            case.state == "resolved",
            action,
        )
        .map_err(|refused| match refused {
            ResolutionRefused::AlreadyResolved => StoreError::CaseAlreadyResolved,
            ResolutionRefused::NotForThisKind => StoreError::ResolutionInvalid(
                "this action does not apply to this kind of case (see the case's `actions`)",
            ),
        })?;
        let purchase = case
            .subscription_id
            .clone()
            .or_else(|| case.checkout_session_id.clone());
        let cause = format!("case {}", case.id);
        let chosen = match resolution {
            CaseResolution::Bind { workspace }
            | CaseResolution::InvitePurchaser { workspace, .. } => Some(workspace),
            _ => None,
        };
        if let Some(workspace) = chosen
            && load_workspace(&mut tx, workspace).await?.is_none()
        {
            return Err(StoreError::WorkspaceNotFound);
        }
        if plan.add_purchaser
            && let CaseResolution::InvitePurchaser { workspace, role } = resolution
        {
            let email = case
                .purchaser_email
                .as_deref()
                .map(Email::parse)
                .transpose()
                .map_err(corrupt)?
                .ok_or(StoreError::ResolutionInvalid(
                    "the case has no purchaser email to invite",
                ))?;
            add_member(
                &mut tx,
                workspace,
                &email,
                *role,
                &actor.to_string(),
                &cause,
                now,
            )
            .await?;
        }
        if plan.bind_purchase
            && let Some(workspace) = chosen
        {
            let purchase = purchase
                .clone()
                .ok_or(StoreError::ResolutionInvalid("the case names no purchase"))?;
            sqlx::query(
                "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
                 VALUES ('purchase', ?, ?, ?, ?)
                 ON CONFLICT (kind, stripe_id) DO UPDATE SET workspace_id = excluded.workspace_id,
                     source = excluded.source, created_at = excluded.created_at",
            )
            .bind(&purchase)
            .bind(workspace.as_str())
            .bind(&cause)
            .bind(now.unix())
            .execute(&mut *tx)
            .await?;
        }
        let (note, role) = match resolution {
            CaseResolution::MarkRefunded { note } | CaseResolution::Dismiss { note } => {
                (note.clone(), None)
            }
            CaseResolution::InvitePurchaser { role, .. } => (None, Some(role.as_str())),
            CaseResolution::Bind { .. } => (None, None),
        };
        let workspace = match resolution {
            CaseResolution::Bind { workspace }
            | CaseResolution::InvitePurchaser { workspace, .. } => {
                Some(workspace.as_str().to_owned())
            }
            _ => None,
        };
        sqlx::query(
            "UPDATE cases SET state = 'resolved', resolution = ?, resolution_workspace = ?, resolution_role = ?,
                 resolution_note = ?, resolved_by = ?, resolved_at = ? WHERE id = ?",
        )
        .bind(resolution.as_str())
        .bind(&workspace)
        .bind(role)
        .bind(&note)
        .bind(actor.to_string())
        .bind(now.unix())
        .bind(&case.id)
        .execute(&mut *tx)
        .await?;
        audit::insert(
            &mut tx,
            &AuditEntry {
                at: now,
                actor: actor.to_string(),
                action: "case.resolved".into(),
                workspace_id: workspace
                    .clone()
                    .or(case.workspace_id.clone())
                    .and_then(|w| WorkspaceId::parse(w).ok()),
                subject: Some(format!("case:{}", case.id)),
                before: Some(json!({ "state": case.state, "resolution": case.resolution })),
                after: Some(json!({
                    "state": "resolved", "resolution": resolution.as_str(),
                    "workspace_id": workspace, "role": role, "note": note,
                })),
                cause: Some(case.key.clone()),
            },
        )
        .await?;
        // Re-run provisioning for what the case held.
        sqlx::query(
            "UPDATE stripe_events SET status = 'received', next_attempt_at = NULL, lease_until = NULL
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&case.event_ids).map_err(corrupt)?)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query("SELECT * FROM cases WHERE id = ?")
            .bind(&case.id)
            .fetch_one(&mut *tx)
            .await?;
        let updated = stored_case(&updated)?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn insert_intent(
        &self,
        intent: &CheckoutIntent,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkout_intents (session_id, workspace_id, initiator_email, purchaser_email, plan, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
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

    async fn bind_customer(
        &self,
        customer: &CustomerId,
        workspace: &WorkspaceId,
        source: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ('customer', ?, ?, ?, ?)
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
            "SELECT * FROM outbox WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    async fn workspace_customers(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<admit_core::WorkspaceCustomers, StoreError> {
        let bound: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stripe_id, created_at FROM bindings WHERE kind = 'customer' AND workspace_id = ?",
        )
        .bind(workspace.as_str())
        .fetch_all(&self.pool)
        .await?;
        let billing: Option<String> = sqlx::query_scalar(
            "SELECT stripe_customer_id FROM billing_states
             WHERE workspace_id = ? AND stripe_customer_id IS NOT NULL",
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
            "SELECT workspace_id FROM stripe_links WHERE kind = 'subscription' AND stripe_id = ? LIMIT 1",
        )
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        id.map(parse_workspace).transpose()
    }

    async fn count_subscription_events(&self, subscription: &str) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE subscription_id = ?")
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM cases WHERE case_key = ?")
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
    }

    async fn session_status(&self, session_id: &str) -> Result<SessionStatus, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let intent: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT workspace_id, purchaser_email FROM checkout_intents WHERE session_id = ?",
        )
        .bind(session_id)
        .fetch_optional(&mut *conn)
        .await?;
        // The subscription a checkout created carries the rest of the purchase's events.
        let subscriptions: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT subscription_id FROM stripe_events
             WHERE checkout_session_id = ? AND subscription_id IS NOT NULL",
        )
        .bind(session_id)
        .fetch_all(&mut *conn)
        .await?;
        let subs = json_list(&subscriptions.iter().cloned().collect());
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(status IN ('received', 'failed')), 0) FROM stripe_events
             WHERE checkout_session_id = ?1 OR subscription_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(session_id)
        .bind(&subs)
        .fetch_one(&mut *conn)
        .await?;
        let email: Option<String> = sqlx::query_scalar(
            "SELECT purchaser_email FROM stripe_events
             WHERE checkout_session_id = ? AND purchaser_email IS NOT NULL LIMIT 1",
        )
        .bind(session_id)
        .fetch_optional(&mut *conn)
        .await?;
        let held_case: Option<String> = sqlx::query_scalar(
            "SELECT id FROM cases WHERE state = 'held'
               AND (checkout_session_id = ?1 OR stripe_subscription_id IN (SELECT value FROM json_each(?2)))
             ORDER BY created_at LIMIT 1",
        )
        .bind(session_id)
        .bind(&subs)
        .fetch_optional(&mut *conn)
        .await?;
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT workspace_id FROM stripe_links
             WHERE (kind = 'session' AND stripe_id = ?1)
                OR (kind = 'subscription' AND stripe_id IN (SELECT value FROM json_each(?2)))
             LIMIT 1",
        )
        .bind(session_id)
        .bind(&subs)
        .fetch_optional(&mut *conn)
        .await?;
        let workspace = linked.map(parse_workspace).transpose()?;
        // The processor writes the purchase's outcome on each of its events.
        let outcomes: Vec<String> = sqlx::query_scalar(
            "SELECT outcome FROM stripe_events
             WHERE checkout_session_id = ? AND outcome IS NOT NULL
               AND type LIKE 'checkout.session.%'",
        )
        .bind(session_id)
        .fetch_all(&mut *conn)
        .await?;
        let payment = if outcomes.iter().any(|o| o == "payment_failed") {
            SessionPayment::Failed
        } else if outcomes
            .iter()
            .any(|o| o == "not_paid_yet" || o == "awaiting_binding")
        {
            SessionPayment::Pending
        } else {
            SessionPayment::Unknown
        };
        let (intent_workspace, intent_email) = intent.clone().unzip();
        Ok(SessionStatus {
            known: intent.is_some() || counts.0 > 0,
            unprocessed: u64::try_from(counts.1).map_err(corrupt)?,
            held_case,
            workspace: workspace.or(intent_workspace.map(parse_workspace).transpose()?),
            purchaser_email: email.or(intent_email.flatten()),
            payment,
            subscription: subscriptions.first().cloned(),
        })
    }

    async fn requeue_event(&self, id: &EventId) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE stripe_events SET status = 'received', next_attempt_at = NULL, lease_until = NULL WHERE id = ?",
        )
        .bind(id.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn pending_events(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stripe_events
             WHERE status = 'received' OR (status = 'failed' AND next_attempt_at IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(count).map_err(corrupt)
    }
}
