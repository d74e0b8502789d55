//! Two admit instances on one database: two stores (two `connect`s, two
//! pools) working at the same moment must keep every promise one store
//! keeps alone — a claim is nobody else's, an overlapping derivation is
//! refused, the last owner stays, a token and a lease are had once.
//!
//! Each test starts its contenders together (a barrier) on a multi-thread
//! runtime, and most run several rounds: a race that is lost only now and
//! then is still caught.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use admit_core::Role;
use tokio::sync::Barrier;

use super::{NOW, TestStore, email, event_id, fresh, test_event, ws};
use crate::directory::Actor;
use crate::events::{EventStatus, NewEvent};
use crate::provisioning::{
    CommitOutcome, EventKeys, EventStatusWrite, History, ScopeCommit, ScopeWrite,
};
use crate::{Store, StoreError};

/// The two instances: the fixture's store and a second one on its database.
async fn two_instances(store: &TestStore) -> [Arc<dyn Store>; 2] {
    [store.store.clone(), store.instance().await]
}

/// Runs `work(instance, n)` in `tasks` tasks spread over the two
/// instances, started together; their results in task order.
async fn together<T, F, Fut>(instances: &[Arc<dyn Store>; 2], tasks: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|n| {
            let job = work(instances[n % 2].clone(), n);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                job.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

/// Every id claimed, over all tasks: none twice, none missing.
fn assert_each_once(claimed: Vec<Vec<String>>, expected: &BTreeSet<String>) {
    let all: Vec<String> = claimed.into_iter().flatten().collect();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "an item was claimed twice");
    assert_eq!(&unique, expected, "every item is claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claiming_events_at_once_never_share_one_and_take_them_all() {
    let store = fresh().await;
    let events: Vec<NewEvent> = (0..150)
        .map(|i| test_event(&format!("evt_race{i:03}"), "invoice.paid", NOW))
        .collect();
    store.insert_events(&events).await.expect("insert");
    let expected: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    let instances = two_instances(&store).await;
    let claimed = together(&instances, 8, |store, _| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_events(NOW, 60, 7).await.expect("claim");
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|c| c.id.to_string()));
        }
    })
    .await;
    assert!(
        claimed.iter().filter(|c| !c.is_empty()).count() > 1,
        "the claims did run side by side"
    );
    assert_each_once(claimed, &expected);
    assert!(
        store
            .claim_events(NOW, 60, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_claiming_messages_at_once_never_share_one_and_take_them_all() {
    let store = fresh().await;
    let mut expected = BTreeSet::new();
    for i in 0..150 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (idempotency_key, kind, recipient, payload, state,
                 next_attempt_at, created_at)
             VALUES ($1, 'onboarding', 'dana@acme.test', '{}', 'pending', $2, $2) RETURNING id",
        )
        .bind(format!("k:{i}"))
        .bind(NOW.unix() - i)
        .fetch_one(&store.db)
        .await
        .expect("message");
        expected.insert(id.to_string());
    }
    let instances = two_instances(&store).await;
    let claimed = together(&instances, 8, |store, _| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_messages(NOW, 60, 7).await.expect("claim");
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|m| m.id.to_string()));
        }
    })
    .await;
    assert_each_once(claimed, &expected);
    assert!(
        store
            .claim_next_message(NOW, 60)
            .await
            .expect("claim")
            .is_none()
    );
}

