//! Delivering the outbox: claiming due messages and recording each attempt.

use admit_core::Timestamp;

use crate::StoreError;
use crate::provisioning::OutboxRow;

#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases the next `pending` message whose `next_attempt_at` has come, oldest first.
    async fn claim_next_message(
        &self,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        Ok(self.claim_messages(now, lease_secs, 1).await?.pop())
    }

    /// Leases up to `limit` due `pending` messages in one transaction, oldest first.
    async fn claim_messages(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// The message was accepted by the transport: `sent`, never sent again.
    async fn mark_sent(&self, id: i64, now: Timestamp) -> Result<(), StoreError>;

    /// An attempt failed: `attempts + 1`, `last_error`, and either a retry at
    /// `retry_at` or, when `None`, the terminal `dead` state.
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;

    /// An operator asks for a message again (`dead`, `sent` or `superseded`):
    /// back to `pending` now with attempts reset; audited. `OutboxNotFound` if no such row.
    async fn resend(&self, id: i64, actor: &str, now: Timestamp) -> Result<OutboxRow, StoreError>;

    async fn get_message(&self, id: i64) -> Result<Option<OutboxRow>, StoreError>;

    /// Extends a lease this process holds (`held`, as the claim or the last
    /// renewal set it) to `until`; `false` when it is no longer ours.
    async fn renew_message_lease(
        &self,
        id: i64,
        held: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives up the lease on a message this process claimed but could not
    /// finish (a shutdown cut it short), so a restart sends it at once.
    /// `lease_until` is the lease the claim set: one taken since is left alone.
    async fn release_message(&self, id: i64, lease_until: Timestamp) -> Result<(), StoreError>;
}
