//! The SQLite side of a scope: the three lookups the fixpoint grows by,
//! and the snapshot of everything a derivation of the scope reads.

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{CheckoutIntent, EventKeys, ScopeKeys, Settlement};
use admit_core::{CustomerId, Email, EventId, PlanKey, WorkspaceId};
use sqlx::{Row, SqliteConnection};

use super::directory::load_workspace;
use super::rows::{
    billing_state, corrupt, json_list, parse_event_id, parse_workspace, stored_case,
};
use crate::StoreError;
use crate::events::EventStatus;
use crate::provisioning::{History, ScopeEvent, ScopeRead, ScopeSnapshot};
use crate::scope::{ScopeQueries, grow_scope, version_keys};

impl ScopeQueries for SqliteConnection {
    async fn events_touching(
        &mut self,
        claimed: &EventId,
        keys: &ScopeKeys,
        known: &BTreeSet<EventId>,
        history: History,
    ) -> Result<Vec<(ScopeEvent, EventKeys)>, StoreError> {
        // Each event is read once, in the round that finds it; later rounds
        // leave out what is known. One JSON row, not a row per event: each
        // row is a hop between threads in sqlx. The body is not read here:
        // the billing event stands for it (see `with_bodies`), and for an
        // event a checkpoint covers, the checkpoint does.
        let rows: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(e.id, e.type, e.livemode,
                    CASE WHEN e.covered THEN NULL
                         WHEN json_valid(e.billing) THEN json(e.billing) END, e.status,
                    e.outcome, e.scenario, e.received_at, e.customer_id, e.subscription_id,
                    e.checkout_session_id, e.workspace_hint, e.purchaser_email, e.charge_id,
                    e.payment_intent_id,
                    CASE WHEN NOT e.covered AND e.billing IS NOT NULL AND NOT json_valid(e.billing)
                         THEN e.billing END,
                    e.created, e.covered))
             FROM (SELECT stripe_events.*,
                          ?8 AND billing IS NOT NULL AND c.through IS NOT NULL
                             AND stripe_events.created <= c.through AS covered
                   FROM stripe_events
                   LEFT JOIN subscription_checkpoints c
                          ON c.subscription_id = stripe_events.subscription_id
                   WHERE (id = ?1
                          OR customer_id IN (SELECT value FROM json_each(?2))
                          OR stripe_events.subscription_id IN (SELECT value FROM json_each(?3))
                          OR checkout_session_id IN (SELECT value FROM json_each(?4))
                          OR workspace_hint IN (SELECT value FROM json_each(?5))
                          OR charge_id IN (SELECT value FROM json_each(?6))
                          OR payment_intent_id IN (SELECT value FROM json_each(?6)))
                     AND id NOT IN (SELECT value FROM json_each(?7))) AS e",
        )
        .bind(claimed.as_str())
        .bind(json_list(&keys.customers))
        .bind(json_list(&keys.subscriptions))
        .bind(json_list(&keys.sessions))
        .bind(json_list(&keys.workspaces))
        .bind(json_list(&keys.payments))
        .bind(json_list(&known.iter().map(ToString::to_string).collect()))
        .bind(history == History::Checkpoints)
        .fetch_one(&mut *self)
        .await?;
        let rows: Vec<ScopeRow> = serde_json::from_str(&rows).map_err(corrupt)?;
        rows.into_iter().map(ScopeRow::into_event).collect()
    }

    async fn links_touching(
        &mut self,
        keys: &ScopeKeys,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
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
            .bind(json_list(&keys.workspaces))
            .bind(json_list(&keys.customers))
            .bind(json_list(&keys.subscriptions))
            .bind(json_list(&keys.sessions))
            .fetch_all(&mut *self)
            .await?;
            Ok(rows)
        }
    }

    async fn administered_by(
        &mut self,
        emails: &BTreeSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT workspace_id FROM members
                 WHERE role IN ('owner', 'admin') AND email IN (SELECT value FROM json_each(?))",
            )
            .bind(json_list(emails))
            .fetch_all(&mut *self)
            .await?)
        }
    }
}

