//! Stripe wire code: webhook signature verification and tolerant parsing of
//! what Stripe sends.
//!
//! Verification works on raw bytes and knows nothing of JSON, so a body is
//! trusted before a single byte of it is parsed. Parsing is tolerant: unknown
//! fields and unknown event types never fail, and both current API shapes and
//! legacy ones (API 2017-08-15, as sent by older accounts and localstripe) are
//! understood.

pub mod api;
pub mod billing_event;
pub mod event;
pub mod signature;
pub mod subscription;

pub use billing_event::{BillingResult, billing_event, read_event};
pub use event::{EventEnvelope, EventObject, ParseError, THIN_EVENT_OBJECT};
pub use signature::{SignatureError, verify_signature};
pub use subscription::SubscriptionView;
