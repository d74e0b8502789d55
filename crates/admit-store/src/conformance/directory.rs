//! Workspaces and members (`DirectoryStore`): creation, member changes,
//! the last-owner rule and the audit trail of each change.

use admit_core::{Directory, Email, Role, WorkspaceId};
use serde_json::json;

use super::{NOW, TestStore, email, fresh, test_event, ws};
use crate::StoreError;
use crate::directory::{Actor, MemberChange};
use crate::provisioning::{EventKeys, History};

async fn with_owner(store: &TestStore, id: &str, owner: &str) -> WorkspaceId {
    let id = ws(id);
    store
        .create_workspace(&id, "Acme", &email(owner), &Actor::api(), NOW)
        .await
        .expect("create");
    id
}

#[tokio::test]
async fn creates_a_workspace_with_its_owner() {
    let store = fresh().await;
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
    let store = fresh().await;
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
    let store = fresh().await;
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
    let store = fresh().await;
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
    let store = fresh().await;
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
    let store = fresh().await;
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
        let (store, id, owner) = (store.store.clone(), id.clone(), owner.clone());
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
    let store = fresh().await;
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
    let store = fresh().await;
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

/// A scope read sees, in its directory, every workspace its purchaser owns
/// or administers, each with all its members, and no other workspace.
#[tokio::test]
async fn a_scope_reads_every_workspace_its_purchaser_administers_with_all_members() {
    let store = fresh().await;
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
    store
        .put_member(
            &beta,
            &email("sam@beta.test"),
            Role::Member,
            &Actor::api(),
            NOW,
        )
        .await
        .expect("add");
    let member_only = with_owner(&store, "ws_member", "kim@member.test").await;
    store
        .put_member(
            &member_only,
            &email("dana@acme.test"),
            Role::Member,
            &Actor::api(),
            NOW,
        )
        .await
        .expect("add");
    let _elsewhere = with_owner(&store, "ws_empty", "solo@empty.test").await;
    let purchase = crate::NewEvent {
        keys: EventKeys {
            purchaser_email: Some("dana@acme.test".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_purchase", "checkout.session.completed", NOW)
    };
    store.insert_event(&purchase).await.expect("insert");

    let read = store
        .read_scope(&purchase.id, &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let directory = &read.snapshot.directory;
    assert_eq!(directory.iter().count(), 2, "{directory:?}");
    for id in [&acme, &beta] {
        assert_eq!(
            directory.get(id),
            store.get_workspace(id).await.expect("read").as_ref(),
            "{id} with every member"
        );
    }
    assert_eq!(directory.get(&beta).map(|w| w.members.len()), Some(3));
    let administered: Vec<_> = directory
        .administered_by(&email("dana@acme.test"))
        .into_iter()
        .map(|w| w.id.as_str())
        .collect();
    assert_eq!(administered, vec!["ws_acme", "ws_beta"]);
    assert_eq!(
        read.snapshot
            .workspaces
            .iter()
            .map(WorkspaceId::as_str)
            .collect::<Vec<_>>(),
        ["ws_acme", "ws_beta"]
    );
}

/// A scope that names no existing workspace reads an empty directory.
#[tokio::test]
async fn a_scope_naming_no_existing_workspace_reads_an_empty_directory() {
    let store = fresh().await;
    let lonely = test_event("evt_lonely", "customer.created", NOW);
    let hinted = crate::NewEvent {
        keys: EventKeys {
            workspace_hint: Some("ws_none".into()),
            purchaser_email: Some("nobody@acme.test".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_hinted", "customer.created", NOW)
    };
    store
        .insert_events(&[lonely.clone(), hinted.clone()])
        .await
        .expect("insert");
    for event in [&lonely, &hinted] {
        let read = store
            .read_scope(&event.id, &EventKeys::default(), History::Full)
            .await
            .expect("read");
        assert_eq!(read.snapshot.directory, Directory::default());
        assert!(read.snapshot.workspaces.is_empty());
        assert!(read.snapshot.billing.is_empty());
    }
}
