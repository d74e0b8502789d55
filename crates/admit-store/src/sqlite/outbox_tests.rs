//! Tests of the SQLite outbox adapter.

use sqlx::Row;

use super::*;

const NOW: Timestamp = Timestamp::from_unix(1_795_000_000);

use crate::sqlite::fresh_store as fresh;

/// A row as the processor writes it, due at `due`; returns its id.
async fn insert(store: &SqliteStore, key: &str, state: &str, due: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, payload, state,
             next_attempt_at, created_at)
         VALUES (?, 'onboarding', 'dana@acme.test', 'ws_acme01', '{\"plan\":\"pro\"}', ?, ?, ?)
         RETURNING id",
    )
    .bind(key)
    .bind(state)
    .bind(due)
    .bind(NOW.unix())
    .fetch_one(&store.pool)
    .await
    .expect("insert outbox row")
}

async fn row(store: &SqliteStore, id: i64) -> OutboxRow {
    store
        .get_message(id)
        .await
        .expect("read")
        .expect("row exists")
}

async fn lease_until(store: &SqliteStore, id: i64) -> Option<i64> {
    sqlx::query("SELECT lease_until FROM outbox WHERE id = ?")
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .expect("read lease")
        .try_get(0)
        .expect("lease column")
}

#[tokio::test]
async fn claims_due_pending_rows_oldest_first_and_leases_them() {
    let (_dir, store) = fresh().await;
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
    let (_dir, store) = fresh().await;
    for i in 0..10 {
        insert(&store, &format!("k:{i}"), "pending", NOW.unix()).await;
    }
    let claims = (0..30).map(|_| {
        let store = store.clone();
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
    let (_dir, store) = fresh().await;
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
    let (_dir, store) = fresh().await;
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
    let (_dir, store) = fresh().await;
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

    let audit = sqlx::query(
        "SELECT actor, action, workspace_id, subject, before, after FROM audit_log WHERE action = 'outbox.resend'",
    )
    .fetch_all(&store.pool)
    .await
    .expect("audit");
    assert_eq!(audit.len(), 1);
    let entry = &audit[0];
    let get = |column: &str| -> Option<String> { entry.try_get(column).expect("column") };
    assert_eq!(get("actor").as_deref(), Some("admin:ops"));
    assert_eq!(get("workspace_id").as_deref(), Some("ws_acme01"));
    assert_eq!(get("subject"), Some(format!("outbox:{id}")));
    let before: serde_json::Value =
        serde_json::from_str(&get("before").expect("before")).expect("JSON");
    assert_eq!(before["state"], "dead");
    assert_eq!(before["last_error"], "550 rejected");
}

#[tokio::test]
async fn resend_of_sent_and_superseded_rows_and_of_pending_or_missing_ones() {
    let (_dir, store) = fresh().await;
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
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'outbox.resend'")
            .fetch_one(&store.pool)
            .await
            .expect("count");
    assert_eq!(audited, 2, "only actual changes are audited");
}
