//! Derivations written against the versions of the scope they read: a
//! write over a scope that moved since its read is refused, whoever moved
//! it, and one failing write leaves the others of its batch standing.

use admit_core::{BillingState, Timestamp};

use super::{NOW, TestStore, email, event_id as id, fresh, test_event, ws};
use crate::directory::Actor;
use crate::events::{EventStatus, NewEvent};
use crate::provisioning::{
    CheckpointWrite, CommitOutcome, EventKeys, EventStatusWrite, History, ScopeCommit, ScopeRead,
    ScopeWrite,
};

/// An event of `subscription` for `workspace` (by its metadata hint).
async fn event(store: &TestStore, event: &str, subscription: &str, workspace: &str) {
    let new = NewEvent {
        object_type: "subscription".into(),
        object_id: Some(subscription.into()),
        keys: EventKeys {
            subscription: Some(subscription.into()),
            workspace_hint: Some(workspace.into()),
            ..EventKeys::default()
        },
        ..test_event(event, "customer.subscription.updated", NOW)
    };
    store.insert_events(&[new]).await.expect("insert");
}

async fn workspace(store: &TestStore, raw: &str) {
    store
        .create_workspace(
            &ws(raw),
            raw,
            &email(&format!("owner@{raw}.test")),
            &Actor::App,
            NOW,
        )
        .await
        .expect("workspace");
}

async fn read(store: &TestStore, event: &str) -> ScopeRead {
    store
        .read_scope(&id(event), &EventKeys::default(), History::Checkpoints)
        .await
        .expect("read")
}

/// What a derivation of `read` writes: its claimed event processed and the
/// workspace's billing state stamped with it.
fn commit(read: ScopeRead, workspace: &str) -> ScopeCommit {
    let claimed = read.snapshot.claimed.clone();
    ScopeCommit {
        write: ScopeWrite {
            event_statuses: vec![EventStatusWrite {
                id: claimed.clone(),
                status: EventStatus::Processed,
                outcome: "provisioned".into(),
                scenario: None,
            }],
            billing: vec![(
                ws(workspace),
                BillingState {
                    updated_by_event: Some(claimed.clone()),
                    ..BillingState::default()
                },
            )],
            ..ScopeWrite::default()
        },
        claimed,
        versions: read.versions,
    }
}

async fn status(store: &TestStore, event: &str) -> EventStatus {
    store
        .get_event(&id(event))
        .await
        .expect("get")
        .expect("stored")
        .status
}

#[tokio::test]
async fn a_scope_read_sees_its_events_and_versions_every_id_it_reached() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_1", "ws_a").await;
    let read = read(&store, "evt_1").await;
    let mut events: Vec<_> = read
        .snapshot
        .events
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    events.sort();
    assert_eq!(events, ["evt_1", "evt_2"]);
    assert!(read.versions.contains_key("sub_1"), "{:?}", read.versions);
    assert!(read.versions.contains_key("w:ws_a"), "{:?}", read.versions);
    assert_eq!(
        read.versions["w:ws_a"], 2,
        "bumped by the workspace's and its owner's rows"
    );
    assert_eq!(read.versions["sub_1"], 0, "nothing wrote about it yet");
}

#[tokio::test]
async fn a_write_over_a_scope_another_write_moved_is_refused() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_1", "ws_a").await;
    // Two processors read the same scope before either writes.
    let first = read(&store, "evt_1").await;
    let second = read(&store, "evt_2").await;
    let outcomes = store
        .commit_scopes(&[commit(first, "ws_a")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written]);
    let outcomes = store
        .commit_scopes(&[commit(second, "ws_a")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Conflict]);
    assert_eq!(status(&store, "evt_2").await, EventStatus::Received);
    // Read again, it is written.
    let again = read(&store, "evt_2").await;
    let outcomes = store
        .commit_scopes(&[commit(again, "ws_a")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written]);
    assert_eq!(status(&store, "evt_2").await, EventStatus::Processed);
}

