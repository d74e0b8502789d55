//! Workspaces and members: the storage side of `/v1/workspaces`.

use admit_core::{Email, Role, Timestamp, Workspace, WorkspaceId};

use crate::StoreError;
use crate::audit::StoredAuditEntry;

/// Who asks for a change; recorded as the audit entry's actor.
pub use admit_core::Actor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Added,
    RoleChanged { from: Role },
    Unchanged,
}

#[async_trait::async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Creates a workspace with its first owner, audited.
    /// `StoreError::WorkspaceExists` when the id is taken.
    async fn create_workspace(
        &self,
        id: &WorkspaceId,
        name: &str,
        owner: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Workspace, StoreError>;

    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError>;

    /// Adds a member or changes their role, audited. Demoting the last owner
    /// is `StoreError::LastOwner`; an unknown workspace `WorkspaceNotFound`.
    async fn put_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        role: Role,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<MemberChange, StoreError>;

    /// Removes a member, audited. The last owner cannot be removed
    /// (`LastOwner`); `MemberNotFound` when not a member; `WorkspaceNotFound`
    /// for an unknown workspace.
    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The workspace's audit entries, newest first, at most `limit` of them.
    /// `WorkspaceNotFound` for an unknown workspace.
    async fn audit_log(
        &self,
        workspace: &WorkspaceId,
        limit: i64,
    ) -> Result<Vec<StoredAuditEntry>, StoreError>;
}
