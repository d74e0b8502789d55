//! What operations and the release owner read and record outside the
//! provisioning path: the facts of the readiness memo, webhook rejections
//! by hour, free-standing audit entries (QA gate runs, reconciliations,
//! release decisions), and the removal of a workspace.

use admit_core::{Timestamp, WorkspaceId};

use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;

pub use admit_core::readiness::{HeldCase, InboxFacts as ReadinessFacts};

/// The queues an on-call engineer watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub inbox: u64,
    pub oldest_unprocessed: Option<Timestamp>,
    pub failed_events: u64,
    pub pending_mail: u64,
    pub dead_mail: u64,
    /// Held cases by kind.
    pub held: Vec<(String, u64)>,
    /// When the oldest held case of each kind (the kinds of `held`) was opened.
    pub held_oldest: Vec<(String, Timestamp)>,
}

#[async_trait::async_trait]
pub trait OpsStore: Send + Sync {
    /// The memo's figures; "recent" counts start at `since`.
    async fn readiness_facts(&self, since: Timestamp) -> Result<ReadinessFacts, StoreError>;

    /// What the metrics' gauges show: cheap, indexed counts only.
    async fn backlog(&self) -> Result<Backlog, StoreError>;

    /// Adds `count` refused webhook deliveries to their hour's row.
    async fn record_rejections(
        &self,
        code: &str,
        count: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

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
