//! SQLite side of workspaces and members.
//!
//! Every change takes the write lock up front (`BEGIN IMMEDIATE`): a deferred
//! transaction that reads and then writes fails with `SQLITE_BUSY` when
//! another writer got in between, whereas an immediate one waits its turn
//! under the busy timeout. Holding the lock from the first read is also what
//! makes the last-owner check sound: no other change can land between
//! counting the owners and removing one.

use std::collections::BTreeMap;

use admit_core::{Directory, Email, Role, Timestamp, Workspace, WorkspaceId};
use serde_json::json;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::audit;
use crate::StoreError;
use crate::audit::{AuditEntry, StoredAuditEntry};
use crate::directory::{Actor, DirectoryStore, MemberChange};

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse_role(raw: &str) -> Result<Role, StoreError> {
    // The role is one of three words, never personal data: safe in the message.
    Role::parse(raw).ok_or_else(|| corrupt(format_args!("unknown member role {raw:?}")))
}

fn parse_email(raw: &str) -> Result<Email, StoreError> {
    // `EmailError` describes the defect without repeating the address.
    Email::parse(raw).map_err(|e| corrupt(format_args!("stored member email: {e}")))
}

fn parse_workspace_id(raw: String) -> Result<WorkspaceId, StoreError> {
    WorkspaceId::parse(raw).map_err(corrupt)
}

fn member_subject(email: &Email) -> String {
    format!("member:{}", email.as_str())
}

fn role_json(role: Role) -> serde_json::Value {
    json!({ "role": role.as_str() })
}

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