/// Two processors read overlapping scopes (one subscription's two events),
/// then commit at the same moment from two instances: one derivation is
/// written, the other finds its scope moved and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_committing_overlapping_scopes_at_once_write_exactly_one() {
    let store = fresh().await;
    store
        .create_workspace(&ws("ws_a"), "A", &email("owner@a.test"), &Actor::App, NOW)
        .await
        .expect("workspace");
    let instances = two_instances(&store).await;
    for round in 0..8 {
        let subscription = format!("sub_{round}");
        let ids = [format!("evt_{round}_1"), format!("evt_{round}_2")];
        let events: Vec<NewEvent> = ids
            .iter()
            .map(|id| NewEvent {
                keys: EventKeys {
                    subscription: Some(subscription.clone()),
                    workspace_hint: Some("ws_a".into()),
                    ..EventKeys::default()
                },
                ..test_event(id, "customer.subscription.updated", NOW)
            })
            .collect();
        store.insert_events(&events).await.expect("insert");
        let mut commits = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let read = instances[n]
                .read_scope(&event_id(id), &EventKeys::default(), History::Checkpoints)
                .await
                .expect("read");
            assert!(read.versions.contains_key(&subscription));
            commits.push(ScopeCommit {
                claimed: event_id(id),
                versions: read.versions,
                write: ScopeWrite {
                    event_statuses: vec![EventStatusWrite {
                        id: event_id(id),
                        status: EventStatus::Processed,
                        outcome: "provisioned".into(),
                        scenario: None,
                    }],
                    billing: vec![(
                        ws("ws_a"),
                        admit_core::BillingState {
                            updated_by_event: Some(event_id(id)),
                            ..admit_core::BillingState::default()
                        },
                    )],
                    ..ScopeWrite::default()
                },
            });
        }
        let commits = Arc::new(commits);
        let outcomes = together(&instances, 2, |store, n| {
            let commits = commits.clone();
            async move {
                store
                    .commit_scopes(&commits[n..=n], NOW)
                    .await
                    .expect("commit")
            }
        })
        .await;
        let outcomes: Vec<CommitOutcome> = outcomes.into_iter().flatten().collect();
        let written: Vec<usize> = (0..2)
            .filter(|&n| outcomes[n] == CommitOutcome::Written)
            .collect();
        assert_eq!(written.len(), 1, "round {round}: {outcomes:?}");
        let winner = written[0];
        assert_eq!(
            outcomes[1 - winner],
            CommitOutcome::Conflict,
            "round {round}"
        );
        for (n, id) in ids.iter().enumerate() {
            let status = store
                .get_event(&event_id(id))
                .await
                .expect("get")
                .expect("stored")
                .status;
            let expected = if n == winner {
                EventStatus::Processed
            } else {
                EventStatus::Received
            };
            assert_eq!(status, expected, "round {round}: {id}");
        }
        let billing = store
            .get_billing(&ws("ws_a"))
            .await
            .expect("billing")
            .expect("written");
        assert_eq!(
            billing.updated_by_event.as_ref().map(|e| e.as_str()),
            Some(ids[winner].as_str()),
            "round {round}: the billing state is the winner's"
        );
    }
}

/// The last-owner rule across instances: a workspace with two owners, each
/// instance removing a different one at the same moment. One removal
/// stands, the other is refused, and one owner is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_removing_the_two_owners_at_once_leave_one() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let id = ws(&format!("ws_round{round}"));
        let owners = [email("ann@acme.test"), email("bob@acme.test")];
        store
            .create_workspace(&id, "Acme", &owners[0], &Actor::api(), NOW)
            .await
            .expect("create");
        store
            .put_member(&id, &owners[1], Role::Owner, &Actor::api(), NOW)
            .await
            .expect("second owner");
        let results = together(&instances, 2, |store, n| {
            let (id, owner) = (id.clone(), owners[n].clone());
            async move { store.remove_member(&id, &owner, &Actor::api(), NOW).await }
        })
        .await;
        let removed = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastOwner)))
            .count();
        assert_eq!((removed, refused), (1, 1), "round {round}: {results:?}");
        let workspace = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(workspace.owners().count(), 1, "round {round}");
        assert_eq!(workspace.members.len(), 1, "round {round}");
        let audit = store.audit_log(&id, 100).await.expect("audit");
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.entry.action == "member.removed")
                .count(),
            1,
            "round {round}: only the removal that stood is audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_redeeming_one_token_at_once_grant_it_once() {
    let store = fresh().await;
    store
        .create_workspace(
            &ws("ws_acme"),
            "Acme",
            &email("dana@acme.test"),
            &Actor::App,
            NOW,
        )
        .await
        .expect("workspace");
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let hash = format!("h_{round}");
        store
            .issue_signin_token(
                &hash,
                &ws("ws_acme"),
                &email("dana@acme.test"),
                None,
                NOW.plus_seconds(900),
                NOW,
            )
            .await
            .expect("issue");
        let results = together(&instances, 4, |store, _| {
            let hash = hash.clone();
            async move { store.redeem_signin_token(&hash, NOW).await }
        })
        .await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| r.is_ok() || matches!(r, Err(StoreError::TokenUsed))),
            "round {round}: {results:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_leasing_one_checkout_at_once_give_it_to_one() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let workspace = ws(&format!("ws_round{round}"));
        let results = together(&instances, 4, |store, n| {
            let workspace = workspace.clone();
            async move {
                store
                    .lease_checkout(&workspace, &format!("holder{n}"), NOW, NOW.plus_seconds(60))
                    .await
                    .expect("lease")
            }
        })
        .await;
        assert_eq!(
            results.iter().filter(|&&taken| taken).count(),
            1,
            "round {round}: {results:?}"
        );
    }
}

