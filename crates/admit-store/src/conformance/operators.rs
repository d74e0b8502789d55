//! Console operators (`OperatorStore`): who they are, how they get a
//! password, their sessions and sign-in attempts, and the audit entries
//! every change leaves. No secret is ever part of an entry.

use admit_core::{OperatorRole, Timestamp};
use serde_json::json;

use super::{NOW, TestStore, fresh};
use crate::directory::Actor;
use crate::operators::OperatorSecret;
use crate::{StoreError, StoredAuditEntry};

const HOUR: i64 = 3600;
const IDLE: i64 = 30 * 60;

fn admin() -> Actor {
    Actor::operator("root", OperatorRole::Admin)
}

fn password(hash: &str) -> OperatorSecret {
    OperatorSecret::PasswordHash(hash.into())
}

fn setup_token(hash: &str, expires_at: Timestamp) -> OperatorSecret {
    OperatorSecret::SetupToken {
        token_hash: hash.into(),
        expires_at,
    }
}

async fn add(store: &TestStore, name: &str, role: OperatorRole, secret: &OperatorSecret) {
    store
        .add_operator(name, role, secret, &admin(), NOW)
        .await
        .expect("add operator");
}

async fn entries(store: &TestStore, action: &str) -> Vec<StoredAuditEntry> {
    store.audit_by_action(action, 100).await.expect("audit")
}

/// The session's idle end and last use, as stored.
async fn idle_end(store: &TestStore, session: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT idle_expires_at, last_seen_at FROM operator_sessions WHERE session_hash = $1",
    )
    .bind(session)
    .fetch_one(&store.db)
    .await
    .expect("session row")
}

#[tokio::test]
async fn operators_are_added_listed_and_removed_with_their_sessions() {
    let store = fresh().await;
    add(
        &store,
        "zoe",
        OperatorRole::Admin,
        &password("$argon2id$zoe"),
    )
    .await;
    add(
        &store,
        "amy",
        OperatorRole::Viewer,
        &setup_token("tok_amy", NOW.plus_seconds(HOUR)),
    )
    .await;
    let listed: Vec<(String, OperatorRole, bool)> = store
        .operators()
        .await
        .expect("operators")
        .into_iter()
        .map(|o| (o.name, o.role, o.password_set))
        .collect();
    assert_eq!(
        listed,
        [
            ("amy".into(), OperatorRole::Viewer, false),
            ("zoe".into(), OperatorRole::Admin, true)
        ]
    );
    assert!(matches!(
        store
            .add_operator(
                "zoe",
                OperatorRole::Viewer,
                &password("$argon2id$other"),
                &admin(),
                NOW
            )
            .await,
        Err(StoreError::OperatorExists)
    ));
    let zoe = store
        .operator_credentials("zoe")
        .await
        .expect("read")
        .expect("zoe");
    assert_eq!(
        zoe.operator.role,
        OperatorRole::Admin,
        "the first one stays"
    );
    assert_eq!(zoe.operator.created_at, NOW);
    assert_eq!(zoe.password_hash.as_deref(), Some("$argon2id$zoe"));

    let added = entries(&store, "operator.added").await;
    assert_eq!(added.len(), 2, "the refused add is not audited");
    let amy = &added[0].entry;
    assert_eq!(amy.actor, "operator:root");
    assert_eq!(amy.subject.as_deref(), Some("operator:amy"));
    assert_eq!(amy.workspace_id, None);
    assert_eq!(amy.after, Some(json!({ "role": "viewer" })));
    assert!(
        !format!("{added:?}").contains("argon2") && !format!("{added:?}").contains("tok_amy"),
        "no secret in the audit log"
    );

    store
        .start_operator_session("sess_zoe", "zoe", NOW, NOW.plus_seconds(12 * HOUR), IDLE)
        .await
        .expect("sign in");
    assert!(
        store
            .remove_operator("zoe", &admin(), NOW)
            .await
            .expect("remove")
    );
    assert_eq!(
        store
            .operator_session("sess_zoe", NOW, IDLE)
            .await
            .expect("read"),
        None,
        "removing an operator ends their sessions"
    );
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operator_sessions")
        .fetch_one(&store.db)
        .await
        .expect("count");
    assert_eq!(sessions, 0);
    assert_eq!(store.operator_credentials("zoe").await.expect("read"), None);
    assert!(
        !store
            .remove_operator("zoe", &admin(), NOW)
            .await
            .expect("remove again")
    );
    let removed = entries(&store, "operator.removed").await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].entry.actor, "operator:root");
    assert_eq!(removed[0].entry.subject.as_deref(), Some("operator:zoe"));
    assert_eq!(removed[0].entry.before, Some(json!({ "role": "admin" })));
    let names: Vec<String> = store
        .operators()
        .await
        .expect("operators")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["amy"]);
}

