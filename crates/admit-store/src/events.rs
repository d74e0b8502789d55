//! Inbox rows: Stripe events as received, and their processing status.

use std::collections::BTreeMap;
use std::fmt;

use admit_core::{EventId, Timestamp};

use crate::StoreError;

/// Where an event came from. Webhooks are the normal path; the others are how
/// admit recovers what a webhook did not bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    Webhook,
    ApiFetch,
    Backfill,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Webhook => "webhook",
            EventSource::ApiFetch => "api_fetch",
            EventSource::Backfill => "backfill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Received,
    Processed,
    Held,
    Ignored,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Processed => "processed",
            EventStatus::Held => "held",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "received" => EventStatus::Received,
            "processed" => EventStatus::Processed,
            "held" => EventStatus::Held,
            "ignored" => EventStatus::Ignored,
            "failed" => EventStatus::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified event about to enter the inbox.
#[derive(Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub event_type: String,
    pub created: Timestamp,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub object_type: String,
    pub object_id: Option<String>,
    pub customer_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub source: EventSource,
    pub received_at: Timestamp,
    /// Lookup keys from the parsed event, so scopes find it before it is processed.
    pub keys: crate::provisioning::EventKeys,
    /// `received_at` in milliseconds, for receipt → outcome below a second.
    pub received_ms: i64,
    /// The billing event as read at ingress (JSON of `admit_core::BillingEvent`),
    /// so the processor never parses the raw body; `None` when admit does
    /// not act on the event or cannot read it.
    pub billing: Option<String>,
}

// Metadata and payload may hold email addresses: keep them out of logs.
impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("created", &self.created)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    Duplicate,
}

/// An inbox row as read back.
#[derive(Clone)]
pub struct StoredEvent {
    pub id: EventId,
    pub event_type: String,
    pub created: Timestamp,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub object_type: String,
    pub object_id: Option<String>,
    pub customer_id: Option<String>,
    /// The body as received; empty when `body_error` says why it cannot be read.
    pub payload: Vec<u8>,
    /// Why the stored body cannot be read (it is damaged): the row is still
    /// shown, and its processing fails visibly.
    pub body_error: Option<String>,
    pub source: String,
    pub received_at: Timestamp,
    pub status: EventStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    /// The scenario (S1–S18) that decided it, once processed.
    pub scenario: Option<String>,
    /// See [`NewEvent::billing`].
    pub billing: Option<String>,
}

impl fmt::Debug for StoredEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("status", &self.status)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// An inbox row with its body, as either dialect selects it
/// (`stripe_events.*` and the body's `payload`, `encoding`, `raw_length`).
pub(crate) fn stored_event(row: &impl crate::rows::Columns) -> Result<StoredEvent, StoreError> {
    let id = row.text("id")?;
    let stored = row.maybe_bytes("payload")?;
    let encoding = row.maybe_text("encoding")?;
    let (payload, body_error) = match crate::bodies::unpack(
        stored.unwrap_or_default(),
        encoding.as_deref().unwrap_or(crate::bodies::IDENTITY),
        row.maybe_int("raw_length")?,
    ) {
        Ok(body) => (body, None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let status = row.text("status")?;
    Ok(StoredEvent {
        id: EventId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        event_type: row.text("type")?,
        created: Timestamp::from_unix(row.int("created")?),
        api_version: row.maybe_text("api_version")?,
        livemode: row.flag("livemode")?,
        object_type: row.text("object_type")?,
        object_id: row.maybe_text("object_id")?,
        customer_id: row.maybe_text("customer_id")?,
        payload,
        body_error,
        source: row.text("source")?,
        received_at: Timestamp::from_unix(row.int("received_at")?),
        status: EventStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown event status {status:?}")))?,
        attempts: row.int("attempts")?,
        last_error: row.maybe_text("last_error")?,
        outcome: row.maybe_text("outcome")?,
        scenario: row.maybe_text("scenario")?,
        billing: row.maybe_text("billing")?,
    })
}
