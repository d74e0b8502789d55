//! What operations and the release owner read and record outside the
//! provisioning path: the facts of the readiness memo, webhook rejections
//! by hour, free-standing audit entries (QA gate runs, reconciliations,
//! release decisions), and the removal of a workspace.

use admit_core::{Timestamp, WorkspaceId};

use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;

/// A held case as the memo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCase {
    pub id: String,
    pub kind: String,
    pub workspace_id: Option<String>,
    pub created_at: Timestamp,
}

/// The live figures of the readiness memo, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadinessFacts {
    /// Events waiting for the processor (`received`).
    pub backlog: u64,
    pub oldest_unprocessed: Option<Timestamp>,
    /// Events whose processing failed (retried with backoff).
    pub failed_events: u64,
    pub pending_mail: u64,
    pub dead_mail: u64,
    /// Held cases, oldest first (at most 100).
    pub held_cases: Vec<HeldCase>,
    pub held_total: u64,
    /// The newest webhook delivery that passed verification.
    pub last_webhook_at: Option<Timestamp>,
    /// Verified webhook deliveries since `since`.
    pub webhooks_since: u64,
    /// Events since `since` ignored because their mode was not admit's.
    pub mode_mismatches_since: u64,
    /// Webhook rejections since `since`, by error code.
    pub rejections_since: Vec<(String, u64)>,
}

#[async_trait::async_trait]
pub trait OpsStore: Send + Sync {
    /// The memo's figures; "recent" counts start at `since`.
    async fn readiness_facts(&self, since: Timestamp) -> Result<ReadinessFacts, StoreError>;

    /// Counts a refused webhook delivery in its hour (a flood adds to one row).
    async fn record_rejection(&self, code: &str, now: Timestamp) -> Result<(), StoreError>;

    /// Appends an audit entry that belongs to no other change.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The newest audit entries with this action, newest first.
    async fn audit_by_action(
        &self,
        action: &str,
        limit: u32,
    ) -> Result<Vec<crate::StoredAuditEntry>, StoreError>;

    /// Removes a workspace, its members, billing state, bindings and links
    /// (events, cases and audit stay as history), with an audit entry.
    /// `false` when there is no such workspace.
    async fn delete_workspace(
        &self,
        workspace: &WorkspaceId,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}
