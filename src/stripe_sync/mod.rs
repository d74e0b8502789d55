//! What admit learns from Stripe's API rather than from webhooks: objects
//! fetched for the welcome page, events missed while admit was down
//! (`backfill`), and drift found by comparing (`reconcile`). Everything goes
//! through the inbox and the same processor as a webhook: one path.

mod backfill;
mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;

use admit_core::Timestamp;
use admit_store::{EventSource, InsertOutcome, Store, StoreError};
use admit_stripe::api::{ClientConfig, StripeClient, StripeError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use backfill::{BackfillReport, backfill};
pub use reconcile::{DriftRow, ReconcileReport, reconcile};

use crate::config::Config;
use crate::inbox::new_event;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no Stripe API key is configured (set ADMIT_STRIPE_API_KEY)")]
    NotConfigured,
    #[error("the Stripe API call failed")]
    Stripe(#[from] StripeError),
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("Stripe returned an object admit cannot record: {0}")]
    Unreadable(String),
}

/// The API client the configuration asks for, if any.
pub fn client(config: &Config) -> Result<Option<StripeClient>, StripeError> {
    let Some(key) = config.stripe.api_key.clone() else {
        return Ok(None);
    };
    let mut client_config = ClientConfig::new(key);
    client_config.base_url.clone_from(&config.stripe.api_base);
    client_config.max_requests_per_sec = config.stripe.max_requests_per_sec;
    StripeClient::new(client_config).map(Some)
}

/// Records an object fetched from the API as an event of `event_type`
/// (source `api_fetch`), stamped `now`: it is Stripe's word as of now, so it
/// orders after everything Stripe said before. The id is derived from the
/// content, so fetching the same state twice records it once.
pub async fn record_object(
    store: &Arc<dyn Store>,
    event_type: &str,
    object: &Value,
    now: Timestamp,
) -> Result<InsertOutcome, SyncError> {
    let digest = Sha256::digest(format!("{event_type}\n{object}").as_bytes());
    let id = format!("evt_admitsync_{}", &hex::encode(digest)[..24]);
    let body = json!({
        "id": id,
        "object": "event",
        "type": event_type,
        "created": now.unix(),
        "livemode": object.get("livemode").and_then(Value::as_bool).unwrap_or(false),
        "data": { "object": object },
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| SyncError::Unreadable(e.to_string()))?;
    let event = new_event(
        bytes,
        BTreeMap::new(),
        EventSource::ApiFetch,
        now.unix().saturating_mul(1000),
    )
    .map_err(|e| SyncError::Unreadable(e.to_string()))?;
    Ok(store.insert_event(&event).await?)
}

/// The event type that states a subscription object's current status.
pub fn subscription_event_type(subscription: &Value) -> &'static str {
    match subscription.get("status").and_then(Value::as_str) {
        Some("canceled" | "incomplete_expired") => "customer.subscription.deleted",
        _ => "customer.subscription.updated",
    }
}
