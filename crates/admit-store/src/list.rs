//! Typed list queries for what operators browse (cases, events, outbox,
//! audit, workspaces), with filters and a cursor: the shape the console and the CLI use.

use admit_core::{EventId, Timestamp, WorkspaceId};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::StoreError;
use crate::audit::StoredAuditEntry;
use crate::events::EventStatus;
use crate::provisioning::{OutboxRow, StoredCase};

/// Which list a cursor pages through: a cursor of one list is no cursor of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Cases,
    Events,
    Outbox,
    Audit,
    Workspaces,
}

impl ListKind {
    fn tag(self) -> &'static str {
        match self {
            ListKind::Cases => "c",
            ListKind::Events => "e",
            ListKind::Outbox => "o",
            ListKind::Audit => "a",
            ListKind::Workspaces => "w",
        }
    }
}

/// Where the next page starts: opaque to callers, `<list>.<sort key>.<id>` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) list: ListKind,
    pub(crate) at: i64,
    pub(crate) id: String,
}

impl Cursor {
    pub(crate) fn new(list: ListKind, at: i64, id: impl Into<String>) -> Self {
        Self {
            list,
            at,
            id: id.into(),
        }
    }

    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.list.tag(), self.at, self.id)
    }

    /// `None` for anything that is not a cursor of `list` this store handed out.
    pub fn decode(raw: &str, list: ListKind) -> Option<Self> {
        let rest = raw.strip_prefix(list.tag())?.strip_prefix('.')?;
        let (at, id) = rest.split_once('.')?;
        // Only what `encode` writes: no `+`, at most 18 digits.
        let digits = at.strip_prefix('-').unwrap_or(at);
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let at = at.parse().ok()?;
        (!id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self::new(list, at, id))
    }
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Cuts a `limit + 1` fetch into a page and its cursor.
    pub(crate) fn from_fetch(
        mut items: Vec<T>,
        limit: usize,
        cursor: impl Fn(&T) -> Cursor,
    ) -> Self {
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(&cursor)
        });
        Self {
            items,
            next: next.flatten(),
        }
    }
}

/// Filters of the held-case queue. Every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseQuery {
    /// `held` or `resolved`.
    pub state: Option<String>,
    pub kind: Option<String>,
    pub workspace: Option<WorkspaceId>,
    /// A customer, subscription or checkout session id.
    pub stripe_id: Option<String>,
    /// The purchaser's email (normalised).
    pub email: Option<String>,
    /// Opened before this moment (the queue's age filter).
    pub created_before: Option<Timestamp>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// An inbox row as a list shows it (no payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub id: EventId,
    pub event_type: String,
    pub created: Timestamp,
    pub received_at: Timestamp,
    pub status: EventStatus,
    pub outcome: Option<String>,
    pub scenario: Option<String>,
    pub workspace_hint: Option<String>,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    pub outcome: Option<String>,
    pub scenario: Option<String>,
    /// `metadata.workspace_id` as sent, or a workspace the event is linked to.
    pub workspace: Option<WorkspaceId>,
    /// The event, its object, customer, subscription or checkout session.
    pub stripe_id: Option<String>,
    pub purchaser_email: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxQuery {
    /// `pending`, `sent`, `dead` or `superseded`.
    pub state: Option<String>,
    pub kind: Option<String>,
    pub recipient: Option<String>,
    pub workspace: Option<WorkspaceId>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub workspace: Option<WorkspaceId>,
    pub actor: Option<String>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// Filters of the workspace list (the console's search). Every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceQuery {
    /// Part of the workspace's id or name, in any case of its ASCII letters
    /// (other letters match only as written, on every backend).
    pub text: Option<String>,
    /// A member's email (normalised): workspaces this person belongs to.
    pub member_email: Option<String>,
    /// A Stripe id of the workspace: a customer, a subscription (current or
    /// replaced) or a checkout session its events link to it, a customer or
    /// purchase bound to it, or a checkout session admit created for it.
    pub stripe_id: Option<String>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// A workspace as a list shows it, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSummary {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Timestamp,
    pub subscription_status: Option<String>,
    pub subscription_plan: Option<String>,
    pub members: u64,
}

/// The columns a Stripe id filter looks in: the event, its object, customer,
/// subscription, checkout session, charge or payment intent.
pub(crate) const STRIPE_ID_COLUMNS: [&str; 7] = [
    "id",
    "object_id",
    "customer_id",
    "subscription_id",
    "checkout_session_id",
    "charge_id",
    "payment_intent_id",
];