#[tokio::test]
async fn a_setup_token_sets_a_password_once_and_only_before_it_expires() {
    let store = fresh().await;
    let expires = NOW.plus_seconds(HOUR);
    add(
        &store,
        "amy",
        OperatorRole::Support,
        &setup_token("tok_amy", expires),
    )
    .await;
    let before = store
        .operator_credentials("amy")
        .await
        .expect("read")
        .expect("amy");
    assert_eq!(before.password_hash, None);
    assert!(!before.operator.password_set);

    for (token, at, why) in [
        ("tok_wrong", NOW, "a token never issued"),
        ("tok_amy", expires, "a token at its expiry"),
        ("tok_amy", expires.plus_seconds(1), "an expired token"),
    ] {
        assert_eq!(
            store
                .complete_operator_setup(token, "$argon2id$amy", at)
                .await
                .expect("redeem"),
            None,
            "{why}"
        );
    }
    let redeemed = store
        .complete_operator_setup("tok_amy", "$argon2id$amy", NOW.plus_seconds(60))
        .await
        .expect("redeem")
        .expect("a live token sets the password");
    assert_eq!(redeemed.name, "amy");
    assert_eq!(redeemed.role, OperatorRole::Support);
    assert!(redeemed.password_set);
    assert_eq!(
        store
            .complete_operator_setup("tok_amy", "$argon2id$again", NOW.plus_seconds(61))
            .await
            .expect("redeem"),
        None,
        "a token is redeemed once"
    );
    let after = store
        .operator_credentials("amy")
        .await
        .expect("read")
        .expect("amy");
    assert_eq!(after.password_hash.as_deref(), Some("$argon2id$amy"));
    let set = entries(&store, "operator.password_set").await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].entry.actor, "operator:amy");
    assert_eq!(set[0].entry.subject.as_deref(), Some("operator:amy"));
    assert_eq!(set[0].entry.at, NOW.plus_seconds(60));
    assert!(!format!("{set:?}").contains("argon2"));
}

