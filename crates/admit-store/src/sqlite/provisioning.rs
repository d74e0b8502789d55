//! SQLite side of provisioning. Every write runs under `BEGIN IMMEDIATE`, so
//! the scope read and the writes it leads to see and leave one consistent
//! state, and concurrent processors take turns instead of failing.

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{
    CaseKind, CheckoutIntent, ResolutionAction, ResolutionRefused, Settlement, plan_resolution,
};
use admit_core::{
    BillingState, CustomerId, Email, EventId, PlanKey, Role, SubscriptionId, SubscriptionStatus,
    Timestamp, WorkspaceId,
};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::directory::{load_workspace, role_of, write_member};
use super::{SqliteStore, audit};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::events::EventStatus;
use crate::provisioning::{
    CaseResolution, CaseWrite, Decide, EventKeys, OutboxRow, OutboxWrite, ProvisionOutcome,
    ProvisioningStore, ScopeEvent, ScopeSnapshot, ScopeWrite, SessionPayment, SessionStatus,
    StoredCase,
};

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// A scope that keeps growing after this many rounds is cut off; real scopes
/// (a workspace's customers and subscriptions) settle in two or three.
const MAX_SCOPE_ROUNDS: usize = 8;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn json_list(set: &BTreeSet<String>) -> String {
    serde_json::to_string(set)
        .unwrap_or_else(|_| unreachable!("a list of strings always serialises"))
}

fn parse_event_id(raw: String) -> Result<EventId, StoreError> {
    EventId::parse(raw).map_err(corrupt)
}

fn parse_workspace(raw: String) -> Result<WorkspaceId, StoreError> {
    WorkspaceId::parse(raw).map_err(corrupt)
}

fn ts(raw: Option<i64>) -> Option<Timestamp> {
    raw.map(Timestamp::from_unix)
}

#[derive(Debug, Default)]
struct Sets {
    customers: BTreeSet<String>,
    subscriptions: BTreeSet<String>,
    sessions: BTreeSet<String>,
    workspaces: BTreeSet<String>,
    emails: BTreeSet<String>,
    /// Charge and payment-intent ids (their prefixes keep them apart).
    payments: BTreeSet<String>,
}

impl Sets {
    fn size(&self) -> usize {
        self.customers.len()
            + self.subscriptions.len()
            + self.sessions.len()
            + self.workspaces.len()
            + self.emails.len()
            + self.payments.len()
    }

    fn add_keys(&mut self, keys: &EventKeys) {
        let add = |set: &mut BTreeSet<String>, value: &Option<String>| {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                set.insert(v.clone());
            }
        };
        add(&mut self.customers, &keys.customer);
        add(&mut self.subscriptions, &keys.subscription);
        add(&mut self.sessions, &keys.session);
        add(&mut self.workspaces, &keys.workspace_hint);
        add(&mut self.emails, &keys.purchaser_email);
        add(&mut self.payments, &keys.charge);
        add(&mut self.payments, &keys.payment_intent);
    }

    fn add_stripe(&mut self, kind: &str, id: String) {
        match kind {
            "customer" => {
                self.customers.insert(id);
            }
            "subscription" => {
                self.subscriptions.insert(id);
            }
            "session" => {
                self.sessions.insert(id);
            }
            // A purchase binding names a subscription or a session.
            _ if id.starts_with("sub_") => {
                self.subscriptions.insert(id);
            }
            _ => {
                self.sessions.insert(id);
            }
        }
    }

    fn purchases(&self) -> BTreeSet<String> {
        self.subscriptions.union(&self.sessions).cloned().collect()
    }
}

fn row_keys(row: &SqliteRow) -> Result<EventKeys, StoreError> {
    Ok(EventKeys {
        customer: row.try_get("customer_id")?,
        subscription: row.try_get("subscription_id")?,
        session: row.try_get("checkout_session_id")?,
        workspace_hint: row.try_get("workspace_hint")?,
        purchaser_email: row.try_get("purchaser_email")?,
        charge: row.try_get("charge_id")?,
        payment_intent: row.try_get("payment_intent_id")?,
    })
}

