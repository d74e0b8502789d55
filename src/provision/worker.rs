//! The background worker and its single step, which tests call directly.

use std::sync::Arc;
use std::time::Duration;

use admit_core::EventId;
use admit_store::{EventStatus, ProvisionOutcome, Store, StoreError};

use super::persist::{Followups, Policy, plan_writes};
use crate::clock::Clock;
use crate::config::Config;
use crate::inbox::event_keys;
use crate::telemetry::error_chain;
use crate::worker::{InFlight, Worker};

/// How long a claimed event is reserved for the worker that claimed it.
const LEASE_SECS: i64 = 60;
/// Events claimed in one transaction. A burst's events of one purchase then
/// share a derivation: the first settles its whole scope, the rest are
/// skipped. Small enough that a batch is settled well within its lease.
const CLAIM_BATCH: u32 = 32;
/// Creating a workspace for an unmatched purchase re-runs the derivation once.
const MAX_AGAIN: usize = 3;
/// Retry backoff: 5 s, 10 s, 20 s … capped at an hour.
const RETRY: admit_core::Backoff =
    admit_core::Backoff::new(Duration::from_secs(5), Duration::from_secs(3600));

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One event was claimed and settled (or failed and scheduled for a retry).
    Done(EventId),
    /// Nothing is due.
    Empty,
}

#[derive(Debug, Clone)]
pub struct Processor {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    /// Settles same-second ties by asking Stripe (DESIGN.md §2.3), when a key is configured.
    stripe: Option<admit_stripe::api::StripeClient>,
    /// Receipt → outcome, when the app's metrics are attached.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Claimed and not settled yet, in claim order, with their lease.
    in_flight: InFlight<std::collections::VecDeque<(EventId, admit_core::Timestamp)>>,
}

