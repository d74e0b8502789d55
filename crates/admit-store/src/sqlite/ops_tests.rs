//! Tests of the SQLite side of readiness figures, rejections, audit lookups
//! and workspace removal.

use admit_core::{Email, Timestamp, WorkspaceId};

use super::*;
use crate::{DirectoryStore, Store};

const NOW: Timestamp = Timestamp::from_unix(1_795_000_000);

use crate::sqlite::fresh_store as fresh;

fn ws(raw: &str) -> WorkspaceId {
    WorkspaceId::parse(raw).expect("id")
}

#[tokio::test]
async fn rejections_add_up_by_hour_and_only_the_recent_ones_count() {
    let (_dir, store) = fresh().await;
    store
        .record_rejections("signature_mismatch", 3, NOW.plus_seconds(-2 * 86_400))
        .await
        .expect("old");
    store
        .record_rejections("signature_mismatch", 2, NOW)
        .await
        .expect("now");
    store
        .record_rejections("signature_mismatch", 5, NOW.plus_seconds(10))
        .await
        .expect("same hour");
    store
        .record_rejections("payload_too_large", 1, NOW)
        .await
        .expect("other code");
    let facts = store
        .readiness_facts(NOW.plus_seconds(-86_400))
        .await
        .expect("facts");
    assert_eq!(
        facts.rejections_recent,
        [
            ("payload_too_large".to_owned(), 1),
            ("signature_mismatch".to_owned(), 7)
        ]
    );
}

#[tokio::test]
async fn the_figures_count_the_inbox_outbox_and_held_cases() {
    let (_dir, store) = fresh().await;
    for (id, status, received, source) in [
        ("evt_a", "received", NOW.unix() - 50, "webhook"),
        ("evt_b", "received", NOW.unix() - 10, "webhook"),
        ("evt_c", "failed", NOW.unix() - 5, "webhook"),
        ("evt_d", "processed", NOW.unix() - 3 * 86_400, "webhook"),
        ("evt_e", "processed", NOW.unix() - 1, "backfill"),
    ] {
        sqlx::query(
            "INSERT INTO stripe_events (id, type, created, livemode, object_type, metadata,
                 headers, source, received_at, status)
             VALUES (?, 'invoice.paid', 1, 0, 'invoice', '{}', '{}', ?, ?, ?)",
        )
        .bind(id)
        .bind(source)
        .bind(received)
        .bind(status)
        .execute(&store.pool)
        .await
        .expect("event");
    }
    for (id, state, at) in [
        ("case_old", "held", 100),
        ("case_new", "held", 200),
        ("case_done", "resolved", 50),
    ] {
        sqlx::query(
            "INSERT INTO cases (id, case_key, kind, event_ids, details, state, created_at)
             VALUES (?, ?, 'missing_workspace', '[]', '{}', ?, ?)",
        )
        .bind(id)
        .bind(format!("key:{id}"))
        .bind(state)
        .bind(at)
        .execute(&store.pool)
        .await
        .expect("case");
    }
    let facts = store
        .readiness_facts(NOW.plus_seconds(-86_400))
        .await
        .expect("facts");
    assert_eq!(facts.backlog, 2);
    assert_eq!(facts.oldest_unprocessed, Some(NOW.plus_seconds(-50)));
    assert_eq!(facts.failed_events, 1);
    assert_eq!(facts.webhooks_recent, 3, "webhooks only, last day only");
    assert_eq!(facts.last_webhook_at, Some(NOW.plus_seconds(-5)));
    assert_eq!(facts.held_total, 2);
    let ids: Vec<&str> = facts.held_cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["case_old", "case_new"], "oldest first, held only");
}

#[tokio::test]
async fn audit_entries_are_found_by_action_newest_first() {
    let (_dir, store) = fresh().await;
    for (n, action) in ["qa_gate.completed", "other", "qa_gate.completed"]
        .iter()
        .enumerate()
    {
        store
            .append_audit(&AuditEntry {
                at: NOW.plus_seconds(i64::try_from(n).expect("small")),
                actor: "system".into(),
                action: (*action).into(),
                workspace_id: None,
                subject: None,
                before: None,
                after: Some(serde_json::json!({ "n": n })),
                cause: None,
            })
            .await
            .expect("append");
    }
    let found = store
        .audit_by_action("qa_gate.completed", 10)
        .await
        .expect("found");
    let ns: Vec<i64> = found
        .iter()
        .filter_map(|e| e.entry.after.as_ref()?["n"].as_i64())
        .collect();
    assert_eq!(ns, [2, 0]);
}

