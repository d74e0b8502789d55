//! Where a checkout stands, for the welcome page.

use super::SqliteStore;
use super::rows::{corrupt, json_list, parse_workspace};
use crate::StoreError;
use crate::provisioning::{SessionPayment, SessionStatus};

pub(super) async fn session_status(
    store: &SqliteStore,
    session_id: &str,
) -> Result<SessionStatus, StoreError> {
    let mut conn = store.pool.acquire().await?;
    let intent: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT workspace_id, purchaser_email FROM checkout_intents WHERE session_id = ?",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    // The subscription a checkout created carries the rest of the purchase's events.
    let subscriptions: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT subscription_id FROM stripe_events
         WHERE checkout_session_id = ? AND subscription_id IS NOT NULL
         ORDER BY subscription_id",
    )
    .bind(session_id)
    .fetch_all(&mut *conn)
    .await?;
    let subs = json_list(&subscriptions.iter().cloned().collect());
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(status IN ('received', 'failed')), 0) FROM stripe_events
         WHERE checkout_session_id = ?1 OR subscription_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(session_id)
    .bind(&subs)
    .fetch_one(&mut *conn)
    .await?;
    let email: Option<String> = sqlx::query_scalar(
        "SELECT purchaser_email FROM stripe_events
         WHERE checkout_session_id = ? AND purchaser_email IS NOT NULL LIMIT 1",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    let held_case: Option<String> = sqlx::query_scalar(
        "SELECT id FROM cases WHERE state = 'held'
           AND (checkout_session_id = ?1 OR stripe_subscription_id IN (SELECT value FROM json_each(?2)))
         ORDER BY created_at LIMIT 1",
    )
    .bind(session_id)
    .bind(&subs)
    .fetch_optional(&mut *conn)
    .await?;
    let linked: Option<String> = sqlx::query_scalar(
        "SELECT workspace_id FROM stripe_links
         WHERE (kind = 'session' AND stripe_id = ?1)
            OR (kind = 'subscription' AND stripe_id IN (SELECT value FROM json_each(?2)))
         LIMIT 1",
    )
    .bind(session_id)
    .bind(&subs)
    .fetch_optional(&mut *conn)
    .await?;
    let workspace = linked.map(parse_workspace).transpose()?;
    // The processor writes the purchase's outcome on each of its events.
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM stripe_events
         WHERE checkout_session_id = ? AND outcome IS NOT NULL
           AND type LIKE 'checkout.session.%'",
    )
    .bind(session_id)
    .fetch_all(&mut *conn)
    .await?;
    let payment = if outcomes.iter().any(|o| o == "payment_failed") {
        SessionPayment::Failed
    } else if outcomes
        .iter()
        .any(|o| o == "not_paid_yet" || o == "awaiting_binding")
    {
        SessionPayment::Pending
    } else {
        SessionPayment::Unknown
    };
    let (intent_workspace, intent_email) = intent.clone().unzip();
    Ok(SessionStatus {
        known: intent.is_some() || counts.0 > 0,
        unprocessed: u64::try_from(counts.1).map_err(corrupt)?,
        held_case,
        workspace: workspace.or(intent_workspace.map(parse_workspace).transpose()?),
        purchaser_email: email.or(intent_email.flatten()),
        payment,
        subscription: subscriptions.first().cloned(),
    })
}
