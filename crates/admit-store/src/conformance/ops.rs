//! Readiness figures, the backlog, webhook rejections, audit lookups,
//! workspace removal, inbox batches and claims, and access checks.

use super::{NOW, email, event_id, fresh, test_event, ws};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::ops::Backlog;

#[tokio::test]
async fn rejections_add_up_by_hour_and_only_the_recent_ones_count() {
    let store = fresh().await;
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
    let store = fresh().await;
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
             VALUES ($1, 'invoice.paid', 1, FALSE, 'invoice', '{}', '{}', $2, $3, $4)",
        )
        .bind(id)
        .bind(source)
        .bind(received)
        .bind(status)
        .execute(&store.db)
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
             VALUES ($1, $2, 'missing_workspace', '[]', '{}', $3, $4)",
        )
        .bind(id)
        .bind(format!("key:{id}"))
        .bind(state)
        .bind(at)
        .execute(&store.db)
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
    let store = fresh().await;
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
    let store = fresh().await;
    let owner = email("dana@acme.test");
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
    .execute(&store.db)
    .await
    .expect("billing");
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, payload, state,
             next_attempt_at, created_at)
         VALUES ('k1', 'onboarding', 'dana@acme.test', 'ws_spare', '{}', 'pending', 1, 1)",
    )
    .execute(&store.db)
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
    .execute(&store.db)
    .await
    .expect("case");
    assert!(matches!(
        store
            .delete_workspace(&ws("ws_spare"), &Actor::api(), NOW)
            .await,
        Err(StoreError::WorkspaceHasHeldCases)
    ));
    sqlx::query("UPDATE cases SET state = 'resolved' WHERE id = 'case_1'")
        .execute(&store.db)
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
        .fetch_one(&store.db)
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
    let store = fresh().await;
    let event = |id: &str| test_event(id, "customer.created", NOW);
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
    let store = fresh().await;
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
             VALUES ($1, 'invoice.paid', 1, FALSE, 'invoice', '{}', '{}', 'webhook', $2, $3, $4)",
        )
        .bind(id)
        .bind(received)
        .bind(status)
        .bind((status == "failed").then_some(NOW.unix()))
        .execute(&store.db)
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
    let id = event_id("evt_a");
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
async fn an_access_check_reads_the_role_and_the_billing_state_at_once() {
    let store = fresh().await;
    let owner = email("dana@acme.test");
    let stranger = email("eve@else.test");
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
    .execute(&store.db)
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

#[tokio::test]
async fn the_backlog_counts_each_queue() {
    let store = fresh().await;
    assert_eq!(store.backlog().await.expect("backlog"), Backlog::default());
    for (id, status, received) in [
        ("evt_new", "received", NOW.unix() - 30),
        ("evt_newer", "received", NOW.unix() - 10),
        ("evt_failed", "failed", NOW.unix() - 100),
        ("evt_done", "processed", NOW.unix() - 500),
        ("evt_ignored", "ignored", NOW.unix() - 500),
    ] {
        sqlx::query(
            "INSERT INTO stripe_events (id, type, created, livemode, object_type, metadata,
                 headers, source, received_at, status)
             VALUES ($1, 'invoice.paid', 1, FALSE, 'invoice', '{}', '{}', 'webhook', $2, $3)",
        )
        .bind(id)
        .bind(received)
        .bind(status)
        .execute(&store.db)
        .await
        .expect("event");
    }
    for (key, state) in [
        ("k1", "pending"),
        ("k2", "pending"),
        ("k3", "dead"),
        ("k4", "sent"),
        ("k5", "superseded"),
    ] {
        sqlx::query(
            "INSERT INTO outbox (idempotency_key, kind, recipient, payload, state,
                 next_attempt_at, created_at)
             VALUES ($1, 'onboarding', 'dana@acme.test', '{}', $2, 1, 1)",
        )
        .bind(key)
        .bind(state)
        .execute(&store.db)
        .await
        .expect("outbox");
    }
    // The oldest case of each kind is not the first inserted; a settled
    // case, older still, is no held one's.
    for (id, kind, state, created) in [
        ("case_1", "unknown_price", "held", 100),
        ("case_2", "missing_workspace", "held", 200),
        ("case_3", "unknown_price", "held", 300),
        ("case_4", "email_mismatch", "resolved", 10),
        ("case_5", "unknown_price", "resolved", 20),
    ] {
        sqlx::query(
            "INSERT INTO cases (id, case_key, kind, event_ids, details, state, created_at)
             VALUES ($1, $1, $2, '[]', '{}', $3, $4)",
        )
        .bind(id)
        .bind(kind)
        .bind(state)
        .bind(NOW.unix() - created)
        .execute(&store.db)
        .await
        .expect("case");
    }
    assert_eq!(
        store.backlog().await.expect("backlog"),
        Backlog {
            inbox: 2,
            oldest_unprocessed: Some(NOW.plus_seconds(-30)),
            failed_events: 1,
            pending_mail: 2,
            dead_mail: 1,
            held: vec![
                ("missing_workspace".to_owned(), 1),
                ("unknown_price".to_owned(), 2)
            ],
            held_oldest: vec![
                ("missing_workspace".to_owned(), NOW.plus_seconds(-200)),
                ("unknown_price".to_owned(), NOW.plus_seconds(-300)),
            ],
        }
    );
}

