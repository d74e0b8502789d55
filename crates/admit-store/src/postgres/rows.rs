//! Row mapping shared by the PostgreSQL adapter's aggregates.

use admit_core::{BillingState, WorkspaceId};
use sqlx::PgConnection;

use crate::StoreError;
pub(super) use crate::rows::{billing_row, outbox_row, stored_case};
pub(super) use crate::values::{corrupt, parse_event_id, parse_workspace};

pub(super) async fn billing_state(
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
) -> Result<Option<BillingState>, StoreError> {
    let Some(row) = sqlx::query("SELECT * FROM billing_states WHERE workspace_id = $1")
        .bind(workspace.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    billing_row(&row).map(Some)
}
