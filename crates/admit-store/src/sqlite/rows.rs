//! Row mapping shared by the SQLite adapter's aggregates.

use std::collections::BTreeSet;

use admit_core::{BillingState, WorkspaceId};
use sqlx::SqliteConnection;

use crate::StoreError;
pub(super) use crate::rows::{billing_row, outbox_row, stored_case};
pub(super) use crate::values::{corrupt, parse_event_id, parse_workspace};

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