/// The wait after the `attempts`-th failed attempt.
fn retry_delay(attempts: i64) -> i64 {
    RETRY.delay_secs(u32::try_from(attempts.max(0)).unwrap_or(u32::MAX))
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            config,
            clock,
            stripe: None,
            metrics: None,
            in_flight: InFlight::default(),
        }
    }

    /// A processor that fetches a subscription from Stripe when its latest
    /// same-second snapshots cannot be ordered by their causal chain.
    pub fn with_stripe(mut self, stripe: Option<admit_stripe::api::StripeClient>) -> Self {
        self.stripe = stripe;
        self
    }

    /// A processor that reports receipt → outcome to these metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records Stripe's current word on each tied subscription as an event
    /// (stamped now, so it orders after the tie); the processor then
    /// derives again from it. A failed fetch leaves the documented status
    /// precedence in force.
    async fn settle_ties(&self, followups: &Followups) {
        let Some(client) = &self.stripe else { return };
        for (subscription, latest) in &followups.ties {
            let object = match client.retrieve_subscription(subscription.as_str()).await {
                Ok(object) => object,
                Err(error) => {
                    tracing::warn!(subscription = %subscription, error = %error_chain(&error), "could not fetch a subscription to settle a same-second tie");
                    continue;
                }
            };
            let kind = crate::stripe_sync::subscription_event_type(&object);
            // Stripe's word now must order after the tie it settles, even if
            // this clock is behind Stripe's.
            let now = self.clock.now();
            let stamp = latest
                .map(|t| t.plus_seconds(1))
                .filter(|t| *t > now)
                .unwrap_or(now);
            match crate::stripe_sync::record_object(&self.store, kind, &object, stamp).await {
                Ok(_) => {
                    tracing::info!(subscription = %subscription, "same-second tie settled from Stripe");
                }
                Err(error) => {
                    tracing::warn!(subscription = %subscription, error = %error_chain(&error), "could not record a fetched subscription");
                }
            }
        }
    }

    /// Settles the next claimed event, claiming a batch when none is left.
    pub async fn process_next(&self) -> Result<Step, StoreError> {
        let now = self.clock.now();
        if self
            .in_flight
            .update(|held| held.is_empty())
            .unwrap_or(true)
        {
            let claimed = self
                .store
                .claim_events(now, LEASE_SECS, CLAIM_BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(Step::Empty);
            }
            let lease = now.plus_seconds(LEASE_SECS);
            self.in_flight
                .hold(claimed.into_iter().map(|id| (id, lease)).collect());
        }
        let Some(Some((id, held))) = self.in_flight.update(|held| held.front().cloned()) else {
            return Ok(Step::Empty);
        };
        // The batch's lease was set at its claim; each event gets a fresh
        // one before its turn, so a slow batch never lets another processor
        // take an event this one is about to settle.
        let lease = now.plus_seconds(LEASE_SECS);
        if lease != held {
            if !self.store.renew_event_lease(&id, held, lease).await? {
                // Settled by a sibling's derivation, or no longer ours.
                self.in_flight.update(|held| held.pop_front());
                return Ok(Step::Done(id));
            }
            self.in_flight.update(|held| {
                if let Some(front) = held.front_mut() {
                    front.1 = lease;
                }
            });
        }
        let settled = self.settle(id, now).await;
        // Settled (or failed and scheduled): no longer this processor's to give back.
        self.in_flight.update(|held| held.pop_front());
        settled
    }

    async fn settle(&self, id: EventId, now: admit_core::Timestamp) -> Result<Step, StoreError> {
        let Some(stored) = self.store.get_event(&id).await? else {
            return Ok(Step::Done(id));
        };
        let received_at = stored.received_at;
        let step = self.settle_stored(id, stored, now).await;
        // Receipt → outcome for every event the step settled (a sibling's
        // derivation settles the others of its scope at the same time).
        if let (Ok(Step::Done(_)), Some(metrics)) = (&step, &self.metrics) {
            let lag = self.clock.now().unix() - received_at.unix();
            metrics.processing_lag.observe(lag.max(0) as f64);
        }
        step
    }

    async fn settle_stored(
        &self,
        id: EventId,
        stored: admit_store::StoredEvent,
        now: admit_core::Timestamp,
    ) -> Result<Step, StoreError> {
        if matches!(
            stored.status,
            EventStatus::Processed | EventStatus::Held | EventStatus::Ignored
        ) {
            // Settled by the derivation of an event of its scope earlier in the batch.
            return Ok(Step::Done(id));
        }
        if !self.config.stripe.mode.accepts(stored.livemode) {
            self.store
                .finish_event_unprovisioned(&id, EventStatus::Ignored, "livemode_mismatch", None)
                .await?;
            return Ok(Step::Done(id));
        }
        let event = match admit_stripe::billing_event(&stored.payload) {
            Ok(Some(event)) => event,
            Ok(None) => {
                // A thin (v2) event names an object without a snapshot of
                // it: kept, and nothing to act on.
                let thin =
                    admit_stripe::EventEnvelope::parse(&stored.payload).is_ok_and(|e| e.thin);
                let reason = if thin {
                    "thin_event"
                } else {
                    "type_not_handled"
                };
                self.store
                    .finish_event_unprovisioned(&id, EventStatus::Ignored, reason, None)
                    .await?;
                return Ok(Step::Done(id));
            }
            Err(error) => {
                // Malformed content does not improve with retries: failed, visible, kept.
                tracing::warn!(event_id = %id, error = %error_chain(&error), "event cannot be read");
                self.store
                    .finish_event_unprovisioned(&id, EventStatus::Failed, &error.to_string(), None)
                    .await?;
                return Ok(Step::Done(id));
            }
        };
        let keys = event_keys(&event);
        let settle = i64::try_from(self.config.outbox_settle_secs).unwrap_or(i64::MAX);
        let policy = Policy {
            catalog: &self.config.catalog,
            unmatched: self.config.unmatched_purchase,
            grace_period_secs: self.config.grace_period_secs,
            outbox_settle_secs: settle,
            support_email: self.config.support_email.as_ref(),
            mode: self.config.stripe.mode,
        };
        let followups = std::sync::Mutex::new(Followups::default());
        let decide = |snapshot: &admit_store::ScopeSnapshot| {
            let (write, next) = plan_writes(snapshot, &policy, now)?;
            if let Ok(mut slot) = followups.lock() {
                *slot = next;
            }
            Ok(write)
        };
        for _ in 0..MAX_AGAIN {
            match self.store.provision(&id, &keys, now, &decide).await {
                Ok(ProvisionOutcome::Written) => {
                    tracing::info!(event_id = %id, event_type = %stored.event_type, "event provisioned");
                    let next = followups.lock().map(|f| f.clone()).unwrap_or_default();
                    self.settle_ties(&next).await;
                    return Ok(Step::Done(id));
                }
                Ok(ProvisionOutcome::Again) => continue,
                Err(error) => {
                    let retry_at = now.plus_seconds(retry_delay(stored.attempts + 1));
                    let cause = error_chain(&error);
                    tracing::error!(event_id = %id, error = %cause, retry_at = retry_at.unix(), "provisioning failed; will retry");
                    self.store
                        .finish_event_unprovisioned(
                            &id,
                            EventStatus::Failed,
                            &cause,
                            Some(retry_at),
                        )
                        .await?;
                    return Ok(Step::Done(id));
                }
            }
        }
        let retry_at = now.plus_seconds(retry_delay(1));
        self.store
            .finish_event_unprovisioned(
                &id,
                EventStatus::Failed,
                "workspace creation did not settle",
                Some(retry_at),
            )
            .await?;
        Ok(Step::Done(id))
    }

    /// Processes until nothing is due; returns how many events it settled.
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut done = 0;
        while let Step::Done(_) = self.process_next().await? {
            done += 1;
        }
        Ok(done)
    }
}

impl Worker for Processor {
    const NAME: &'static str = "inbox processor";

    async fn step(&self) -> Result<bool, StoreError> {
        Ok(matches!(self.process_next().await?, Step::Done(_)))
    }

    async fn release(&self) {
        for (id, lease_until) in self.in_flight.take().unwrap_or_default() {
            if let Err(error) = self.store.release_event(&id, lease_until).await {
                tracing::error!(event_id = %id, error = %error_chain(&error), "could not release an event's lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(retry_delay(1), 5);
        assert_eq!(retry_delay(2), 10);
        assert_eq!(retry_delay(5), 80);
        assert_eq!(retry_delay(30), 3600);
        assert_eq!(retry_delay(0), 5);
    }
}
