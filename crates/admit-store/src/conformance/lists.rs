//! The operators' lists (`ListStore`): filters, newest first, and pages
//! that follow each other without a gap or a repeat. Ids that tie on their
//! sort key are ordered byte by byte on every backend (`case_B` before
//! `case_a`), so a cursor means the same page everywhere.

use admit_core::{Role, Timestamp};

use crate::audit::AuditEntry;
use crate::directory::Actor;
use crate::events::{EventStatus, NewEvent};
use crate::list::{
    AuditQuery, CaseQuery, Cursor, EventQuery, ListKind, OutboxQuery, Page, WorkspaceQuery,
};
use crate::provisioning::{EventKeys, EventStatusWrite, History, ScopeCommit, ScopeWrite};

use super::{NOW, TestStore, email, event_id, fresh, test_event, ws};

/// Every page of a list, following the cursors, as ids.
async fn all_pages<T, F, Fut>(mut page: F, id: impl Fn(&T) -> String) -> Vec<Vec<String>>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let Page { items, next } = page(after).await;
        pages.push(items.iter().map(&id).collect());
        match next {
            Some(cursor) => after = Some(cursor),
            None => return pages,
        }
    }
}

/// A case row as the processor writes it.
async fn case(store: &TestStore, id: &str, at: i64, fields: [Option<&str>; 5]) {
    let [kind, state, workspace, subscription, email] = fields;
    sqlx::query(
        "INSERT INTO cases (id, case_key, kind, workspace_id, stripe_subscription_id,
             purchaser_email, event_ids, details, state, created_at)
         VALUES ($1, $1, $2, $3, $4, $5, '[]', '{}', $6, $7)",
    )
    .bind(id)
    .bind(kind.unwrap_or("unknown_price"))
    .bind(workspace)
    .bind(subscription)
    .bind(email)
    .bind(state.unwrap_or("held"))
    .bind(at)
    .execute(&store.db)
    .await
    .expect("case");
}

