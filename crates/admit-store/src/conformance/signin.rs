//! One-time sign-in tokens (`SigninStore`): redeemed once, while unexpired,
//! by someone still a member; a retried message withdraws its unused token.

use admit_core::Role;

use super::{NOW, TestStore, email, fresh, ws};
use crate::StoreError;
use crate::directory::Actor;
use crate::signin::RedeemedToken;

async fn workspace(store: &TestStore) {
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
    store
        .put_member(
            &ws("ws_acme"),
            &email("sam@acme.test"),
            Role::Member,
            &Actor::App,
            NOW,
        )
        .await
        .expect("member");
}

async fn issue(store: &TestStore, hash: &str, who: &str, outbox: Option<i64>, ttl: i64) {
    store
        .issue_signin_token(
            hash,
            &ws("ws_acme"),
            &email(who),
            outbox,
            NOW.plus_seconds(ttl),
            NOW,
        )
        .await
        .expect("issue");
}

#[tokio::test]
async fn a_token_is_redeemed_once_by_a_member_before_it_expires() {
    let store = fresh().await;
    workspace(&store).await;
    issue(&store, "h_dana", "dana@acme.test", Some(1), 900).await;
    assert_eq!(
        store
            .redeem_signin_token("h_dana", NOW.plus_seconds(10))
            .await
            .expect("redeem"),
        RedeemedToken {
            workspace: ws("ws_acme"),
            email: email("dana@acme.test"),
            role: Role::Owner,
        }
    );
    assert!(matches!(
        store
            .redeem_signin_token("h_dana", NOW.plus_seconds(11))
            .await,
        Err(StoreError::TokenUsed)
    ));
    assert!(matches!(
        store.redeem_signin_token("h_nobody", NOW).await,
        Err(StoreError::TokenNotFound)
    ));

    issue(&store, "h_late", "sam@acme.test", None, 900).await;
    assert!(matches!(
        store
            .redeem_signin_token("h_late", NOW.plus_seconds(900))
            .await,
        Err(StoreError::TokenExpired)
    ));
    assert_eq!(
        store
            .redeem_signin_token("h_late", NOW.plus_seconds(899))
            .await
            .expect("in time")
            .role,
        Role::Member,
        "a refused redemption leaves the token unused"
    );
}

#[tokio::test]
async fn a_token_grants_the_role_of_the_moment_and_nothing_to_a_former_member() {
    let store = fresh().await;
    workspace(&store).await;
    issue(&store, "h_sam", "sam@acme.test", None, 900).await;
    store
        .remove_member(&ws("ws_acme"), &email("sam@acme.test"), &Actor::App, NOW)
        .await
        .expect("remove");
    assert!(matches!(
        store.redeem_signin_token("h_sam", NOW).await,
        Err(StoreError::TokenNotAMember)
    ));
    store
        .put_member(
            &ws("ws_acme"),
            &email("sam@acme.test"),
            Role::Admin,
            &Actor::App,
            NOW,
        )
        .await
        .expect("back, promoted");
    assert_eq!(
        store
            .redeem_signin_token("h_sam", NOW)
            .await
            .expect("redeem")
            .role,
        Role::Admin
    );
}

#[tokio::test]
async fn a_retried_message_withdraws_its_unused_token() {
    let store = fresh().await;
    workspace(&store).await;
    issue(&store, "h_first", "sam@acme.test", Some(7), 900).await;
    issue(&store, "h_other", "dana@acme.test", Some(8), 900).await;
    issue(&store, "h_second", "sam@acme.test", Some(7), 900).await;
    assert!(matches!(
        store.redeem_signin_token("h_first", NOW).await,
        Err(StoreError::TokenNotFound)
    ));
    store
        .redeem_signin_token("h_other", NOW)
        .await
        .expect("another message's token stands");
    store
        .redeem_signin_token("h_second", NOW)
        .await
        .expect("the latest token of the message");
    // A used token is kept: a third send does not make it redeemable again.
    issue(&store, "h_third", "sam@acme.test", Some(7), 900).await;
    assert!(matches!(
        store.redeem_signin_token("h_second", NOW).await,
        Err(StoreError::TokenUsed)
    ));
}

#[tokio::test]
async fn a_removed_workspace_takes_its_tokens_along() {
    let store = fresh().await;
    workspace(&store).await;
    issue(&store, "h_dana", "dana@acme.test", None, 900).await;
    assert!(
        store
            .delete_workspace(&ws("ws_acme"), &Actor::App, NOW)
            .await
            .expect("delete")
    );
    assert!(matches!(
        store.redeem_signin_token("h_dana", NOW).await,
        Err(StoreError::TokenNotFound)
    ));
}
