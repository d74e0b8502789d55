//! The PostgreSQL side of a scope: the three lookups the fixpoint grows
//! by, and the snapshot of everything a derivation of the scope reads. The
//! caller holds a REPEATABLE READ transaction: every lookup sees one
//! snapshot, as SQLite's read transaction does.
//!
//! Every lookup here is planned for its ids each time (`persistent(false)`):
//! a prepared statement's generic plan for `= ANY($n)`, fixed while a table
//! was small, stays a sequential scan until the next ANALYZE. On a new
//! database that made the scope read most of the processor's time.

use std::collections::{BTreeMap, BTreeSet};

use admit_core::provisioning::{CheckoutIntent, EventKeys, ScopeKeys, Settlement};
use admit_core::{CustomerId, Email, EventId, PlanKey, Timestamp, WorkspaceId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::directory::load_workspace;
use super::rows::{billing_state, corrupt, parse_event_id, parse_workspace, stored_case};
use crate::StoreError;
use crate::events::EventStatus;
use crate::provisioning::{History, ScopeEvent, ScopeRead, ScopeSnapshot};
use crate::scope::{ScopeQueries, grow_scope, version_keys};

/// A set bound as one `TEXT[]` parameter (`= ANY($n)`).
pub(super) fn list(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

impl ScopeQueries for PgConnection {
    async fn events_touching(
        &mut self,
        claimed: &EventId,
        keys: &ScopeKeys,
        known: &BTreeSet<EventId>,
        history: History,
    ) -> Result<Vec<(ScopeEvent, EventKeys)>, StoreError> {
        // Each event is read once, in the round that finds it. The body is
        // not read here: the billing event stands for it (see
        // `with_bodies`), and for an event a checkpoint covers, the
        // checkpoint does.
        let known: Vec<&str> = known.iter().map(EventId::as_str).collect();
        let rows = sqlx::query(
            "SELECT e.id, e.type, e.livemode, e.status, e.outcome, e.scenario, e.received_at,
                    e.customer_id, e.subscription_id, e.checkout_session_id, e.workspace_hint,
                    e.purchaser_email, e.charge_id, e.payment_intent_id, e.created,
                    ($8 AND e.billing IS NOT NULL AND c.through IS NOT NULL
                        AND e.created <= c.through) AS covered,
                    e.billing
             FROM stripe_events e
             LEFT JOIN subscription_checkpoints c ON c.subscription_id = e.subscription_id
             WHERE (e.id = $1
                    OR e.customer_id = ANY($2)
                    OR e.subscription_id = ANY($3)
                    OR e.checkout_session_id = ANY($4)
                    OR e.workspace_hint = ANY($5)
                    OR e.charge_id = ANY($6)
                    OR e.payment_intent_id = ANY($6))
               AND NOT (e.id = ANY($7))",
        )
        .bind(claimed.as_str())
        .bind(list(&keys.customers))
        .bind(list(&keys.subscriptions))
        .bind(list(&keys.sessions))
        .bind(list(&keys.workspaces))
        .bind(list(&keys.payments))
        .bind(known)
        .bind(history == History::Checkpoints)
        .persistent(false)
        .fetch_all(&mut *self)
        .await?;
        rows.iter().map(scope_event).collect()
    }

    async fn links_touching(
        &mut self,
        keys: &ScopeKeys,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kind, stripe_id, workspace_id FROM stripe_links
             WHERE workspace_id = ANY($1)
                OR (kind = 'customer' AND stripe_id = ANY($2))
                OR (kind = 'subscription' AND stripe_id = ANY($3))
                OR (kind = 'session' AND stripe_id = ANY($4))
             UNION
             SELECT kind, stripe_id, workspace_id FROM bindings
             WHERE workspace_id = ANY($1)
                OR (kind = 'customer' AND stripe_id = ANY($2))
                OR (kind = 'purchase' AND stripe_id = ANY($3))
                OR (kind = 'purchase' AND stripe_id = ANY($4))
             UNION
             SELECT 'session', session_id, workspace_id FROM checkout_intents
             WHERE session_id = ANY($4)",
        )
        .bind(list(&keys.workspaces))
        .bind(list(&keys.customers))
        .bind(list(&keys.subscriptions))
        .bind(list(&keys.sessions))
        .persistent(false)
        .fetch_all(&mut *self)
        .await?)
    }

    async fn administered_by(
        &mut self,
        emails: &BTreeSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT workspace_id FROM members
             WHERE role IN ('owner', 'admin') AND email = ANY($1)",
        )
        .bind(list(emails))
        .persistent(false)
        .fetch_all(&mut *self)
        .await?)
    }
}

/// An event as `events_touching` selects it. A covered event's billing
/// event is left out (its checkpoint stands for it).
fn scope_event(row: &PgRow) -> Result<(ScopeEvent, EventKeys), StoreError> {
    let keys = EventKeys {
        customer: row.try_get("customer_id")?,
        subscription: row.try_get("subscription_id")?,
        session: row.try_get("checkout_session_id")?,
        workspace_hint: row.try_get("workspace_hint")?,
        purchaser_email: row.try_get("purchaser_email")?,
        charge: row.try_get("charge_id")?,
        payment_intent: row.try_get("payment_intent_id")?,
    };
    let covered: bool = row.try_get("covered")?;
    let status: String = row.try_get("status")?;
    let event = ScopeEvent {
        id: parse_event_id(row.try_get("id")?)?,
        event_type: row.try_get("type")?,
        livemode: row.try_get("livemode")?,
        billing: if covered {
            None
        } else {
            row.try_get("billing")?
        },
        payload: Vec::new(),
        status: EventStatus::parse(&status).ok_or_else(|| corrupt("unknown event status"))?,
        outcome: row.try_get("outcome")?,
        scenario: row.try_get("scenario")?,
        received_at: Timestamp::from_unix(row.try_get("received_at")?),
        created: Timestamp::from_unix(row.try_get("created")?),
        subscription: keys.subscription.clone(),
        customer: keys.customer.clone(),
        session: keys.session.clone(),
        covered,
    };
    Ok((event, keys))
}

