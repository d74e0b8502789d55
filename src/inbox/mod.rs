//! The inbox side of ingress: a verified Stripe body becomes an inbox row
//! (`NewEvent`) with the keys other events' scopes find it by. Webhooks,
//! `backfill` and objects fetched from the API all enter here; the
//! processor (`provision`) takes it from the inbox.

mod keys;
mod new_event;
mod writer;

pub use keys::event_keys;
pub use new_event::new_event;
pub use writer::IngestWriter;
