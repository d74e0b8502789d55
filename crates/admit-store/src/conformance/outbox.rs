//! Delivering the outbox (`OutboxStore`): claims and their leases, the
//! outcome of each attempt, and an operator's resend.

use serde_json::json;

use super::{NOW, TestStore, fresh};
use crate::StoreError;
use crate::provisioning::OutboxRow;

/// A row as the processor writes it, due at `due`; returns its id.
async fn insert(store: &TestStore, key: &str, state: &str, due: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, payload, state,
             next_attempt_at, created_at)
         VALUES ($1, 'onboarding', 'dana@acme.test', 'ws_acme01', '{\"plan\":\"pro\"}', $2, $3, $4)
         RETURNING id",
    )
    .bind(key)
    .bind(state)
    .bind(due)
    .bind(NOW.unix())
    .fetch_one(&store.db)
    .await
    .expect("insert outbox row")
}

async fn row(store: &TestStore, id: i64) -> OutboxRow {
    store
        .get_message(id)
        .await
        .expect("read")
        .expect("row exists")
}

async fn lease_until(store: &TestStore, id: i64) -> Option<i64> {
    sqlx::query_scalar("SELECT lease_until FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_one(&store.db)
        .await
        .expect("read lease")
}

#[tokio::test]
async fn claims_due_pending_rows_oldest_first_and_leases_them() {
    let store = fresh().await;
    let later = insert(&store, "k:later", "pending", NOW.unix() - 10).await;
    let first = insert(&store, "k:first", "pending", NOW.unix() - 20).await;
    insert(&store, "k:future", "pending", NOW.unix() + 60).await;
    insert(&store, "k:sent", "sent", NOW.unix() - 100).await;
    insert(&store, "k:dead", "dead", NOW.unix() - 100).await;
    insert(&store, "k:superseded", "superseded", NOW.unix() - 100).await;

    let claimed = store
        .claim_next_message(NOW, 60)
        .await
        .expect("claim")
        .expect("a row is due");
    assert_eq!(claimed.id, first, "the earliest due row first");
    assert_eq!(claimed.payload, json!({"plan": "pro"}));
    assert_eq!(lease_until(&store, first).await, Some(NOW.unix() + 60));

    let second = store
        .claim_next_message(NOW, 60)
        .await
        .expect("claim")
        .expect("another row is due");
    assert_eq!(second.id, later, "a leased row is skipped");
    assert!(
        store
            .claim_next_message(NOW, 60)
            .await
            .expect("claim")
            .is_none(),
        "future, sent, dead and superseded rows are never claimed"
    );

    let after_lease = NOW.plus_seconds(60);
    let again = store
        .claim_next_message(after_lease, 60)
        .await
        .expect("claim")
        .expect("an expired lease frees the row");
    assert_eq!(again.id, first);

    // Only the holder of the lease renews it.
    let held = after_lease.plus_seconds(60);
    assert!(
        !store
            .renew_message_lease(first, NOW.plus_seconds(60), NOW.plus_seconds(500))
            .await
            .expect("renew"),
        "the first claim's lease is gone"
    );
    assert!(
        store
            .renew_message_lease(first, held, NOW.plus_seconds(500))
            .await
            .expect("renew")
    );
    assert_eq!(lease_until(&store, first).await, Some(NOW.unix() + 500));
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_row_twice() {
    let store = fresh().await;
    for i in 0..10 {
        insert(&store, &format!("k:{i}"), "pending", NOW.unix()).await;
    }
    let claims = (0..30).map(|_| {
        let store = store.store.clone();
        tokio::spawn(async move { store.claim_next_message(NOW, 60).await })
    });
    let mut ids = Vec::new();
    for claim in claims {
        if let Some(row) = claim.await.expect("task").expect("claim") {
            ids.push(row.id);
        }
    }
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, 10, "every row claimed once");
    assert_eq!(ids.len(), 10, "no row claimed twice");
}

#[tokio::test]
async fn mark_sent_is_final_and_only_applies_to_pending_rows() {
    let store = fresh().await;
    let id = insert(&store, "k:1", "pending", NOW.unix()).await;
    store.claim_next_message(NOW, 60).await.expect("claim");
    store
        .mark_sent(id, NOW.plus_seconds(2))
        .await
        .expect("sent");
    let sent = row(&store, id).await;
    assert_eq!(sent.state, "sent");
    assert_eq!(sent.attempts, 1);
    assert_eq!(sent.sent_at, Some(NOW.plus_seconds(2)));
    assert_eq!(lease_until(&store, id).await, None);

    store
        .mark_sent(id, NOW.plus_seconds(9))
        .await
        .expect("again");
    store
        .mark_failed(id, "late failure", None)
        .await
        .expect("late failure");
    assert_eq!(row(&store, id).await, sent, "a sent row does not change");
    assert!(
        store
            .claim_next_message(NOW.plus_seconds(1000), 60)
            .await
            .expect("claim")
            .is_none(),
        "a sent message is never claimed again"
    );

    let superseded = insert(&store, "k:2", "superseded", NOW.unix()).await;
    store.mark_sent(superseded, NOW).await.expect("no-op");
    assert_eq!(row(&store, superseded).await.state, "superseded");
}

#[tokio::test]
async fn mark_failed_reschedules_or_kills() {
    let store = fresh().await;
    let id = insert(&store, "k:1", "pending", NOW.unix()).await;
    store.claim_next_message(NOW, 60).await.expect("claim");
    let retry_at = NOW.plus_seconds(30);
    store
        .mark_failed(id, "connection refused", Some(retry_at))
        .await
        .expect("failed");
    let failed = row(&store, id).await;
    assert_eq!(failed.state, "pending");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.next_attempt_at, retry_at);
    assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
    assert_eq!(lease_until(&store, id).await, None);
    assert!(
        store
            .claim_next_message(NOW.plus_seconds(29), 60)
            .await
            .expect("claim")
            .is_none(),
        "not before the retry time"
    );
    store
        .claim_next_message(retry_at, 60)
        .await
        .expect("claim")
        .expect("due at the retry time");

    store
        .mark_failed(id, "550 no such user", None)
        .await
        .expect("dead");
    let dead = row(&store, id).await;
    assert_eq!(dead.state, "dead");
    assert_eq!(dead.attempts, 2);
    assert_eq!(dead.next_attempt_at, retry_at, "kept as it was");
    assert_eq!(dead.last_error.as_deref(), Some("550 no such user"));
    assert!(
        store
            .claim_next_message(NOW.plus_seconds(100_000), 60)
            .await
            .expect("claim")
            .is_none(),
        "a dead message waits for an operator"
    );
}