#[tokio::test]
async fn in_one_batch_a_later_write_over_an_earlier_ones_scope_is_refused() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_1", "ws_a").await;
    event(&store, "evt_3", "sub_2", "ws_b").await;
    let batch = [
        commit(read(&store, "evt_1").await, "ws_a"),
        commit(read(&store, "evt_2").await, "ws_a"),
        commit(read(&store, "evt_3").await, "ws_b"),
    ];
    let outcomes = store.commit_scopes(&batch, NOW).await.expect("commit");
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Written,
            CommitOutcome::Conflict,
            CommitOutcome::Written
        ],
        "the unrelated scope is written in the same transaction"
    );
}

#[tokio::test]
async fn an_operators_change_to_the_scope_refuses_a_derivation_read_before_it() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    let before = read(&store, "evt_1").await;
    // A new administrator changes which workspaces a purchaser administers.
    store
        .put_member(
            &ws("ws_a"),
            &email("new@ws_a.test"),
            admit_core::Role::Admin,
            &Actor::App,
            NOW,
        )
        .await
        .expect("member");
    let outcomes = store
        .commit_scopes(&[commit(before, "ws_a")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Conflict]);
}

/// A real database fault, caused with a trigger: one workspace's billing
/// write aborts. Its derivation alone is rolled back.
#[tokio::test]
async fn a_failing_write_is_rolled_back_alone() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_2", "ws_b").await;
    store
        .inject_fault(
            "fault",
            "billing_states",
            "NEW.workspace_id = 'ws_a'",
            "injected fault",
        )
        .await;
    let batch = [
        commit(read(&store, "evt_1").await, "ws_a"),
        commit(read(&store, "evt_2").await, "ws_b"),
    ];
    let outcomes = store.commit_scopes(&batch, NOW).await.expect("commit");
    assert!(
        matches!(&outcomes[0], CommitOutcome::Failed(cause) if cause.contains("injected fault")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], CommitOutcome::Written);
    assert_eq!(status(&store, "evt_1").await, EventStatus::Received);
    assert_eq!(status(&store, "evt_2").await, EventStatus::Processed);
    assert!(
        store
            .get_billing(&ws("ws_a"))
            .await
            .expect("billing")
            .is_none(),
        "nothing of the failed derivation is left"
    );
}