/// Every workspace with its members, as the caller's transaction sees it.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the provisioning processor calls this inside its own transaction; remove once it does"
    )
)]
pub(crate) async fn load_directory(conn: &mut SqliteConnection) -> Result<Directory, StoreError> {
    let rows = sqlx::query("SELECT id, name, created_at FROM workspaces")
        .fetch_all(&mut *conn)
        .await?;
    let mut workspaces = BTreeMap::new();
    for row in &rows {
        let id = parse_workspace_id(row.try_get("id")?)?;
        let workspace = Workspace {
            id: id.clone(),
            name: row.try_get("name")?,
            created_at: Timestamp::from_unix(row.try_get("created_at")?),
            members: BTreeMap::new(),
        };
        workspaces.insert(id, workspace);
    }
    let rows = sqlx::query("SELECT workspace_id, email, role FROM members")
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let workspace_id = parse_workspace_id(row.try_get("workspace_id")?)?;
        let email: String = row.try_get("email")?;
        let role: String = row.try_get("role")?;
        // The foreign key (with `ON DELETE CASCADE`) rules out orphans.
        let workspace = workspaces
            .get_mut(&workspace_id)
            .ok_or_else(|| corrupt("a member row names a workspace that does not exist"))?;
        workspace
            .members
            .insert(parse_email(&email)?, parse_role(&role)?);
    }
    Ok(Directory::new(workspaces.into_values()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    const NOW: Timestamp = Timestamp::from_unix(1_795_000_000);

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        (dir, store)
    }

    fn ws(raw: &str) -> WorkspaceId {
        WorkspaceId::parse(raw).expect("valid workspace id")
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid email")
    }

    async fn with_owner(store: &SqliteStore, id: &str, owner: &str) -> WorkspaceId {
        let id = ws(id);
        store
            .create_workspace(&id, "Acme", &email(owner), &Actor::api(), NOW)
            .await
            .expect("create");
        id
    }

    #[tokio::test]
    async fn creates_a_workspace_with_its_owner() {
        let (_dir, store) = fresh().await;
        let created = store
            .create_workspace(
                &ws("ws_acme"),
                "Acme Rockets",
                &email("dana@acme.test"),
                &Actor::api(),
                NOW,
            )
            .await
            .expect("create");
        let read = store
            .get_workspace(&ws("ws_acme"))
            .await
            .expect("read")
            .expect("present");
        assert_eq!(read, created);
        assert_eq!(read.name, "Acme Rockets");
        assert_eq!(read.created_at, NOW);
        assert_eq!(read.role_of(&email("dana@acme.test")), Some(Role::Owner));
        assert!(
            store
                .get_workspace(&ws("ws_other"))
                .await
                .expect("read")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_taken_id_is_refused_and_the_first_workspace_kept() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let again = store
            .create_workspace(&id, "Other", &email("eve@evil.test"), &Actor::api(), NOW)
            .await;
        assert!(
            matches!(again, Err(StoreError::WorkspaceExists)),
            "{again:?}"
        );
        let kept = store.get_workspace(&id).await.expect("read").expect("kept");
        assert_eq!(kept.name, "Acme");
        assert_eq!(kept.role_of(&email("eve@evil.test")), None);
        let log = store.audit_log(&id, 100).await.expect("audit");
        assert_eq!(log.len(), 2, "the refused create wrote nothing: {log:?}");
    }

    #[tokio::test]
    async fn members_are_added_changed_and_removed() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let sam = email("sam@acme.test");
        let api = Actor::api();
        let put = |role| store.put_member(&id, &sam, role, &api, NOW);

        assert_eq!(put(Role::Member).await.expect("add"), MemberChange::Added);
        assert_eq!(
            put(Role::Member).await.expect("same role"),
            MemberChange::Unchanged
        );
        assert_eq!(
            put(Role::Admin).await.expect("promote"),
            MemberChange::RoleChanged { from: Role::Member }
        );
        let read = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(read.role_of(&sam), Some(Role::Admin));

        store
            .remove_member(&id, &sam, &Actor::api(), NOW)
            .await
            .expect("remove");
        let read = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(read.role_of(&sam), None);
        assert!(matches!(
            store.remove_member(&id, &sam, &Actor::api(), NOW).await,
            Err(StoreError::MemberNotFound)
        ));
    }

    #[tokio::test]
    async fn an_unknown_workspace_is_not_found() {
        let (_dir, store) = fresh().await;
        let nowhere = ws("ws_nowhere");
        let sam = email("sam@acme.test");
        assert!(matches!(
            store
                .put_member(&nowhere, &sam, Role::Admin, &Actor::api(), NOW)
                .await,
            Err(StoreError::WorkspaceNotFound)
        ));
        assert!(matches!(
            store
                .remove_member(&nowhere, &sam, &Actor::api(), NOW)
                .await,
            Err(StoreError::WorkspaceNotFound)
        ));
        assert!(matches!(
            store.audit_log(&nowhere, 10).await,
            Err(StoreError::WorkspaceNotFound)
        ));
    }

    #[tokio::test]
    async fn the_last_owner_can_be_neither_removed_nor_demoted() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let dana = email("dana@acme.test");
        assert!(matches!(
            store.remove_member(&id, &dana, &Actor::api(), NOW).await,
            Err(StoreError::LastOwner)
        ));
        assert!(matches!(
            store
                .put_member(&id, &dana, Role::Admin, &Actor::api(), NOW)
                .await,
            Err(StoreError::LastOwner)
        ));

        let lee = email("lee@acme.test");
        store
            .put_member(&id, &lee, Role::Owner, &Actor::api(), NOW)
            .await
            .expect("second owner");
        assert_eq!(
            store
                .put_member(&id, &dana, Role::Member, &Actor::api(), NOW)
                .await
                .expect("demote one of two owners"),
            MemberChange::RoleChanged { from: Role::Owner }
        );
        assert!(matches!(
            store.remove_member(&id, &lee, &Actor::api(), NOW).await,
            Err(StoreError::LastOwner)
        ));
        let read = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(read.owners().collect::<Vec<_>>(), vec![&lee]);
    }

    #[tokio::test]
    async fn concurrent_changes_never_remove_every_owner() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "o0@acme.test").await;
        let owners: Vec<Email> = (0..6).map(|i| email(&format!("o{i}@acme.test"))).collect();
        for owner in &owners[1..] {
            store
                .put_member(&id, owner, Role::Owner, &Actor::api(), NOW)
                .await
                .expect("owner");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, owner) in owners.iter().enumerate() {
            let (store, id, owner) = (store.clone(), id.clone(), owner.clone());
            tasks.spawn(async move {
                if i % 2 == 0 {
                    store.remove_member(&id, &owner, &Actor::api(), NOW).await
                } else {
                    store
                        .put_member(&id, &owner, Role::Member, &Actor::api(), NOW)
                        .await
                        .map(|_| ())
                }
            });
        }
        let mut refused = 0;
        while let Some(result) = tasks.join_next().await {
            match result.expect("task") {
                Ok(()) => {}
                Err(StoreError::LastOwner) => refused += 1,
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(refused, 1, "exactly one change finds itself the last owner");
        let read = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(read.owners().count(), 1);
    }

    #[tokio::test]
    async fn every_change_is_audited_newest_first() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let sam = email("sam@acme.test");
        let admin = Actor::operator("ops", admit_core::OperatorRole::Admin);
        store
            .put_member(&id, &sam, Role::Member, &admin, NOW.plus_seconds(1))
            .await
            .expect("add");
        store
            .put_member(&id, &sam, Role::Member, &admin, NOW.plus_seconds(2))
            .await
            .expect("unchanged");
        store
            .put_member(&id, &sam, Role::Admin, &admin, NOW.plus_seconds(3))
            .await
            .expect("promote");
        store
            .remove_member(&id, &sam, &admin, NOW.plus_seconds(4))
            .await
            .expect("remove");

        let log = store.audit_log(&id, 100).await.expect("audit");
        let summary: Vec<_> = log
            .iter()
            .map(|e| {
                (
                    e.entry.action.as_str(),
                    e.entry.actor.as_str(),
                    e.entry.subject.as_deref(),
                    e.entry.before.clone(),
                    e.entry.after.clone(),
                    e.entry.at.unix() - NOW.unix(),
                )
            })
            .collect();
        let role = |r: &str| Some(json!({ "role": r }));
        assert_eq!(
            summary,
            vec![
                (
                    "member.removed",
                    "operator:ops",
                    Some("member:sam@acme.test"),
                    role("admin"),
                    None,
                    4
                ),
                (
                    "member.role_changed",
                    "operator:ops",
                    Some("member:sam@acme.test"),
                    role("member"),
                    role("admin"),
                    3
                ),
                (
                    "member.added",
                    "operator:ops",
                    Some("member:sam@acme.test"),
                    None,
                    role("member"),
                    1
                ),
                (
                    "member.added",
                    "api",
                    Some("member:dana@acme.test"),
                    None,
                    role("owner"),
                    0
                ),
                (
                    "workspace.created",
                    "api",
                    Some("workspace"),
                    None,
                    Some(json!({"name": "Acme"})),
                    0
                ),
            ],
            "an unchanged role is not a change and writes no entry"
        );
        assert!(log.windows(2).all(|w| w[0].id > w[1].id));
        assert!(
            log.iter()
                .all(|e| e.entry.workspace_id.as_ref() == Some(&id))
        );

        let newest = store.audit_log(&id, 2).await.expect("audit");
        assert_eq!(newest, log[..2].to_vec());
    }

    #[tokio::test]
    async fn refused_changes_leave_no_audit_entry() {
        let (_dir, store) = fresh().await;
        let id = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let dana = email("dana@acme.test");
        let _ = store.remove_member(&id, &dana, &Actor::api(), NOW).await;
        let _ = store
            .put_member(&id, &dana, Role::Member, &Actor::api(), NOW)
            .await;
        let _ = store
            .remove_member(&id, &email("nobody@acme.test"), &Actor::api(), NOW)
            .await;
        assert_eq!(store.audit_log(&id, 100).await.expect("audit").len(), 2);
    }

    #[tokio::test]
    async fn load_directory_sees_every_workspace_and_member() {
        let (_dir, store) = fresh().await;
        let acme = with_owner(&store, "ws_acme", "dana@acme.test").await;
        let beta = with_owner(&store, "ws_beta", "lee@beta.test").await;
        store
            .put_member(
                &beta,
                &email("dana@acme.test"),
                Role::Admin,
                &Actor::api(),
                NOW,
            )
            .await
            .expect("add");
        let _empty = with_owner(&store, "ws_empty", "solo@empty.test").await;

        let mut conn = store.pool.acquire().await.expect("connection");
        let directory = load_directory(&mut conn).await.expect("directory");
        assert_eq!(directory.iter().count(), 3);
        for id in [&acme, &beta] {
            assert_eq!(
                directory.get(id),
                store.get_workspace(id).await.expect("read").as_ref()
            );
        }
        let administered: Vec<_> = directory
            .administered_by(&email("dana@acme.test"))
            .into_iter()
            .map(|w| w.id.as_str())
            .collect();
        assert_eq!(administered, vec!["ws_acme", "ws_beta"]);
        assert_eq!(
            load_workspace(&mut conn, &beta)
                .await
                .expect("load")
                .map(|w| w.members.len()),
            Some(2)
        );
        assert!(
            load_workspace(&mut conn, &ws("ws_none"))
                .await
                .expect("load")
                .is_none()
        );
    }

    #[tokio::test]
    async fn load_directory_of_an_empty_database_is_empty() {
        let (_dir, store) = fresh().await;
        let mut conn = store.pool.acquire().await.expect("connection");
        assert_eq!(
            load_directory(&mut conn).await.expect("directory"),
            Directory::default()
        );
    }
}
