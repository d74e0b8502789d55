//! SQLite side of workspaces and members.
//!
//! Every change takes the write lock up front (`BEGIN IMMEDIATE`): a deferred
//! transaction that reads and then writes fails with `SQLITE_BUSY` when
//! another writer got in between, whereas an immediate one waits its turn
//! under the busy timeout. Holding the lock from the first read is also what
//! makes the last-owner check sound: no other change can land between
//! counting the owners and removing one.

use std::collections::BTreeMap;

use admit_core::{Email, Role, Timestamp, Workspace, WorkspaceId};
use serde_json::json;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::audit;
use crate::StoreError;
use crate::audit::{AuditEntry, StoredAuditEntry};
use crate::directory::{Actor, DirectoryStore, MemberChange};
use crate::values::{member_subject, parse_email, parse_role, role_json};

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// One workspace with its members, as the caller's transaction sees it.
pub(crate) async fn load_workspace(
    conn: &mut SqliteConnection,
    id: &WorkspaceId,
) -> Result<Option<Workspace>, StoreError> {
    let Some(row) = sqlx::query("SELECT name, created_at FROM workspaces WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query("SELECT email, role FROM members WHERE workspace_id = ?")
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let mut members = BTreeMap::new();
    for member in &rows {
        let email: String = member.try_get("email")?;
        let role: String = member.try_get("role")?;
        members.insert(parse_email(&email)?, parse_role(&role)?);
    }
    Ok(Some(Workspace {
        id: id.clone(),
        name: row.try_get("name")?,
        created_at: Timestamp::from_unix(row.try_get("created_at")?),
        members,
    }))
}

async fn workspace_exists(
    conn: &mut SqliteConnection,
    id: &WorkspaceId,
) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM workspaces WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// Writes a member's new role (added, or changed from `current`) and its
/// audit entry, in the caller's transaction. The caller has checked what
/// the change must respect (the last owner, never demoting on invitation).
#[expect(
    clippy::too_many_arguments,
    reason = "one member change, all of it audited"
)]
pub(crate) async fn write_member(
    conn: &mut SqliteConnection,
    workspace: &WorkspaceId,
    email: &Email,
    current: Option<Role>,
    role: Role,
    actor: &str,
    cause: Option<&str>,
    now: Timestamp,
) -> Result<MemberChange, StoreError> {
    let (change, action) = match current {
        Some(from) => {
            sqlx::query("UPDATE members SET role = ? WHERE workspace_id = ? AND email = ?")
                .bind(role.as_str())
                .bind(workspace.as_str())
                .bind(email.as_str())
                .execute(&mut *conn)
                .await?;
            (MemberChange::RoleChanged { from }, "member.role_changed")
        }
        None => {
            sqlx::query(
                "INSERT INTO members (workspace_id, email, role, added_at) VALUES (?, ?, ?, ?)",
            )
            .bind(workspace.as_str())
            .bind(email.as_str())
            .bind(role.as_str())
            .bind(now.unix())
            .execute(&mut *conn)
            .await?;
            (MemberChange::Added, "member.added")
        }
    };
    audit::insert(
        conn,
        &AuditEntry {
            at: now,
            actor: actor.to_owned(),
            action: action.into(),
            workspace_id: Some(workspace.clone()),
            subject: Some(member_subject(email)),
            before: current.map(role_json),
            after: Some(role_json(role)),
            cause: cause.map(str::to_owned),
        },
    )
    .await?;
    Ok(change)
}

pub(crate) async fn role_of(
    conn: &mut SqliteConnection,
    workspace: &WorkspaceId,
    email: &Email,
) -> Result<Option<Role>, StoreError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM members WHERE workspace_id = ? AND email = ?")
            .bind(workspace.as_str())
            .bind(email.as_str())
            .fetch_optional(conn)
            .await?;
    role.as_deref().map(parse_role).transpose()
}