async fn grow_scope(
    conn: &mut SqliteConnection,
    claimed: &EventId,
    sets: &mut Sets,
) -> Result<BTreeMap<String, ScopeEvent>, StoreError> {
    let mut events = BTreeMap::new();
    for _ in 0..MAX_SCOPE_ROUNDS {
        let before = (sets.size(), events.len());
        let rows = sqlx::query(
            "SELECT id, type, livemode, payload, status, outcome, scenario, customer_id, subscription_id, checkout_session_id,
                    workspace_hint, purchaser_email, charge_id, payment_intent_id
             FROM stripe_events
             WHERE id = ?1
                OR customer_id IN (SELECT value FROM json_each(?2))
                OR subscription_id IN (SELECT value FROM json_each(?3))
                OR checkout_session_id IN (SELECT value FROM json_each(?4))
                OR workspace_hint IN (SELECT value FROM json_each(?5))
                OR charge_id IN (SELECT value FROM json_each(?6))
                OR payment_intent_id IN (SELECT value FROM json_each(?6))",
        )
        .bind(claimed.as_str())
        .bind(json_list(&sets.customers))
        .bind(json_list(&sets.subscriptions))
        .bind(json_list(&sets.sessions))
        .bind(json_list(&sets.workspaces))
        .bind(json_list(&sets.payments))
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            sets.add_keys(&row_keys(row)?);
            let id: String = row.try_get("id")?;
            if events.contains_key(&id) {
                continue;
            }
            let status: String = row.try_get("status")?;
            events.insert(
                id.clone(),
                ScopeEvent {
                    id: parse_event_id(id)?,
                    event_type: row.try_get("type")?,
                    livemode: row.try_get("livemode")?,
                    payload: row.try_get("payload")?,
                    status: EventStatus::parse(&status)
                        .ok_or_else(|| corrupt("unknown event status"))?,
                    outcome: row.try_get("outcome")?,
                    scenario: row.try_get("scenario")?,
                },
            );
        }
        let linked = sqlx::query(
            "SELECT kind, stripe_id, workspace_id FROM stripe_links
             WHERE workspace_id IN (SELECT value FROM json_each(?1))
                OR (kind = 'customer' AND stripe_id IN (SELECT value FROM json_each(?2)))
                OR (kind = 'subscription' AND stripe_id IN (SELECT value FROM json_each(?3)))
                OR (kind = 'session' AND stripe_id IN (SELECT value FROM json_each(?4)))
             UNION
             SELECT kind, stripe_id, workspace_id FROM bindings
             WHERE workspace_id IN (SELECT value FROM json_each(?1))
                OR (kind = 'customer' AND stripe_id IN (SELECT value FROM json_each(?2)))
                OR (kind = 'purchase' AND stripe_id IN (SELECT value FROM json_each(?3)))
                OR (kind = 'purchase' AND stripe_id IN (SELECT value FROM json_each(?4)))
             UNION
             SELECT 'session', session_id, workspace_id FROM checkout_intents
             WHERE session_id IN (SELECT value FROM json_each(?4))",
        )
        .bind(json_list(&sets.workspaces))
        .bind(json_list(&sets.customers))
        .bind(json_list(&sets.subscriptions))
        .bind(json_list(&sets.sessions))
        .fetch_all(&mut *conn)
        .await?;
        for row in &linked {
            let kind: String = row.try_get(0)?;
            sets.add_stripe(&kind, row.try_get(1)?);
            sets.workspaces.insert(row.try_get(2)?);
        }
        // Rule 3 needs every workspace a purchaser administers, and each of
        // those workspaces' other purchases (a second subscription is S8).
        let administered: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT workspace_id FROM members
             WHERE role IN ('owner', 'admin') AND email IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&sets.emails))
        .fetch_all(&mut *conn)
        .await?;
        sets.workspaces.extend(administered);
        if (sets.size(), events.len()) == before {
            return Ok(events);
        }
    }
    // A scope that did not close would let the derivation overwrite workspaces
    // it saw only part of: fail (and retry later, visibly) instead.
    Err(StoreError::Decision(format!(
        "the scope of event {claimed} did not close within {MAX_SCOPE_ROUNDS} rounds"
    )))
}

