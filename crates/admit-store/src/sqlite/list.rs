//! The operators' lists: filters bound as parameters, newest first, keyset
//! pagination on `(sort key, id)`. The events and the audit log, the two
//! long lists, are built of the filters that are set (see [`Filtered`]);
//! the others bind each filter as `(?n IS NULL OR …)`.

use admit_core::{EventId, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
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

/// The workspace list, `$stripe_id` its condition on `?3` (the Stripe id,
/// or NULL): the rest is the same for both of [`WORKSPACES`] and
/// [`WORKSPACES_OF_STRIPE_ID`].
///
/// The text filter is `LIKE`, which folds ASCII letters only: `acme`
/// finds `ACME`, but `é` does not find `É`. PostgreSQL's side folds the
/// same way (see postgres/list.rs), so a search finds the same on both.
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
               AND (?1 IS NULL OR w.id LIKE ?1 ESCAPE '\' OR w.name LIKE ?1 ESCAPE '\')
               AND (?2 IS NULL OR w.id IN (SELECT workspace_id FROM members WHERE email = ?2))
               AND (?4 IS NULL OR (w.created_at, w.id) < (?4, ?5))
             ORDER BY w.created_at DESC, w.id DESC LIMIT ?6"#
        )
    };
}

/// Every workspace: the page walks `workspaces_by_created` and stops after
/// `fetch` rows; the status, plan and count are looked up per row.
const WORKSPACES: &str = workspaces_where!("?3 IS NULL");

/// The workspaces a Stripe id belongs to, found by primary keys first
/// (a handful of rows, then sorted) instead of a walk of every workspace:
/// linked by events (a customer, a subscription, current or replaced, a
/// checkout session), bound (a customer, a purchase), or a checkout admit
/// created. A billing state's customer and subscription are always among
/// its workspace's links (a derivation links each purchase it bills), so
/// the billing states, which no index covers by Stripe id, need no scan.
const WORKSPACES_OF_STRIPE_ID: &str = workspaces_where!(
    "w.id IN (SELECT workspace_id FROM stripe_links
                      WHERE kind IN ('subscription', 'customer', 'session') AND stripe_id = ?3
                      UNION ALL
                      SELECT workspace_id FROM bindings
                      WHERE kind IN ('customer', 'purchase') AND stripe_id = ?3
                      UNION ALL
                      SELECT workspace_id FROM checkout_intents WHERE session_id = ?3)"
);

/// The events list's columns, up to its `WHERE`.
const EVENTS: &str = "SELECT id, type, created, received_at, status, outcome, scenario,
        workspace_hint, customer_id, subscription_id
 FROM stripe_events";

