//! Writing a derivation's result, in the scope's transaction.

use admit_core::{
    CustomerId, Email, EventId, PlanKey, Role, SubscriptionId, SubscriptionStatus, Timestamp,
    WorkspaceId,
};
use serde_json::json;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::audit;
use super::directory::{role_of, write_member};
use super::rows::corrupt;
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::provisioning::ScopeWrite;

/// Invites someone into a workspace; an invitation never demotes anyone.
pub(super) async fn add_member(
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
    email: &Email,
    role: Role,
    actor: &str,
    cause: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let current = role_of(conn, workspace, email).await?;
    if admit_core::plan_invitation(current, role) == admit_core::MemberPlan::Unchanged {
        return Ok(());
    }
    write_member(
        conn,
        workspace,
        email,
        current,
        role,
        actor,
        Some(cause),
        now,
    )
    .await?;
    Ok(())
}

/// Rows one multi-row statement writes at most: within PostgreSQL's 65,535
/// parameters at 16 a row.
const ROWS_PER_STATEMENT: usize = 1000;

/// Writes derivations' rows: one statement per kind of row, however many
/// derivations `write` holds (a batch's are merged: one round trip each).
/// A key written twice is written in a later statement ([`rounds`]).
pub(super) async fn apply(
    conn: &mut PgConnection,
    write: &ScopeWrite,
    now: Timestamp,
) -> Result<(), StoreError> {
    let billing = rounds(&write.billing, |(workspace, _)| workspace.as_str());
    for rows in billing
        .iter()
        .flat_map(|round| round.chunks(ROWS_PER_STATEMENT))
    {
        let mut upsert = QueryBuilder::<Postgres>::new(
            "INSERT INTO billing_states (workspace_id, subscription_status, subscription_plan, stripe_customer_id,
                 stripe_subscription_id, current_period_end, cancel_at_period_end, purchaser_email,
                 updated_by_event, past_due_since, updated_at, cancel_at) ",
        );
        upsert.push_values(rows, |mut row, (workspace, state)| {
            row.push_bind(workspace.as_str())
                .push_bind(state.subscription_status.map(SubscriptionStatus::as_str))
                .push_bind(state.subscription_plan.as_ref().map(PlanKey::as_str))
                .push_bind(state.stripe_customer_id.as_ref().map(CustomerId::as_str))
                .push_bind(
                    state
                        .stripe_subscription_id
                        .as_ref()
                        .map(SubscriptionId::as_str),
                )
                .push_bind(state.current_period_end.map(Timestamp::unix))
                .push_bind(state.cancel_at_period_end)
                .push_bind(state.purchaser_email.as_ref().map(Email::as_str))
                .push_bind(state.updated_by_event.as_ref().map(EventId::as_str))
                .push_bind(state.past_due_since.map(Timestamp::unix))
                .push_bind(now.unix())
                .push_bind(state.cancel_at.map(Timestamp::unix));
        });
        upsert.push(
            " ON CONFLICT (workspace_id) DO UPDATE SET
                 subscription_status = excluded.subscription_status,
                 subscription_plan = excluded.subscription_plan,
                 stripe_customer_id = excluded.stripe_customer_id,
                 stripe_subscription_id = excluded.stripe_subscription_id,
                 current_period_end = excluded.current_period_end,
                 cancel_at_period_end = excluded.cancel_at_period_end,
                 purchaser_email = excluded.purchaser_email,
                 updated_by_event = excluded.updated_by_event,
                 past_due_since = excluded.past_due_since,
                 updated_at = excluded.updated_at,
                 cancel_at = excluded.cancel_at",
        );
        upsert.build().persistent(false).execute(&mut *conn).await?;
    }
    if !write.unlink.is_empty() {
        let (kinds, ids): (Vec<&str>, Vec<&str>) = write
            .unlink
            .iter()
            .map(|(kind, id)| (kind.as_str(), id.as_str()))
            .unzip();
        sqlx::query(
            "DELETE FROM stripe_links
             WHERE (kind, stripe_id) IN (SELECT * FROM unnest($1::TEXT[], $2::TEXT[]))",
        )
        .bind(kinds)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    }
    for rows in write.links.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO stripe_links (kind, stripe_id, workspace_id) ",
        );
        insert.push_values(rows, |mut row, (kind, stripe_id, workspace)| {
            row.push_bind(kind)
                .push_bind(stripe_id)
                .push_bind(workspace.as_str());
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().persistent(false).execute(&mut *conn).await?;
    }
    let cases = rounds(&write.cases, |case| case.key.as_str());
    for rows in cases
        .iter()
        .flat_map(|round| round.chunks(ROWS_PER_STATEMENT))
    {
        let event_ids = rows
            .iter()
            .map(|case| serde_json::to_string(&case.event_ids).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        let mut upsert = QueryBuilder::<Postgres>::new(
            "INSERT INTO cases (id, case_key, kind, workspace_id, purchaser_email, stripe_customer_id,
                 stripe_subscription_id, checkout_session_id, event_ids, details, state, resolution,
                 resolved_by, created_at, resolved_at, scenario) ",
        );
        upsert.push_values(rows.iter().zip(&event_ids), |mut row, (case, event_ids)| {
            let resolved = case.state == "resolved";
            let resolution = case.resolution.as_deref().filter(|_| resolved);
            row.push_bind(&case.id)
                .push_bind(&case.key)
                .push_bind(&case.kind)
                .push_bind(&case.workspace_id)
                .push_bind(&case.purchaser_email)
                .push_bind(&case.customer_id)
                .push_bind(&case.subscription_id)
                .push_bind(&case.checkout_session_id)
                .push_bind(event_ids)
                .push_bind(case.details.to_string())
                .push_bind(&case.state)
                .push_bind(resolution)
                .push_bind(resolution.map(|_| "system"))
                .push_bind(now.unix())
                .push_bind(resolved.then_some(now.unix()))
                .push_bind(&case.scenario);
        });
        upsert.push(
            " ON CONFLICT (case_key) DO UPDATE SET
                 scenario = COALESCE(excluded.scenario, cases.scenario),
                 workspace_id = excluded.workspace_id,
                 purchaser_email = excluded.purchaser_email,
                 stripe_customer_id = excluded.stripe_customer_id,
                 stripe_subscription_id = excluded.stripe_subscription_id,
                 checkout_session_id = excluded.checkout_session_id,
                 event_ids = excluded.event_ids,
                 details = excluded.details,
                 state = excluded.state,
                 resolution = excluded.resolution,
                 resolved_by = excluded.resolved_by,
                 resolved_at = excluded.resolved_at",
        );
        upsert.build().persistent(false).execute(&mut *conn).await?;
    }
    let outbox = rounds(&write.outbox, |m| m.idempotency_key.as_str());
    for rows in outbox
        .iter()
        .flat_map(|round| round.chunks(ROWS_PER_STATEMENT))
    {
        let mut upsert = QueryBuilder::<Postgres>::new(
            "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, about, case_key, payload, state,
                 next_attempt_at, created_at) ",
        );
        upsert.push_values(rows, |mut row, message| {
            row.push_bind(&message.idempotency_key)
                .push_bind(&message.kind)
                .push_bind(&message.recipient)
                .push_bind(&message.workspace_id)
                .push_bind(&message.about)
                .push_bind(&message.case_key)
                .push_bind(message.payload.to_string())
                .push_bind("pending")
                .push_bind(message.not_before.unix())
                .push_bind(now.unix());
        });
        // A message withdrawn earlier and warranted again is revived, not
        // duplicated; a pending one not yet leased takes the latest facts
        // (a moved cancellation date, say).
        upsert.push(
            " ON CONFLICT (idempotency_key) DO UPDATE SET
                 state = 'pending', payload = excluded.payload,
                 next_attempt_at = CASE WHEN outbox.state = 'superseded'
                     THEN excluded.next_attempt_at ELSE outbox.next_attempt_at END
             WHERE outbox.state = 'superseded'
                OR (outbox.state = 'pending' AND outbox.payload <> excluded.payload
                    AND (outbox.lease_until IS NULL OR outbox.lease_until <= excluded.created_at))",
        );
        upsert.build().persistent(false).execute(&mut *conn).await?;
    }
    if !write.supersede.is_empty() {
        // A message the sender holds a lease on may be on the wire already: it
        // is left to finish as `sent` rather than recorded as withdrawn.
        sqlx::query(
            "UPDATE outbox SET state = 'superseded'
             WHERE idempotency_key = ANY($1)
               AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $2)",
        )
        .bind(&write.supersede)
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    for rows in write.bindings.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at) ",
        );
        insert.push_values(rows, |mut row, (kind, stripe_id, workspace, source)| {
            row.push_bind(kind)
                .push_bind(stripe_id)
                .push_bind(workspace.as_str())
                .push_bind(source)
                .push_bind(now.unix());
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().persistent(false).execute(&mut *conn).await?;
    }
    let checkpoints = rounds(&write.checkpoints, |c| c.subscription_id.as_str());
    for rows in checkpoints
        .iter()
        .flat_map(|round| round.chunks(ROWS_PER_STATEMENT))
    {
        let mut upsert = QueryBuilder::<Postgres>::new(
            "INSERT INTO subscription_checkpoints (subscription_id, through, events, version, fold,
                 updated_at) ",
        );
        upsert.push_values(rows, |mut row, checkpoint| {
            row.push_bind(&checkpoint.subscription_id)
                .push_bind(checkpoint.through.unix())
                .push_bind(i64::try_from(checkpoint.events).unwrap_or(i64::MAX))
                .push_bind(i64::from(checkpoint.version))
                .push_bind(&checkpoint.fold)
                .push_bind(now.unix());
        });
        // Any checkpoint that counts what the store holds is right; one
        // folding fewer events (a slower processor's) does not replace it,
        // unless the stored one is of another fold or not JSON at all.
        upsert.push(
            " ON CONFLICT (subscription_id) DO UPDATE SET
                 through = excluded.through, events = excluded.events,
                 version = excluded.version, fold = excluded.fold,
                 updated_at = excluded.updated_at
             WHERE excluded.events >= subscription_checkpoints.events
                OR excluded.version <> subscription_checkpoints.version
                OR NOT admit_is_json(subscription_checkpoints.fold)",
        );
        upsert.build().persistent(false).execute(&mut *conn).await?;
    }
    audit::insert_all(conn, &write.audit).await?;
    if !write.event_statuses.is_empty() {
        // One status an event, the last written (as one statement a row would leave it).
        let last: std::collections::BTreeMap<&str, &crate::provisioning::EventStatusWrite> = write
            .event_statuses
            .iter()
            .map(|e| (e.id.as_str(), e))
            .collect();
        let ids: Vec<&str> = last.keys().copied().collect();
        let statuses: Vec<&str> = last.values().map(|e| e.status.as_str()).collect();
        let outcomes: Vec<&str> = last.values().map(|e| e.outcome.as_str()).collect();
        let scenarios: Vec<Option<&str>> = last.values().map(|e| e.scenario.as_deref()).collect();
        sqlx::query(
            "UPDATE stripe_events SET status = s.status, outcome = s.outcome,
                 scenario = s.scenario, processed_at = $5,
                 lease_until = NULL, next_attempt_at = NULL, last_error = NULL
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[])
                  AS s (id, status, outcome, scenario)
             WHERE stripe_events.id = s.id",
        )
        .bind(ids)
        .bind(statuses)
        .bind(outcomes)
        .bind(scenarios)
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn create_workspaces(
    conn: &mut PgConnection,
    write: &ScopeWrite,
    now: Timestamp,
) -> Result<(), StoreError> {
    for creation in &write.create_workspaces {
        let inserted = sqlx::query(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
        )
        .bind(creation.id.as_str())
        .bind(&creation.name)
        .bind(now.unix())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            audit::insert(
                conn,
                &AuditEntry {
                    at: now,
                    actor: Actor::System(admit_core::SystemTask::Provisioning).to_string(),
                    action: "workspace.created".into(),
                    workspace_id: Some(creation.id.clone()),
                    subject: Some("workspace".into()),
                    before: None,
                    after: Some(json!({ "name": creation.name })),
                    cause: Some(format!("unmatched purchase {}", creation.purchase)),
                },
            )
            .await?;
            let cause = format!("unmatched purchase {}", creation.purchase);
            add_member(
                conn,
                &creation.id,
                &creation.owner,
                Role::Owner,
                &Actor::System(admit_core::SystemTask::Provisioning).to_string(),
                &cause,
                now,
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ('purchase', $1, $2, 'created_workspace', $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(&creation.purchase)
        .bind(creation.id.as_str())
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The rows in rounds: each key's first row, then each key's second, and
/// so on, in the order the keys were first written. PostgreSQL refuses an
/// upsert that meets the same key twice; written round by round, each row
/// meets the rows of its key before it under the upsert's own rule, as
/// SQLite's one statement writing them one after the other does (a case
/// keeps its first id, a pending message its time, a checkpoint counting
/// more stays). Without a repeated key this is one round, as given.
fn rounds<T>(rows: &[T], key: impl Fn(&T) -> &str) -> Vec<Vec<&T>> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<&T>> = Vec::new();
    for row in rows {
        let nth = seen.entry(key(row)).or_insert(0);
        if rounds.len() == *nth {
            rounds.push(Vec::new());
        }
        rounds[*nth].push(row);
        *nth += 1;
    }
    rounds
}