async fn load_snapshot(
    conn: &mut SqliteConnection,
    claimed: &EventId,
    keys: &EventKeys,
) -> Result<ScopeSnapshot, StoreError> {
    let mut sets = Sets::default();
    sets.add_keys(keys);
    let events = grow_scope(conn, claimed, &mut sets).await?;

    let mut workspaces = Vec::new();
    for raw in &sets.workspaces {
        let Ok(id) = WorkspaceId::parse(raw.clone()) else {
            continue;
        };
        if let Some(workspace) = load_workspace(conn, &id).await? {
            workspaces.push(workspace);
        }
    }
    let existing: BTreeSet<WorkspaceId> = workspaces.iter().map(|w| w.id.clone()).collect();

    let mut intents = BTreeMap::new();
    for row in sqlx::query(
        "SELECT session_id, workspace_id, initiator_email, purchaser_email, plan FROM checkout_intents
         WHERE session_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&sets.sessions))
    .fetch_all(&mut *conn)
    .await?
    {
        let session: String = row.try_get("session_id")?;
        let initiator: String = row.try_get("initiator_email")?;
        let purchaser: Option<String> = row.try_get("purchaser_email")?;
        let plan: String = row.try_get("plan")?;
        intents.insert(
            session.clone(),
            CheckoutIntent {
                session_id: session,
                workspace: parse_workspace(row.try_get("workspace_id")?)?,
                initiator: Email::parse(&initiator).map_err(corrupt)?,
                purchaser: purchaser.map(|p| Email::parse(&p)).transpose().map_err(corrupt)?,
                plan: PlanKey::new(plan),
            },
        );
    }

    let mut customer_bindings = BTreeMap::new();
    let mut purchase_bindings = BTreeMap::new();
    let mut remembered_purchases = BTreeSet::new();
    for row in sqlx::query(
        "SELECT kind, stripe_id, workspace_id, source FROM bindings
         WHERE (kind = 'customer' AND stripe_id IN (SELECT value FROM json_each(?1)))
            OR (kind = 'purchase' AND stripe_id IN (SELECT value FROM json_each(?2)))",
    )
    .bind(json_list(&sets.customers))
    .bind(json_list(&sets.purchases()))
    .fetch_all(&mut *conn)
    .await?
    {
        let kind: String = row.try_get("kind")?;
        let stripe_id: String = row.try_get("stripe_id")?;
        let workspace = parse_workspace(row.try_get("workspace_id")?)?;
        if kind == "customer" {
            customer_bindings.insert(CustomerId::parse(stripe_id).map_err(corrupt)?, workspace);
        } else {
            let source: String = row.try_get("source")?;
            if source == "purchaser_administers" {
                remembered_purchases.insert(stripe_id.clone());
            }
            purchase_bindings.insert(stripe_id, workspace);
        }
    }

    // Money cases (a dispute admit could not place) may name no purchase:
    // they are found by the events they hold.
    let event_ids: BTreeSet<String> = events.keys().cloned().collect();
    let mut settlements = BTreeMap::new();
    for row in sqlx::query(
        "SELECT case_key, resolution FROM cases WHERE resolution IN ('mark_refunded', 'dismiss')
           AND (stripe_subscription_id IN (SELECT value FROM json_each(?1))
                OR checkout_session_id IN (SELECT value FROM json_each(?2))
                OR (kind IN ('payment_disputed', 'payment_refunded')
                    AND EXISTS (SELECT 1 FROM json_each(cases.event_ids) held
                                WHERE held.value IN (SELECT value FROM json_each(?3)))))",
    )
    .bind(json_list(&sets.subscriptions))
    .bind(json_list(&sets.sessions))
    .bind(json_list(&event_ids))
    .fetch_all(&mut *conn)
    .await?
    {
        let key: String = row.try_get("case_key")?;
        let resolution: String = row.try_get("resolution")?;
        let settlement = if resolution == "mark_refunded" {
            Settlement::Refunded
        } else {
            Settlement::Dismissed
        };
        settlements.insert(key, settlement);
    }

    let mut billing = BTreeMap::new();
    for workspace in &existing {
        if let Some(state) = billing_state(conn, workspace).await? {
            billing.insert(workspace.clone(), state);
        }
    }

    let mut cases = BTreeMap::new();
    for row in sqlx::query(
        "SELECT * FROM cases
         WHERE stripe_subscription_id IN (SELECT value FROM json_each(?1))
            OR checkout_session_id IN (SELECT value FROM json_each(?2))
            OR stripe_customer_id IN (SELECT value FROM json_each(?3))
            OR (kind IN ('payment_disputed', 'payment_refunded')
                AND EXISTS (SELECT 1 FROM json_each(cases.event_ids) held
                            WHERE held.value IN (SELECT value FROM json_each(?4))))",
    )
    .bind(json_list(&sets.subscriptions))
    .bind(json_list(&sets.sessions))
    .bind(json_list(&sets.customers))
    .bind(json_list(&event_ids))
    .fetch_all(&mut *conn)
    .await?
    {
        let case = stored_case(&row)?;
        cases.insert(case.key.clone(), case);
    }

    let mut outbox = BTreeMap::new();
    for row in sqlx::query(
        "SELECT idempotency_key, state FROM outbox WHERE about IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&sets.purchases()))
    .fetch_all(&mut *conn)
    .await?
    {
        outbox.insert(row.try_get(0)?, row.try_get(1)?);
    }

    Ok(ScopeSnapshot {
        claimed: claimed.clone(),
        events: events.into_values().collect(),
        directory: admit_core::Directory::new(workspaces),
        intents,
        customer_bindings,
        purchase_bindings,
        remembered_purchases,
        settlements,
        workspaces: existing,
        billing,
        cases,
        outbox,
    })
}

