//! The tolerant event envelope: the few fields every Stripe event has, read
//! without caring about the rest. Unknown event types and unknown fields never
//! fail; only a body that is not a Stripe event at all does.

use std::collections::BTreeMap;

use admit_core::{EventId, Timestamp};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the body is JSON but not a Stripe event: {0}")]
    NotAnEvent(#[source] serde_json::Error),
    #[error("the body is not a Stripe event: {0}")]
    Invalid(&'static str),
    /// An event of a type admit acts on whose object lacks what that type
    /// promises.
    #[error("`{event_type}` event is malformed: {reason}")]
    Malformed {
        event_type: String,
        reason: &'static str,
    },
}

/// What admit reads of every event before it stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    pub id: EventId,
    pub event_type: String,
    pub created: Timestamp,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub object: EventObject,
    /// A thin event (`"object": "v2.core.event"`): it names the object it is
    /// about (`related_object`) and carries no snapshot of it.
    pub thin: bool,
}

/// `object` of a thin event's envelope.
pub const THIN_EVENT_OBJECT: &str = "v2.core.event";

/// `data.object`, reduced to what binds an event to a customer or workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventObject {
    pub id: Option<String>,
    pub object: String,
    /// The customer the object belongs to: its `customer` field (an id or an
    /// expanded object), or the object's own id when it is a customer.
    pub customer: Option<String>,
    /// String-valued metadata; Stripe only stores strings there.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    id: String,
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    api_version: Option<String>,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

/// A thin (v2) event: `created` in RFC 3339, no `data`, a `related_object`.
#[derive(Deserialize)]
struct RawThinEnvelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: String,
    #[serde(default)]
    livemode: bool,
    #[serde(default)]
    related_object: Option<RawRelatedObject>,
}

#[derive(Deserialize)]
struct RawRelatedObject {
    id: Option<String>,
    #[serde(rename = "type")]
    object_type: Option<String>,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    id: Option<String>,
    object: String,
    #[serde(default)]
    customer: Option<CustomerRef>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Value>>,
}

/// Stripe writes a reference either as an id or, when expanded, as the object.
#[derive(Deserialize)]
#[serde(untagged)]
enum CustomerRef {
    Id(String),
    Expanded { id: String },
}