/// The claimed event's scope and the versions of every id it reached,
/// read on one connection (the caller holds a read transaction).
pub(super) async fn read_scope(
    conn: &mut SqliteConnection,
    claimed: &EventId,
    keys: &EventKeys,
    history: History,
) -> Result<ScopeRead, StoreError> {
    let (snapshot, sets) = load_snapshot(conn, claimed, keys, history).await?;
    let keys = version_keys(&sets, snapshot.cases.keys());
    let versions = scope_versions(conn, &keys).await?;
    Ok(ScopeRead { snapshot, versions })
}

/// The current version of each key (0 for one never bumped).
pub(super) async fn scope_versions(
    conn: &mut SqliteConnection,
    keys: &BTreeSet<String>,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut versions: BTreeMap<String, i64> = keys.iter().map(|k| (k.clone(), 0)).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT key, version FROM scope_versions WHERE key IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(keys))
    .fetch_all(&mut *conn)
    .await?;
    versions.extend(rows);
    Ok(versions)
}

/// The checkpoints that cover the scope's `covered` events, each checked
/// against the events it counted: where another event created before its
/// second has arrived since (or one it counted is gone), the subscription's
/// events are uncovered and read in full.
async fn checkpoints(
    conn: &mut SqliteConnection,
    events: &mut [ScopeEvent],
) -> Result<(BTreeMap<String, String>, BTreeSet<String>), StoreError> {
    let mut covered: BTreeMap<String, u64> = BTreeMap::new();
    for event in events.iter().filter(|e| e.covered) {
        if let Some(subscription) = &event.subscription {
            *covered.entry(subscription.clone()).or_default() += 1;
        }
    }
    if covered.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT subscription_id, events, fold FROM subscription_checkpoints
         WHERE subscription_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&covered.keys().cloned().collect()))
    .fetch_all(&mut *conn)
    .await?;
    let mut usable = BTreeMap::new();
    for (subscription, counted, fold) in rows {
        if u64::try_from(counted).ok() == covered.get(&subscription).copied() {
            usable.insert(subscription, fold);
        }
    }
    let stale_checkpoints: BTreeSet<String> = covered
        .keys()
        .filter(|s| !usable.contains_key(*s))
        .cloned()
        .collect();
    let stale: BTreeSet<String> = events
        .iter()
        .filter(|e| {
            e.covered
                && e.subscription
                    .as_ref()
                    .is_none_or(|s| !usable.contains_key(s))
        })
        .map(|e| e.id.to_string())
        .collect();
    if !stale.is_empty() {
        let billing: BTreeMap<String, Option<String>> = sqlx::query_as(
            "SELECT id, billing FROM stripe_events WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&stale))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        for event in events.iter_mut().filter(|e| stale.contains(e.id.as_str())) {
            event.covered = false;
            event.billing = billing.get(event.id.as_str()).cloned().flatten();
        }
    }
    Ok((usable, stale_checkpoints))
}

/// The bodies of the scope's events that have no stored billing event
/// (rows stored before ingress kept it): the processor reads those. One
/// already ignored (a type admit does not act on) is not read again.
async fn with_bodies(
    conn: &mut SqliteConnection,
    claimed: &EventId,
    events: &mut [ScopeEvent],
) -> Result<(), StoreError> {
    let wanted: BTreeSet<String> = events
        .iter()
        .filter(|e| needs_body(e))
        .map(|e| e.id.to_string())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, Vec<u8>, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, payload, encoding, raw_length FROM stripe_event_bodies
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&wanted))
    .fetch_all(&mut *conn)
    .await?;
    let mut bodies = BTreeMap::new();
    for (id, stored, encoding, raw_length) in rows {
        match crate::bodies::unpack(stored, &encoding, raw_length) {
            Ok(body) => {
                bodies.insert(id, body);
            }
            // The claimed event fails visibly; another one's damaged body
            // keeps it out of this derivation, and it fails when claimed.
            Err(error) if id == claimed.as_str() => return Err(error),
            Err(_) => {}
        }
    }
    for event in events.iter_mut().filter(|e| needs_body(e)) {
        event.payload = bodies.remove(event.id.as_str()).unwrap_or_default();
    }
    Ok(())
}