#[tokio::test]
async fn a_session_lives_until_idle_or_its_absolute_end_and_slides_at_most_once_a_minute() {
    let store = fresh().await;
    add(
        &store,
        "zoe",
        OperatorRole::Support,
        &password("$argon2id$zoe"),
    )
    .await;
    let end = NOW.plus_seconds(12 * HOUR);
    store
        .start_operator_session("sess_1", "zoe", NOW, end, IDLE)
        .await
        .expect("sign in");
    let session = store
        .operator_session("sess_1", NOW, IDLE)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(session.operator.name, "zoe");
    assert_eq!(session.operator.role, OperatorRole::Support);
    assert!(session.operator.password_set);
    assert_eq!(session.expires_at, end);
    let signed_in = entries(&store, "operator.signed_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0].entry.actor, "operator:zoe");
    assert_eq!(signed_in[0].entry.subject.as_deref(), Some("operator:zoe"));

    // Used within the minute: nothing written.
    let start = NOW.unix();
    store
        .operator_session("sess_1", NOW.plus_seconds(59), IDLE)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(idle_end(&store, "sess_1").await, (start + IDLE, start));
    // Used just before it idles out: moved on from then.
    let late = NOW.plus_seconds(IDLE - 1);
    store
        .operator_session("sess_1", late, IDLE)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(
        idle_end(&store, "sess_1").await,
        (late.unix() + IDLE, late.unix())
    );
    // Again 30 s later: left alone.
    store
        .operator_session("sess_1", late.plus_seconds(30), IDLE)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(
        idle_end(&store, "sess_1").await,
        (late.unix() + IDLE, late.unix())
    );
    // Idle for the whole period: ended.
    assert_eq!(
        store
            .operator_session("sess_1", late.plus_seconds(IDLE), IDLE)
            .await
            .expect("read"),
        None
    );

    // The absolute end comes first, however busy the session.
    let short = NOW.plus_seconds(100);
    store
        .start_operator_session("sess_2", "zoe", NOW, short, IDLE)
        .await
        .expect("sign in");
    assert_eq!(idle_end(&store, "sess_2").await.0, short.unix());
    assert!(
        store
            .operator_session("sess_2", short.plus_seconds(-1), IDLE)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(idle_end(&store, "sess_2").await.0, short.unix());
    assert_eq!(
        store
            .operator_session("sess_2", short, IDLE)
            .await
            .expect("read"),
        None
    );

    assert_eq!(
        store
            .operator_session("sess_unknown", NOW, IDLE)
            .await
            .expect("read"),
        None
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_and_is_audited() {
    let store = fresh().await;
    add(
        &store,
        "zoe",
        OperatorRole::Viewer,
        &password("$argon2id$zoe"),
    )
    .await;
    let end = NOW.plus_seconds(HOUR);
    for session in ["sess_a", "sess_b"] {
        store
            .start_operator_session(session, "zoe", NOW, end, IDLE)
            .await
            .expect("sign in");
    }
    store
        .end_operator_session("sess_a", NOW.plus_seconds(5))
        .await
        .expect("sign out");
    assert_eq!(
        store
            .operator_session("sess_a", NOW.plus_seconds(6), IDLE)
            .await
            .expect("read"),
        None
    );
    assert!(
        store
            .operator_session("sess_b", NOW.plus_seconds(6), IDLE)
            .await
            .expect("read")
            .is_some(),
        "the operator's other session goes on"
    );
    store
        .end_operator_session("sess_a", NOW.plus_seconds(7))
        .await
        .expect("signing out twice is nothing");
    let out = entries(&store, "operator.signed_out").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].entry.actor, "operator:zoe");
    assert_eq!(out[0].entry.at, NOW.plus_seconds(5));

    // An operator removed before their session starts gets none.
    store
        .remove_operator("zoe", &admin(), NOW)
        .await
        .expect("remove");
    store
        .start_operator_session("sess_c", "zoe", NOW, end, IDLE)
        .await
        .expect("nothing to start");
    assert_eq!(
        store
            .operator_session("sess_c", NOW, IDLE)
            .await
            .expect("read"),
        None
    );
    assert_eq!(entries(&store, "operator.signed_in").await.len(), 2);
}

/// The stored attempts: `(key, at)`, in order.
async fn attempts(store: &TestStore) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT key, at FROM operator_login_failures ORDER BY key, at")
        .fetch_all(&store.db)
        .await
        .expect("attempts")
}

#[tokio::test]
async fn sign_in_attempts_are_counted_by_key_since_a_moment_this_one_included() {
    let store = fresh().await;
    let count = |key: &'static str, ago: i64, since: i64| {
        let store = &store;
        async move {
            store
                .count_login_attempt(key, NOW.plus_seconds(-ago), NOW.plus_seconds(-since))
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count("zoe", 3 * HOUR, HOUR).await,
        0,
        "before `since`: not counted"
    );
    assert_eq!(count("zoe", 100, HOUR).await, 1, "this one is counted");
    assert_eq!(count("10.0.0.1", 50, HOUR).await, 1, "keys count apart");
    assert_eq!(count("zoe", 0, HOUR).await, 2);
    assert_eq!(
        count("zoe", 0, 100).await,
        3,
        "an attempt at `since` counts"
    );
    assert_eq!(
        count("zoe", 0, 99).await,
        3,
        "the one before `since` is not"
    );
    assert_eq!(count("zoe", 0, 10 * HOUR).await, 6, "every one of the day");
    assert_eq!(attempts(&store).await.len(), 7);

    // Clearing forgets the key's attempts only.
    store.clear_login_attempts("zoe").await.expect("clear");
    assert_eq!(
        attempts(&store).await,
        [("10.0.0.1".to_owned(), NOW.unix() - 50)]
    );
    store
        .clear_login_attempts("nobody")
        .await
        .expect("clearing an unknown key is nothing");
    assert_eq!(count("zoe", 0, HOUR).await, 1, "counting starts again");
}

#[tokio::test]
async fn an_attempt_forgets_every_keys_attempts_older_than_a_day() {
    let store = fresh().await;
    let day = 86_400;
    let attempt = |key: &'static str, at: i64| {
        let store = &store;
        async move {
            store
                .count_login_attempt(key, NOW.plus_seconds(at), NOW.plus_seconds(at))
                .await
                .expect("count")
        }
    };
    for (key, at) in [("zoe", -2 * day), ("amy", -day - 1), ("amy", -day)] {
        assert_eq!(attempt(key, at).await, 1);
    }
    assert_eq!(
        attempts(&store).await.len(),
        3,
        "none a day older than the next"
    );
    // An attempt of another key forgets zoe's, more than a day before it.
    attempt("10.0.0.1", -3 * HOUR).await;
    let at = |ago: i64| NOW.unix() + ago;
    assert_eq!(
        attempts(&store).await,
        [
            ("10.0.0.1".to_owned(), at(-3 * HOUR)),
            ("amy".to_owned(), at(-day - 1)),
            ("amy".to_owned(), at(-day)),
        ]
    );
    attempt("bob", 0).await;
    assert_eq!(
        attempts(&store).await,
        [
            ("10.0.0.1".to_owned(), at(-3 * HOUR)),
            ("amy".to_owned(), at(-day)),
            ("bob".to_owned(), at(0)),
        ],
        "one exactly a day old stays"
    );
}

