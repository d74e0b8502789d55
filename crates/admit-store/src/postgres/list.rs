//! The operators' lists: filters bound as parameters, newest first, keyset
//! pagination on `(sort key, id)`. The events and the audit log, the two
//! long lists, are built of the filters that are set (see [`Filtered`]);
//! the others bind each filter as `($n IS NULL OR …)`.
//!
//! Text ids are ordered and compared `COLLATE "C"` (byte order), as SQLite
//! orders them, whatever the database's default collation: a page and its
//! cursor come out the same on both dialects.

use admit_core::{EventId, Timestamp};
use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use super::audit::audit_row;
use super::rows::{corrupt, outbox_row, stored_case};
use crate::StoreError;
use crate::audit::StoredAuditEntry;
use crate::events::EventStatus;
use crate::list::{
    AuditQuery, CaseQuery, Cursor, EventQuery, EventSummary, Filtered, ListKind, ListStore,
    OutboxQuery, Page, STRIPE_ID_COLUMNS, WorkspaceQuery, WorkspaceSummary,
};
use crate::provisioning::{OutboxRow, StoredCase};
use crate::rows::workspace_summary;
use crate::values::contains_pattern;

/// At most this many rows a page, whatever the caller asks.
const MAX_PAGE: u32 = 1000;

fn limit(asked: u32) -> (usize, i64) {
    let limit = asked.clamp(1, MAX_PAGE);
    (limit as usize, i64::from(limit) + 1)
}

fn cursor_parts(cursor: Option<&Cursor>) -> (Option<i64>, Option<&str>) {
    cursor.map_or((None, None), |c| (Some(c.at), Some(c.id.as_str())))
}

/// The workspace list, `$stripe_id` its condition on `$3` (the Stripe id,
/// or NULL): the rest is the same for both of [`WORKSPACES`] and
/// [`WORKSPACES_OF_STRIPE_ID`].
///
/// The text filter folds case as SQLite's `LIKE` does, ASCII letters only:
/// `lower()` under `COLLATE "C"` lowers `A`–`Z` and leaves every other
/// character as it is, whatever the database's collation. So `acme` finds
/// `ACME`, but `é` does not find `É` (`ILIKE` would, under a Unicode
/// collation, and SQLite would not).
macro_rules! workspaces_where {
    ($stripe_id:literal) => {
        concat!(
            r#"SELECT w.id, w.name, w.created_at,
                    b.subscription_status, b.subscription_plan,
                    (SELECT COUNT(*) FROM members m WHERE m.workspace_id = w.id) AS members
             FROM workspaces w LEFT JOIN billing_states b ON b.workspace_id = w.id
             WHERE "#,
            $stripe_id,
            r#"
               AND ($1::text IS NULL
                    OR lower(w.id COLLATE "C") LIKE lower($1 COLLATE "C") ESCAPE '\'
                    OR lower(w.name COLLATE "C") LIKE lower($1 COLLATE "C") ESCAPE '\')
               AND ($2::text IS NULL
                    OR w.id IN (SELECT workspace_id FROM members WHERE email = $2))
               AND ($4::bigint IS NULL OR (w.created_at, w.id COLLATE "C") < ($4, $5))
             ORDER BY w.created_at DESC, w.id COLLATE "C" DESC LIMIT $6"#
        )
    };
}

/// Every workspace: the page walks `workspaces_by_created` and stops after
/// `fetch` rows; the status, plan and count are looked up per row.
const WORKSPACES: &str = workspaces_where!("$3::text IS NULL");

/// The workspaces a Stripe id belongs to, found by primary keys first
/// (a handful of rows, then sorted) instead of a walk of every workspace:
/// linked by events (a customer, a subscription, current or replaced, a
/// checkout session), bound (a customer, a purchase), or a checkout admit
/// created. A billing state's customer and subscription are always among
/// its workspace's links (a derivation links each purchase it bills), so
/// the billing states, which no index covers by Stripe id, need no scan.
const WORKSPACES_OF_STRIPE_ID: &str = workspaces_where!(
    "w.id IN (SELECT workspace_id FROM stripe_links
                      WHERE kind IN ('subscription', 'customer', 'session') AND stripe_id = $3
                      UNION ALL
                      SELECT workspace_id FROM bindings
                      WHERE kind IN ('customer', 'purchase') AND stripe_id = $3
                      UNION ALL
                      SELECT workspace_id FROM checkout_intents WHERE session_id = $3)"
);

