//! The per-id versions a derivation's commit checks move whenever a row it
//! reads changes, whoever changes it: every table a scope reads has its
//! triggers, in both dialects. A table whose trigger is missing would let
//! a derivation commit over a change it never saw.

use super::fresh;

/// The version of each key (0 for one never bumped).
async fn versions(store: &super::TestStore, keys: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for key in keys {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM scope_versions WHERE key = $1")
                .bind(*key)
                .fetch_optional(&store.db)
                .await
                .expect("version");
        out.push(version.unwrap_or(0));
    }
    out
}

#[tokio::test]
async fn every_change_to_a_row_a_scope_reads_moves_the_versions_of_its_ids() {
    let store = fresh().await;
    // (statement, the keys it must move)
    let changes: &[(&str, &[&str])] = &[
        (
            "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_v', 'V', 1)",
            &["w:ws_v"],
        ),
        ("UPDATE workspaces SET name = 'W' WHERE id = 'ws_v'", &["w:ws_v"]),
        (
            "INSERT INTO members (workspace_id, email, role, added_at)
             VALUES ('ws_v', 'ann@v.test', 'owner', 1)",
            &["w:ws_v", "e:ann@v.test"],
        ),
        (
            "UPDATE members SET role = 'admin' WHERE email = 'ann@v.test'",
            &["w:ws_v", "e:ann@v.test"],
        ),
        (
            "DELETE FROM members WHERE email = 'ann@v.test'",
            &["w:ws_v", "e:ann@v.test"],
        ),
        (
            "INSERT INTO checkout_intents (session_id, workspace_id, initiator_email, plan, created_at)
             VALUES ('cs_v', 'ws_v', 'ann@v.test', 'pro', 1)",
            &["cs_v", "w:ws_v"],
        ),
        (
            "INSERT INTO bindings (kind, stripe_id, workspace_id, source, created_at)
             VALUES ('customer', 'cus_v', 'ws_v', 'api', 1)",
            &["cus_v", "w:ws_v"],
        ),
        (
            "INSERT INTO stripe_links (kind, stripe_id, workspace_id)
             VALUES ('subscription', 'sub_v', 'ws_v')",
            &["sub_v", "w:ws_v"],
        ),
        (
            "INSERT INTO billing_states (workspace_id, cancel_at_period_end, updated_at)
             VALUES ('ws_v', FALSE, 1)",
            &["w:ws_v"],
        ),
        (
            "UPDATE billing_states SET subscription_plan = 'pro' WHERE workspace_id = 'ws_v'",
            &["w:ws_v"],
        ),
        (
            "INSERT INTO cases (id, case_key, kind, workspace_id, stripe_subscription_id,
                 event_ids, details, state, created_at)
             VALUES ('case_v', 'key_v', 'email_mismatch', 'ws_v', 'sub_c', '[]', '{}', 'held', 1)",
            &["k:key_v", "sub_c", "w:ws_v"],
        ),
        (
            "UPDATE cases SET state = 'resolved' WHERE id = 'case_v'",
            &["k:key_v", "sub_c", "w:ws_v"],
        ),
        (
            "INSERT INTO outbox (idempotency_key, kind, recipient, about, payload, state,
                 next_attempt_at, created_at)
             VALUES ('o_v', 'onboarding', 'ann@v.test', 'sub_o', '{}', 'pending', 1, 1)",
            &["sub_o"],
        ),
        (
            "UPDATE outbox SET state = 'superseded' WHERE idempotency_key = 'o_v'",
            &["sub_o"],
        ),
        (
            "INSERT INTO stripe_events (id, type, created, livemode, object_type, metadata,
                 headers, source, received_at, subscription_id)
             VALUES ('evt_v', 'invoice.paid', 1, FALSE, 'invoice', '{}', '{}', 'webhook', 1,
                 'sub_e')",
            &[],
        ),
        (
            "UPDATE stripe_events SET status = 'processed', outcome = 'provisioned'
             WHERE id = 'evt_v'",
            &["sub_e"],
        ),
        ("DELETE FROM stripe_links WHERE stripe_id = 'sub_v'", &["sub_v", "w:ws_v"]),
        ("DELETE FROM bindings WHERE stripe_id = 'cus_v'", &["cus_v", "w:ws_v"]),
        ("DELETE FROM checkout_intents WHERE session_id = 'cs_v'", &["cs_v", "w:ws_v"]),
        ("DELETE FROM cases WHERE id = 'case_v'", &["k:key_v", "sub_c", "w:ws_v"]),
        ("DELETE FROM billing_states WHERE workspace_id = 'ws_v'", &["w:ws_v"]),
        ("DELETE FROM workspaces WHERE id = 'ws_v'", &["w:ws_v"]),
    ];
    for (statement, keys) in changes {
        let before = versions(&store, keys).await;
        store.exec(*statement).await;
        let after = versions(&store, keys).await;
        for ((key, was), now) in keys.iter().zip(&before).zip(&after) {
            assert!(now > was, "{statement}: {key} stayed at {was}");
        }
    }

    // What a claim writes (attempts, a lease) and a sender's own moves are
    // no change to a scope: they bump nothing, or every claim would refuse
    // the derivations in flight.
    let quiet: &[(&str, &[&str])] = &[
        (
            "UPDATE stripe_events SET attempts = attempts + 1, lease_until = 5 WHERE id = 'evt_v'",
            &["sub_e"],
        ),
        (
            "INSERT INTO outbox (idempotency_key, kind, recipient, about, payload, state,
                 next_attempt_at, created_at)
             VALUES ('o_q', 'onboarding', 'ann@v.test', 'sub_q', '{}', 'pending', 1, 1)",
            &[],
        ),
        (
            "UPDATE outbox SET state = 'sent', lease_until = NULL WHERE idempotency_key = 'o_q'",
            &["sub_q"],
        ),
    ];
    for (statement, keys) in quiet {
        let before = versions(&store, keys).await;
        store.exec(*statement).await;
        assert_eq!(versions(&store, keys).await, before, "{statement}");
    }
}