#[tokio::test]
async fn a_setup_token_names_its_operator_until_it_is_redeemed_or_expires() {
    let store = fresh().await;
    let expires = NOW.plus_seconds(HOUR);
    add(
        &store,
        "amy",
        OperatorRole::Support,
        &setup_token("tok_amy", expires),
    )
    .await;
    add(
        &store,
        "zoe",
        OperatorRole::Admin,
        &password("$argon2id$zoe"),
    )
    .await;
    let operator = |token: &'static str, at: Timestamp| {
        let store = &store;
        async move { store.setup_token_operator(token, at).await.expect("read") }
    };
    assert_eq!(operator("tok_amy", NOW).await.as_deref(), Some("amy"));
    assert_eq!(
        operator("tok_amy", expires.plus_seconds(-1))
            .await
            .as_deref(),
        Some("amy")
    );
    assert_eq!(operator("tok_amy", expires).await, None, "at its expiry");
    assert_eq!(operator("tok_wrong", NOW).await, None);
    assert_eq!(operator("", NOW).await, None);
    store
        .complete_operator_setup("tok_amy", "$argon2id$amy", NOW)
        .await
        .expect("redeem")
        .expect("redeemed");
    assert_eq!(operator("tok_amy", NOW).await, None, "redeemed");
    assert!(
        entries(&store, "operator.password_set").await.len() == 1,
        "looking a token up is not audited"
    );
}