#[tokio::test]
async fn a_stored_billing_event_that_is_not_json_spoils_only_its_own_row() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_1", "ws_a").await;
    sqlx::query("UPDATE stripe_events SET billing = '{\"id\":' WHERE id = 'evt_2'")
        .execute(&store.db)
        .await
        .expect("corrupt");
    sqlx::query("UPDATE stripe_events SET billing = '{\"id\":\"evt_1\"}' WHERE id = 'evt_1'")
        .execute(&store.db)
        .await
        .expect("valid");
    let read = read(&store, "evt_1").await;
    let billing: Vec<(String, Option<String>)> = read
        .snapshot
        .events
        .iter()
        .map(|e| (e.id.to_string(), e.billing.clone()))
        .collect();
    assert_eq!(
        billing,
        [
            ("evt_1".to_owned(), Some(r#"{"id":"evt_1"}"#.to_owned())),
            ("evt_2".to_owned(), Some(r#"{"id":"#.to_owned())),
        ],
        "the scope is read; the unreadable one is passed on as it is, for its event to fail"
    );
}

#[tokio::test]
async fn in_one_batch_a_derivation_reading_what_an_earlier_one_writes_is_refused() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    event(&store, "evt_2", "sub_2", "ws_b").await;
    let first = read(&store, "evt_1").await;
    let second = read(&store, "evt_2").await;
    assert!(
        first
            .versions
            .keys()
            .all(|k| !second.versions.contains_key(k)),
        "the scopes share no id as read"
    );
    // The first links sub_2 (which the second reads) to its workspace.
    let mut linking = commit(first, "ws_a");
    linking
        .write
        .links
        .push(("subscription".into(), "sub_2".into(), ws("ws_a")));
    let outcomes = store
        .commit_scopes(&[linking, commit(second, "ws_b")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written, CommitOutcome::Conflict]);
}

/// An event ingress read (a stored billing event), created `ago` seconds before NOW.
async fn billed_event(store: &TestStore, event: &str, subscription: &str, ago: i64) {
    let created = Timestamp::from_unix(NOW.unix() - ago);
    let new = NewEvent {
        received_at: NOW,
        received_ms: NOW.unix() * 1000,
        keys: EventKeys {
            subscription: Some(subscription.into()),
            customer: Some("cus_1".into()),
            ..EventKeys::default()
        },
        billing: Some(format!(r#"{{"id":"{event}"}}"#)),
        ..test_event(event, "invoice.paid", created)
    };
    store.insert_events(&[new]).await.expect("insert");
}

async fn keep_checkpoint(store: &TestStore, claimed: &str, through_ago: i64, events: u64) {
    keep_versioned(store, claimed, through_ago, events, 1).await;
}

async fn keep_versioned(
    store: &TestStore,
    claimed: &str,
    through_ago: i64,
    events: u64,
    version: u32,
) {
    let read = store
        .read_scope(&id(claimed), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let commit = ScopeCommit {
        claimed: id(claimed),
        versions: read.versions,
        write: ScopeWrite {
            checkpoints: vec![CheckpointWrite {
                subscription_id: "sub_1".into(),
                through: Timestamp::from_unix(NOW.unix() - through_ago),
                events,
                version,
                fold: format!(r#"{{"events":{events}}}"#),
            }],
            ..ScopeWrite::default()
        },
    };
    let outcomes = store.commit_scopes(&[commit], NOW).await.expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written]);
}

/// (id, covered, has its billing event) of each event of a read, by id.
fn coverage(read: &ScopeRead) -> Vec<(String, bool, bool)> {
    let mut events: Vec<_> = read
        .snapshot
        .events
        .iter()
        .map(|e| (e.id.to_string(), e.covered, e.billing.is_some()))
        .collect();
    events.sort();
    events
}

#[tokio::test]
async fn a_checkpoint_stands_for_the_events_it_counted_until_a_late_one_arrives() {
    let store = fresh().await;
    billed_event(&store, "evt_1", "sub_1", 200).await;
    billed_event(&store, "evt_2", "sub_1", 100).await;
    billed_event(&store, "evt_3", "sub_1", 0).await;
    keep_checkpoint(&store, "evt_3", 100, 2).await;

    let first = read(&store, "evt_3").await;
    assert_eq!(
        coverage(&first),
        [
            ("evt_1".into(), true, false),
            ("evt_2".into(), true, false),
            ("evt_3".into(), false, true),
        ]
    );
    assert_eq!(
        first.snapshot.checkpoints.get("sub_1").map(String::as_str),
        Some(r#"{"events":2}"#)
    );
    let covered = &first
        .snapshot
        .events
        .iter()
        .find(|e| e.covered)
        .expect("covered");
    assert_eq!(covered.customer.as_deref(), Some("cus_1"));
    assert_eq!(covered.payload, b"", "a covered event's body is not read");

    // Read in full, nothing is covered.
    let full = store
        .read_scope(&id("evt_3"), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    assert!(full.snapshot.checkpoints.is_empty());
    assert!(
        coverage(&full)
            .iter()
            .all(|(_, covered, billed)| !covered && *billed)
    );

    // Created inside the checkpoint, received after it: the checkpoint no
    // longer counts what the store holds, and the events come in full.
    billed_event(&store, "evt_late", "sub_1", 150).await;
    let late = read(&store, "evt_late").await;
    assert!(late.snapshot.checkpoints.is_empty());
    assert_eq!(late.snapshot.stale_checkpoints.len(), 1);
    assert!(
        coverage(&late)
            .iter()
            .all(|(_, covered, billed)| !covered && *billed)
    );

    // A checkpoint counting them all stands; one counting fewer (from a
    // slower processor) does not replace it.
    keep_checkpoint(&store, "evt_3", 100, 3).await;
    keep_checkpoint(&store, "evt_3", 200, 1).await;
    let last = read(&store, "evt_3").await;
    assert_eq!(
        last.snapshot.checkpoints.get("sub_1").map(String::as_str),
        Some(r#"{"events":3}"#)
    );
    assert_eq!(coverage(&last).iter().filter(|(_, c, _)| *c).count(), 3);

    // Another version of the fold replaces it, whatever it counts.
    keep_versioned(&store, "evt_3", 200, 1, 2).await;
    let replaced = read(&store, "evt_3").await;
    assert_eq!(
        replaced
            .snapshot
            .checkpoints
            .get("sub_1")
            .map(String::as_str),
        Some(r#"{"events":1}"#)
    );
}

#[tokio::test]
async fn an_ignored_events_body_is_not_read_with_its_scope() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_ignored", "sub_1", "ws_a").await;
    event(&store, "evt_legacy", "sub_1", "ws_a").await;
    store
        .finish_event_unprovisioned(
            &id("evt_ignored"),
            EventStatus::Ignored,
            "type_not_handled",
            None,
        )
        .await
        .expect("ignore");
    let read = read(&store, "evt_legacy").await;
    let body = |event: &str| {
        read.snapshot
            .events
            .iter()
            .find(|e| e.id.as_str() == event)
            .map(|e| e.payload.clone())
            .expect("in the scope")
    };
    assert_eq!(
        body("evt_legacy"),
        b"{}",
        "a row without a billing event is read from its body"
    );
    assert!(
        body("evt_ignored").is_empty(),
        "an ignored one is not read again"
    );
}

/// One write may name a row twice (the same case, message, checkpoint or
/// billing state): it leaves what writing its rows one after the other
/// leaves, each under its own rule — a case keeps its id and a scenario
/// once known, a pending message keeps its time, a checkpoint counting
/// fewer events does not replace one counting more.
#[tokio::test]
async fn a_write_naming_a_row_twice_leaves_what_writing_them_in_order_would() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    let read = read(&store, "evt_1").await;
    let case = |id: &str, scenario: Option<&str>, details: serde_json::Value| {
        crate::provisioning::CaseWrite {
            id: id.into(),
            key: "unknown_price:sub_1".into(),
            kind: "unknown_price".into(),
            scenario: scenario.map(str::to_owned),
            workspace_id: Some("ws_a".into()),
            purchaser_email: None,
            customer_id: None,
            subscription_id: Some("sub_1".into()),
            checkout_session_id: None,
            event_ids: vec!["evt_1".into()],
            details,
            state: "held".into(),
            resolution: None,
        }
    };
    let message = |payload: serde_json::Value, due: i64| crate::provisioning::OutboxWrite {
        idempotency_key: "past_due:sub_1".into(),
        kind: "past_due".into(),
        recipient: "owner@ws_a.test".into(),
        workspace_id: Some("ws_a".into()),
        about: Some("sub_1".into()),
        case_key: None,
        payload,
        not_before: NOW.plus_seconds(due),
    };
    let checkpoint = |events: u64| CheckpointWrite {
        subscription_id: "sub_1".into(),
        through: NOW,
        events,
        version: 1,
        fold: format!(r#"{{"events":{events}}}"#),
    };
    let billing = |plan: &str| BillingState {
        subscription_plan: Some(admit_core::PlanKey::new(plan)),
        ..BillingState::default()
    };
    let write = ScopeWrite {
        cases: vec![
            case("case_first", Some("S9"), serde_json::json!({ "n": 1 })),
            case("case_second", None, serde_json::json!({ "n": 2 })),
        ],
        outbox: vec![
            message(serde_json::json!({ "n": 1 }), 10),
            message(serde_json::json!({ "n": 2 }), 20),
        ],
        checkpoints: vec![checkpoint(3), checkpoint(1)],
        billing: vec![(ws("ws_a"), billing("pro")), (ws("ws_a"), billing("team"))],
        ..ScopeWrite::default()
    };
    let outcomes = store
        .commit_scopes(
            &[ScopeCommit {
                claimed: id("evt_1"),
                versions: read.versions,
                write,
            }],
            NOW,
        )
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written]);

    let case = store
        .get_case("case_first")
        .await
        .expect("read")
        .expect("the case keeps the id it was first written with");
    assert_eq!(
        case.scenario.as_deref(),
        Some("S9"),
        "a known scenario stays"
    );
    assert_eq!(
        case.details,
        serde_json::json!({ "n": 2 }),
        "the latest facts"
    );
    assert_eq!(store.get_case("case_second").await.expect("read"), None);

    let messages = store.list_outbox(None, 10).await.expect("outbox");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, serde_json::json!({ "n": 2 }));
    assert_eq!(
        messages[0].next_attempt_at,
        NOW.plus_seconds(10),
        "a pending message keeps its time"
    );

    let (events, fold): (i64, String) = sqlx::query_as(
        "SELECT events, fold FROM subscription_checkpoints WHERE subscription_id = 'sub_1'",
    )
    .fetch_one(&store.db)
    .await
    .expect("checkpoint");
    assert_eq!((events, fold.as_str()), (3, r#"{"events":3}"#));

    assert_eq!(
        store
            .get_billing(&ws("ws_a"))
            .await
            .expect("billing")
            .and_then(|b| b.subscription_plan)
            .map(|p| p.as_str().to_owned())
            .as_deref(),
        Some("team"),
        "the last state written"
    );
}

/// A workspace an operator removes after a derivation read it: the
/// derivation is refused, and derives again without it.
#[tokio::test]
async fn a_workspace_removed_after_the_read_refuses_the_derivation() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_1", "sub_1", "ws_a").await;
    let before = read(&store, "evt_1").await;
    assert!(before.snapshot.workspaces.contains(&ws("ws_a")));
    assert!(
        store
            .delete_workspace(&ws("ws_a"), &Actor::api(), NOW)
            .await
            .expect("delete")
    );
    let outcomes = store
        .commit_scopes(&[commit(before, "ws_a")], NOW)
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Conflict]);
    assert_eq!(store.get_billing(&ws("ws_a")).await.expect("read"), None);
    let again = read(&store, "evt_1").await;
    assert!(again.snapshot.workspaces.is_empty());
    assert!(again.snapshot.directory.get(&ws("ws_a")).is_none());
}

/// What ingress stored of an event comes back in its claim and its scope.
#[tokio::test]
async fn a_claim_and_a_scope_carry_what_ingress_stored() {
    let store = fresh().await;
    let new = NewEvent {
        livemode: true,
        received_at: NOW,
        received_ms: NOW.unix() * 1000 + 250,
        keys: EventKeys {
            customer: Some("cus_1".into()),
            subscription: Some("sub_1".into()),
            session: Some("cs_1".into()),
            workspace_hint: Some("ws_a".into()),
            purchaser_email: Some("buyer@else.test".into()),
            charge: Some("ch_1".into()),
            payment_intent: Some("pi_1".into()),
        },
        billing: Some(r#"{"id":"evt_1","kind":"paid"}"#.into()),
        ..test_event(
            "evt_1",
            "invoice.paid",
            Timestamp::from_unix(NOW.unix() - 5),
        )
    };
    let thin = NewEvent {
        received_ms: NOW.unix() * 1000 + 500,
        ..test_event("evt_2", "customer.created", NOW)
    };
    store
        .insert_events(&[new.clone(), thin])
        .await
        .expect("insert");
    let claimed = store.claim_events(NOW, 60, 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].id, id("evt_1"));
    assert_eq!(claimed[0].received_ms, NOW.unix() * 1000 + 250);
    assert!(claimed[0].billed);
    let mut keys = claimed[0].purchase_keys.clone();
    keys.sort();
    assert_eq!(keys, ["cs_1", "cus_1", "sub_1"]);
    assert_eq!(claimed[1].id, id("evt_2"));
    assert!(!claimed[1].billed);
    assert!(claimed[1].purchase_keys.is_empty());

    let read = store
        .read_scope(&id("evt_1"), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let event = read
        .snapshot
        .events
        .iter()
        .find(|e| e.id == id("evt_1"))
        .expect("in its scope");
    assert!(event.livemode);
    assert_eq!(event.event_type, "invoice.paid");
    assert_eq!(event.created, Timestamp::from_unix(NOW.unix() - 5));
    assert_eq!(event.received_at, NOW);
    assert_eq!(event.status, EventStatus::Received);
    assert_eq!(
        event.billing.as_deref(),
        Some(r#"{"id":"evt_1","kind":"paid"}"#)
    );
    assert_eq!(event.customer.as_deref(), Some("cus_1"));
    assert_eq!(event.subscription.as_deref(), Some("sub_1"));
    assert_eq!(event.session.as_deref(), Some("cs_1"));
    assert!(!event.covered);
    assert!(
        event.payload.is_empty(),
        "a billed event's body is not read"
    );
    for key in [
        "cus_1",
        "sub_1",
        "cs_1",
        "ch_1",
        "pi_1",
        "w:ws_a",
        "e:buyer@else.test",
    ] {
        assert!(
            read.versions.contains_key(key),
            "{key}: {:?}",
            read.versions
        );
    }
}

/// A stored checkpoint whose fold is not JSON is replaced by the next one,
/// whatever that one counts.
#[tokio::test]
async fn a_checkpoint_that_is_not_json_is_replaced() {
    let store = fresh().await;
    billed_event(&store, "evt_1", "sub_1", 200).await;
    billed_event(&store, "evt_2", "sub_1", 100).await;
    keep_checkpoint(&store, "evt_2", 100, 2).await;
    sqlx::query(
        "UPDATE subscription_checkpoints SET fold = '{\"events\":' WHERE subscription_id = 'sub_1'",
    )
    .execute(&store.db)
    .await
    .expect("damage");
    keep_checkpoint(&store, "evt_2", 200, 1).await;
    let (events, fold): (i64, String) = sqlx::query_as(
        "SELECT events, fold FROM subscription_checkpoints WHERE subscription_id = 'sub_1'",
    )
    .fetch_one(&store.db)
    .await
    .expect("checkpoint");
    assert_eq!((events, fold.as_str()), (1, r#"{"events":1}"#));
}

/// A damaged body fails the derivation of its own event visibly; in
/// another event's scope it is left out, and the rest is read.
#[tokio::test]
async fn a_damaged_body_fails_its_own_read_and_no_other() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    event(&store, "evt_damaged", "sub_1", "ws_a").await;
    event(&store, "evt_fine", "sub_1", "ws_a").await;
    sqlx::query(
        "UPDATE stripe_event_bodies SET payload = $1, encoding = 'lz4', raw_length = 2
         WHERE id = 'evt_damaged'",
    )
    .bind(b"\x02\x00\x00\x00\xff".to_vec())
    .execute(&store.db)
    .await
    .expect("damage");
    assert!(
        store
            .read_scope(&id("evt_damaged"), &EventKeys::default(), History::Full)
            .await
            .is_err(),
        "the claimed event's own body cannot be read"
    );
    let read = store
        .read_scope(&id("evt_fine"), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let body = |event: &str| {
        read.snapshot
            .events
            .iter()
            .find(|e| e.id.as_str() == event)
            .map(|e| e.payload.clone())
            .expect("in the scope")
    };
    assert_eq!(body("evt_fine"), b"{}");
    assert!(body("evt_damaged").is_empty());
}