async fn billing_state(
    conn: &mut SqliteConnection,
    workspace: &WorkspaceId,
) -> Result<Option<BillingState>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM billing_states WHERE workspace_id = ?")
        .bind(workspace.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let status: Option<String> = row.try_get("subscription_status")?;
    let plan: Option<String> = row.try_get("subscription_plan")?;
    let customer: Option<String> = row.try_get("stripe_customer_id")?;
    let subscription: Option<String> = row.try_get("stripe_subscription_id")?;
    let email: Option<String> = row.try_get("purchaser_email")?;
    let event: Option<String> = row.try_get("updated_by_event")?;
    Ok(Some(BillingState {
        subscription_status: status
            .map(|s| {
                SubscriptionStatus::parse(&s).ok_or_else(|| corrupt("unknown subscription status"))
            })
            .transpose()?,
        subscription_plan: plan.map(PlanKey::new),
        stripe_customer_id: customer
            .map(CustomerId::parse)
            .transpose()
            .map_err(corrupt)?,
        stripe_subscription_id: subscription
            .map(SubscriptionId::parse)
            .transpose()
            .map_err(corrupt)?,
        current_period_end: ts(row.try_get("current_period_end")?),
        cancel_at_period_end: row.try_get("cancel_at_period_end")?,
        cancel_at: ts(row.try_get("cancel_at")?),
        purchaser_email: email
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(corrupt)?,
        updated_by_event: event.map(EventId::parse).transpose().map_err(corrupt)?,
        past_due_since: ts(row.try_get("past_due_since")?),
    }))
}

fn stored_case(row: &SqliteRow) -> Result<StoredCase, StoreError> {
    let event_ids: String = row.try_get("event_ids")?;
    let details: String = row.try_get("details")?;
    Ok(StoredCase {
        id: row.try_get("id")?,
        key: row.try_get("case_key")?,
        kind: row.try_get("kind")?,
        scenario: row.try_get("scenario")?,
        workspace_id: row.try_get("workspace_id")?,
        purchaser_email: row.try_get("purchaser_email")?,
        customer_id: row.try_get("stripe_customer_id")?,
        subscription_id: row.try_get("stripe_subscription_id")?,
        checkout_session_id: row.try_get("checkout_session_id")?,
        event_ids: serde_json::from_str(&event_ids).map_err(corrupt)?,
        details: serde_json::from_str(&details).map_err(corrupt)?,
        state: row.try_get("state")?,
        resolution: row.try_get("resolution")?,
        resolution_workspace: row.try_get("resolution_workspace")?,
        resolution_role: row.try_get("resolution_role")?,
        resolution_note: row.try_get("resolution_note")?,
        resolved_by: row.try_get("resolved_by")?,
        created_at: Timestamp::from_unix(row.try_get("created_at")?),
        resolved_at: ts(row.try_get("resolved_at")?),
    })
}

