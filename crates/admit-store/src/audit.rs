//! Audit entries: who changed what, from what to what, and why.

use admit_core::{Timestamp, WorkspaceId};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// `stripe:evt_…`, `api`, `admin:<name>`, `system`.
    pub actor: String,
    /// e.g. `billing.changed`, `member.added`, `case.opened`.
    pub action: String,
    pub workspace_id: Option<WorkspaceId>,
    /// What changed: `billing`, `member:<email>`, `case:<id>`.
    pub subject: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub cause: Option<String>,
}

/// An audit entry as stored, with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAuditEntry {
    pub id: i64,
    pub entry: AuditEntry,
}