/// A case that no event derives (reconciliation's) recorded by two
/// instances at once is opened once, with one set of messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_recording_one_case_at_once_open_it_once() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let key = format!("duplicate_customer:ws_{round}");
        let results = together(&instances, 2, |store, n| {
            let key = key.clone();
            async move {
                let case = crate::provisioning::CaseWrite {
                    id: format!("case_{round}_{n}"),
                    key: key.clone(),
                    kind: "duplicate_customer".into(),
                    scenario: None,
                    workspace_id: None,
                    purchaser_email: None,
                    customer_id: None,
                    subscription_id: None,
                    checkout_session_id: None,
                    event_ids: Vec::new(),
                    details: serde_json::json!({}),
                    state: "held".into(),
                    resolution: None,
                };
                let message = crate::provisioning::OutboxWrite {
                    idempotency_key: format!("{key}:support"),
                    kind: "case_opened".into(),
                    recipient: "support@admit.test".into(),
                    workspace_id: None,
                    about: None,
                    case_key: Some(key.clone()),
                    payload: serde_json::json!({ "by": n }),
                    not_before: NOW,
                };
                let audit = crate::audit::AuditEntry {
                    at: NOW,
                    actor: "system".into(),
                    action: "case.opened".into(),
                    workspace_id: None,
                    subject: Some(format!("case:{}", case.id)),
                    before: None,
                    after: None,
                    cause: Some(key),
                };
                store
                    .record_case(&case, &[message], &audit, NOW)
                    .await
                    .expect("record")
            }
        })
        .await;
        assert_eq!(
            results.iter().filter(|&&new| new).count(),
            1,
            "round {round}: {results:?}"
        );
    }
    let opened = store
        .audit_by_action("case.opened", 100)
        .await
        .expect("audit");
    assert_eq!(opened.len(), 10, "one entry per case");
    assert_eq!(
        store.list_outbox(None, 100).await.expect("outbox").len(),
        10
    );
}

/// Webhook redeliveries reach two instances at once: each event is stored
/// once, and exactly one insert of it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_storing_the_same_events_at_once_store_each_once() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    let events: Arc<Vec<NewEvent>> = Arc::new(
        (0..60)
            .map(|i| test_event(&format!("evt_dup{i:02}"), "invoice.paid", NOW))
            .collect(),
    );
    let outcomes = together(&instances, 4, |store, n| {
        let events = events.clone();
        async move {
            // Each task sends the batch in its own order.
            let mut mine: Vec<NewEvent> = events.to_vec();
            if n % 2 == 1 {
                mine.reverse();
            }
            let outcomes = store.insert_events(&mine).await.expect("insert");
            mine.into_iter()
                .zip(outcomes)
                .filter(|(_, o)| *o == crate::InsertOutcome::Inserted)
                .map(|(e, _)| e.id.to_string())
                .collect::<Vec<_>>()
        }
    })
    .await;
    let expected: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_each_once(outcomes, &expected);
    assert_eq!(store.count_events().await.expect("count"), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_creating_one_workspace_at_once_create_it_once() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let id = ws(&format!("ws_round{round}"));
        let results = together(&instances, 2, |store, n| {
            let id = id.clone();
            async move {
                store
                    .create_workspace(
                        &id,
                        &format!("by {n}"),
                        &email(&format!("owner{n}@acme.test")),
                        &Actor::api(),
                        NOW,
                    )
                    .await
            }
        })
        .await;
        let created: Vec<usize> = (0..2).filter(|&n| results[n].is_ok()).collect();
        assert_eq!(created.len(), 1, "round {round}: {results:?}");
        assert!(
            matches!(results[1 - created[0]], Err(StoreError::WorkspaceExists)),
            "round {round}: {results:?}"
        );
        let workspace = store.get_workspace(&id).await.expect("read").expect("ws");
        assert_eq!(workspace.name, format!("by {}", created[0]));
        assert_eq!(
            workspace.members.len(),
            1,
            "round {round}: the winner's owner only"
        );
        assert_eq!(store.audit_log(&id, 10).await.expect("audit").len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_counting_rejections_at_once_lose_no_count() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    together(&instances, 8, |store, _| async move {
        for _ in 0..10 {
            store
                .record_rejections("signature_mismatch", 1, NOW)
                .await
                .expect("count");
        }
    })
    .await;
    let facts = store
        .readiness_facts(NOW.plus_seconds(-60))
        .await
        .expect("facts");
    assert_eq!(
        facts.rejections_recent,
        [("signature_mismatch".to_owned(), 80)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_resending_one_message_at_once_revive_it_once() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (idempotency_key, kind, recipient, payload, state, attempts,
                 next_attempt_at, created_at, last_error)
             VALUES ($1, 'onboarding', 'dana@acme.test', '{}', 'dead', 5, 1, 1, '550')
             RETURNING id",
        )
        .bind(format!("k:{round}"))
        .fetch_one(&store.db)
        .await
        .expect("a dead message");
        let rows = together(&instances, 2, |store, n| async move {
            store
                .resend(id, &format!("admin:{n}"), NOW)
                .await
                .expect("resend")
        })
        .await;
        assert!(
            rows.iter()
                .all(|row| row.state == "pending" && row.attempts == 0),
            "round {round}: {rows:?}"
        );
    }
    let audit = store
        .audit_by_action("outbox.resend", 100)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 10, "one revival of each message is audited");
}