/// The events list's columns.
const EVENT_COLUMNS: &str = "id, type, created, received_at, status, outcome, scenario,
        workspace_hint, customer_id, subscription_id";

/// The events list: the conditions of the filters that are set (see
/// [`Filtered`]). Without a filter that an index narrows, the page walks
/// `stripe_events_by_received` and stops after `fetch` rows; a Stripe id
/// is looked up by the indexes of its columns (a `BitmapOr`) and what they
/// find sorted, an email by `stripe_events_by_purchaser_email`, and a
/// workspace by its hint's and its links' indexes (see below).
fn events_statement(query: &EventQuery, fetch: i64) -> QueryBuilder<Postgres> {
    // A workspace's events are all found first, then sorted. Its links'
    // ids are known only when the statement runs, so the planner guesses
    // how many events they name (ten ids' worth a column); with the page's
    // LIMIT in view, that guess makes a walk of `stripe_events_by_received`
    // look as if it would fill a page soon, when a workspace has a few
    // dozen events among all of them and the walk reads nearly every row.
    // A MATERIALIZED CTE is planned apart from the LIMIT: by the indexes.
    let fenced = query.workspace.is_some();
    let mut statement = Filtered::<Postgres>::new(&if fenced {
        format!("WITH listed AS MATERIALIZED (SELECT {EVENT_COLUMNS} FROM stripe_events")
    } else {
        format!("SELECT {EVENT_COLUMNS} FROM stripe_events")
    });
    statement.equal("type", query.event_type.as_deref());
    statement.equal("status", query.status.map(EventStatus::as_str));
    statement.equal("outcome", query.outcome.as_deref());
    statement.equal("scenario", query.scenario.as_deref());
    if let Some(workspace) = &query.workspace {
        // `= ANY (ARRAY(…))`: the workspace's links are read first (an
        // InitPlan), then each column's index looked up for them. `IN
        // (SELECT …)` under an OR is a SubPlan, checked row by row over
        // the whole table.
        let workspace = workspace.as_str();
        statement
            .and()
            .push("(workspace_hint = ")
            .push_bind(workspace)
            .push(
                " OR customer_id = ANY (ARRAY(SELECT stripe_id FROM stripe_links
                                              WHERE kind = 'customer' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push(
                ")) OR subscription_id = ANY (ARRAY(SELECT stripe_id FROM stripe_links
                                                  WHERE kind = 'subscription' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push(
                ")) OR checkout_session_id = ANY (ARRAY(SELECT stripe_id FROM stripe_links
                                                      WHERE kind = 'session' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push(")))");
    }
    if let Some(stripe_id) = &query.stripe_id {
        statement.any_equal(&STRIPE_ID_COLUMNS, stripe_id);
    }
    statement.equal("purchaser_email", query.purchaser_email.as_deref());
    if let Some(since) = query.since {
        statement
            .and()
            .push("received_at >= ")
            .push_bind(since.unix());
    }
    if let Some(after) = &query.after {
        statement
            .and()
            .push(r#"(received_at, id COLLATE "C") < ("#)
            .push_bind(after.at)
            .push(", ")
            .push_bind(after.id.as_str())
            .push(")");
    }
    if fenced {
        statement.close(") SELECT * FROM listed");
    }
    statement.finish(r#"received_at DESC, id COLLATE "C" DESC"#, fetch)
}

#[async_trait::async_trait]
impl ListStore for PgStore {
    async fn cases(&self, query: &CaseQuery) -> Result<Page<StoredCase>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        let (at, id) = cursor_parts(query.after.as_ref());
        let rows = sqlx::query(
            r#"SELECT * FROM cases
             WHERE ($1 IS NULL OR state = $1)
               AND ($2 IS NULL OR kind = $2)
               AND ($3 IS NULL OR workspace_id = $3 OR resolution_workspace = $3)
               AND ($4 IS NULL OR stripe_customer_id = $4 OR stripe_subscription_id = $4
                    OR checkout_session_id = $4)
               AND ($5 IS NULL OR purchaser_email = $5)
               AND ($9 IS NULL OR created_at < $9)
               AND ($6 IS NULL OR (created_at, id COLLATE "C") < ($6, $7))
             ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $8"#,
        )
        .bind(&query.state)
        .bind(&query.kind)
        .bind(query.workspace.as_ref().map(|w| w.as_str()))
        .bind(&query.stripe_id)
        .bind(&query.email)
        .bind(at)
        .bind(id)
        .bind(fetch)
        .bind(query.created_before.map(Timestamp::unix))
        .fetch_all(&self.pool)
        .await?;
        let cases = rows
            .iter()
            .map(stored_case)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_fetch(cases, limit, |c| {
            Cursor::new(ListKind::Cases, c.created_at.unix(), c.id.clone())
        }))
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<EventSummary>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        let rows = events_statement(query, fetch)
            .build()
            // Planned for its values each time, as the scope's lookups
            // are: a generic plan, made once for any value, takes a rare
            // status or type for a common one, and cannot use a partial
            // index (`stripe_events_unsettled`) for a value it does not know.
            .persistent(false)
            .fetch_all(&self.pool)
            .await?;
        let events = rows
            .iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(EventSummary {
                    id: EventId::parse(row.try_get::<String, _>("id")?).map_err(corrupt)?,
                    event_type: row.try_get("type")?,
                    created: Timestamp::from_unix(row.try_get("created")?),
                    received_at: Timestamp::from_unix(row.try_get("received_at")?),
                    status: EventStatus::parse(&status)
                        .ok_or_else(|| corrupt("unknown event status"))?,
                    outcome: row.try_get("outcome")?,
                    scenario: row.try_get("scenario")?,
                    workspace_hint: row.try_get("workspace_hint")?,
                    customer_id: row.try_get("customer_id")?,
                    subscription_id: row.try_get("subscription_id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_fetch(events, limit, |e| {
            Cursor::new(ListKind::Events, e.received_at.unix(), e.id.as_str())
        }))
    }

    async fn outbox(&self, query: &OutboxQuery) -> Result<Page<OutboxRow>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        let (at, _) = cursor_parts(query.after.as_ref());
        let rows = sqlx::query(
            "SELECT * FROM outbox
             WHERE ($1 IS NULL OR state = $1)
               AND ($2 IS NULL OR kind = $2)
               AND ($3 IS NULL OR recipient = $3)
               AND ($4 IS NULL OR workspace_id = $4)
               AND ($5 IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&query.state)
        .bind(&query.kind)
        .bind(&query.recipient)
        .bind(query.workspace.as_ref().map(|w| w.as_str()))
        .bind(at)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let messages = rows.iter().map(outbox_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_fetch(messages, limit, |m| {
            Cursor::new(ListKind::Outbox, m.id, m.id.to_string())
        }))
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<StoredAuditEntry>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        // A workspace's entries come newest first from `audit_by_workspace`
        // (workspace_id, id); without one, the primary key is walked back.
        let mut statement = Filtered::<Postgres>::new(
            "SELECT id, at, actor, action, workspace_id, subject, before, after, cause
             FROM audit_log",
        );
        statement.equal("workspace_id", query.workspace.as_ref().map(|w| w.as_str()));
        statement.equal("actor", query.actor.as_deref());
        if let Some(after) = &query.after {
            statement.and().push("id < ").push_bind(after.at);
        }
        let rows = statement
            .finish("id DESC", fetch)
            .build()
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_fetch(entries, limit, |e| {
            Cursor::new(ListKind::Audit, e.id, e.id.to_string())
        }))
    }

    async fn workspaces(
        &self,
        query: &WorkspaceQuery,
    ) -> Result<Page<WorkspaceSummary>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        let (at, id) = cursor_parts(query.after.as_ref());
        let sql = if query.stripe_id.is_some() {
            WORKSPACES_OF_STRIPE_ID
        } else {
            WORKSPACES
        };
        let rows = sqlx::query(sql)
            .bind(query.text.as_deref().map(contains_pattern))
            .bind(&query.member_email)
            .bind(&query.stripe_id)
            .bind(at)
            .bind(id)
            .bind(fetch)
            .fetch_all(&self.pool)
            .await?;
        let workspaces = rows
            .iter()
            .map(workspace_summary)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_fetch(workspaces, limit, |w| {
            Cursor::new(ListKind::Workspaces, w.created_at.unix(), w.id.as_str())
        }))
    }
}
