//! Row mapping written once for both dialects: [`Columns`] reads a
//! column of either dialect's row as the few types admit stores.

use admit_core::{
    BillingState, CustomerId, Email, EventId, PlanKey, SubscriptionId, SubscriptionStatus,
    Timestamp,
};
use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::StoreError;
use crate::list::WorkspaceSummary;
use crate::operators::Operator;
use crate::provisioning::{OutboxRow, StoredCase};
use crate::values::{corrupt, parse_operator_role, parse_workspace, ts};

/// A row of either dialect, read column by column.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn maybe_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.try_get(column)
    }

    fn maybe_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(column)
    }
}

/// A `billing_states` row, wherever its columns were selected.
pub(crate) fn billing_row(row: &impl Columns) -> Result<BillingState, StoreError> {
    let status = row.maybe_text("subscription_status")?;
    let plan = row.maybe_text("subscription_plan")?;
    let customer = row.maybe_text("stripe_customer_id")?;
    let subscription = row.maybe_text("stripe_subscription_id")?;
    let email = row.maybe_text("purchaser_email")?;
    let event = row.maybe_text("updated_by_event")?;
    Ok(BillingState {
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
        current_period_end: ts(row.maybe_int("current_period_end")?),
        cancel_at_period_end: row.flag("cancel_at_period_end")?,
        cancel_at: ts(row.maybe_int("cancel_at")?),
        purchaser_email: email
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(corrupt)?,
        updated_by_event: event.map(EventId::parse).transpose().map_err(corrupt)?,
        past_due_since: ts(row.maybe_int("past_due_since")?),
    })
}

/// A `cases` row; `event_ids` and `details` are JSON stored as text.
pub(crate) fn stored_case(row: &impl Columns) -> Result<StoredCase, StoreError> {
    let event_ids = row.text("event_ids")?;
    let details = row.text("details")?;
    Ok(StoredCase {
        id: row.text("id")?,
        key: row.text("case_key")?,
        kind: row.text("kind")?,
        scenario: row.maybe_text("scenario")?,
        workspace_id: row.maybe_text("workspace_id")?,
        purchaser_email: row.maybe_text("purchaser_email")?,
        customer_id: row.maybe_text("stripe_customer_id")?,
        subscription_id: row.maybe_text("stripe_subscription_id")?,
        checkout_session_id: row.maybe_text("checkout_session_id")?,
        event_ids: serde_json::from_str(&event_ids).map_err(corrupt)?,
        details: serde_json::from_str(&details).map_err(corrupt)?,
        state: row.text("state")?,
        resolution: row.maybe_text("resolution")?,
        resolution_workspace: row.maybe_text("resolution_workspace")?,
        resolution_role: row.maybe_text("resolution_role")?,
        resolution_note: row.maybe_text("resolution_note")?,
        resolved_by: row.maybe_text("resolved_by")?,
        created_at: Timestamp::from_unix(row.int("created_at")?),
        resolved_at: ts(row.maybe_int("resolved_at")?),
    })
}

/// An `outbox` row; `payload` is JSON stored as text.
pub(crate) fn outbox_row(row: &impl Columns) -> Result<OutboxRow, StoreError> {
    let payload = row.text("payload")?;
    Ok(OutboxRow {
        id: row.int("id")?,
        idempotency_key: row.text("idempotency_key")?,
        kind: row.text("kind")?,
        recipient: row.text("recipient")?,
        workspace_id: row.maybe_text("workspace_id")?,
        about: row.maybe_text("about")?,
        case_key: row.maybe_text("case_key")?,
        payload: serde_json::from_str::<Value>(&payload).map_err(corrupt)?,
        state: row.text("state")?,
        attempts: row.int("attempts")?,
        next_attempt_at: Timestamp::from_unix(row.int("next_attempt_at")?),
        last_error: row.maybe_text("last_error")?,
        created_at: Timestamp::from_unix(row.int("created_at")?),
        sent_at: ts(row.maybe_int("sent_at")?),
    })
}

/// An `operators` row selected with `password_hash IS NOT NULL AS password_set`.
pub(crate) fn operator_row(row: &impl Columns) -> Result<Operator, StoreError> {
    Ok(Operator {
        name: row.text("name")?,
        role: parse_operator_role(&row.text("role")?)?,
        created_at: Timestamp::from_unix(row.int("created_at")?),
        password_set: row.flag("password_set")?,
    })
}

/// A row of the workspace list: the workspace, its billing state's status
/// and plan, and its member count (`members`).
pub(crate) fn workspace_summary(row: &impl Columns) -> Result<WorkspaceSummary, StoreError> {
    Ok(WorkspaceSummary {
        id: parse_workspace(row.text("id")?)?,
        name: row.text("name")?,
        created_at: Timestamp::from_unix(row.int("created_at")?),
        subscription_status: row.maybe_text("subscription_status")?,
        subscription_plan: row.maybe_text("subscription_plan")?,
        members: u64::try_from(row.int("members")?).map_err(corrupt)?,
    })
}