#[tokio::test]
async fn resend_revives_a_message_and_audits_it() {
    let store = fresh().await;
    let id = insert(&store, "k:1", "pending", NOW.unix()).await;
    store.claim_next_message(NOW, 60).await.expect("claim");
    store
        .mark_failed(id, "550 rejected", None)
        .await
        .expect("dead");

    let later = NOW.plus_seconds(500);
    let revived = store.resend(id, "admin:ops", later).await.expect("resend");
    assert_eq!(revived.state, "pending");
    assert_eq!(revived.attempts, 0);
    assert_eq!(revived.next_attempt_at, later);
    assert_eq!(revived.last_error, None);
    assert_eq!(row(&store, id).await, revived);
    assert_eq!(
        store
            .claim_next_message(later, 60)
            .await
            .expect("claim")
            .map(|r| r.id),
        Some(id)
    );

    let audit = store
        .audit_by_action("outbox.resend", 10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    let entry = &audit[0].entry;
    assert_eq!(entry.actor, "admin:ops");
    assert_eq!(
        entry.workspace_id.as_ref().map(|w| w.as_str()),
        Some("ws_acme01")
    );
    assert_eq!(entry.subject, Some(format!("outbox:{id}")));
    let before = entry.before.clone().expect("before");
    assert_eq!(before["state"], "dead");
    assert_eq!(before["last_error"], "550 rejected");
}

#[tokio::test]
async fn resend_of_sent_and_superseded_rows_and_of_pending_or_missing_ones() {
    let store = fresh().await;
    let sent = insert(&store, "k:sent", "sent", NOW.unix()).await;
    let superseded = insert(&store, "k:superseded", "superseded", NOW.unix()).await;
    for id in [sent, superseded] {
        let row = store.resend(id, "api", NOW).await.expect("resend");
        assert_eq!(row.state, "pending");
    }

    let pending = insert(&store, "k:pending", "pending", NOW.unix() + 90).await;
    store
        .mark_failed(pending, "timeout", Some(NOW.plus_seconds(90)))
        .await
        .expect("failed once");
    let unchanged = row(&store, pending).await;
    assert_eq!(
        store.resend(pending, "api", NOW).await.expect("resend"),
        unchanged,
        "a pending message is left as it is"
    );

    assert!(matches!(
        store.resend(9_999, "api", NOW).await,
        Err(StoreError::OutboxNotFound)
    ));
    let audited = store
        .audit_by_action("outbox.resend", 10)
        .await
        .expect("audit");
    assert_eq!(audited.len(), 2, "only actual changes are audited");
}

#[tokio::test]
async fn a_claim_leases_a_batch_of_due_messages_oldest_first() {
    let store = fresh().await;
    let mut due = Vec::new();
    for (i, ago) in [50, 10, 40, 20, 30].into_iter().enumerate() {
        due.push((
            ago,
            insert(&store, &format!("k:{i}"), "pending", NOW.unix() - ago).await,
        ));
    }
    insert(&store, "k:future", "pending", NOW.unix() + 1).await;
    due.sort_by_key(|(ago, _)| -ago);
    let oldest: Vec<i64> = due.iter().map(|(_, id)| *id).collect();

    let first = store.claim_messages(NOW, 60, 3).await.expect("claim");
    assert_eq!(
        first.iter().map(|m| m.id).collect::<Vec<_>>(),
        oldest[..3],
        "the three due longest, in order"
    );
    for message in &first {
        assert_eq!(lease_until(&store, message.id).await, Some(NOW.unix() + 60));
        assert_eq!(message.state, "pending");
        assert_eq!(message.attempts, 0, "a claim is no attempt yet");
    }
    let rest = store.claim_messages(NOW, 60, 10).await.expect("claim");
    assert_eq!(
        rest.iter().map(|m| m.id).collect::<Vec<_>>(),
        oldest[3..],
        "leased ones are skipped, the future one is not due"
    );
    assert!(
        store
            .claim_messages(NOW, 60, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

#[tokio::test]
async fn a_released_message_is_due_at_once_unless_its_lease_was_taken_since() {
    let store = fresh().await;
    let id = insert(&store, "k:1", "pending", NOW.unix()).await;
    let first_lease = NOW.plus_seconds(60);
    store
        .claim_next_message(NOW, 60)
        .await
        .expect("claim")
        .expect("due");
    store
        .release_message(id, first_lease)
        .await
        .expect("release");
    assert_eq!(lease_until(&store, id).await, None);
    assert_eq!(
        store
            .claim_next_message(NOW.plus_seconds(1), 60)
            .await
            .expect("claim")
            .map(|m| m.id),
        Some(id),
        "claimable before the first lease would have ended"
    );
    // Released with the first lease: the second claim's is left alone.
    store
        .release_message(id, first_lease)
        .await
        .expect("release");
    assert_eq!(lease_until(&store, id).await, Some(NOW.unix() + 61));
    assert!(
        store
            .claim_next_message(NOW.plus_seconds(2), 60)
            .await
            .expect("claim")
            .is_none()
    );
    // A message sent meanwhile stays sent.
    store
        .mark_sent(id, NOW.plus_seconds(3))
        .await
        .expect("sent");
    store
        .release_message(id, NOW.plus_seconds(61))
        .await
        .expect("release");
    assert_eq!(row(&store, id).await.state, "sent");
    assert!(
        !store
            .renew_message_lease(id, NOW.plus_seconds(61), NOW.plus_seconds(500))
            .await
            .expect("renew"),
        "a sent message's lease is no longer anyone's"
    );
}

#[tokio::test]
async fn an_unknown_message_is_none_and_changes_nothing() {
    let store = fresh().await;
    assert_eq!(store.get_message(404).await.expect("read"), None);
    store.mark_sent(404, NOW).await.expect("no-op");
    store.mark_failed(404, "x", None).await.expect("no-op");
    store.release_message(404, NOW).await.expect("no-op");
    assert!(
        !store
            .renew_message_lease(404, NOW, NOW)
            .await
            .expect("renew")
    );
    assert!(matches!(
        store.resend(404, "api", NOW).await,
        Err(StoreError::OutboxNotFound)
    ));
}