/// The claimed event's scope and the versions of every id it reached,
/// read in the caller's snapshot.
pub(super) async fn read_scope(
    conn: &mut PgConnection,
    claimed: &EventId,
    keys: &EventKeys,
    history: History,
) -> Result<ScopeRead, StoreError> {
    let (snapshot, sets) = load_snapshot(conn, claimed, keys, history).await?;
    let keys = version_keys(&sets, snapshot.cases.keys());
    let versions = scope_versions(conn, &keys, false).await?;
    Ok(ScopeRead { snapshot, versions })
}

/// The current version of each key (0 for one never bumped). With `lock`,
/// the caller's transaction holds each key's row until it ends: missing
/// rows are made first, and all are taken in key order, so that two
/// commits over overlapping keys wait for each other instead of crossing.
pub(super) async fn scope_versions(
    conn: &mut PgConnection,
    keys: &BTreeSet<String>,
    lock: bool,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut versions: BTreeMap<String, i64> = keys.iter().map(|k| (k.clone(), 0)).collect();
    if keys.is_empty() {
        return Ok(versions);
    }
    let rows: Vec<(String, i64)> = if lock {
        sqlx::query(
            "INSERT INTO scope_versions (key, version)
             SELECT k, 0 FROM unnest($1::TEXT[]) AS k ORDER BY k
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(list(keys))
        .execute(&mut *conn)
        .await?;
        sqlx::query_as(
            "SELECT key, version FROM scope_versions WHERE key = ANY($1)
             ORDER BY key FOR UPDATE",
        )
        .bind(list(keys))
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?
    } else {
        sqlx::query_as("SELECT key, version FROM scope_versions WHERE key = ANY($1)")
            .bind(list(keys))
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?
    };
    versions.extend(rows);
    Ok(versions)
}

/// The checkpoints that cover the scope's `covered` events, each checked
/// against the events it counted: where another event created before its
/// second has arrived since (or one it counted is gone), the subscription's
/// events are uncovered and read in full.
async fn checkpoints(
    conn: &mut PgConnection,
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
    let subscriptions: Vec<&str> = covered.keys().map(String::as_str).collect();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT subscription_id, events, fold FROM subscription_checkpoints
         WHERE subscription_id = ANY($1)",
    )
    .bind(subscriptions)
    .persistent(false)
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
        let billing: BTreeMap<String, Option<String>> =
            sqlx::query_as("SELECT id, billing FROM stripe_events WHERE id = ANY($1)")
                .bind(list(&stale))
                .persistent(false)
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
/// (rows whose body ingress could not read): the processor reads those.
/// One already ignored (a type admit does not act on) is not read again.
async fn with_bodies(
    conn: &mut PgConnection,
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
        "SELECT id, payload, encoding, raw_length FROM stripe_event_bodies WHERE id = ANY($1)",
    )
    .bind(list(&wanted))
    .persistent(false)
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

async fn load_snapshot(
    conn: &mut PgConnection,
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
        "SELECT session_id, workspace_id, initiator_email, purchaser_email, plan
         FROM checkout_intents WHERE session_id = ANY($1)",
    )
    .bind(list(&sets.sessions))
    .persistent(false)
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
                purchaser: purchaser
                    .map(|p| Email::parse(&p))
                    .transpose()
                    .map_err(corrupt)?,
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
         WHERE (kind = 'customer' AND stripe_id = ANY($1))
            OR (kind = 'purchase' AND stripe_id = ANY($2))",
    )
    .bind(list(&sets.customers))
    .bind(list(&sets.purchases()))
    .persistent(false)
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
    // they are found by the events they hold (`?|`: any of the ids is an
    // element of the case's JSON array).
    let event_ids: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    let mut settlements = BTreeMap::new();
    for row in sqlx::query(
        "SELECT case_key, resolution FROM cases WHERE resolution IN ('mark_refunded', 'dismiss')
           AND (stripe_subscription_id = ANY($1)
                OR checkout_session_id = ANY($2)
                OR (kind IN ('payment_disputed', 'payment_refunded')
                    AND cases.event_ids::jsonb ?| $3::TEXT[]))",
    )
    .bind(list(&sets.subscriptions))
    .bind(list(&sets.sessions))
    .bind(list(&event_ids))
    .persistent(false)
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
         WHERE stripe_subscription_id = ANY($1)
            OR checkout_session_id = ANY($2)
            OR stripe_customer_id = ANY($3)
            OR (kind IN ('payment_disputed', 'payment_refunded')
                AND cases.event_ids::jsonb ?| $4::TEXT[])",
    )
    .bind(list(&sets.subscriptions))
    .bind(list(&sets.sessions))
    .bind(list(&sets.customers))
    .bind(list(&event_ids))
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?
    {
        let case = stored_case(&row)?;
        cases.insert(case.key.clone(), case);
    }

    let mut outbox = BTreeMap::new();
    for row in sqlx::query("SELECT idempotency_key, state FROM outbox WHERE about = ANY($1)")
        .bind(list(&sets.purchases()))
        .persistent(false)
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
