//! `admit backfill --since`: Stripe's events list (30 days back) replayed
//! into the inbox, exactly as if the webhooks had arrived. Idempotent.

use std::collections::BTreeMap;
use std::sync::Arc;

use admit_core::Timestamp;
use admit_store::{EventSource, InsertOutcome, Store};
use admit_stripe::api::{StripeClient, event_body};

use super::SyncError;
use crate::inbox::new_event;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillReport {
    pub fetched: usize,
    pub stored: usize,
    pub already_had: usize,
    pub unreadable: usize,
}

pub async fn backfill(
    store: &Arc<dyn Store>,
    client: &StripeClient,
    since: Timestamp,
    now: Timestamp,
) -> Result<BackfillReport, SyncError> {
    let events = client.all_events_since(since.unix()).await?;
    let mut report = BackfillReport {
        fetched: events.len(),
        ..BackfillReport::default()
    };
    for event in &events {
        let Ok(new) = new_event(
            event_body(event),
            BTreeMap::new(),
            EventSource::Backfill,
            now.unix().saturating_mul(1000),
        ) else {
            report.unreadable += 1;
            continue;
        };
        match store.insert_event(&new).await? {
            InsertOutcome::Inserted => report.stored += 1,
            InsertOutcome::Duplicate => report.already_had += 1,
        }
    }
    tracing::info!(
        fetched = report.fetched,
        stored = report.stored,
        already_had = report.already_had,
        unreadable = report.unreadable,
        "backfill done"
    );
    Ok(report)
}