/// Deliveries admit made itself (`admit simulate`, the QA gate) carry a
/// `User-Agent` of `admit-…`, in any case: they are not Stripe's.
#[tokio::test]
async fn deliveries_admit_made_itself_are_not_counted_as_stripes() {
    let store = fresh().await;
    for (id, agent, at) in [
        (
            "evt_stripe",
            Some("Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
            40,
        ),
        ("evt_bare", None, 30),
        ("evt_simulated", Some("admit-simulate/0.1"), 20),
        ("evt_gate", Some("Admit-QA-Gate/0.1"), 10),
    ] {
        let event = crate::NewEvent {
            headers: agent
                .map(|a| [("user-agent".to_owned(), a.to_owned())].into())
                .unwrap_or_default(),
            ..test_event(id, "invoice.paid", NOW.plus_seconds(-at))
        };
        store.insert_event(&event).await.expect("insert");
    }
    let facts = store
        .readiness_facts(NOW.plus_seconds(-3600))
        .await
        .expect("facts");
    assert_eq!(facts.webhooks_recent, 2);
    assert_eq!(facts.last_webhook_at, Some(NOW.plus_seconds(-30)));
}

/// Events received in the same millisecond are claimed in the byte order
/// of their ids (`evt_B` before `evt_a`), whatever the database's
/// collation: every backend hands out the same batch.
#[tokio::test]
async fn events_received_at_once_are_claimed_in_the_byte_order_of_their_ids() {
    let store = fresh().await;
    let events: Vec<_> = ["evt_a", "evt_c", "evt_B"]
        .iter()
        .map(|id| test_event(id, "invoice.paid", NOW))
        .collect();
    store.insert_events(&events).await.expect("insert");
    let mut order = Vec::new();
    for _ in 0..3 {
        let claimed = store.claim_events(NOW, 60, 1).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        order.push(claimed[0].id.to_string());
    }
    assert_eq!(order, ["evt_B", "evt_a", "evt_c"]);
}

/// The held cases the readiness memo lists come oldest first, ties in the
/// byte order of their ids, whatever the database's collation.
#[tokio::test]
async fn held_cases_are_listed_oldest_first_in_the_byte_order_of_their_ids() {
    let store = fresh().await;
    for (id, at) in [
        ("case_b", 100),
        ("case_C", 100),
        ("case_a", 100),
        ("case_z", 50),
    ] {
        sqlx::query(
            "INSERT INTO cases (id, case_key, kind, event_ids, details, state, created_at)
             VALUES ($1, $1, 'unknown_price', '[]', '{}', 'held', $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&store.db)
        .await
        .expect("case");
    }
    let facts = store.readiness_facts(NOW).await.expect("facts");
    let ids: Vec<&str> = facts.held_cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["case_z", "case_C", "case_a", "case_b"]);
}