async fn write_keys(
    conn: &mut SqliteConnection,
    id: &EventId,
    keys: &EventKeys,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE stripe_events SET customer_id = ?, subscription_id = ?, checkout_session_id = ?,
             workspace_hint = ?, purchaser_email = ?, charge_id = ?, payment_intent_id = ? WHERE id = ?",
    )
    .bind(&keys.customer)
    .bind(&keys.subscription)
    .bind(&keys.session)
    .bind(&keys.workspace_hint)
    .bind(&keys.purchaser_email)
    .bind(&keys.charge)
    .bind(&keys.payment_intent)
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Invites someone into a workspace; an invitation never demotes anyone.
async fn add_member(
    conn: &mut SqliteConnection,
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

async fn apply(
    conn: &mut SqliteConnection,
    write: &ScopeWrite,
    now: Timestamp,
) -> Result<(), StoreError> {
    for (id, keys) in &write.event_keys {
        write_keys(conn, id, keys).await?;
    }
    for (workspace, state) in &write.billing {
        sqlx::query(
            "INSERT INTO billing_states (workspace_id, subscription_status, subscription_plan, stripe_customer_id,
                 stripe_subscription_id, current_period_end, cancel_at_period_end, purchaser_email,
                 updated_by_event, past_due_since, updated_at, cancel_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workspace_id) DO UPDATE SET
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
        )
        .bind(workspace.as_str())
        .bind(state.subscription_status.map(SubscriptionStatus::as_str))
        .bind(state.subscription_plan.as_ref().map(PlanKey::as_str))
        .bind(state.stripe_customer_id.as_ref().map(CustomerId::as_str))
        .bind(state.stripe_subscription_id.as_ref().map(SubscriptionId::as_str))
        .bind(state.current_period_end.map(Timestamp::unix))
        .bind(state.cancel_at_period_end)
        .bind(state.purchaser_email.as_ref().map(Email::as_str))
        .bind(state.updated_by_event.as_ref().map(EventId::as_str))
        .bind(state.past_due_since.map(Timestamp::unix))
        .bind(now.unix())
        .bind(state.cancel_at.map(Timestamp::unix))
        .execute(&mut *conn)
        .await?;
    }
    for (kind, stripe_id) in &write.unlink {
        sqlx::query("DELETE FROM stripe_links WHERE kind = ? AND stripe_id = ?")
            .bind(kind)
            .bind(stripe_id)
            .execute(&mut *conn)
            .await?;
    }
    for (kind, stripe_id, workspace) in &write.links {
        sqlx::query(
            "INSERT OR IGNORE INTO stripe_links (kind, stripe_id, workspace_id) VALUES (?, ?, ?)",
        )
        .bind(kind)
        .bind(stripe_id)
        .bind(workspace.as_str())
        .execute(&mut *conn)
        .await?;
    }
    for case in &write.cases {
        let resolved = case.state == "resolved";
        sqlx::query(
            "INSERT INTO cases (id, case_key, kind, workspace_id, purchaser_email, stripe_customer_id,
                 stripe_subscription_id, checkout_session_id, event_ids, details, state, resolution,
                 resolved_by, created_at, resolved_at, scenario)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, CASE WHEN ?12 IS NULL THEN NULL ELSE 'system' END, ?13,
                     CASE WHEN ?11 = 'resolved' THEN ?13 ELSE NULL END, ?14)
             ON CONFLICT (case_key) DO UPDATE SET
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
        )
        .bind(&case.id)
        .bind(&case.key)
        .bind(&case.kind)
        .bind(&case.workspace_id)
        .bind(&case.purchaser_email)
        .bind(&case.customer_id)
        .bind(&case.subscription_id)
        .bind(&case.checkout_session_id)
        .bind(serde_json::to_string(&case.event_ids).map_err(corrupt)?)
        .bind(case.details.to_string())
        .bind(&case.state)
        .bind(case.resolution.as_deref().filter(|_| resolved))
        .bind(now.unix())
        .bind(&case.scenario)
        .execute(&mut *conn)
        .await?;
    }
    for message in &write.outbox {
        // A message withdrawn earlier and warranted again is revived, not duplicated.
        sqlx::query(
            "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, about, case_key, payload, state,
                 next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
             ON CONFLICT (idempotency_key) DO UPDATE SET
                 state = 'pending', payload = excluded.payload,
                 next_attempt_at = CASE WHEN outbox.state = 'superseded'
                     THEN excluded.next_attempt_at ELSE outbox.next_attempt_at END
             -- A withdrawn message is revived; a pending one not yet leased
             -- takes the latest facts (a moved cancellation date, say).
             WHERE outbox.state = 'superseded'
                OR (outbox.state = 'pending' AND outbox.payload <> excluded.payload
                    AND (outbox.lease_until IS NULL OR outbox.lease_until <= excluded.created_at))",
        )
        .bind(&message.idempotency_key)
        .bind(&message.kind)
        .bind(&message.recipient)
        .bind(&message.workspace_id)
        .bind(&message.about)
        .bind(&message.case_key)
        .bind(message.payload.to_string())
        .bind(message.not_before.unix())
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    for key in &write.supersede {
        // A message the sender holds a lease on may be on the wire already: it
        // is left to finish as `sent` rather than recorded as withdrawn.
        sqlx::query(
            "UPDATE outbox SET state = 'superseded'
             WHERE idempotency_key = ? AND state = 'pending' AND (lease_until IS NULL OR lease_until <= ?)",
        )
        .bind(key)
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    for (kind, stripe_id, workspace, source) in &write.bindings {
        sqlx::query(
            "INSERT OR IGNORE INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(kind)
        .bind(stripe_id)
        .bind(workspace.as_str())
        .bind(source)
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    for entry in &write.audit {
        audit::insert(conn, entry).await?;
    }
    for event in &write.event_statuses {
        sqlx::query(
            "UPDATE stripe_events SET status = ?, outcome = ?, scenario = ?, processed_at = ?,
                 lease_until = NULL, next_attempt_at = NULL, last_error = NULL
             WHERE id = ?",
        )
        .bind(event.status.as_str())
        .bind(&event.outcome)
        .bind(&event.scenario)
        .bind(now.unix())
        .bind(event.id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn create_workspaces(
    conn: &mut SqliteConnection,
    write: &ScopeWrite,
    now: Timestamp,
) -> Result<(), StoreError> {
    for creation in &write.create_workspaces {
        let inserted =
            sqlx::query("INSERT OR IGNORE INTO workspaces (id, name, created_at) VALUES (?, ?, ?)")
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
            "INSERT OR IGNORE INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ('purchase', ?, ?, 'created_workspace', ?)",
        )
        .bind(&creation.purchase)
        .bind(creation.id.as_str())
        .bind(now.unix())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) fn outbox_row(row: &SqliteRow) -> Result<OutboxRow, StoreError> {
    let payload: String = row.try_get("payload")?;
    Ok(OutboxRow {
        id: row.try_get("id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        kind: row.try_get("kind")?,
        recipient: row.try_get("recipient")?,
        workspace_id: row.try_get("workspace_id")?,
        about: row.try_get("about")?,
        case_key: row.try_get("case_key")?,
        payload: serde_json::from_str::<Value>(&payload).map_err(corrupt)?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: Timestamp::from_unix(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        created_at: Timestamp::from_unix(row.try_get("created_at")?),
        sent_at: ts(row.try_get("sent_at")?),
    })
}

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
