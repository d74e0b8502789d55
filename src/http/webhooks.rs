//! `POST /webhooks/stripe`: verify, store, answer. Nothing else happens on
//! this path, so Stripe gets its 2xx fast and only after the event is durable.

use std::collections::BTreeMap;

use admit_store::{EventSource, InsertOutcome};
use admit_stripe::{SignatureError, verify_signature};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Router, http::StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::inbox::new_event;
use crate::metrics::{ReceivedLabels, RejectedLabels};

/// Stripe's events are far smaller; anything bigger is not from Stripe.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Headers kept with the event, for audits and re-verification.
const KEPT_HEADERS: &[&str] = &["stripe-signature", "user-agent", "content-type"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/stripe", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Refused deliveries by error code since the last flush.
#[derive(Debug, Default)]
pub struct RejectionTally(std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl RejectionTally {
    pub fn add(&self, code: &'static str) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(code).or_default() += 1;
        }
    }

    /// Writes the tally to the store; what cannot be written is kept for the next flush.
    pub async fn flush(&self, store: &dyn admit_store::Store, now: admit_core::Timestamp) {
        let taken = match self.0.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return,
        };
        for (code, count) in taken {
            if let Err(e) = store.record_rejections(code, count, now).await {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot record webhook rejections");
                if let Ok(mut counts) = self.0.lock() {
                    *counts.entry(code).or_default() += count;
                }
            }
        }
    }
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match ingest(&state, &headers, body).await {
        Ok(response) => Ok(response),
        Err(error) => {
            if error.status().is_client_error() {
                state
                    .metrics
                    .webhook_rejections
                    .get_or_create(&RejectedLabels { code: error.code() })
                    .inc();
                // Logged once, here, without the body. A malformed event's
                // reason is serde's message, which quotes the body's values
                // (`invalid type: string "…"`): its code says enough, and
                // the sender sees the whole reason in the response.
                if matches!(error, ApiError::EventMalformed(_)) {
                    tracing::warn!(code = error.code(), "webhook rejected");
                } else {
                    tracing::warn!(code = error.code(), reason = %error, "webhook rejected");
                }
                // Kept for the readiness memo (signature failures in the last
                // 24 h): tallied in memory and written every few seconds, so a
                // flood of forged requests never queues for the write lock.
                state.rejections.add(error.code());
            }
            Err(error)
        }
    }
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|rejection| match super::error::body_refusal(&rejection) {
        ApiError::BodyTooLarge => ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        },
        refusal => refusal,
    })?;
    let signature = headers
        .get("stripe-signature")
        .ok_or_else(|| {
            ApiError::SignatureHeaderInvalid("the Stripe-Signature header is missing".into())
        })?
        .to_str()
        .map_err(|_| {
            ApiError::SignatureHeaderInvalid("the Stripe-Signature header is not ASCII".into())
        })?;

    let secrets: Vec<&str> = state
        .config
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    verify_signature(
        signature,
        &body,
        &secrets,
        state.clock.now(),
        Some(state.config.webhook_tolerance_secs),
    )
    .map_err(|e| match e {
        SignatureError::HeaderInvalid(_) => ApiError::SignatureHeaderInvalid(e.to_string()),
        SignatureError::Mismatch => ApiError::SignatureMismatch,
        SignatureError::OutsideTolerance { .. } => {
            ApiError::TimestampOutsideTolerance(e.to_string())
        }
    })?;

    let kept_headers: BTreeMap<String, String> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let event = new_event(
        body.to_vec(),
        kept_headers,
        EventSource::Webhook,
        state.clock.now_millis(),
    )
    .map_err(|e| ApiError::EventMalformed(e.to_string()))?;
    let (id, event_type) = (event.id.clone(), event.event_type.clone());
    let outcome = state.ingest.insert(event).await?;
    let duplicate = outcome == InsertOutcome::Duplicate;
    if !duplicate {
        state.wake.notify_one();
    }
    state
        .metrics
        .events_received
        .get_or_create(&ReceivedLabels {
            r#type: event_type.clone(),
            outcome: if duplicate { "duplicate" } else { "stored" },
        })
        .inc();
    tracing::info!(
        event_id = %id,
        event_type = %event_type,
        duplicate,
        "webhook stored"
    );
    Ok((
        StatusCode::OK,
        // A redelivery changes nothing (S6); a new event's scenario is known
        // once it is processed (`GET /v1/events/{id}`).
        Json(json!({
            "received": true, "id": id.as_str(), "duplicate": duplicate,
            "scenario": duplicate.then_some("S6"),
        })),
    ))
}