#[tokio::test]
async fn cases_are_listed_newest_first_filtered_and_paged() {
    let store = fresh().await;
    let none = [None; 5];
    case(&store, "case_a", 200, none).await;
    case(&store, "case_B", 200, none).await;
    case(&store, "case_c", 200, none).await;
    case(
        &store,
        "case_old",
        100,
        [Some("missing_workspace"), None, None, None, None],
    )
    .await;
    case(
        &store,
        "case_done",
        300,
        [
            Some("email_mismatch"),
            Some("resolved"),
            Some("ws_acme"),
            Some("sub_1"),
            Some("buyer@else.test"),
        ],
    )
    .await;
    let list = |query: CaseQuery| {
        let store = &store;
        async move {
            let page = store.cases(&query).await.expect("cases");
            page.items.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(CaseQuery {
            limit: 10,
            ..CaseQuery::default()
        })
        .await,
        ["case_done", "case_c", "case_a", "case_B", "case_old"]
    );
    let pages = all_pages(
        |after| {
            let store = &store;
            async move {
                store
                    .cases(&CaseQuery {
                        limit: 2,
                        after,
                        ..CaseQuery::default()
                    })
                    .await
                    .expect("page")
            }
        },
        |c| c.id.clone(),
    )
    .await;
    assert_eq!(
        pages,
        [
            vec!["case_done", "case_c"],
            vec!["case_a", "case_B"],
            vec!["case_old"]
        ]
    );
    assert_eq!(
        list(CaseQuery {
            state: Some("held".into()),
            kind: Some("unknown_price".into()),
            limit: 10,
            ..CaseQuery::default()
        })
        .await,
        ["case_c", "case_a", "case_B"]
    );
    for query in [
        CaseQuery {
            workspace: Some(ws("ws_acme")),
            ..CaseQuery::default()
        },
        CaseQuery {
            stripe_id: Some("sub_1".into()),
            ..CaseQuery::default()
        },
        CaseQuery {
            email: Some("buyer@else.test".into()),
            ..CaseQuery::default()
        },
        CaseQuery {
            state: Some("resolved".into()),
            ..CaseQuery::default()
        },
    ] {
        assert_eq!(
            list(CaseQuery {
                limit: 10,
                ..query.clone()
            })
            .await,
            ["case_done"],
            "{query:?}"
        );
    }
    assert_eq!(
        list(CaseQuery::default()).await,
        ["case_done"],
        "a limit of 0 is a page of one"
    );
    for (before, expected) in [
        (100, &[][..]),
        (101, &["case_old"][..]),
        (200, &["case_old"][..]),
        (201, &["case_c", "case_a", "case_B", "case_old"][..]),
    ] {
        assert_eq!(
            list(CaseQuery {
                created_before: Some(Timestamp::from_unix(before)),
                limit: 10,
                ..CaseQuery::default()
            })
            .await,
            expected,
            "opened strictly before {before}"
        );
    }
    assert_eq!(
        list(CaseQuery {
            created_before: Some(Timestamp::from_unix(201)),
            state: Some("held".into()),
            limit: 2,
            ..CaseQuery::default()
        })
        .await,
        ["case_c", "case_a"],
        "with the other filters and the limit"
    );
}

#[tokio::test]
async fn events_are_listed_newest_first_filtered_and_paged() {
    let store = fresh().await;
    let events = [
        ("evt_a", 100_i64, EventKeys::default(), "invoice.paid"),
        ("evt_B", 100, EventKeys::default(), "invoice.paid"),
        (
            "evt_hinted",
            50,
            EventKeys {
                workspace_hint: Some("ws_acme".into()),
                purchaser_email: Some("buyer@else.test".into()),
                ..EventKeys::default()
            },
            "checkout.session.completed",
        ),
        (
            "evt_sub",
            150,
            EventKeys {
                subscription: Some("sub_1".into()),
                ..EventKeys::default()
            },
            "customer.subscription.updated",
        ),
        ("evt_old", 10, EventKeys::default(), "customer.created"),
    ];
    let new: Vec<NewEvent> = events
        .iter()
        .map(|(id, ago, keys, kind)| NewEvent {
            keys: keys.clone(),
            object_id: Some(format!("obj_{id}")),
            ..test_event(id, kind, NOW.plus_seconds(-ago))
        })
        .collect();
    store.insert_events(&new).await.expect("insert");
    // The subscription's event is linked to ws_acme by its derivation.
    let read = store
        .read_scope(&event_id("evt_sub"), &EventKeys::default(), History::Full)
        .await
        .expect("read");
    let outcomes = store
        .commit_scopes(
            &[ScopeCommit {
                claimed: event_id("evt_sub"),
                versions: read.versions,
                write: ScopeWrite {
                    event_statuses: vec![EventStatusWrite {
                        id: event_id("evt_sub"),
                        status: EventStatus::Processed,
                        outcome: "provisioned".into(),
                        scenario: Some("S2".into()),
                    }],
                    links: vec![("subscription".into(), "sub_1".into(), ws("ws_acme"))],
                    ..ScopeWrite::default()
                },
            }],
            NOW,
        )
        .await
        .expect("commit");
    assert_eq!(outcomes, [crate::CommitOutcome::Written]);

    let list = |query: EventQuery| {
        let store = &store;
        async move {
            let page = store.events(&query).await.expect("events");
            page.items
                .iter()
                .map(|e| e.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await,
        ["evt_old", "evt_hinted", "evt_a", "evt_B", "evt_sub"]
    );
    let pages = all_pages(
        |after| {
            let store = &store;
            async move {
                store
                    .events(&EventQuery {
                        limit: 2,
                        after,
                        ..EventQuery::default()
                    })
                    .await
                    .expect("page")
            }
        },
        |e| e.id.to_string(),
    )
    .await;
    assert_eq!(
        pages,
        [
            vec!["evt_old", "evt_hinted"],
            vec!["evt_a", "evt_B"],
            vec!["evt_sub"]
        ]
    );
    let expectations: [(EventQuery, &[&str]); 7] = [
        (
            EventQuery {
                event_type: Some("invoice.paid".into()),
                ..EventQuery::default()
            },
            &["evt_a", "evt_B"],
        ),
        (
            EventQuery {
                status: Some(EventStatus::Processed),
                ..EventQuery::default()
            },
            &["evt_sub"],
        ),
        (
            EventQuery {
                outcome: Some("provisioned".into()),
                scenario: Some("S2".into()),
                ..EventQuery::default()
            },
            &["evt_sub"],
        ),
        (
            EventQuery {
                workspace: Some(ws("ws_acme")),
                ..EventQuery::default()
            },
            &["evt_hinted", "evt_sub"],
        ),
        (
            EventQuery {
                stripe_id: Some("obj_evt_a".into()),
                ..EventQuery::default()
            },
            &["evt_a"],
        ),
        (
            EventQuery {
                purchaser_email: Some("buyer@else.test".into()),
                ..EventQuery::default()
            },
            &["evt_hinted"],
        ),
        (
            EventQuery {
                since: Some(NOW.plus_seconds(-50)),
                ..EventQuery::default()
            },
            &["evt_old", "evt_hinted"],
        ),
    ];
    for (query, expected) in expectations {
        assert_eq!(
            list(EventQuery {
                limit: 10,
                ..query.clone()
            })
            .await,
            expected,
            "{query:?}"
        );
    }
    let summary = store
        .events(&EventQuery {
            stripe_id: Some("sub_1".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .items;
    assert_eq!(summary.len(), 1);
    let summary = &summary[0];
    assert_eq!(summary.event_type, "customer.subscription.updated");
    assert_eq!(summary.received_at, NOW.plus_seconds(-150));
    assert_eq!(summary.created, NOW.plus_seconds(-150));
    assert_eq!(summary.status, EventStatus::Processed);
    assert_eq!(summary.subscription_id.as_deref(), Some("sub_1"));
}

/// One event of [`events_filter_alone_and_together_and_page_alike`]: its
/// id, type, age (seconds before [`NOW`]), object, keys and state.
struct Row {
    id: &'static str,
    kind: &'static str,
    ago: i64,
    object: &'static str,
    keys: [Option<&'static str>; 7],
    state: (&'static str, Option<&'static str>, Option<&'static str>),
}

/// The ids of the events a query lists over every page of `limit`.
async fn events_listed(store: &TestStore, query: &EventQuery, limit: u32) -> Vec<Vec<String>> {
    all_pages(
        |after| {
            let query = query.clone();
            async move {
                store
                    .events(&EventQuery {
                        limit,
                        after,
                        ..query
                    })
                    .await
                    .expect("page")
            }
        },
        |e| e.id.to_string(),
    )
    .await
}

/// Every filter of the events list alone, several together, all at once,
/// and each list paged by its cursor, one and two a page: every filter
/// set is a condition of its own in the statement (or none, when not set),
/// each looked up by its own index.
#[tokio::test]
async fn events_filter_alone_and_together_and_page_alike() {
    let store = fresh().await;
    // keys: customer, subscription, session, workspace hint, purchaser's
    // email, charge, payment intent. state: status, outcome, scenario.
    let rows = [
        Row {
            id: "evt_checkout",
            kind: "checkout.session.completed",
            ago: 100,
            object: "cs_acme",
            keys: [
                Some("cus_acme"),
                Some("sub_acme"),
                Some("cs_acme"),
                Some("ws_acme"),
                Some("ann@acme.test"),
                None,
                None,
            ],
            state: ("processed", Some("provisioned"), Some("S1")),
        },
        // Two at the same moment: ordered by id, byte by byte (`a` after `B`).
        Row {
            id: "evt_paid_B",
            kind: "invoice.paid",
            ago: 80,
            object: "in_1",
            keys: [
                Some("cus_acme"),
                Some("sub_acme"),
                None,
                None,
                None,
                Some("ch_1"),
                Some("pi_1"),
            ],
            state: ("processed", Some("billed"), Some("S2")),
        },
        Row {
            id: "evt_paid_a",
            kind: "invoice.paid",
            ago: 80,
            object: "in_2",
            keys: [
                None,
                Some("sub_acme"),
                None,
                None,
                None,
                Some("ch_2"),
                Some("pi_2"),
            ],
            state: ("processed", Some("billed"), Some("S2")),
        },
        // Linked to ws_acme by its session only.
        Row {
            id: "evt_session",
            kind: "checkout.session.expired",
            ago: 75,
            object: "cs_acme2",
            keys: [None, None, Some("cs_acme2"), None, None, None, None],
            state: ("ignored", Some("irrelevant"), None),
        },
        Row {
            id: "evt_beta",
            kind: "checkout.session.completed",
            ago: 70,
            object: "cs_beta",
            keys: [
                Some("cus_beta"),
                None,
                Some("cs_beta"),
                Some("ws_beta"),
                Some("ann@acme.test"),
                None,
                None,
            ],
            state: ("processed", Some("provisioned"), Some("S1")),
        },
        Row {
            id: "evt_held",
            kind: "customer.subscription.deleted",
            ago: 60,
            object: "sub_acme",
            keys: [
                Some("cus_acme"),
                Some("sub_acme"),
                None,
                None,
                None,
                None,
                None,
            ],
            state: ("held", Some("missing_workspace"), Some("S9")),
        },
        Row {
            id: "evt_paid_beta",
            kind: "invoice.paid",
            ago: 50,
            object: "in_3",
            keys: [
                Some("cus_beta"),
                None,
                None,
                None,
                None,
                Some("ch_3"),
                Some("pi_3"),
            ],
            state: ("processed", Some("billed"), Some("S2")),
        },
        // Linked to no workspace.
        Row {
            id: "evt_stray",
            kind: "invoice.paid",
            ago: 40,
            object: "in_4",
            keys: [
                Some("cus_stray"),
                None,
                None,
                None,
                Some("bob@stray.test"),
                None,
                None,
            ],
            state: ("received", None, None),
        },
        // Linked to ws_acme by its customer only.
        Row {
            id: "evt_newest",
            kind: "customer.created",
            ago: 10,
            object: "cus_acme",
            keys: [Some("cus_acme"), None, None, None, None, None, None],
            state: ("received", None, None),
        },
    ];
    let new: Vec<NewEvent> = rows
        .iter()
        .map(|row| {
            let key = |n: usize| row.keys[n].map(str::to_owned);
            NewEvent {
                keys: EventKeys {
                    customer: key(0),
                    subscription: key(1),
                    session: key(2),
                    workspace_hint: key(3),
                    purchaser_email: key(4),
                    charge: key(5),
                    payment_intent: key(6),
                },
                object_id: Some(row.object.into()),
                ..test_event(row.id, row.kind, NOW.plus_seconds(-row.ago))
            }
        })
        .collect();
    store.insert_events(&new).await.expect("insert");
    for row in &rows {
        let (status, outcome, scenario) = row.state;
        sqlx::query(
            "UPDATE stripe_events SET status = $1, outcome = $2, scenario = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(outcome)
        .bind(scenario)
        .bind(row.id)
        .execute(&store.db)
        .await
        .expect("state");
    }
    for (kind, stripe_id, workspace) in [
        ("customer", "cus_acme", "ws_acme"),
        ("subscription", "sub_acme", "ws_acme"),
        ("session", "cs_acme2", "ws_acme"),
        ("customer", "cus_beta", "ws_beta"),
    ] {
        link(&store, kind, stripe_id, workspace).await;
    }

    let q = EventQuery::default;
    let acme = || Some(ws("ws_acme"));
    let text = |s: &str| Some(s.to_owned());
    let since = |ago: i64| Some(NOW.plus_seconds(-ago));
    let expectations: Vec<(EventQuery, &[&str])> = vec![
        (
            q(),
            &[
                "evt_newest",
                "evt_stray",
                "evt_paid_beta",
                "evt_held",
                "evt_beta",
                "evt_session",
                "evt_paid_a",
                "evt_paid_B",
                "evt_checkout",
            ],
        ),
        // Each filter alone.
        (
            EventQuery {
                event_type: text("invoice.paid"),
                ..q()
            },
            &["evt_stray", "evt_paid_beta", "evt_paid_a", "evt_paid_B"],
        ),
        (
            EventQuery {
                status: Some(EventStatus::Processed),
                ..q()
            },
            &[
                "evt_paid_beta",
                "evt_beta",
                "evt_paid_a",
                "evt_paid_B",
                "evt_checkout",
            ],
        ),
        (
            EventQuery {
                status: Some(EventStatus::Held),
                ..q()
            },
            &["evt_held"],
        ),
        (
            EventQuery {
                status: Some(EventStatus::Failed),
                ..q()
            },
            &[],
        ),
        (
            EventQuery {
                outcome: text("billed"),
                ..q()
            },
            &["evt_paid_beta", "evt_paid_a", "evt_paid_B"],
        ),
        (
            EventQuery {
                scenario: text("S1"),
                ..q()
            },
            &["evt_beta", "evt_checkout"],
        ),
        (
            EventQuery {
                workspace: acme(),
                ..q()
            },
            &[
                "evt_newest",
                "evt_held",
                "evt_session",
                "evt_paid_a",
                "evt_paid_B",
                "evt_checkout",
            ],
        ),
        (
            EventQuery {
                workspace: Some(ws("ws_beta")),
                ..q()
            },
            &["evt_paid_beta", "evt_beta"],
        ),
        (
            EventQuery {
                workspace: Some(ws("ws_none")),
                ..q()
            },
            &[],
        ),
        (
            EventQuery {
                purchaser_email: text("ann@acme.test"),
                ..q()
            },
            &["evt_beta", "evt_checkout"],
        ),
        (
            EventQuery {
                purchaser_email: text("nobody@acme.test"),
                ..q()
            },
            &[],
        ),
        (
            EventQuery {
                since: since(60),
                ..q()
            },
            &["evt_newest", "evt_stray", "evt_paid_beta", "evt_held"],
        ),
        // Together.
        (
            EventQuery {
                workspace: acme(),
                event_type: text("invoice.paid"),
                ..q()
            },
            &["evt_paid_a", "evt_paid_B"],
        ),
        (
            EventQuery {
                workspace: acme(),
                status: Some(EventStatus::Processed),
                ..q()
            },
            &["evt_paid_a", "evt_paid_B", "evt_checkout"],
        ),
        (
            EventQuery {
                workspace: acme(),
                since: since(75),
                ..q()
            },
            &["evt_newest", "evt_held", "evt_session"],
        ),
        (
            EventQuery {
                workspace: acme(),
                stripe_id: text("cus_beta"),
                ..q()
            },
            &[],
        ),
        (
            EventQuery {
                workspace: acme(),
                stripe_id: text("sub_acme"),
                event_type: text("invoice.paid"),
                ..q()
            },
            &["evt_paid_a", "evt_paid_B"],
        ),
        (
            EventQuery {
                stripe_id: text("cus_acme"),
                status: Some(EventStatus::Received),
                ..q()
            },
            &["evt_newest"],
        ),
        (
            EventQuery {
                purchaser_email: text("ann@acme.test"),
                workspace: Some(ws("ws_beta")),
                ..q()
            },
            &["evt_beta"],
        ),
        (
            EventQuery {
                purchaser_email: text("ann@acme.test"),
                outcome: text("provisioned"),
                scenario: text("S1"),
                since: since(90),
                ..q()
            },
            &["evt_beta"],
        ),
        (
            EventQuery {
                event_type: text("invoice.paid"),
                status: Some(EventStatus::Processed),
                outcome: text("billed"),
                scenario: text("S2"),
                ..q()
            },
            &["evt_paid_beta", "evt_paid_a", "evt_paid_B"],
        ),
        // Every filter at once, then with one of them missing the event.
        (
            EventQuery {
                event_type: text("checkout.session.completed"),
                status: Some(EventStatus::Processed),
                outcome: text("provisioned"),
                scenario: text("S1"),
                workspace: acme(),
                stripe_id: text("cs_acme"),
                purchaser_email: text("ann@acme.test"),
                since: since(100),
                ..q()
            },
            &["evt_checkout"],
        ),
        (
            EventQuery {
                event_type: text("checkout.session.completed"),
                status: Some(EventStatus::Processed),
                outcome: text("provisioned"),
                scenario: text("S1"),
                workspace: acme(),
                stripe_id: text("cs_acme"),
                purchaser_email: text("ann@acme.test"),
                since: since(99),
                ..q()
            },
            &[],
        ),
    ];
    // A Stripe id in each of the columns it is looked for in.
    let by_stripe_id: [(&str, &[&str]); 10] = [
        ("evt_beta", &["evt_beta"]),
        ("in_1", &["evt_paid_B"]),
        ("cus_beta", &["evt_paid_beta", "evt_beta"]),
        (
            "cus_acme",
            &["evt_newest", "evt_held", "evt_paid_B", "evt_checkout"],
        ),
        (
            "sub_acme",
            &["evt_held", "evt_paid_a", "evt_paid_B", "evt_checkout"],
        ),
        ("cs_acme", &["evt_checkout"]),
        ("cs_acme2", &["evt_session"]),
        ("ch_2", &["evt_paid_a"]),
        ("pi_3", &["evt_paid_beta"]),
        ("cus_nobody", &[]),
    ];
    let expectations =
        expectations
            .into_iter()
            .chain(by_stripe_id.into_iter().map(|(id, expected)| {
                (
                    EventQuery {
                        stripe_id: text(id),
                        ..q()
                    },
                    expected,
                )
            }));
    for (query, expected) in expectations {
        let whole = events_listed(&store, &query, 50).await;
        assert_eq!(whole.concat(), expected, "{query:?}");
        assert!(whole.len() == 1, "one page of 50: {query:?}");
        // Paged by the cursor: the same events, none twice, none missed.
        for limit in [1, 2] {
            let pages = events_listed(&store, &query, limit).await;
            assert_eq!(pages.concat(), expected, "pages of {limit}: {query:?}");
            assert!(
                pages.iter().all(|page| page.len() <= limit as usize),
                "pages of {limit}: {query:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_outbox_and_the_audit_log_are_paged_newest_first() {
    let store = fresh().await;
    for (i, (kind, recipient, workspace)) in [
        ("onboarding", "a@acme.test", Some("ws_acme")),
        ("receipt", "b@acme.test", Some("ws_acme")),
        ("onboarding", "c@beta.test", Some("ws_beta")),
        ("onboarding", "a@acme.test", None),
        ("case_opened", "support@admit.test", None),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO outbox (idempotency_key, kind, recipient, workspace_id, payload, state,
                 next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, '{}', $5, 1, 1)",
        )
        .bind(format!("k{i}"))
        .bind(kind)
        .bind(recipient)
        .bind(workspace)
        .bind(if i == 1 { "sent" } else { "pending" })
        .execute(&store.db)
        .await
        .expect("outbox");
    }
    let pages = all_pages(
        |after| {
            let store = &store;
            async move {
                store
                    .outbox(&OutboxQuery {
                        limit: 2,
                        after,
                        ..OutboxQuery::default()
                    })
                    .await
                    .expect("page")
            }
        },
        |m| m.idempotency_key.clone(),
    )
    .await;
    assert_eq!(pages, [vec!["k4", "k3"], vec!["k2", "k1"], vec!["k0"]]);
    let keys = |page: Page<crate::OutboxRow>| -> Vec<String> {
        page.items.into_iter().map(|m| m.idempotency_key).collect()
    };
    for (query, expected) in [
        (
            OutboxQuery {
                state: Some("sent".into()),
                ..OutboxQuery::default()
            },
            vec!["k1"],
        ),
        (
            OutboxQuery {
                kind: Some("onboarding".into()),
                recipient: Some("a@acme.test".into()),
                ..OutboxQuery::default()
            },
            vec!["k3", "k0"],
        ),
        (
            OutboxQuery {
                workspace: Some(ws("ws_acme")),
                ..OutboxQuery::default()
            },
            vec!["k1", "k0"],
        ),
    ] {
        assert_eq!(
            keys(
                store
                    .outbox(&OutboxQuery {
                        limit: 10,
                        ..query.clone()
                    })
                    .await
                    .expect("outbox")
            ),
            expected,
            "{query:?}"
        );
    }

    for (n, (actor, workspace)) in [
        ("api", Some("ws_acme")),
        ("operator:ops", Some("ws_acme")),
        ("system", None),
        ("api", Some("ws_beta")),
        ("api", Some("ws_acme")),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .append_audit(&AuditEntry {
                at: NOW,
                actor: actor.into(),
                action: "test.entry".into(),
                workspace_id: workspace.map(ws),
                subject: Some(format!("n:{n}")),
                before: None,
                after: None,
                cause: None,
            })
            .await
            .expect("audit");
    }
    let subject = |e: &crate::StoredAuditEntry| e.entry.subject.clone().unwrap_or_default();
    let pages = all_pages(
        |after| {
            let store = &store;
            async move {
                store
                    .audit(&AuditQuery {
                        limit: 3,
                        after,
                        ..AuditQuery::default()
                    })
                    .await
                    .expect("page")
            }
        },
        subject,
    )
    .await;
    assert_eq!(pages, [vec!["n:4", "n:3", "n:2"], vec!["n:1", "n:0"]]);
    let filtered = store
        .audit(&AuditQuery {
            workspace: Some(ws("ws_acme")),
            actor: Some("api".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        filtered.items.iter().map(subject).collect::<Vec<_>>(),
        ["n:4", "n:0"]
    );
    assert_eq!(filtered.next, None);
    // Each filter alone and both, paged by the cursor.
    for (workspace, actor, limit, expected) in [
        (
            Some("ws_acme"),
            None,
            1,
            vec![vec!["n:4"], vec!["n:1"], vec!["n:0"]],
        ),
        (
            Some("ws_acme"),
            None,
            2,
            vec![vec!["n:4", "n:1"], vec!["n:0"]],
        ),
        (Some("ws_beta"), None, 1, vec![vec!["n:3"]]),
        (None, Some("api"), 2, vec![vec!["n:4", "n:3"], vec!["n:0"]]),
        (None, Some("system"), 2, vec![vec!["n:2"]]),
        (
            Some("ws_acme"),
            Some("api"),
            1,
            vec![vec!["n:4"], vec!["n:0"]],
        ),
        (Some("ws_beta"), Some("operator:ops"), 1, vec![vec![]]),
        (Some("ws_none"), None, 1, vec![vec![]]),
    ] {
        let pages = all_pages(
            |after| {
                let store = &store;
                async move {
                    store
                        .audit(&AuditQuery {
                            workspace: workspace.map(ws),
                            actor: actor.map(str::to_owned),
                            limit,
                            after,
                        })
                        .await
                        .expect("page")
                }
            },
            subject,
        )
        .await;
        assert_eq!(pages, expected, "{workspace:?} {actor:?} by {limit}");
    }
    let first = store
        .audit(&AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        first.next.as_ref().map(|c| c.encode()),
        Some(format!("a.{}.{}", first.items[0].id, first.items[0].id)),
        "the cursor names the last entry of the page"
    );
    assert!(Cursor::decode(&first.next.expect("next").encode(), ListKind::Audit).is_some());
}

/// A workspace created `ago` seconds before [`NOW`], owned by `owner`.
async fn workspace(store: &TestStore, id: &str, name: &str, owner: &str, ago: i64) {
    store
        .create_workspace(
            &ws(id),
            name,
            &email(owner),
            &Actor::App,
            NOW.plus_seconds(-ago),
        )
        .await
        .expect("workspace");
}

async fn link(store: &TestStore, kind: &str, stripe_id: &str, workspace: &str) {
    sqlx::query("INSERT INTO stripe_links (kind, stripe_id, workspace_id) VALUES ($1, $2, $3)")
        .bind(kind)
        .bind(stripe_id)
        .bind(workspace)
        .execute(&store.db)
        .await
        .expect("link");
}

/// The ids of the workspaces a query lists, over every page of `limit`.
async fn listed(store: &TestStore, query: WorkspaceQuery, limit: u32) -> Vec<String> {
    all_pages(
        |after| {
            let query = query.clone();
            async move {
                store
                    .workspaces(&WorkspaceQuery {
                        limit,
                        after,
                        ..query
                    })
                    .await
                    .expect("page")
            }
        },
        |w| w.id.to_string(),
    )
    .await
    .concat()
}

#[tokio::test]
async fn workspaces_are_listed_newest_first_searched_and_paged() {
    let store = fresh().await;
    workspace(&store, "ws_acme", "Acme 50% Off", "ann@acme.test", 400).await;
    workspace(&store, "ws_five", "500 Club", "bob@five.test", 300).await;
    workspace(&store, "ws_a", "Tie A", "cy@tie.test", 200).await;
    workspace(&store, "ws_B", "Tie B", "cy@tie.test", 200).await;
    workspace(&store, "wsxa", "No Underscore", "dee@x.test", 200).await;
    workspace(&store, "ws_new", "Newest", "eve@new.test", 100).await;
    store
        .put_member(
            &ws("ws_acme"),
            &email("cy@tie.test"),
            Role::Member,
            &Actor::App,
            NOW,
        )
        .await
        .expect("member");
    sqlx::query(
        "INSERT INTO billing_states (workspace_id, subscription_status, subscription_plan,
             stripe_customer_id, stripe_subscription_id, updated_at)
         VALUES ('ws_acme', 'active', 'pro', 'cus_acme', 'sub_acme', 1)",
    )
    .execute(&store.db)
    .await
    .expect("billing state");
    // As the derivation that billed it links them.
    link(&store, "customer", "cus_acme", "ws_acme").await;
    link(&store, "subscription", "sub_acme", "ws_acme").await;
    sqlx::query(
        "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
         VALUES ('customer', 'cus_bound', 'ws_five', 'test', 1)",
    )
    .execute(&store.db)
    .await
    .expect("binding");

    let list = |query: WorkspaceQuery| {
        let store = &store;
        async move {
            let page = store.workspaces(&query).await.expect("workspaces");
            page.items
                .iter()
                .map(|w| w.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    // Ids that tie on their time are in byte order: `ws_B` before `ws_a`.
    let newest_first = ["ws_new", "wsxa", "ws_a", "ws_B", "ws_five", "ws_acme"];
    assert_eq!(
        list(WorkspaceQuery {
            limit: 10,
            ..WorkspaceQuery::default()
        })
        .await,
        newest_first
    );
    for limit in [1, 2, 4] {
        let pages = all_pages(
            |after| {
                let store = &store;
                async move {
                    store
                        .workspaces(&WorkspaceQuery {
                            limit,
                            after,
                            ..WorkspaceQuery::default()
                        })
                        .await
                        .expect("page")
                }
            },
            |w| w.id.to_string(),
        )
        .await;
        assert!(pages.iter().all(|p| p.len() <= limit as usize));
        assert_eq!(pages.concat(), newest_first, "pages of {limit}");
    }
    let expectations: [(WorkspaceQuery, &[&str]); 9] = [
        (
            WorkspaceQuery {
                text: Some("ACME".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_acme"],
        ),
        (
            WorkspaceQuery {
                text: Some("tie".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_a", "ws_B"],
        ),
        (
            WorkspaceQuery {
                text: Some("50%".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_acme"],
        ),
        (
            WorkspaceQuery {
                text: Some("s_a".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_a", "ws_acme"],
        ),
        (
            WorkspaceQuery {
                text: Some("%".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_acme"],
        ),
        (
            WorkspaceQuery {
                member_email: Some("cy@tie.test".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_a", "ws_B", "ws_acme"],
        ),
        (
            WorkspaceQuery {
                stripe_id: Some("sub_acme".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_acme"],
        ),
        (
            WorkspaceQuery {
                stripe_id: Some("cus_bound".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_five"],
        ),
        (
            WorkspaceQuery {
                text: Some("tie b".into()),
                member_email: Some("cy@tie.test".into()),
                ..WorkspaceQuery::default()
            },
            &["ws_B"],
        ),
    ];
    for (query, expected) in expectations {
        assert_eq!(
            list(WorkspaceQuery {
                limit: 10,
                ..query.clone()
            })
            .await,
            expected,
            "{query:?}"
        );
    }
    assert_eq!(
        list(WorkspaceQuery {
            stripe_id: Some("cus_acme".into()),
            limit: 10,
            ..WorkspaceQuery::default()
        })
        .await,
        ["ws_acme"],
        "the billing state's customer"
    );

    let summaries = store
        .workspaces(&WorkspaceQuery {
            limit: 10,
            ..WorkspaceQuery::default()
        })
        .await
        .expect("workspaces")
        .items;
    let acme = summaries
        .iter()
        .find(|w| w.id == ws("ws_acme"))
        .expect("acme");
    assert_eq!(acme.name, "Acme 50% Off");
    assert_eq!(acme.created_at, NOW.plus_seconds(-400));
    assert_eq!(acme.subscription_status.as_deref(), Some("active"));
    assert_eq!(acme.subscription_plan.as_deref(), Some("pro"));
    assert_eq!(acme.members, 2);
    let new = &summaries[0];
    assert_eq!(new.subscription_status, None);
    assert_eq!(new.subscription_plan, None);
    assert_eq!(new.members, 1);

    let first = store
        .workspaces(&WorkspaceQuery {
            limit: 1,
            ..WorkspaceQuery::default()
        })
        .await
        .expect("workspaces");
    let cursor = first.next.expect("more than one page").encode();
    assert_eq!(cursor, format!("w.{}.ws_new", NOW.unix() - 100));
    assert!(Cursor::decode(&cursor, ListKind::Workspaces).is_some());
    assert_eq!(Cursor::decode(&cursor, ListKind::Cases), None);
}

/// Any Stripe id of a workspace finds it: what its events link to it (a
/// checkout session, a subscription it had before the current one), what
/// is bound to it, a checkout admit created for it.
#[tokio::test]
async fn a_stripe_id_finds_the_workspaces_it_belongs_to_current_or_past() {
    let store = fresh().await;
    workspace(&store, "ws_acme", "Acme", "ann@acme.test", 400).await;
    workspace(&store, "ws_acme_eu", "Acme EU", "ann@acme.test", 300).await;
    workspace(&store, "ws_beta", "Beta", "bob@beta.test", 200).await;
    workspace(&store, "ws_other", "Other", "cy@other.test", 100).await;
    sqlx::query(
        "INSERT INTO billing_states (workspace_id, subscription_status, subscription_plan,
             stripe_customer_id, stripe_subscription_id, updated_at)
         VALUES ('ws_acme', 'active', 'pro', 'cus_acme', 'sub_new', 1)",
    )
    .execute(&store.db)
    .await
    .expect("billing state");
    for (kind, stripe_id, workspace) in [
        ("customer", "cus_acme", "ws_acme"),
        ("subscription", "sub_new", "ws_acme"),
        // Replaced by sub_new: no longer in the billing state, still linked.
        ("subscription", "sub_old", "ws_acme"),
        ("session", "cs_test_a1", "ws_acme"),
        // One customer, two workspaces.
        ("customer", "cus_acme", "ws_acme_eu"),
        ("subscription", "sub_eu", "ws_acme_eu"),
    ] {
        link(&store, kind, stripe_id, workspace).await;
    }
    for (kind, stripe_id) in [("customer", "cus_beta"), ("purchase", "sub_beta")] {
        sqlx::query(
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ($1, $2, 'ws_beta', 'operator', 1)",
        )
        .bind(kind)
        .bind(stripe_id)
        .execute(&store.db)
        .await
        .expect("binding");
    }
    sqlx::query(
        "INSERT INTO checkout_intents (session_id, workspace_id, initiator_email, plan, created_at)
         VALUES ('cs_test_beta', 'ws_beta', 'bob@beta.test', 'pro', 1)",
    )
    .execute(&store.db)
    .await
    .expect("checkout intent");

    let by_id = |stripe_id: &str| WorkspaceQuery {
        stripe_id: Some(stripe_id.into()),
        ..WorkspaceQuery::default()
    };
    for (stripe_id, expected) in [
        ("cs_test_a1", &["ws_acme"][..]),
        ("sub_old", &["ws_acme"]),
        ("sub_new", &["ws_acme"]),
        ("cus_acme", &["ws_acme_eu", "ws_acme"]),
        ("sub_eu", &["ws_acme_eu"]),
        ("cus_beta", &["ws_beta"]),
        ("sub_beta", &["ws_beta"]),
        ("cs_test_beta", &["ws_beta"]),
        ("cs_test_unknown", &[]),
        ("ws_acme", &[]),
    ] {
        for limit in [1, 10] {
            assert_eq!(
                listed(&store, by_id(stripe_id), limit).await,
                expected,
                "{stripe_id}, pages of {limit}"
            );
        }
    }
    // With the other filters.
    assert_eq!(
        listed(
            &store,
            WorkspaceQuery {
                text: Some("eu".into()),
                ..by_id("cus_acme")
            },
            10
        )
        .await,
        ["ws_acme_eu"]
    );
    assert_eq!(
        listed(
            &store,
            WorkspaceQuery {
                member_email: Some("bob@beta.test".into()),
                ..by_id("cus_acme")
            },
            10
        )
        .await,
        Vec::<String>::new()
    );
    let acme = store
        .workspaces(&WorkspaceQuery {
            limit: 10,
            ..by_id("sub_old")
        })
        .await
        .expect("workspaces")
        .items;
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].subscription_status.as_deref(), Some("active"));
    assert_eq!(acme[0].subscription_plan.as_deref(), Some("pro"));
    assert_eq!(acme[0].members, 1);
}

/// The text search folds ASCII letters and nothing else, on every backend
/// alike: SQLite's `LIKE` does no more, and PostgreSQL is made to do no more.
#[tokio::test]
async fn the_text_search_folds_ascii_case_only_alike_on_every_backend() {
    let store = fresh().await;
    workspace(
        &store,
        "ws_MixedCase",
        "MiXeD Case Ltd",
        "ann@mixed.test",
        300,
    )
    .await;
    workspace(&store, "ws_cafe", "Café Étoile", "bob@cafe.test", 200).await;
    workspace(&store, "ws_street", "Straße", "cy@strasse.test", 100).await;
    let search = |text: &str| WorkspaceQuery {
        text: Some(text.into()),
        ..WorkspaceQuery::default()
    };
    for (text, expected) in [
        ("mixed case", &["ws_MixedCase"][..]),
        ("MIXED CASE LTD", &["ws_MixedCase"]),
        ("ws_mixedcase", &["ws_MixedCase"]),
        ("WS_MIXEDCASE", &["ws_MixedCase"]),
        ("CAF", &["ws_cafe"]),
        ("Café", &["ws_cafe"]),
        ("café étoile", &[]),
        ("CAFÉ", &[]),
        ("Étoile", &["ws_cafe"]),
        ("étoile", &[]),
        ("STRAßE", &["ws_street"]),
        ("STRASSE", &[]),
        ("STRAẞE", &[]),
    ] {
        assert_eq!(listed(&store, search(text), 10).await, expected, "{text:?}");
    }
}