fn needs_body(event: &ScopeEvent) -> bool {
    event.billing.is_none() && !event.covered && event.status != EventStatus::Ignored
}

/// An event as `events_touching` lists it (a JSON array, in this order).
#[derive(serde::Deserialize)]
struct ScopeRow {
    id: String,
    event_type: String,
    livemode: i64,
    /// As JSON, not a string holding it: nothing to escape and unescape.
    billing: Option<Box<serde_json::value::RawValue>>,
    status: String,
    outcome: Option<String>,
    scenario: Option<String>,
    received_at: i64,
    customer: Option<String>,
    subscription: Option<String>,
    session: Option<String>,
    workspace_hint: Option<String>,
    purchaser_email: Option<String>,
    charge: Option<String>,
    payment_intent: Option<String>,
    /// A stored billing event that is not JSON, as text: the processor
    /// fails its event alone, and the rest of the scope is read.
    unreadable_billing: Option<String>,
    created: i64,
    covered: i64,
}

impl ScopeRow {
    fn into_event(self) -> Result<(ScopeEvent, EventKeys), StoreError> {
        let keys = EventKeys {
            customer: self.customer,
            subscription: self.subscription,
            session: self.session,
            workspace_hint: self.workspace_hint,
            purchaser_email: self.purchaser_email,
            charge: self.charge,
            payment_intent: self.payment_intent,
        };
        let event = ScopeEvent {
            id: parse_event_id(self.id)?,
            event_type: self.event_type,
            livemode: self.livemode != 0,
            billing: self
                .billing
                .map(|raw| raw.get().to_owned())
                .or(self.unreadable_billing),
            payload: Vec::new(),
            status: EventStatus::parse(&self.status)
                .ok_or_else(|| corrupt("unknown event status"))?,
            outcome: self.outcome,
            scenario: self.scenario,
            received_at: admit_core::Timestamp::from_unix(self.received_at),
            created: admit_core::Timestamp::from_unix(self.created),
            subscription: keys.subscription.clone(),
            customer: keys.customer.clone(),
            session: keys.session.clone(),
            covered: self.covered != 0,
        };
        Ok((event, keys))
    }
}

async fn load_snapshot(
    conn: &mut SqliteConnection,
    claimed: &EventId,
    keys: &EventKeys,
    history: History,
) -> Result<(ScopeSnapshot, ScopeKeys), StoreError> {
    let mut sets = ScopeKeys::default();
    sets.add_event(keys);
    let found = grow_scope(conn, claimed, &mut sets, history).await?;
    let mut events: Vec<ScopeEvent> = found.into_values().collect();
    let (checkpoints, stale_checkpoints) = checkpoints(conn, &mut events).await?;
    with_bodies(conn, claimed, &mut events).await?;

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
    let mut created_for_purchases = BTreeSet::new();
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
            match source.as_str() {
                "purchaser_administers" => {
                    remembered_purchases.insert(stripe_id.clone());
                }
                "created_workspace" => {
                    created_for_purchases.insert(stripe_id.clone());
                }
                _ => {}
            }
            purchase_bindings.insert(stripe_id, workspace);
        }
    }

    // Money cases (a dispute admit could not place) may name no purchase:
    // they are found by the events they hold.
    let event_ids: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
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

    let snapshot = ScopeSnapshot {
        claimed: claimed.clone(),
        events,
        directory: admit_core::Directory::new(workspaces),
        intents,
        customer_bindings,
        purchase_bindings,
        remembered_purchases,
        created_for_purchases,
        settlements,
        workspaces: existing,
        billing,
        cases,
        outbox,
        checkpoints,
        stale_checkpoints,
    };
    Ok((snapshot, sets))
}