#[tokio::test]
async fn a_paying_workspace_stays_and_a_removed_one_takes_its_pending_mail_along() {
    let (_dir, store) = fresh().await;
    let owner = Email::parse("dana@acme.test").expect("email");
    for id in ["ws_paying", "ws_spare"] {
        store
            .create_workspace(&ws(id), "W", &owner, &Actor::api(), NOW)
            .await
            .expect("create");
    }
    sqlx::query(
        "INSERT INTO billing_states (workspace_id, subscription_status, updated_at)
         VALUES ('ws_paying', 'unpaid', 1), ('ws_spare', 'canceled', 1)",
    )
    .execute(&store.pool)
    .await
    .expect("billing");
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, payload, state,
             next_attempt_at, created_at)
         VALUES ('k1', 'onboarding', 'dana@acme.test', 'ws_spare', '{}', 'pending', 1, 1)",
    )
    .execute(&store.pool)
    .await
    .expect("outbox");
    assert!(matches!(
        store
            .delete_workspace(&ws("ws_paying"), &Actor::api(), NOW)
            .await,
        Err(StoreError::WorkspaceHasSubscription)
    ));
    sqlx::query(
        "INSERT INTO cases (id, case_key, kind, workspace_id, event_ids, details, state, created_at)
         VALUES ('case_1', 'k', 'unknown_price', 'ws_spare', '[]', '{}', 'held', 1)",
    )
    .execute(&store.pool)
    .await
    .expect("case");
    assert!(matches!(
        store
            .delete_workspace(&ws("ws_spare"), &Actor::api(), NOW)
            .await,
        Err(StoreError::WorkspaceHasHeldCases)
    ));
    sqlx::query("UPDATE cases SET state = 'resolved' WHERE id = 'case_1'")
        .execute(&store.pool)
        .await
        .expect("resolve");
    assert!(
        store
            .delete_workspace(&ws("ws_spare"), &Actor::api(), NOW)
            .await
            .expect("removed")
    );
    assert!(
        !store
            .delete_workspace(&ws("ws_spare"), &Actor::api(), NOW)
            .await
            .expect("gone already")
    );
    assert!(
        store
            .get_workspace(&ws("ws_spare"))
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .get_workspace(&ws("ws_paying"))
            .await
            .expect("read")
            .is_some()
    );
    let state: String = sqlx::query_scalar("SELECT state FROM outbox WHERE idempotency_key = 'k1'")
        .fetch_one(&store.pool)
        .await
        .expect("row");
    assert_eq!(state, "superseded");
    let audit = store
        .audit_by_action("workspace.deleted", 10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
}

#[tokio::test]
async fn a_batch_is_one_transaction_and_a_repeat_within_it_is_a_duplicate() {
    use crate::InsertOutcome;
    let (_dir, store) = fresh().await;
    let event = |id: &str| crate::sqlite::test_event(id, "customer.created", NOW);
    let outcomes = store
        .insert_events(&[event("evt_a"), event("evt_b"), event("evt_a")])
        .await
        .expect("batch");
    assert_eq!(
        outcomes,
        [
            InsertOutcome::Inserted,
            InsertOutcome::Inserted,
            InsertOutcome::Duplicate
        ]
    );
    assert_eq!(store.count_events().await.expect("count"), 2);
}

