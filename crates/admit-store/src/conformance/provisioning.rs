//! What the provisioning path reads and records besides scopes: checkout
//! leases and intents, bindings, cases and their resolutions, where a
//! checkout stands, the inbox's queue, and billing states as stored.

use admit_core::provisioning::CheckoutIntent;
use admit_core::{
    BillingState, CustomerId, PlanKey, Role, SubscriptionId, SubscriptionStatus, Timestamp,
    WorkspaceCustomers,
};
use serde_json::json;

use super::{NOW, TestStore, email, event_id, fresh, test_event, ws};
use crate::StoreError;
use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::events::{EventStatus, NewEvent};
use crate::provisioning::{
    CaseResolution, CaseWrite, CommitOutcome, EventKeys, EventStatusWrite, History, OutboxWrite,
    ScopeCommit, ScopeWrite, SessionPayment, SessionStatus,
};

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

/// Derives `event` as settled with `outcome`, writing `extra` with it.
async fn settle(store: &TestStore, event: &str, outcome: &str, extra: ScopeWrite) {
    let read = store
        .read_scope(&event_id(event), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let mut write = ScopeWrite {
        event_statuses: vec![EventStatusWrite {
            id: event_id(event),
            status: EventStatus::Processed,
            outcome: outcome.into(),
            scenario: Some("S1".into()),
        }],
        ..ScopeWrite::default()
    };
    write.extend(&extra);
    let outcomes = store
        .commit_scopes(
            &[ScopeCommit {
                claimed: event_id(event),
                versions: read.versions,
                write,
            }],
            NOW,
        )
        .await
        .expect("commit");
    assert_eq!(outcomes, [CommitOutcome::Written]);
}

/// The operator the tests' replays are by.
fn replayer() -> Actor {
    Actor::operator("sam", admit_core::OperatorRole::Support)
}

async fn status(store: &TestStore, event: &str) -> EventStatus {
    store
        .get_event(&event_id(event))
        .await
        .expect("get")
        .expect("stored")
        .status
}

fn case(id: &str, key: &str, kind: &str) -> CaseWrite {
    CaseWrite {
        id: id.into(),
        key: key.into(),
        kind: kind.into(),
        scenario: Some("S4".into()),
        workspace_id: None,
        purchaser_email: Some("buyer@else.test".into()),
        customer_id: Some("cus_1".into()),
        subscription_id: Some("sub_1".into()),
        checkout_session_id: None,
        event_ids: vec!["evt_1".into()],
        details: json!({ "candidates": ["ws_a", "ws_b"] }),
        state: "held".into(),
        resolution: None,
    }
}

fn message(key: &str) -> OutboxWrite {
    OutboxWrite {
        idempotency_key: key.into(),
        kind: "case_opened".into(),
        recipient: "support@admit.test".into(),
        workspace_id: None,
        about: Some("sub_1".into()),
        case_key: Some("case-key-1".into()),
        payload: json!({ "case": "case_1" }),
        not_before: NOW,
    }
}

fn opened(case: &str) -> AuditEntry {
    AuditEntry {
        at: NOW,
        actor: "system".into(),
        action: "case.opened".into(),
        workspace_id: None,
        subject: Some(format!("case:{case}")),
        before: None,
        after: Some(json!({ "state": "held" })),
        cause: None,
    }
}

#[tokio::test]
async fn a_checkout_lease_is_one_holders_until_it_ends_or_runs_out() {
    let store = fresh().await;
    let acme = ws("ws_acme");
    let until = NOW.plus_seconds(60);
    assert!(
        store
            .lease_checkout(&acme, "a", NOW, until)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .lease_checkout(&acme, "b", NOW.plus_seconds(10), NOW.plus_seconds(70))
            .await
            .expect("lease"),
        "another holder is refused while the lease runs"
    );
    assert!(
        store
            .lease_checkout(
                &ws("ws_other"),
                "b",
                NOW.plus_seconds(10),
                NOW.plus_seconds(70)
            )
            .await
            .expect("lease"),
        "another workspace's lease is its own"
    );
    assert!(
        store
            .lease_checkout(&acme, "a", NOW.plus_seconds(20), NOW.plus_seconds(80))
            .await
            .expect("lease"),
        "the holder takes it again (and longer)"
    );
    assert!(
        !store
            .lease_checkout(&acme, "b", NOW.plus_seconds(79), NOW.plus_seconds(140))
            .await
            .expect("lease"),
        "the renewed lease runs to its new end"
    );
    assert!(
        store
            .lease_checkout(&acme, "b", NOW.plus_seconds(80), NOW.plus_seconds(140))
            .await
            .expect("lease"),
        "an expired lease is anyone's"
    );
    assert!(
        !store
            .lease_checkout(&acme, "a", NOW.plus_seconds(81), NOW.plus_seconds(150))
            .await
            .expect("lease"),
        "the old holder lost it"
    );
    store
        .end_checkout_lease(&acme, "a")
        .await
        .expect("ending someone else's lease does nothing");
    assert!(
        !store
            .lease_checkout(&acme, "a", NOW.plus_seconds(82), NOW.plus_seconds(150))
            .await
            .expect("lease")
    );
    store.end_checkout_lease(&acme, "b").await.expect("end");
    assert!(
        store
            .lease_checkout(&acme, "a", NOW.plus_seconds(83), NOW.plus_seconds(150))
            .await
            .expect("lease"),
        "an ended lease is free before its end"
    );
}

#[tokio::test]
async fn an_intent_is_kept_once_and_read_with_its_sessions_scope() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    let intent = CheckoutIntent {
        session_id: "cs_1".into(),
        workspace: ws("ws_a"),
        initiator: email("owner@ws_a.test"),
        purchaser: Some(email("buyer@else.test")),
        plan: PlanKey::new("pro"),
    };
    store.insert_intent(&intent, NOW).await.expect("intent");
    let again = CheckoutIntent {
        workspace: ws("ws_b"),
        plan: PlanKey::new("team"),
        ..intent.clone()
    };
    store
        .insert_intent(&again, NOW)
        .await
        .expect("a second intent for the session changes nothing");
    let completed = NewEvent {
        keys: EventKeys {
            session: Some("cs_1".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_cs", "checkout.session.completed", NOW)
    };
    store.insert_event(&completed).await.expect("insert");
    let read = store
        .read_scope(&completed.id, &EventKeys::default(), History::Full)
        .await
        .expect("read");
    assert_eq!(read.snapshot.intents.get("cs_1"), Some(&intent));
    assert!(
        read.snapshot.directory.get(&ws("ws_a")).is_some(),
        "the intent's workspace is in the scope"
    );
    assert!(read.snapshot.directory.get(&ws("ws_b")).is_none());
}

#[tokio::test]
async fn where_a_checkout_stands_follows_its_intent_events_case_and_links() {
    let store = fresh().await;
    assert_eq!(
        store.session_status("cs_1").await.expect("status"),
        SessionStatus::default(),
        "an unknown session"
    );
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    store
        .insert_intent(
            &CheckoutIntent {
                session_id: "cs_1".into(),
                workspace: ws("ws_a"),
                initiator: email("owner@ws_a.test"),
                purchaser: None,
                plan: PlanKey::new("pro"),
            },
            NOW,
        )
        .await
        .expect("intent");
    assert_eq!(
        store.session_status("cs_1").await.expect("status"),
        SessionStatus {
            known: true,
            workspace: Some(ws("ws_a")),
            ..SessionStatus::default()
        }
    );

    let completed = NewEvent {
        keys: EventKeys {
            session: Some("cs_1".into()),
            subscription: Some("sub_1".into()),
            purchaser_email: Some("buyer@else.test".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_cs", "checkout.session.completed", NOW)
    };
    let created = NewEvent {
        keys: EventKeys {
            subscription: Some("sub_1".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_sub", "customer.subscription.created", NOW)
    };
    let elsewhere = NewEvent {
        keys: EventKeys {
            session: Some("cs_2".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_other", "checkout.session.completed", NOW)
    };
    store
        .insert_events(&[completed, created, elsewhere])
        .await
        .expect("insert");
    let status = store.session_status("cs_1").await.expect("status");
    assert_eq!(status.unprocessed, 2, "its own and its subscription's");
    assert_eq!(status.subscription.as_deref(), Some("sub_1"));
    assert_eq!(status.purchaser_email.as_deref(), Some("buyer@else.test"));
    assert_eq!(status.payment, SessionPayment::Unknown);

    settle(&store, "evt_cs", "not_paid_yet", ScopeWrite::default()).await;
    let status = store.session_status("cs_1").await.expect("status");
    assert_eq!(status.unprocessed, 1);
    assert_eq!(status.payment, SessionPayment::Pending);

    let held = CaseWrite {
        checkout_session_id: None,
        ..case("case_1", "case-key-1", "email_mismatch")
    };
    assert!(
        store
            .record_case(&held, &[], &opened("case_1"), NOW)
            .await
            .expect("case")
    );
    let linked = ScopeWrite {
        links: vec![("subscription".into(), "sub_1".into(), ws("ws_b"))],
        ..ScopeWrite::default()
    };
    settle(&store, "evt_sub", "provisioned", linked).await;
    let status = store.session_status("cs_1").await.expect("status");
    assert_eq!(
        status.held_case.as_deref(),
        Some("case_1"),
        "a held case about its subscription"
    );
    assert_eq!(
        status.workspace,
        Some(ws("ws_b")),
        "the link the derivation wrote, over the intent's workspace"
    );
    assert_eq!(status.unprocessed, 0);

    let failed = NewEvent {
        keys: EventKeys {
            session: Some("cs_1".into()),
            ..EventKeys::default()
        },
        ..test_event(
            "evt_cs_failed",
            "checkout.session.async_payment_failed",
            NOW,
        )
    };
    store.insert_event(&failed).await.expect("insert");
    store
        .finish_event_unprovisioned(&failed.id, EventStatus::Ignored, "payment_failed", None)
        .await
        .expect("settle");
    let status = store.session_status("cs_1").await.expect("status");
    assert_eq!(status.payment, SessionPayment::Failed);
}

#[tokio::test]
async fn a_workspaces_customers_are_the_bound_ones_and_the_one_its_billing_names() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    workspace(&store, "ws_b").await;
    assert_eq!(
        store
            .workspace_customers(&ws("ws_a"))
            .await
            .expect("customers"),
        WorkspaceCustomers::default()
    );
    let first = CustomerId::parse("cus_first").expect("id");
    store
        .bind_customer(&first, &ws("ws_a"), "checkout", NOW)
        .await
        .expect("bind");
    store
        .bind_customer(&first, &ws("ws_b"), "checkout", NOW.plus_seconds(5))
        .await
        .expect("a bound customer stays where it is");
    let second = CustomerId::parse("cus_second").expect("id");
    store
        .bind_customer(&second, &ws("ws_a"), "operator", NOW.plus_seconds(9))
        .await
        .expect("bind");
    let mut customers = store
        .workspace_customers(&ws("ws_a"))
        .await
        .expect("customers");
    customers.bound.sort();
    assert_eq!(
        customers.bound,
        [(first.clone(), NOW), (second.clone(), NOW.plus_seconds(9))]
    );
    assert_eq!(customers.billing, None);
    assert_eq!(
        store
            .workspace_customers(&ws("ws_b"))
            .await
            .expect("customers"),
        WorkspaceCustomers::default()
    );

    store
        .insert_event(&test_event("evt_1", "invoice.paid", NOW))
        .await
        .expect("insert");
    let billed = ScopeWrite {
        billing: vec![(
            ws("ws_b"),
            BillingState {
                stripe_customer_id: Some(CustomerId::parse("cus_billed").expect("id")),
                ..BillingState::default()
            },
        )],
        ..ScopeWrite::default()
    };
    settle(&store, "evt_1", "provisioned", billed).await;
    assert_eq!(
        store
            .workspace_customers(&ws("ws_b"))
            .await
            .expect("customers"),
        WorkspaceCustomers {
            bound: Vec::new(),
            billing: Some(CustomerId::parse("cus_billed").expect("id")),
        }
    );
}

#[tokio::test]
async fn a_subscription_is_found_by_its_link_and_its_events_are_counted() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    assert_eq!(
        store
            .workspace_of_subscription("sub_1")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .count_subscription_events("sub_1")
            .await
            .expect("count"),
        0
    );
    let events: Vec<NewEvent> = ["evt_1", "evt_2", "evt_3"]
        .iter()
        .enumerate()
        .map(|(i, id)| NewEvent {
            keys: EventKeys {
                subscription: Some(if i < 2 { "sub_1" } else { "sub_2" }.into()),
                ..EventKeys::default()
            },
            ..test_event(id, "customer.subscription.updated", NOW)
        })
        .collect();
    store.insert_events(&events).await.expect("insert");
    assert_eq!(
        store
            .count_subscription_events("sub_1")
            .await
            .expect("count"),
        2
    );
    let linked = ScopeWrite {
        links: vec![("subscription".into(), "sub_1".into(), ws("ws_a"))],
        ..ScopeWrite::default()
    };
    settle(&store, "evt_1", "provisioned", linked).await;
    assert_eq!(
        store
            .workspace_of_subscription("sub_1")
            .await
            .expect("read"),
        Some(ws("ws_a"))
    );
    assert_eq!(
        store
            .workspace_of_subscription("sub_2")
            .await
            .expect("read"),
        None
    );
    // Unlinked (a derivation rebinds the subscription), it is nobody's.
    let unlinked = ScopeWrite {
        unlink: vec![("subscription".into(), "sub_1".into())],
        ..ScopeWrite::default()
    };
    settle(&store, "evt_2", "provisioned", unlinked).await;
    assert_eq!(
        store
            .workspace_of_subscription("sub_1")
            .await
            .expect("read"),
        None
    );
}

#[tokio::test]
async fn a_case_recorded_twice_is_opened_once_with_its_messages_and_audit() {
    let store = fresh().await;
    assert_eq!(store.get_case("case_1").await.expect("read"), None);
    let write = case("case_1", "case-key-1", "duplicate_customer");
    assert!(
        store
            .record_case(&write, &[message("m:1")], &opened("case_1"), NOW)
            .await
            .expect("record")
    );
    let again = CaseWrite {
        id: "case_2".into(),
        ..write.clone()
    };
    assert!(
        !store
            .record_case(&again, &[message("m:2")], &opened("case_2"), NOW)
            .await
            .expect("record"),
        "one case per key"
    );
    let stored = store
        .get_case("case_1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.key, "case-key-1");
    assert_eq!(stored.kind, "duplicate_customer");
    assert_eq!(stored.scenario.as_deref(), Some("S4"));
    assert_eq!(stored.purchaser_email.as_deref(), Some("buyer@else.test"));
    assert_eq!(stored.customer_id.as_deref(), Some("cus_1"));
    assert_eq!(stored.subscription_id.as_deref(), Some("sub_1"));
    assert_eq!(stored.checkout_session_id, None);
    assert_eq!(stored.event_ids, ["evt_1"]);
    assert_eq!(stored.details, json!({ "candidates": ["ws_a", "ws_b"] }));
    assert_eq!(stored.state, "held");
    assert_eq!(stored.resolution, None);
    assert_eq!(stored.created_at, NOW);
    assert_eq!(stored.resolved_at, None);
    assert_eq!(store.get_case("case_2").await.expect("read"), None);

    let messages = store.list_outbox(None, 10).await.expect("outbox");
    assert_eq!(messages.len(), 1, "the second recording queued nothing");
    assert_eq!(messages[0].idempotency_key, "m:1");
    assert_eq!(messages[0].state, "pending");
    assert_eq!(messages[0].payload, json!({ "case": "case_1" }));
    assert_eq!(messages[0].about.as_deref(), Some("sub_1"));
    assert_eq!(messages[0].case_key.as_deref(), Some("case-key-1"));
    assert_eq!(messages[0].next_attempt_at, NOW);
    let audit = store
        .audit_by_action("case.opened", 10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry, opened("case_1"));
}

#[tokio::test]
async fn resolving_a_case_binds_its_purchase_and_queues_its_events_again() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    let event = NewEvent {
        keys: EventKeys {
            subscription: Some("sub_1".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_1", "customer.subscription.created", NOW)
    };
    store.insert_event(&event).await.expect("insert");
    store
        .finish_event_unprovisioned(&event.id, EventStatus::Ignored, "held", None)
        .await
        .expect("held for now");
    store
        .record_case(
            &case("case_1", "case-key-1", "missing_workspace"),
            &[],
            &opened("case_1"),
            NOW,
        )
        .await
        .expect("record");

    let operator = Actor::operator("ops", admit_core::OperatorRole::Admin);
    let later = NOW.plus_seconds(60);
    assert!(matches!(
        store
            .resolve_case(
                "case_404",
                &CaseResolution::Dismiss { note: None },
                &operator,
                later
            )
            .await,
        Err(StoreError::CaseNotFound)
    ));
    assert!(matches!(
        store
            .resolve_case(
                "case_1",
                &CaseResolution::Bind {
                    workspace: ws("ws_none")
                },
                &operator,
                later
            )
            .await,
        Err(StoreError::WorkspaceNotFound)
    ));
    assert_eq!(
        status(&store, "evt_1").await,
        EventStatus::Ignored,
        "a refused resolution changes nothing"
    );

    let resolved = store
        .resolve_case(
            "case_1",
            &CaseResolution::InvitePurchaser {
                workspace: ws("ws_a"),
                role: Role::Admin,
            },
            &operator,
            later,
        )
        .await
        .expect("resolve");
    assert_eq!(resolved.state, "resolved");
    assert_eq!(resolved.resolution.as_deref(), Some("invite_purchaser"));
    assert_eq!(resolved.resolution_workspace.as_deref(), Some("ws_a"));
    assert_eq!(resolved.resolution_role.as_deref(), Some("admin"));
    assert_eq!(resolved.resolved_by.as_deref(), Some("operator:ops"));
    assert_eq!(resolved.resolved_at, Some(later));
    assert_eq!(
        store.get_case("case_1").await.expect("read"),
        Some(resolved)
    );
    assert_eq!(
        status(&store, "evt_1").await,
        EventStatus::Received,
        "its events are derived again"
    );
    let workspace = store
        .get_workspace(&ws("ws_a"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        workspace.role_of(&email("buyer@else.test")),
        Some(Role::Admin)
    );
    let read = store
        .read_scope(&event.id, &EventKeys::default(), History::Full)
        .await
        .expect("read");
    assert_eq!(
        read.snapshot.purchase_bindings.get("sub_1"),
        Some(&ws("ws_a")),
        "the purchase is bound to the chosen workspace"
    );
    let audit = store
        .audit_by_action("case.resolved", 10)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.actor, "operator:ops");
    assert_eq!(audit[0].entry.workspace_id, Some(ws("ws_a")));

    assert!(matches!(
        store
            .resolve_case(
                "case_1",
                &CaseResolution::Dismiss { note: None },
                &operator,
                later
            )
            .await,
        Err(StoreError::CaseAlreadyResolved)
    ));
}

#[tokio::test]
async fn a_settlement_an_operator_records_is_read_with_the_scope() {
    let store = fresh().await;
    let event = NewEvent {
        keys: EventKeys {
            subscription: Some("sub_1".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_1", "charge.dispute.created", NOW)
    };
    store.insert_event(&event).await.expect("insert");
    let disputed = CaseWrite {
        customer_id: None,
        purchaser_email: None,
        ..case("case_1", "dispute:dp_1", "payment_disputed")
    };
    store
        .record_case(&disputed, &[], &opened("case_1"), NOW)
        .await
        .expect("record");
    assert!(matches!(
        store
            .resolve_case(
                "case_1",
                &CaseResolution::Bind {
                    workspace: ws("ws_a")
                },
                &Actor::api(),
                NOW
            )
            .await,
        Err(StoreError::ResolutionInvalid(_) | StoreError::WorkspaceNotFound)
    ));
    let resolved = store
        .resolve_case(
            "case_1",
            &CaseResolution::MarkRefunded {
                note: Some("refunded by hand".into()),
            },
            &Actor::api(),
            NOW,
        )
        .await
        .expect("resolve");
    assert_eq!(
        resolved.resolution_note.as_deref(),
        Some("refunded by hand")
    );
    let read = store
        .read_scope(&event.id, &EventKeys::default(), History::Full)
        .await
        .expect("read");
    assert_eq!(
        read.snapshot.settlements.get("dispute:dp_1"),
        Some(&admit_core::provisioning::Settlement::Refunded)
    );
    assert_eq!(
        read.snapshot
            .cases
            .get("dispute:dp_1")
            .map(|c| c.state.as_str()),
        Some("resolved")
    );
}

#[tokio::test]
async fn the_outbox_is_listed_by_state_newest_first() {
    let store = fresh().await;
    for (key, state) in [
        ("k1", "pending"),
        ("k2", "sent"),
        ("k3", "pending"),
        ("k4", "dead"),
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
    let keys = |rows: Vec<crate::OutboxRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.idempotency_key).collect()
    };
    assert_eq!(
        keys(store.list_outbox(None, 10).await.expect("all")),
        ["k4", "k3", "k2", "k1"]
    );
    assert_eq!(
        keys(
            store
                .list_outbox(Some("pending"), 10)
                .await
                .expect("pending")
        ),
        ["k3", "k1"]
    );
    assert_eq!(
        keys(store.list_outbox(Some("pending"), 1).await.expect("one")),
        ["k3"]
    );
    assert!(
        store
            .list_outbox(Some("superseded"), 10)
            .await
            .expect("none")
            .is_empty()
    );
}

#[tokio::test]
async fn an_event_is_pending_until_settled_and_a_requeue_brings_it_back() {
    let store = fresh().await;
    assert_eq!(store.pending_events().await.expect("pending"), 0);
    for id in ["evt_1", "evt_2", "evt_3", "evt_4"] {
        store
            .insert_event(&test_event(id, "invoice.paid", NOW))
            .await
            .expect("insert");
    }
    assert_eq!(store.pending_events().await.expect("pending"), 4);

    settle(&store, "evt_1", "provisioned", ScopeWrite::default()).await;
    store
        .finish_event_unprovisioned(
            &event_id("evt_2"),
            EventStatus::Ignored,
            "type_not_handled",
            None,
        )
        .await
        .expect("ignore");
    store
        .finish_event_unprovisioned(
            &event_id("evt_3"),
            EventStatus::Failed,
            "the scope did not close",
            Some(NOW.plus_seconds(30)),
        )
        .await
        .expect("fail, retried");
    store
        .finish_event_unprovisioned(
            &event_id("evt_4"),
            EventStatus::Failed,
            "corrupt body",
            None,
        )
        .await
        .expect("fail for good");
    assert_eq!(
        store.pending_events().await.expect("pending"),
        1,
        "only the failure that will be retried"
    );
    let failed = store
        .get_event(&event_id("evt_3"))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(failed.status, EventStatus::Failed);
    assert_eq!(failed.outcome.as_deref(), Some("error"));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("the scope did not close")
    );
    let ignored = store
        .get_event(&event_id("evt_2"))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(ignored.outcome.as_deref(), Some("type_not_handled"));
    assert_eq!(ignored.last_error, None);
    // A failure is retried when due, not before.
    assert!(
        store
            .claim_events(NOW, 60, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let due = store
        .claim_events(NOW.plus_seconds(30), 60, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, event_id("evt_3"));

    // Settled meanwhile by a derivation that won: left alone.
    store
        .finish_event_unprovisioned(&event_id("evt_1"), EventStatus::Failed, "late", None)
        .await
        .expect("no-op");
    assert_eq!(status(&store, "evt_1").await, EventStatus::Processed);

    for id in ["evt_1", "evt_2", "evt_4"] {
        assert!(
            store
                .requeue_event(&event_id(id), &replayer(), NOW)
                .await
                .expect("requeue")
        );
        assert_eq!(status(&store, id).await, EventStatus::Received);
    }
    assert!(
        !store
            .requeue_event(&event_id("evt_missing"), &replayer(), NOW)
            .await
            .expect("requeue")
    );
    assert_eq!(store.pending_events().await.expect("pending"), 4);
    let again = store
        .claim_events(NOW.plus_seconds(31), 60, 10)
        .await
        .expect("claim");
    let mut ids: Vec<&str> = again.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["evt_1", "evt_2", "evt_4"],
        "requeued: claimable at once"
    );
}

/// A replay is audited in its transaction, on the workspace the event is
/// linked to: by its subscription, session or customer first, else by the
/// workspace its metadata names if that exists.
#[tokio::test]
async fn a_replay_is_audited_on_the_workspace_its_event_is_linked_to() {
    let store = fresh().await;
    workspace(&store, "ws_acme").await;
    workspace(&store, "ws_beta").await;
    let keyed = |id: &str, keys: EventKeys| NewEvent {
        keys,
        ..test_event(id, "invoice.paid", NOW)
    };
    store
        .insert_events(&[
            keyed(
                "evt_linked",
                EventKeys {
                    subscription: Some("sub_1".into()),
                    // The link wins over what the metadata says.
                    workspace_hint: Some("ws_beta".into()),
                    ..EventKeys::default()
                },
            ),
            keyed(
                "evt_hinted",
                EventKeys {
                    workspace_hint: Some("ws_beta".into()),
                    ..EventKeys::default()
                },
            ),
            keyed(
                "evt_nowhere",
                EventKeys {
                    workspace_hint: Some("ws_gone".into()),
                    ..EventKeys::default()
                },
            ),
            keyed("evt_plain", EventKeys::default()),
        ])
        .await
        .expect("insert");
    store
        .exec("INSERT INTO stripe_links (kind, stripe_id, workspace_id) VALUES ('subscription', 'sub_1', 'ws_acme')")
        .await;
    for id in ["evt_linked", "evt_hinted", "evt_nowhere", "evt_plain"] {
        assert!(
            store
                .requeue_event(&event_id(id), &replayer(), NOW.plus_seconds(5))
                .await
                .expect("requeue")
        );
    }
    assert!(
        !store
            .requeue_event(&event_id("evt_missing"), &replayer(), NOW)
            .await
            .expect("requeue")
    );
    let mut replays: Vec<(String, Option<String>)> = store
        .audit_by_action("event.replayed", 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| {
            let entry = e.entry;
            assert_eq!(entry.actor, "operator:sam");
            assert_eq!(entry.at, NOW.plus_seconds(5));
            let subject = entry.subject.expect("subject");
            assert_eq!(
                Some(subject.clone()),
                entry.cause.map(|c| format!("event:{c}"))
            );
            (subject, entry.workspace_id.map(|w| w.to_string()))
        })
        .collect();
    replays.sort();
    assert_eq!(
        replays,
        [
            ("event:evt_hinted".into(), Some("ws_beta".into())),
            ("event:evt_linked".into(), Some("ws_acme".into())),
            ("event:evt_nowhere".into(), None),
            ("event:evt_plain".into(), None),
        ],
        "no entry for an event that is not stored"
    );
}

/// `event_workspace` names the workspace a replay would be audited on:
/// the subscription's link, else the session's, else the customer's, else
/// the metadata's workspace if it exists.
#[tokio::test]
async fn an_events_workspace_is_the_one_its_replay_is_audited_on() {
    let store = fresh().await;
    for raw in ["ws_acme", "ws_beta", "ws_cust"] {
        workspace(&store, raw).await;
    }
    let keyed = |id: &str, keys: EventKeys| NewEvent {
        keys,
        ..test_event(id, "invoice.paid", NOW)
    };
    let keys = |subscription: Option<&str>,
                session: Option<&str>,
                customer: Option<&str>,
                hint: Option<&str>| EventKeys {
        subscription: subscription.map(Into::into),
        session: session.map(Into::into),
        customer: customer.map(Into::into),
        workspace_hint: hint.map(Into::into),
        ..EventKeys::default()
    };
    let cases = [
        (
            "evt_all",
            keys(Some("sub_1"), Some("cs_1"), Some("cus_1"), Some("ws_beta")),
            Some("ws_acme"),
        ),
        (
            "evt_session",
            keys(Some("sub_unlinked"), Some("cs_1"), Some("cus_1"), None),
            Some("ws_beta"),
        ),
        (
            "evt_customer",
            keys(None, Some("cs_unlinked"), Some("cus_1"), Some("ws_acme")),
            Some("ws_cust"),
        ),
        (
            "evt_hinted",
            keys(None, None, Some("cus_unlinked"), Some("ws_beta")),
            Some("ws_beta"),
        ),
        ("evt_gone", keys(None, None, None, Some("ws_gone")), None),
        // A link to a workspace deleted since is no answer: the next one is.
        (
            "evt_stale",
            keys(Some("sub_stale"), None, None, Some("ws_acme")),
            Some("ws_acme"),
        ),
        ("evt_plain", EventKeys::default(), None),
    ];
    store
        .insert_events(
            &cases
                .iter()
                .map(|(id, keys, _)| keyed(id, keys.clone()))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("insert");
    for (kind, stripe_id, workspace) in [
        ("subscription", "sub_1", "ws_acme"),
        ("session", "cs_1", "ws_beta"),
        ("customer", "cus_1", "ws_cust"),
        ("subscription", "sub_stale", "ws_deleted"),
    ] {
        sqlx::query("INSERT INTO stripe_links (kind, stripe_id, workspace_id) VALUES ($1, $2, $3)")
            .bind(kind)
            .bind(stripe_id)
            .bind(workspace)
            .execute(&store.db)
            .await
            .expect("link");
    }
    for (id, _, expected) in &cases {
        assert_eq!(
            store
                .event_workspace(&event_id(id))
                .await
                .expect("workspace")
                .map(|w| w.to_string())
                .as_deref(),
            *expected,
            "{id}"
        );
    }
    assert_eq!(
        store
            .event_workspace(&event_id("evt_missing"))
            .await
            .expect("workspace"),
        None
    );
    // The replay's audit entry names the same workspace.
    for (id, _, expected) in &cases {
        assert!(
            store
                .requeue_event(&event_id(id), &replayer(), NOW)
                .await
                .expect("requeue")
        );
        let entry = &store
            .audit_by_action("event.replayed", 1)
            .await
            .expect("audit")[0]
            .entry;
        assert_eq!(
            entry.subject.as_deref(),
            Some(format!("event:{id}").as_str())
        );
        assert_eq!(
            entry
                .workspace_id
                .as_ref()
                .map(|w| w.to_string())
                .as_deref(),
            *expected,
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_billing_state_round_trips_through_every_read() {
    let store = fresh().await;
    workspace(&store, "ws_a").await;
    let event = NewEvent {
        keys: EventKeys {
            workspace_hint: Some("ws_a".into()),
            ..EventKeys::default()
        },
        ..test_event("evt_1", "customer.subscription.updated", NOW)
    };
    store.insert_event(&event).await.expect("insert");
    let state = BillingState {
        subscription_status: Some(SubscriptionStatus::PastDue),
        subscription_plan: Some(PlanKey::new("pro")),
        stripe_customer_id: Some(CustomerId::parse("cus_1").expect("id")),
        stripe_subscription_id: Some(SubscriptionId::parse("sub_1").expect("id")),
        current_period_end: Some(Timestamp::from_unix(1_797_000_000)),
        cancel_at_period_end: true,
        cancel_at: Some(Timestamp::from_unix(1_797_000_000)),
        purchaser_email: Some(email("buyer@else.test")),
        updated_by_event: Some(event_id("evt_1")),
        past_due_since: Some(NOW.plus_seconds(-86_400)),
    };
    let billed = ScopeWrite {
        billing: vec![(ws("ws_a"), state.clone())],
        ..ScopeWrite::default()
    };
    settle(&store, "evt_1", "provisioned", billed).await;
    assert_eq!(
        store.get_billing(&ws("ws_a")).await.expect("read"),
        Some(state.clone())
    );
    assert_eq!(
        store
            .access_facts(&ws("ws_a"), &email("owner@ws_a.test"))
            .await
            .expect("facts"),
        Some((Some(Role::Owner), Some(state.clone())))
    );
    let read = store
        .read_scope(&event.id, &EventKeys::default(), History::Full)
        .await
        .expect("read");
    assert_eq!(read.snapshot.billing.get(&ws("ws_a")), Some(&state));
    assert_eq!(store.get_billing(&ws("ws_none")).await.expect("read"), None);
}