/// An operator's change that crosses a derivation's commit: the commit
/// holds the workspace's version row and then needs the workspace row (its
/// billing insert checks the foreign key), while removing the workspace
/// holds that row and then needs the version row (its trigger bumps it).
/// PostgreSQL breaks the deadlock by aborting the removal, which runs
/// again once the commit is through and answers as if it came second,
/// not with a database error. (A real deadlock, caused on a connection of
/// the test's own standing in for the other instance's commit; SQLite's
/// one writer cannot deadlock, so there this only checks the outcome.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_change_crossing_a_commit_runs_again_instead_of_failing() {
    use sqlx::Connection;
    let store = fresh().await;
    for round in 0..3 {
        let id = ws(&format!("ws_cross{round}"));
        store
            .create_workspace(&id, "Acme", &email("ann@acme.test"), &Actor::api(), NOW)
            .await
            .expect("create");
        let mut commit = store.db.acquire().await.expect("connection");
        let mut tx = commit.begin().await.expect("begin");
        let key = format!("w:{id}");
        if store.backend == super::Backend::Postgres {
            sqlx::query(
                "INSERT INTO scope_versions (key, version) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            )
            .bind(&key)
            .execute(&mut *tx)
            .await
            .expect("version row");
            sqlx::query("SELECT version FROM scope_versions WHERE key = $1 FOR UPDATE")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .expect("lock the version row");
        }
        let removal = tokio::spawn({
            let store = store.store.clone();
            let id = id.clone();
            async move { store.delete_workspace(&id, &Actor::api(), NOW).await }
        });
        if store.backend == super::Backend::Postgres {
            // The removal takes the workspace row and waits on the version row.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sqlx::query(
                "INSERT INTO billing_states (workspace_id, cancel_at_period_end, updated_at)
                 VALUES ($1, FALSE, $2)",
            )
            .bind(id.as_str())
            .bind(NOW.unix())
            .execute(&mut *tx)
            .await
            .expect("the commit's write goes through");
        }
        tx.commit().await.expect("commit");
        let removed = removal.await.expect("task");
        assert!(
            matches!(removed, Ok(true)),
            "round {round}: the removal answers, not a database error: {removed:?}"
        );
        assert!(store.get_workspace(&id).await.expect("read").is_none());
    }
}

/// Two instances redeeming one operator's setup link at once (a double
/// submit, a replayed request): one sets the password, the other is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_redeeming_one_setup_token_at_once_set_one_password() {
    let store = fresh().await;
    let instances = two_instances(&store).await;
    for round in 0..10 {
        let name = format!("op{round}");
        let token = format!("tok_{round}");
        store
            .add_operator(
                &name,
                admit_core::OperatorRole::Viewer,
                &crate::OperatorSecret::SetupToken {
                    token_hash: token.clone(),
                    expires_at: NOW.plus_seconds(3600),
                },
                &Actor::operator("root", admit_core::OperatorRole::Admin),
                NOW,
            )
            .await
            .expect("add operator");
        let redeemed = together(&instances, 2, |store, n| {
            let token = token.clone();
            async move {
                store
                    .complete_operator_setup(&token, &format!("$argon2id${n}"), NOW)
                    .await
                    .expect("redeem")
                    .map(|_| n)
            }
        })
        .await;
        let winners: Vec<usize> = redeemed.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = store
            .operator_credentials(&name)
            .await
            .expect("read")
            .expect("operator")
            .password_hash;
        assert_eq!(stored, Some(format!("$argon2id${}", winners[0])));
    }
    let audited = store
        .audit_by_action("operator.password_set", 100)
        .await
        .expect("audit");
    assert_eq!(audited.len(), 10, "one entry a redemption");
}

/// Forty sign-in attempts on one key at once, twenty through each of two
/// instances: each counts the ones before it and itself, so the counts are
/// 1 to 40, each once — a limit of N lets exactly N through, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts_on_one_key_at_once_through_two_instances_each_get_their_own_count() {
    let store = fresh().await;
    // An attempt of another key, and an old one of this key, count for nothing.
    store
        .count_login_attempt("amy", NOW, NOW)
        .await
        .expect("count");
    store
        .count_login_attempt("zoe", NOW.plus_seconds(-600), NOW.plus_seconds(-600))
        .await
        .expect("count");
    let instances = two_instances(&store).await;
    let mut counts = together(&instances, 40, |store, _| async move {
        store
            .count_login_attempt("zoe", NOW, NOW.plus_seconds(-60))
            .await
            .expect("count")
    })
    .await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
}
