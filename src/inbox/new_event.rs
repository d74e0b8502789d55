//! Turning a Stripe event body into an inbox row, whichever way it came:
//! a webhook, an event fetched by `backfill`, or an object fetched from the
//! API and recorded as an event.

use std::collections::BTreeMap;

use admit_core::Timestamp;
use admit_store::{EventKeys, EventSource, NewEvent};
use admit_stripe::ParseError;

use super::keys::event_keys;

/// Parses the envelope (the body must be a Stripe event) and computes the
/// lookup keys; a body whose object admit cannot read yet is still stored,
/// and fails visibly when processed.
pub fn new_event(
    body: Vec<u8>,
    headers: BTreeMap<String, String>,
    source: EventSource,
    received_ms: i64,
) -> Result<NewEvent, ParseError> {
    // Parsed here once: the processor reads the stored billing event, not the body.
    let (envelope, billing) = admit_stripe::read_event(&body)?;
    let (mut keys, billing) = match billing {
        Ok(Some(parsed)) => (event_keys(&parsed), serde_json::to_string(&parsed).ok()),
        Ok(None) | Err(_) => (EventKeys::default(), None),
    };
    // PostgreSQL refuses NUL in text. Stripe's own fields never hold one:
    // such a body is not Stripe's. A merchant's metadata may, and its event
    // is stored all the same, without the hint (no workspace id has a NUL).
    let stripes = [
        Some(envelope.event_type.as_str()),
        envelope.api_version.as_deref(),
        Some(envelope.object.object.as_str()),
        envelope.object.id.as_deref(),
        envelope.object.customer.as_deref(),
        keys.customer.as_deref(),
        keys.subscription.as_deref(),
        keys.session.as_deref(),
        keys.charge.as_deref(),
        keys.payment_intent.as_deref(),
    ];
    if stripes
        .into_iter()
        .flatten()
        .any(|text| text.contains('\0'))
    {
        return Err(ParseError::Invalid(
            "a field Stripe sets holds a NUL character",
        ));
    }
    keys.workspace_hint = keys.workspace_hint.filter(|hint| !hint.contains('\0'));
    keys.purchaser_email = keys.purchaser_email.filter(|email| !email.contains('\0'));
    Ok(NewEvent {
        id: envelope.id,
        event_type: envelope.event_type,
        created: envelope.created,
        api_version: envelope.api_version,
        livemode: envelope.livemode,
        object_type: envelope.object.object,
        object_id: envelope.object.id,
        customer_id: envelope.object.customer,
        metadata: envelope.object.metadata,
        payload: body,
        headers,
        source,
        received_at: Timestamp::from_unix(received_ms.div_euclid(1000)),
        received_ms,
        keys,
        billing,
    })
}