/// Event types are dotted lower-case words; anything else is not Stripe's.
fn plausible_type(event_type: &str) -> bool {
    !event_type.is_empty()
        && event_type.len() <= 128
        && event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

impl EventEnvelope {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(ParseError::NotJson)?;
        Self::from_json(&value)
    }

    /// The envelope of a body already parsed as JSON (ingress parses once
    /// for the envelope and the billing event together).
    pub fn from_json(value: &Value) -> Result<Self, ParseError> {
        if value.get("object").and_then(Value::as_str) == Some(THIN_EVENT_OBJECT) {
            return Self::thin(value);
        }
        let raw = RawEnvelope::deserialize(value).map_err(ParseError::NotAnEvent)?;
        if raw.object.as_deref().is_some_and(|o| o != "event") {
            return Err(ParseError::Invalid("`object` is not \"event\""));
        }
        let id =
            EventId::parse(raw.id).map_err(|_| ParseError::Invalid("`id` is not an `evt_…` id"))?;
        if !plausible_type(&raw.event_type) {
            return Err(ParseError::Invalid("`type` is not a Stripe event type"));
        }
        if raw.created <= 0 {
            return Err(ParseError::Invalid("`created` is not a Unix timestamp"));
        }
        let RawObject {
            id: object_id,
            object,
            customer,
            metadata,
        } = raw.data.object;
        let customer = match customer {
            Some(CustomerRef::Id(id) | CustomerRef::Expanded { id }) => Some(id),
            None if object == "customer" => object_id.clone(),
            None => None,
        };
        let metadata = metadata
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::String(s) => Some((key, s)),
                Value::Null => None,
                other => Some((key, other.to_string())),
            })
            .collect();
        Ok(Self {
            id,
            event_type: raw.event_type,
            created: Timestamp::from_unix(raw.created),
            api_version: raw.api_version,
            livemode: raw.livemode,
            object: EventObject {
                id: object_id,
                object,
                customer,
                metadata,
            },
            thin: false,
        })
    }

    fn thin(value: &Value) -> Result<Self, ParseError> {
        let raw = RawThinEnvelope::deserialize(value).map_err(ParseError::NotAnEvent)?;
        let id =
            EventId::parse(raw.id).map_err(|_| ParseError::Invalid("`id` is not an `evt_…` id"))?;
        if !plausible_type(&raw.event_type) {
            return Err(ParseError::Invalid("`type` is not a Stripe event type"));
        }
        let created = time::OffsetDateTime::parse(
            &raw.created,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| ParseError::Invalid("`created` is not an RFC 3339 time"))?
        .unix_timestamp();
        if created <= 0 {
            return Err(ParseError::Invalid("`created` is not a Unix timestamp"));
        }
        let related = raw.related_object;
        Ok(Self {
            id,
            event_type: raw.event_type,
            created: Timestamp::from_unix(created),
            api_version: None,
            livemode: raw.livemode,
            object: EventObject {
                id: related.as_ref().and_then(|r| r.id.clone()),
                object: related
                    .and_then(|r| r.object_type)
                    .unwrap_or_else(|| THIN_EVENT_OBJECT.to_owned()),
                customer: None,
                metadata: BTreeMap::new(),
            },
            thin: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<EventEnvelope, ParseError> {
        EventEnvelope::parse(json.as_bytes())
    }

    #[test]
    fn reads_a_minimal_event_and_ignores_unknown_fields() {
        let event = parse(
            r#"{"id":"evt_1","object":"event","type":"brand.new.thing","created":1795000000,
                "api_version":"2099-01-01.future","livemode":true,"something_new":{"x":[1]},
                "data":{"object":{"id":"thing_1","object":"thing","customer":{"id":"cus_9","object":"customer"},
                "metadata":{"workspace_id":"ws_1","n":5,"gone":null}}}}"#,
        )
        .expect("parses");
        assert_eq!(event.id.as_str(), "evt_1");
        assert_eq!(event.event_type, "brand.new.thing");
        assert!(event.livemode);
        assert_eq!(event.object.customer.as_deref(), Some("cus_9"));
        assert_eq!(
            event
                .object
                .metadata
                .get("workspace_id")
                .map(String::as_str),
            Some("ws_1")
        );
        assert_eq!(
            event.object.metadata.get("n").map(String::as_str),
            Some("5")
        );
        assert!(!event.object.metadata.contains_key("gone"));
    }

    #[test]
    fn a_customer_object_is_its_own_customer() {
        let event = parse(
            r#"{"id":"evt_2","type":"customer.created","created":5,"data":{"object":{"id":"cus_1","object":"customer","metadata":{}}}}"#,
        )
        .expect("parses");
        assert_eq!(event.object.customer.as_deref(), Some("cus_1"));
        assert_eq!(event.api_version, None);
    }

    #[test]
    fn a_thin_event_is_an_event_without_a_snapshot() {
        let event = parse(
            r#"{"id":"evt_test_65R9Ijk8Hq5SbAIbY16R9LmSDWSA4Y7qNgwNAHkG0Og","object":"v2.core.event",
                "type":"v1.billing.meter.error_report_triggered","livemode":false,
                "created":"2026-11-30T17:04:11.372Z","context":null,
                "reason":{"type":"request","request":{"id":"req_v2abc","idempotency_key":"k-1"}},
                "related_object":{"id":"mtr_test_61R9Ijk","type":"billing.meter",
                "url":"/v1/billing/meters/mtr_test_61R9Ijk"}}"#,
        )
        .expect("parses");
        assert!(event.thin);
        assert_eq!(event.event_type, "v1.billing.meter.error_report_triggered");
        assert_eq!(event.created.unix(), 1_796_058_251);
        assert_eq!(event.object.object, "billing.meter");
        assert_eq!(event.object.id.as_deref(), Some("mtr_test_61R9Ijk"));
        assert_eq!(event.api_version, None);

        let ping = parse(
            r#"{"id":"evt_test_65RPing","object":"v2.core.event","type":"v2.core.event_destination.ping",
                "livemode":false,"created":"2026-11-30T17:04:11Z"}"#,
        )
        .expect("a ping without related_object parses");
        assert!(ping.thin);
        assert_eq!(ping.object.object, THIN_EVENT_OBJECT);
        for body in [
            r#"{"id":"evt_1","object":"v2.core.event","type":"v1.x","created":"yesterday"}"#,
            r#"{"id":"evt_1","object":"v2.core.event","type":"v1.x","created":1795000000}"#,
            r#"{"id":"cus_1","object":"v2.core.event","type":"v1.x","created":"2026-11-30T17:04:11Z"}"#,
        ] {
            assert!(parse(body).is_err(), "{body} should be refused");
        }
    }

    #[test]
    fn older_envelopes_parse() {
        // Before 2014-10-31 events had no api_version; before 2017-05-25
        // `request` was a string; Connect events name the account.
        let event = parse(
            r#"{"id":"evt_old","object":"event","type":"customer.created","created":1400000000,
                "api_version":null,"request":"req_old","account":"acct_1","pending_webhooks":1,
                "data":{"object":{"id":"cus_1","object":"customer","metadata":null}}}"#,
        )
        .expect("parses");
        assert!(!event.thin);
        assert_eq!(event.api_version, None);
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        for body in [
            "not json",
            "[]",
            r#"{"id":"evt_1"}"#,
            r#"{"id":"cus_1","type":"customer.created","created":5,"data":{"object":{"object":"customer"}}}"#,
            r#"{"id":"evt_1","object":"customer","type":"customer.created","created":5,"data":{"object":{"object":"customer"}}}"#,
            r#"{"id":"evt_1","type":"Customer Created!","created":5,"data":{"object":{"object":"customer"}}}"#,
            r#"{"id":"evt_1","type":"customer.created","created":"yesterday","data":{"object":{"object":"customer"}}}"#,
            r#"{"id":"evt_1","type":"customer.created","created":0,"data":{"object":{"object":"customer"}}}"#,
            r#"{"id":"evt_1","type":"customer.created","created":5,"data":{}}"#,
        ] {
            assert!(parse(body).is_err(), "{body} should be refused");
        }
    }
}
