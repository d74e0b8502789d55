//! Row mapping shared by the SQLite adapter's aggregates.

use std::collections::BTreeSet;

use admit_core::{
    BillingState, CustomerId, Email, EventId, PlanKey, SubscriptionId, SubscriptionStatus,
    Timestamp, WorkspaceId,
};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::StoreError;
use crate::provisioning::{OutboxRow, StoredCase};
pub(super) use crate::values::{corrupt, parse_event_id, parse_workspace, ts};

/// A set bound as one JSON array parameter (`json_each(?)`).
pub(super) fn json_list(set: &BTreeSet<String>) -> String {
    serde_json::to_string(set)
        .unwrap_or_else(|_| unreachable!("a list of strings always serialises"))
}

pub(super) async fn billing_state(
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
    billing_row(&row).map(Some)
}

/// A `billing_states` row, wherever its columns were selected.
pub(super) fn billing_row(row: &SqliteRow) -> Result<BillingState, StoreError> {
    let status: Option<String> = row.try_get("subscription_status")?;
    let plan: Option<String> = row.try_get("subscription_plan")?;
    let customer: Option<String> = row.try_get("stripe_customer_id")?;
    let subscription: Option<String> = row.try_get("stripe_subscription_id")?;
    let email: Option<String> = row.try_get("purchaser_email")?;
    let event: Option<String> = row.try_get("updated_by_event")?;
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
        current_period_end: ts(row.try_get("current_period_end")?),
        cancel_at_period_end: row.try_get("cancel_at_period_end")?,
        cancel_at: ts(row.try_get("cancel_at")?),
        purchaser_email: email
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(corrupt)?,
        updated_by_event: event.map(EventId::parse).transpose().map_err(corrupt)?,
        past_due_since: ts(row.try_get("past_due_since")?),
    })
}

pub(super) fn stored_case(row: &SqliteRow) -> Result<StoredCase, StoreError> {
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