/// The events list: `head` and the conditions of the filters that are set
/// (see [`Filtered`]). Without a filter that an index narrows, the page
/// walks `stripe_events_by_received` and stops after `fetch` rows; with
/// one, SQLite looks the rows up by its indexes (a `MULTI-INDEX OR` for a
/// workspace or a Stripe id) and sorts what they find.
fn events_statement(head: &str, query: &EventQuery, fetch: i64) -> QueryBuilder<Sqlite> {
    let mut statement = Filtered::<Sqlite>::new(head);
    statement.equal("type", query.event_type.as_deref());
    statement.equal("status", query.status.map(EventStatus::as_str));
    statement.equal("outcome", query.outcome.as_deref());
    statement.equal("scenario", query.scenario.as_deref());
    if let Some(workspace) = &query.workspace {
        // `+kind`: not by the primary key's `kind`, which would read every
        // link of the kind, but by `stripe_links_by_workspace`, a handful.
        let workspace = workspace.as_str();
        statement
            .and()
            .push("(workspace_hint = ")
            .push_bind(workspace)
            .push(
                " OR customer_id IN (SELECT stripe_id FROM stripe_links
                                     WHERE +kind = 'customer' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push(
                ") OR subscription_id IN (SELECT stripe_id FROM stripe_links
                                         WHERE +kind = 'subscription' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push(
                ") OR checkout_session_id IN (SELECT stripe_id FROM stripe_links
                                             WHERE +kind = 'session' AND workspace_id = ",
            )
            .push_bind(workspace)
            .push("))");
    }
    if let Some(stripe_id) = &query.stripe_id {
        statement.any_equal(&STRIPE_ID_COLUMNS, stripe_id);
    }
    if let Some(email) = &query.purchaser_email {
        // `stripe_events_by_purchaser_email`, a partial index: `=` implies
        // its `purchaser_email IS NOT NULL` (which `(? IS NULL OR …)` did not).
        statement.equal("purchaser_email", Some(email.as_str()));
    }
    if let Some(since) = query.since {
        statement
            .and()
            .push("received_at >= ")
            .push_bind(since.unix());
    }
    if let Some(after) = &query.after {
        statement
            .and()
            .push("(received_at, id) < (")
            .push_bind(after.at)
            .push(", ")
            .push_bind(after.id.as_str())
            .push(")");
    }
    statement.finish("received_at DESC, id DESC", fetch)
}

/// The audit log's columns, up to its `WHERE`.
const AUDIT: &str = "SELECT id, at, actor, action, workspace_id, subject, before, after, cause
 FROM audit_log";

/// The audit log: `head` and the conditions of the filters that are set. A
/// workspace's entries come newest first from `audit_by_workspace`
/// (workspace_id, id); without one, the primary key is walked back.
fn audit_statement(head: &str, query: &AuditQuery, fetch: i64) -> QueryBuilder<Sqlite> {
    let mut statement = Filtered::<Sqlite>::new(head);
    statement.equal("workspace_id", query.workspace.as_ref().map(|w| w.as_str()));
    statement.equal("actor", query.actor.as_deref());
    if let Some(after) = &query.after {
        statement.and().push("id < ").push_bind(after.at);
    }
    statement.finish("id DESC", fetch)
}

#[async_trait::async_trait]
impl ListStore for SqliteStore {
    async fn cases(&self, query: &CaseQuery) -> Result<Page<StoredCase>, StoreError> {
        let (limit, fetch) = limit(query.limit);
        let (at, id) = cursor_parts(query.after.as_ref());
        let rows = sqlx::query(
            "SELECT * FROM cases
             WHERE (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR workspace_id = ?3 OR resolution_workspace = ?3)
               AND (?4 IS NULL OR stripe_customer_id = ?4 OR stripe_subscription_id = ?4
                    OR checkout_session_id = ?4)
               AND (?5 IS NULL OR purchaser_email = ?5)
               AND (?9 IS NULL OR created_at < ?9)
               AND (?6 IS NULL OR (created_at, id) < (?6, ?7))
             ORDER BY created_at DESC, id DESC LIMIT ?8",
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
        let rows = events_statement(EVENTS, query, fetch)
            .build()
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
             WHERE (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR recipient = ?3)
               AND (?4 IS NULL OR workspace_id = ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6",
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
        let rows = audit_statement(AUDIT, query, fetch)
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

/// SQLite-only: the plans of the events list and the audit log, as the
/// bundled SQLite makes them (no `ANALYZE`, as in production): a filter an
/// index narrows is looked up by it, not by a walk of the whole list.
#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("plans.db").display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        crate::Store::migrate(&store).await.expect("migrate");
        (dir, store)
    }

    /// `EXPLAIN QUERY PLAN` of a statement, its lines joined.
    async fn plan(store: &SqliteStore, mut statement: QueryBuilder<Sqlite>) -> String {
        let rows = statement
            .build()
            .fetch_all(&store.pool)
            .await
            .expect("plan");
        rows.iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn events(query: EventQuery) -> QueryBuilder<Sqlite> {
        events_statement(&format!("EXPLAIN QUERY PLAN {EVENTS}"), &query, 26)
    }

    fn ws(raw: &str) -> Option<admit_core::WorkspaceId> {
        Some(admit_core::WorkspaceId::parse(raw).expect("workspace id"))
    }

    #[tokio::test]
    async fn a_filter_an_index_narrows_is_looked_up_by_it() {
        let (_dir, store) = store().await;
        let after = Some(Cursor::new(ListKind::Events, 1_795_000_000, "evt_1"));

        for query in [
            EventQuery {
                workspace: ws("ws_a"),
                ..EventQuery::default()
            },
            EventQuery {
                workspace: ws("ws_a"),
                event_type: Some("invoice.paid".into()),
                after: after.clone(),
                ..EventQuery::default()
            },
        ] {
            let plan = plan(&store, events(query.clone())).await;
            assert!(plan.starts_with("MULTI-INDEX OR"), "{query:?}: {plan}");
            for index in [
                "stripe_events_by_workspace_hint",
                "stripe_events_by_customer",
                "stripe_events_by_subscription",
                "stripe_events_by_session",
            ] {
                assert!(plan.contains(index), "{query:?}: {plan}");
            }
            // Each kind's links by the workspace's, not every link of the kind.
            assert_eq!(
                plan.matches("stripe_links USING INDEX stripe_links_by_workspace")
                    .count(),
                3,
                "{query:?}: {plan}"
            );
            assert!(!plan.contains("SCAN"), "{query:?}: {plan}");
        }

        for query in [
            EventQuery {
                stripe_id: Some("cus_1".into()),
                ..EventQuery::default()
            },
            EventQuery {
                stripe_id: Some("cus_1".into()),
                status: Some(EventStatus::Processed),
                since: Some(Timestamp::from_unix(1_700_000_000)),
                after: after.clone(),
                ..EventQuery::default()
            },
        ] {
            let plan = plan(&store, events(query.clone())).await;
            assert!(plan.starts_with("MULTI-INDEX OR"), "{query:?}: {plan}");
            assert_eq!(plan.matches("SEARCH stripe_events").count(), 7, "{plan}");
            assert!(!plan.contains("SCAN"), "{query:?}: {plan}");
        }

        let query = EventQuery {
            purchaser_email: Some("ann@acme.test".into()),
            after: after.clone(),
            ..EventQuery::default()
        };
        let plan_of_email = plan(&store, events(query)).await;
        assert!(
            plan_of_email
                .starts_with("SEARCH stripe_events USING INDEX stripe_events_by_purchaser_email"),
            "{plan_of_email}"
        );

        // No filter an index narrows: the sort index walked, no sort.
        for query in [
            EventQuery::default(),
            EventQuery {
                event_type: Some("invoice.paid".into()),
                status: Some(EventStatus::Held),
                after,
                ..EventQuery::default()
            },
        ] {
            let plan = plan(&store, events(query.clone())).await;
            assert!(
                plan.starts_with("SCAN stripe_events USING INDEX stripe_events_by_received")
                    || plan
                        .starts_with("SEARCH stripe_events USING INDEX stripe_events_by_received"),
                "{query:?}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{query:?}: {plan}");
        }
    }

    #[tokio::test]
    async fn a_workspace_s_audit_entries_are_read_by_its_index() {
        let (_dir, store) = store().await;
        let query = AuditQuery {
            workspace: ws("ws_a"),
            actor: Some("api".into()),
            after: Some(Cursor::new(ListKind::Audit, 40, "40")),
            ..AuditQuery::default()
        };
        let head = format!("EXPLAIN QUERY PLAN {AUDIT}");
        let plan = plan(&store, audit_statement(&head, &query, 51)).await;
        assert!(
            plan.starts_with("SEARCH audit_log USING INDEX audit_by_workspace"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