/// How many owners `workspace` has, read inside the caller's write
/// transaction so the last-owner rule holds against concurrent changes.
pub(crate) async fn owner_count(
    conn: &mut SqliteConnection,
    workspace: &WorkspaceId,
) -> Result<usize, StoreError> {
    let owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM members WHERE workspace_id = ? AND role = 'owner'",
    )
    .bind(workspace.as_str())
    .fetch_one(conn)
    .await?;
    usize::try_from(owners).map_err(|_| StoreError::Corrupt("negative owner count".into()))
}

#[async_trait::async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_workspace(
        &self,
        id: &WorkspaceId,
        name: &str,
        owner: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // The primary key decides, not a prior lookup that a concurrent
        // create could overtake.
        let inserted =
            sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)")
                .bind(id.as_str())
                .bind(name)
                .bind(now.unix())
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::WorkspaceExists);
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "INSERT INTO members (workspace_id, email, role, added_at) VALUES (?, ?, 'owner', ?)",
        )
        .bind(id.as_str())
        .bind(owner.as_str())
        .bind(now.unix())
        .execute(&mut *tx)
        .await?;
        audit::insert(
            &mut tx,
            &AuditEntry {
                at: now,
                actor: actor.to_string(),
                action: "workspace.created".into(),
                workspace_id: Some(id.clone()),
                subject: Some("workspace".into()),
                before: None,
                after: Some(json!({ "name": name })),
                cause: None,
            },
        )
        .await?;
        // The first owner is recorded like any other member, so that the
        // `member.*` entries alone tell the full membership history.
        audit::insert(
            &mut tx,
            &AuditEntry {
                at: now,
                actor: actor.to_string(),
                action: "member.added".into(),
                workspace_id: Some(id.clone()),
                subject: Some(member_subject(owner)),
                before: None,
                after: Some(role_json(Role::Owner)),
                cause: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Workspace {
            id: id.clone(),
            name: name.to_owned(),
            created_at: now,
            members: BTreeMap::from([(owner.clone(), Role::Owner)]),
        })
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        // A read transaction, so the members belong to the same snapshot as
        // the workspace row.
        let mut tx = self.pool.begin().await?;
        let workspace = load_workspace(&mut tx, id).await?;
        tx.rollback().await?;
        Ok(workspace)
    }

    async fn put_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        role: Role,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<MemberChange, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        if !workspace_exists(&mut tx, workspace).await? {
            return Err(StoreError::WorkspaceNotFound);
        }
        let current = role_of(&mut tx, workspace, email).await?;
        let owners = owner_count(&mut tx, workspace).await?;
        match admit_core::plan_role_change(current, role, owners) {
            Err(admit_core::LastOwner) => return Err(StoreError::LastOwner),
            Ok(admit_core::MemberPlan::Unchanged) => {
                tx.rollback().await?;
                return Ok(MemberChange::Unchanged);
            }
            Ok(admit_core::MemberPlan::Write) => {}
        }
        let change = write_member(
            &mut tx,
            workspace,
            email,
            current,
            role,
            &actor.to_string(),
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change)
    }

    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        if !workspace_exists(&mut tx, workspace).await? {
            return Err(StoreError::WorkspaceNotFound);
        }
        let role = role_of(&mut tx, workspace, email)
            .await?
            .ok_or(StoreError::MemberNotFound)?;
        let owners = owner_count(&mut tx, workspace).await?;
        admit_core::plan_removal(role, owners).map_err(|_| StoreError::LastOwner)?;
        sqlx::query("DELETE FROM members WHERE workspace_id = ? AND email = ?")
            .bind(workspace.as_str())
            .bind(email.as_str())
            .execute(&mut *tx)
            .await?;
        audit::insert(
            &mut tx,
            &AuditEntry {
                at: now,
                actor: actor.to_string(),
                action: "member.removed".into(),
                workspace_id: Some(workspace.clone()),
                subject: Some(member_subject(email)),
                before: Some(role_json(role)),
                after: None,
                cause: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        workspace: &WorkspaceId,
        limit: i64,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !workspace_exists(&mut tx, workspace).await? {
            return Err(StoreError::WorkspaceNotFound);
        }
        // SQLite reads a negative LIMIT as "no limit".
        let entries = audit::for_workspace(&mut tx, workspace, limit.max(0)).await?;
        tx.rollback().await?;
        Ok(entries)
    }
}