#[tokio::test]
async fn events_are_claimed_in_batches_oldest_first_and_never_twice() {
    use crate::ProvisioningStore;
    let (_dir, store) = fresh().await;
    for (id, received, status) in [
        ("evt_c", 30, "received"),
        ("evt_a", 10, "received"),
        ("evt_done", 5, "processed"),
        ("evt_b", 20, "received"),
        ("evt_retry", 1, "failed"),
    ] {
        sqlx::query(
            "INSERT INTO stripe_events (id, type, created, livemode, object_type, metadata,
                 headers, source, received_at, status, next_attempt_at)
             VALUES (?, 'invoice.paid', 1, 0, 'invoice', '{}', '{}', 'webhook', ?, ?, ?)",
        )
        .bind(id)
        .bind(received)
        .bind(status)
        .bind((status == "failed").then_some(NOW.unix()))
        .execute(&store.pool)
        .await
        .expect("event");
    }
    let ids = |claimed: Vec<crate::ClaimedEvent>| -> Vec<String> {
        claimed
            .into_iter()
            .map(|c| c.id.as_str().to_owned())
            .collect()
    };
    let first = store.claim_events(NOW, 60, 3).await.expect("claim");
    assert_eq!(
        ids(first),
        ["evt_retry", "evt_a", "evt_b"],
        "oldest first, due retries too"
    );
    let second = store.claim_events(NOW, 60, 3).await.expect("claim");
    assert_eq!(ids(second), ["evt_c"], "a leased event is nobody else's");
    assert!(
        store
            .claim_events(NOW, 60, 3)
            .await
            .expect("claim")
            .is_empty()
    );
    let later = store
        .claim_events(NOW.plus_seconds(61), 60, 10)
        .await
        .expect("claim");
    assert_eq!(later.len(), 4, "an expired lease is claimable again");

    // A release gives back only the lease it names, and only while unsettled.
    let id = admit_core::EventId::parse("evt_a").expect("id");
    store
        .release_event(&id, NOW.plus_seconds(60))
        .await
        .expect("release");
    assert!(
        store
            .claim_events(NOW.plus_seconds(62), 60, 10)
            .await
            .expect("claim")
            .is_empty(),
        "a lease that is no longer ours is left alone"
    );
    store
        .release_event(&id, NOW.plus_seconds(121))
        .await
        .expect("release");
    let again = store
        .claim_events(NOW.plus_seconds(62), 60, 10)
        .await
        .expect("claim");
    assert_eq!(ids(again), ["evt_a"]);
}

#[tokio::test]
async fn upkeep_moves_the_write_ahead_log_into_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store.maintain().await.expect("upkeep");
    let before = std::fs::metadata(&path).expect("db file").len();
    let events: Vec<crate::NewEvent> = (0..50)
        .map(|i| crate::NewEvent {
            // Bytes that do not compress: the file must grow by them.
            payload: noise(i, 4000),
            ..crate::sqlite::test_event(&format!("evt_upkeep{i}"), "invoice.paid", NOW)
        })
        .collect();
    store.insert_events(&events).await.expect("insert");
    assert_eq!(
        std::fs::metadata(&path).expect("db file").len(),
        before,
        "a commit leaves checkpoints to upkeep"
    );
    store.maintain().await.expect("upkeep");
    assert!(
        std::fs::metadata(&path).expect("db file").len() >= before + 50 * 4000,
        "the batch is in the database file"
    );
}

#[tokio::test]
async fn an_access_check_reads_the_role_and_the_billing_state_at_once() {
    use crate::ProvisioningStore;
    let (_dir, store) = fresh().await;
    let owner = Email::parse("dana@acme.test").expect("email");
    let stranger = Email::parse("eve@else.test").expect("email");
    assert_eq!(
        store
            .access_facts(&ws("ws_none"), &owner)
            .await
            .expect("facts"),
        None,
        "no such workspace"
    );
    store
        .create_workspace(&ws("ws_acme"), "Acme", &owner, &crate::Actor::App, NOW)
        .await
        .expect("workspace");
    assert_eq!(
        store
            .access_facts(&ws("ws_acme"), &owner)
            .await
            .expect("facts"),
        Some((Some(admit_core::Role::Owner), None))
    );
    assert_eq!(
        store
            .access_facts(&ws("ws_acme"), &stranger)
            .await
            .expect("facts"),
        Some((None, None))
    );
    sqlx::query(
        "INSERT INTO billing_states (workspace_id, subscription_status, subscription_plan, updated_at)
         VALUES ('ws_acme', 'active', 'pro', 1)",
    )
    .execute(&store.pool)
    .await
    .expect("billing");
    let (_, billing) = store
        .access_facts(&ws("ws_acme"), &owner)
        .await
        .expect("facts")
        .expect("exists");
    let billing = billing.expect("billed");
    assert_eq!(
        billing.subscription_status,
        Some(admit_core::SubscriptionStatus::Active)
    );
    assert_eq!(
        billing.subscription_plan.as_ref().map(|p| p.as_str()),
        Some("pro")
    );
}

/// `len` pseudo-random bytes (xorshift), different for each `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}