/// A list's statement made of the filters that are set and no others: each
/// adds its condition (`WHERE` before the first, `AND` before the rest),
/// its values bound as parameters, never written into the text. A filter
/// written `(?n IS NULL OR column = ?n)` instead leaves the planner one
/// plan for every value, set or not: SQLite's prepared statement walks the
/// whole list's sort index whatever the filter, and so does a PostgreSQL
/// generic plan. A statement without the conditions it does not need is
/// planned for those it has, by the indexes they name.
pub(crate) struct Filtered<DB: Database> {
    sql: QueryBuilder<DB>,
    conditions: usize,
}

impl<DB: Database> Filtered<DB>
where
    DB::Arguments: Default,
{
    /// `select`: the statement up to its `WHERE`.
    pub(crate) fn new(select: &str) -> Self {
        Self {
            sql: QueryBuilder::new(select),
            conditions: 0,
        }
    }

    /// The statement, ready for one more condition.
    pub(crate) fn and(&mut self) -> &mut QueryBuilder<DB> {
        self.sql.push(if self.conditions == 0 {
            " WHERE "
        } else {
            " AND "
        });
        self.conditions += 1;
        &mut self.sql
    }

    /// `column = value`, if the filter is set.
    pub(crate) fn equal<T>(&mut self, column: &str, value: Option<T>)
    where
        T: for<'t> Encode<'t, DB> + Type<DB>,
    {
        if let Some(value) = value {
            self.and().push(column).push(" = ").push_bind(value);
        }
    }

    /// `(a = value OR b = value …)`, the value bound once a column.
    pub(crate) fn any_equal(&mut self, columns: &[&str], value: &str)
    where
        for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    {
        let sql = self.and();
        sql.push("(");
        for (n, column) in columns.iter().enumerate() {
            if n > 0 {
                sql.push(" OR ");
            }
            sql.push(column).push(" = ").push_bind(value);
        }
        sql.push(")");
    }

    /// Text after the conditions, before [`Filtered::finish`]: the end of
    /// a subquery they were the conditions of.
    pub(crate) fn close(&mut self, sql: &str) {
        self.sql.push(sql);
    }

    /// The statement, ordered and limited: `order` is its `ORDER BY` list.
    pub(crate) fn finish(mut self, order: &str, fetch: i64) -> QueryBuilder<DB>
    where
        i64: for<'t> Encode<'t, DB> + Type<DB>,
    {
        self.sql
            .push(" ORDER BY ")
            .push(order)
            .push(" LIMIT ")
            .push_bind(fetch);
        self.sql
    }
}

#[async_trait::async_trait]
pub trait ListStore: Send + Sync {
    async fn cases(&self, query: &CaseQuery) -> Result<Page<StoredCase>, StoreError>;
    async fn events(&self, query: &EventQuery) -> Result<Page<EventSummary>, StoreError>;
    async fn outbox(&self, query: &OutboxQuery) -> Result<Page<OutboxRow>, StoreError>;
    async fn audit(&self, query: &AuditQuery) -> Result<Page<StoredAuditEntry>, StoreError>;
    async fn workspaces(
        &self,
        query: &WorkspaceQuery,
    ) -> Result<Page<WorkspaceSummary>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        let cursor = Cursor::new(ListKind::Cases, 1_795_000_000, "case_0b6e");
        assert_eq!(
            Cursor::decode(&cursor.encode(), ListKind::Cases),
            Some(cursor.clone())
        );
        assert_eq!(
            Cursor::decode(&cursor.encode(), ListKind::Outbox),
            None,
            "a cases cursor pages no other list"
        );
        for bad in [
            "",
            "x",
            "c.12",
            "c.12.",
            "c.a.b",
            "c.12.has space",
            "12.id",
            "c.+12.id",
            "c.-.id",
            "c.1234567890123456789.id",
        ] {
            assert_eq!(Cursor::decode(bad, ListKind::Cases), None, "{bad:?}");
        }
    }

    #[test]
    fn a_fetch_of_one_more_than_the_limit_says_where_the_next_page_starts() {
        let at = |n: &i64| Cursor::new(ListKind::Audit, *n, n.to_string());
        let page = Page::from_fetch(vec![5, 4, 3], 2, at);
        assert_eq!(page.items, [5, 4]);
        assert_eq!(page.next, Some(Cursor::new(ListKind::Audit, 4, "4")));
        let last = Page::from_fetch(vec![2, 1], 2, at);
        assert_eq!(last.next, None);
    }
}
