//! Operators' resolutions of held cases, in one transaction: the facts the
//! core's resolution plan asks for, the audit entry, and the case's events
//! queued for provisioning again.
//!
//! The chosen workspace's row is locked first, as every change of its
//! members takes it (see `directory.rs`), then the case's own row: a second
//! resolution of the same case waits for the first and then finds it
//! resolved, and the workspace cannot go away before the commit.

use admit_core::provisioning::{CaseKind, ResolutionAction, ResolutionRefused, plan_resolution};
use admit_core::{Email, Timestamp, WorkspaceId};
use serde_json::json;

use super::apply::add_member;
use super::directory::lock_workspace;
use super::rows::{corrupt, stored_case};
use super::{EVENTS_CHANNEL, PgStore, audit};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::provisioning::{CaseResolution, StoredCase};

pub(super) async fn resolve_case(
    store: &PgStore,
    id: &str,
    resolution: &CaseResolution,
    actor: &Actor,
    now: Timestamp,
) -> Result<StoredCase, StoreError> {
    let mut tx = store.pool.begin().await?;
    let chosen = match resolution {
        CaseResolution::Bind { workspace } | CaseResolution::InvitePurchaser { workspace, .. } => {
            Some(workspace)
        }
        _ => None,
    };
    // Whether it exists is told after the case's own refusals, as SQLite
    // tells it.
    let chosen_exists = match chosen {
        Some(workspace) => lock_workspace(&mut tx, workspace).await?,
        None => true,
    };
    let case = sqlx::query("SELECT * FROM cases WHERE id = $1 FOR UPDATE")
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
    if !chosen_exists {
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
             VALUES ('purchase', $1, $2, $3, $4)
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
        CaseResolution::Bind { workspace } | CaseResolution::InvitePurchaser { workspace, .. } => {
            Some(workspace.as_str().to_owned())
        }
        _ => None,
    };
    sqlx::query(
        "UPDATE cases SET state = 'resolved', resolution = $1, resolution_workspace = $2,
             resolution_role = $3, resolution_note = $4, resolved_by = $5, resolved_at = $6
         WHERE id = $7",
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
    let requeued = sqlx::query(
        "UPDATE stripe_events SET status = 'received', next_attempt_at = NULL, lease_until = NULL
         WHERE id = ANY($1)",
    )
    .bind(&case.event_ids)
    .execute(&mut *tx)
    .await?;
    // Due now: every instance's processor wakes at the commit.
    if requeued.rows_affected() > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    let updated = sqlx::query("SELECT * FROM cases WHERE id = $1")
        .bind(&case.id)
        .fetch_one(&mut *tx)
        .await?;
    let updated = stored_case(&updated)?;
    tx.commit().await?;
    Ok(updated)
}
