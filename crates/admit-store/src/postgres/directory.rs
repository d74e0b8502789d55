//! PostgreSQL side of workspaces and members.
//!
//! Transactions run at READ COMMITTED, with several instances on one
//! database. What SQLite's one writer gave (no change lands between counting
//! a workspace's owners and removing one), this dialect gets from the
//! workspace's row lock: every change of a workspace's members first takes
//! its row with `FOR NO KEY UPDATE` ([`lock_workspace`]), so two changes of
//! the same workspace's members run one after the other, and each reads the
//! members as the one before it left them. That is what makes the
//! last-owner check sound: two instances removing or demoting two different
//! owners at once cannot both see the other still there.
//!
//! `NO KEY UPDATE` rather than `UPDATE`: it conflicts with itself, `FOR
//! UPDATE`, and the row's update or delete, but not with the `KEY SHARE`
//! lock a foreign key check takes. A derivation inserting a member, billing
//! state or binding of the workspace (having locked its scope's version rows
//! first) therefore never waits for the member change, which would itself
//! wait for those version rows when its trigger bumps them: a deadlock.

use std::collections::BTreeMap;

use admit_core::{Email, Role, Timestamp, Workspace, WorkspaceId};
use serde_json::json;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::audit;
use crate::StoreError;
use crate::audit::{AuditEntry, StoredAuditEntry};
use crate::directory::{Actor, DirectoryStore, MemberChange};
use crate::values::{member_subject, parse_email, parse_role, role_json};

/// One workspace with its members, as the caller's transaction sees it.
///
/// One statement, so the members belong to the same snapshot as the
/// workspace row even at READ COMMITTED.
pub(crate) async fn load_workspace(
    conn: &mut PgConnection,
    id: &WorkspaceId,
) -> Result<Option<Workspace>, StoreError> {
    let rows = sqlx::query(
        "SELECT w.name, w.created_at, m.email, m.role
         FROM workspaces w LEFT JOIN members m ON m.workspace_id = w.id
         WHERE w.id = $1",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut members = BTreeMap::new();
    for member in &rows {
        let email: Option<String> = member.try_get("email")?;
        let role: Option<String> = member.try_get("role")?;
        // A workspace without members comes back as one row of NULLs.
        if let (Some(email), Some(role)) = (email, role) {
            members.insert(parse_email(&email)?, parse_role(&role)?);
        }
    }
    Ok(Some(Workspace {
        id: id.clone(),
        name: first.try_get("name")?,
        created_at: Timestamp::from_unix(first.try_get("created_at")?),
        members,
    }))
}

async fn workspace_exists(conn: &mut PgConnection, id: &WorkspaceId) -> Result<bool, StoreError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM workspaces WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// Locks the workspace's row until the caller's transaction ends; false
/// when there is no such workspace. Every change of a workspace's members
/// calls this before it reads them (see the module's comment): a second
/// change waits here, and its reads that follow see the first one's commit.
pub(crate) async fn lock_workspace(
    conn: &mut PgConnection,
    id: &WorkspaceId,
) -> Result<bool, StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

/// Writes a member's new role (added, or changed from `current`) and its
/// audit entry, in the caller's transaction. The caller has checked what
/// the change must respect (the last owner, never demoting on invitation),
/// holding the workspace's lock ([`lock_workspace`]) since before it read
/// `current`.
#[expect(
    clippy::too_many_arguments,
    reason = "one member change, all of it audited"
)]
pub(crate) async fn write_member(
    conn: &mut PgConnection,
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
            sqlx::query("UPDATE members SET role = $1 WHERE workspace_id = $2 AND email = $3")
                .bind(role.as_str())
                .bind(workspace.as_str())
                .bind(email.as_str())
                .execute(&mut *conn)
                .await?;
            (MemberChange::RoleChanged { from }, "member.role_changed")
        }
        None => {
            sqlx::query(
                "INSERT INTO members (workspace_id, email, role, added_at) VALUES ($1, $2, $3, $4)",
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
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
    email: &Email,
) -> Result<Option<Role>, StoreError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM members WHERE workspace_id = $1 AND email = $2")
            .bind(workspace.as_str())
            .bind(email.as_str())
            .fetch_optional(conn)
            .await?;
    role.as_deref().map(parse_role).transpose()
}

/// How many owners `workspace` has. The last-owner rule holds against
/// concurrent changes only when the caller's transaction holds the
/// workspace's lock ([`lock_workspace`]), taken before this is read.
pub(crate) async fn owner_count(
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
) -> Result<usize, StoreError> {
    let owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(workspace.as_str())
    .fetch_one(conn)
    .await?;
    usize::try_from(owners).map_err(|_| StoreError::Corrupt("negative owner count".into()))
}

#[async_trait::async_trait]
impl DirectoryStore for PgStore {
    async fn create_workspace(
        &self,
        id: &WorkspaceId,
        name: &str,
        owner: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Workspace, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            // The primary key decides, not a prior lookup that a concurrent
            // create could overtake: a concurrent insert of the same id waits
            // for this one's commit and then inserts nothing.
            let inserted = sqlx::query(
                "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(name)
            .bind(now.unix())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::WorkspaceExists);
            }
            sqlx::query(
                "INSERT INTO members (workspace_id, email, role, added_at) VALUES ($1, $2, 'owner', $3)",
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
        })
        .await
    }

    async fn get_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        // `load_workspace` reads in one statement, so the members belong to
        // the same snapshot as the workspace row without a transaction.
        let mut conn = self.pool.acquire().await?;
        load_workspace(&mut conn, id).await
    }

    async fn put_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        role: Role,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<MemberChange, StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            if !lock_workspace(&mut tx, workspace).await? {
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
        })
        .await
    }

    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        super::retrying(|| async move {
            let mut tx = self.pool.begin().await?;
            if !lock_workspace(&mut tx, workspace).await? {
                return Err(StoreError::WorkspaceNotFound);
            }
            let role = role_of(&mut tx, workspace, email)
                .await?
                .ok_or(StoreError::MemberNotFound)?;
            let owners = owner_count(&mut tx, workspace).await?;
            admit_core::plan_removal(role, owners).map_err(|_| StoreError::LastOwner)?;
            sqlx::query("DELETE FROM members WHERE workspace_id = $1 AND email = $2")
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
        })
        .await
    }

    async fn audit_log(
        &self,
        workspace: &WorkspaceId,
        limit: i64,
    ) -> Result<Vec<StoredAuditEntry>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if !workspace_exists(&mut conn, workspace).await? {
            return Err(StoreError::WorkspaceNotFound);
        }
        // PostgreSQL refuses a negative LIMIT (SQLite reads it as "no
        // limit"); either way a negative limit means none.
        audit::for_workspace(&mut conn, workspace, limit.max(0)).await
    }
}
