//! The background processor and its single step (one claimed batch),
//! which tests call directly.
//!
//! A step claims a batch, reads each event's scope outside the write lock,
//! derives it, and writes every derivation in one transaction, each checked
//! against the versions of the scope it read. A derivation that lost a race
//! (another processor, an operator) is derived again from a fresh read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use admit_core::{EventId, Timestamp};
use admit_store::{
    ClaimedEvent, CommitOutcome, EventKeys, EventStatus, History, ScopeCommit, Store, StoreError,
};

use super::persist::{Followups, Plan, Policy, plan_writes};
use crate::clock::Clock;
use crate::config::Config;
use crate::telemetry::error_chain;
use crate::worker::{InFlight, Worker};

/// How long a claimed event is reserved for the processor that claimed
/// it. Only an efficiency device: the version check keeps a processor
/// whose lease ran out from writing over a newer derivation.
const LEASE_SECS: i64 = 60;
/// Events claimed, derived and written together: one claim, one commit and
/// one sync for all of them. A burst's events of one purchase share a
/// derivation: the first settles its whole scope.
const CLAIM_BATCH: u32 = 32;
/// Scopes read and derived at the same time: reads are mostly waits on
/// SQLite's threads, so a few at once keep both cores busy.
const READS_AT_ONCE: usize = 4;
/// A batch's conflicts and workspace creations are derived again this many
/// times; what is still unsettled is given back for the next claim.
const MAX_PASSES: usize = 4;
/// Retry backoff: 5 s, 10 s, 20 s … capped at an hour.
const RETRY: admit_core::Backoff =
    admit_core::Backoff::new(Duration::from_secs(5), Duration::from_secs(3600));

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A batch was claimed; this many of its events were settled (or failed
    /// and scheduled for a retry).
    Done(usize),
    /// Nothing is due.
    Empty,
}

/// What reading and deriving one claimed event led to.
enum Derived {
    /// Settled without a derivation: ignored, unreadable, or settled by an
    /// earlier batch.
    Settled,
    /// A derivation to write.
    Commit {
        commit: Box<ScopeCommit>,
        followups: Followups,
    },
}

/// One read and derivation of a claimed event's scope.
enum Attempt {
    Derived(Derived),
    /// The derivation needs the events a checkpoint covers: read in full.
    ReadInFull,
}

/// What one pass over a batch leaves to do.
#[derive(Default)]
struct Pass {
    settled: usize,
    /// To derive again: the scope moved, or workspaces were just created.
    again: Vec<ClaimedEvent>,
    /// Derived again because workspaces were created, in the last pass.
    created: Vec<ClaimedEvent>,
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
    /// The batch being settled, with the lease its claim set.
    in_flight: InFlight<Vec<(EventId, Timestamp)>>,
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

    fn policy(&self) -> Policy<'_> {
        Policy {
            catalog: &self.config.catalog,
            unmatched: self.config.unmatched_purchase,
            grace_period_secs: self.config.grace_period_secs,
            outbox_settle_secs: i64::try_from(self.config.outbox_settle_secs).unwrap_or(i64::MAX),
            support_email: self.config.support_email.as_ref(),
            mode: self.config.stripe.mode,
        }
    }

    /// Claims a batch and settles it.
    pub async fn process_next(&self) -> Result<Step, StoreError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_events(now, LEASE_SECS, CLAIM_BATCH)
            .await?;
        if claimed.is_empty() {
            return Ok(Step::Empty);
        }
        let lease = now.plus_seconds(LEASE_SECS);
        self.in_flight
            .hold(claimed.iter().map(|c| (c.id.clone(), lease)).collect());
        let mut settled = 0;
        let mut pending = claimed;
        let mut created = Vec::new();
        for _ in 0..MAX_PASSES {
            if pending.is_empty() {
                break;
            }
            let pass = self.pass(pending, now).await?;
            settled += pass.settled;
            pending = pass.again;
            created = pass.created;
        }
        for ClaimedEvent { id, .. } in &pending {
            if created.iter().any(|c| &c.id == id) {
                // Workspaces keep being created and the purchase never
                // settles on one: visible, and retried later.
                self.fail(id, "workspace creation did not settle", now)
                    .await?;
                settled += 1;
            } else {
                // Lost every race this batch: the next claim takes it again.
                self.store.release_event(id, lease).await?;
            }
        }
        self.in_flight.done();
        Ok(Step::Done(settled))
    }

    /// Reads and derives each pending event, writes the derivations in one
    /// transaction, and says what is left.
    async fn pass(&self, pending: Vec<ClaimedEvent>, now: Timestamp) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        let mut commits = Vec::new();
        let mut derived: Vec<(ClaimedEvent, Followups)> = Vec::new();
        // Events a derivation of this pass settles, by the derivation's index.
        let mut covered: BTreeMap<EventId, usize> = BTreeMap::new();
        let mut deferred: Vec<(ClaimedEvent, usize)> = Vec::new();
        let mut queue: std::collections::VecDeque<ClaimedEvent> = pending.into();
        while !queue.is_empty() {
            // A wave holds one event of a purchase at most: the purchase's
            // other events are likely settled by its derivation.
            let mut wave: Vec<ClaimedEvent> = Vec::new();
            let mut later = std::collections::VecDeque::new();
            while let Some(item) = queue.pop_front() {
                if let Some(&at) = covered.get(&item.id) {
                    deferred.push((item, at));
                } else if wave.len() < READS_AT_ONCE
                    && !wave.iter().any(|w| {
                        w.purchase_keys
                            .iter()
                            .any(|k| item.purchase_keys.contains(k))
                    })
                {
                    wave.push(item);
                } else {
                    later.push_back(item);
                }
            }
            queue = later;
            let results =
                futures::future::join_all(wave.iter().map(|item| self.derive(item, now))).await;
            for (item, result) in wave.into_iter().zip(results) {
                match result? {
                    Derived::Settled => {
                        self.observe(item.received_ms);
                        pass.settled += 1;
                    }
                    Derived::Commit { commit, followups } => {
                        let at = commits.len();
                        for status in &commit.write.event_statuses {
                            if status.status != EventStatus::Received {
                                covered.entry(status.id.clone()).or_insert(at);
                            }
                        }
                        commits.push(*commit);
                        derived.push((item, followups));
                    }
                }
            }
        }
        if commits.is_empty() {
            return Ok(pass);
        }
        let outcomes = self.store.commit_scopes(&commits, now).await?;
        if outcomes.len() != commits.len() {
            return Err(StoreError::Decision(format!(
                "the store answered {} outcomes for {} derivations",
                outcomes.len(),
                commits.len()
            )));
        }
        for ((item, followups), outcome) in derived.into_iter().zip(&outcomes) {
            match outcome {
                CommitOutcome::Written => {
                    tracing::info!(event_id = %item.id, "event provisioned");
                    self.observe(item.received_ms);
                    pass.settled += 1;
                    self.settle_ties(&followups).await;
                }
                CommitOutcome::Conflict => pass.again.push(item),
                CommitOutcome::Created => {
                    pass.created.push(item.clone());
                    pass.again.push(item);
                }
                CommitOutcome::Failed(cause) => {
                    tracing::error!(event_id = %item.id, error = %cause, "provisioning failed; will retry");
                    self.fail(&item.id, cause, now).await?;
                    pass.settled += 1;
                }
            }
        }
        for (item, at) in deferred {
            if outcomes.get(at) == Some(&CommitOutcome::Written) {
                // Settled by a sibling's derivation.
                self.observe(item.received_ms);
                pass.settled += 1;
            } else {
                pass.again.push(item);
            }
        }
        Ok(pass)
    }

    /// Reads the event's scope and derives it; settles at once what needs
    /// no derivation. A subscription's history comes from its checkpoint,
    /// unless the derivation needs the events it covers: then once more in full.
    async fn derive(&self, claimed: &ClaimedEvent, now: Timestamp) -> Result<Derived, StoreError> {
        let id = &claimed.id;
        if !claimed.billed
            && let Some(settled) = self.settle_unbilled(id).await?
        {
            return Ok(settled);
        }
        if let Attempt::Derived(derived) = self.derive_from(id, now, History::Checkpoints).await? {
            return Ok(derived);
        }
        match self.derive_from(id, now, History::Full).await? {
            Attempt::Derived(derived) => Ok(derived),
            Attempt::ReadInFull => {
                let error = StoreError::Decision(format!(
                    "the scope of event {id} read in full still asked for its history"
                ));
                self.failed(id, &error, now).await
            }
        }
    }

    /// [`Self::derive`] from one read.
    async fn derive_from(
        &self,
        id: &EventId,
        now: Timestamp,
        history: History,
    ) -> Result<Attempt, StoreError> {
        // One event's unreadable scope (one that does not close, a corrupt
        // row) fails that event, visibly and with a retry; its batch goes on.
        let mut read = match self
            .store
            .read_scope(id, &EventKeys::default(), history)
            .await
        {
            Ok(read) => read,
            Err(error) => return self.failed(id, &error, now).await.map(Attempt::Derived),
        };
        if let Some(keys) = self.legacy_keys(id, &read) {
            // Stored before ingress kept the billing event: its key columns
            // may be older than this version's reading of the body.
            read = match self.store.read_scope(id, &keys, history).await {
                Ok(read) => read,
                Err(error) => return self.failed(id, &error, now).await.map(Attempt::Derived),
            };
        }
        let Some(stored) = read.snapshot.events.iter().find(|e| &e.id == id) else {
            return Ok(Attempt::Derived(Derived::Settled));
        };
        if matches!(
            stored.status,
            EventStatus::Processed | EventStatus::Held | EventStatus::Ignored
        ) {
            return Ok(Attempt::Derived(Derived::Settled));
        }
        if !self.config.stripe.mode.accepts(stored.livemode) {
            self.store
                .finish_event_unprovisioned(id, EventStatus::Ignored, "livemode_mismatch", None)
                .await?;
            return Ok(Attempt::Derived(Derived::Settled));
        }
        let planned = plan_writes(&read.snapshot, &self.policy(), now);
        if let (Some(metrics), Ok(Plan::Write(..))) = (&self.metrics, &planned) {
            let snapshot = &read.snapshot;
            let history = if history == History::Full || !snapshot.stale_checkpoints.is_empty() {
                "refold"
            } else if snapshot.checkpoints.is_empty() {
                "events"
            } else {
                "checkpoint"
            };
            metrics
                .derivations
                .get_or_create(&crate::metrics::DerivationLabels { history })
                .inc();
        }
        match planned {
            Ok(Plan::Write(write, followups)) => Ok(Attempt::Derived(Derived::Commit {
                commit: Box::new(ScopeCommit {
                    claimed: id.clone(),
                    versions: read.versions,
                    write: *write,
                }),
                followups,
            })),
            Ok(Plan::ReadInFull) => Ok(Attempt::ReadInFull),
            Err(error) => self.failed(id, &error, now).await.map(Attempt::Derived),
        }
    }

    /// An event ingress stored no billing event for, settled from its own
    /// row: the body says why (a type admit does not act on, a thin event,
    /// unreadable content). `None` for a row stored before ingress kept the
    /// billing event, whose body holds one: it is derived like the others.
    async fn settle_unbilled(&self, id: &EventId) -> Result<Option<Derived>, StoreError> {
        let Some(stored) = self.store.get_event(id).await? else {
            return Ok(Some(Derived::Settled));
        };
        if matches!(
            stored.status,
            EventStatus::Processed | EventStatus::Held | EventStatus::Ignored
        ) {
            return Ok(Some(Derived::Settled));
        }
        if !self.config.stripe.mode.accepts(stored.livemode) {
            self.store
                .finish_event_unprovisioned(id, EventStatus::Ignored, "livemode_mismatch", None)
                .await?;
            return Ok(Some(Derived::Settled));
        }
        let read = match &stored.body_error {
            Some(cause) => Err(cause.clone()),
            None => admit_stripe::billing_event(&stored.payload).map_err(|e| error_chain(&e)),
        };
        let (status, reason) = match read {
            Ok(Some(_)) => return Ok(None),
            // A thin (v2) event names an object without a snapshot of it:
            // kept, and nothing to act on.
            Ok(None)
                if admit_stripe::EventEnvelope::parse(&stored.payload).is_ok_and(|e| e.thin) =>
            {
                (EventStatus::Ignored, "thin_event".to_owned())
            }
            Ok(None) => (EventStatus::Ignored, "type_not_handled".to_owned()),
            // Malformed content (or a damaged stored body) does not improve
            // with retries: failed, visible, kept.
            Err(cause) => {
                tracing::warn!(event_id = %id, error = %cause, "event cannot be read");
                (EventStatus::Failed, cause)
            }
        };
        self.store
            .finish_event_unprovisioned(id, status, &reason, None)
            .await?;
        Ok(Some(Derived::Settled))
    }

    /// The keys this version reads from the claimed event's body, when the
    /// row has no stored billing event and its body is one admit acts on.
    fn legacy_keys(&self, id: &EventId, read: &admit_store::ScopeRead) -> Option<EventKeys> {
        let stored = read.snapshot.events.iter().find(|e| &e.id == id)?;
        if stored.billing.is_some() || stored.covered {
            return None;
        }
        let event = admit_stripe::billing_event(&stored.payload).ok()??;
        Some(crate::inbox::event_keys(&event))
    }

    /// An event whose derivation could not be read or planned: failed,
    /// visibly, and retried with backoff.
    async fn failed(
        &self,
        id: &EventId,
        error: &StoreError,
        now: Timestamp,
    ) -> Result<Derived, StoreError> {
        let cause = error_chain(error);
        tracing::error!(event_id = %id, error = %cause, "provisioning failed; will retry");
        self.fail(id, &cause, now).await?;
        Ok(Derived::Settled)
    }

    /// Failed, visibly, and retried with backoff.
    async fn fail(&self, id: &EventId, cause: &str, now: Timestamp) -> Result<(), StoreError> {
        let attempts = self
            .store
            .get_event(id)
            .await?
            .map_or(1, |stored| stored.attempts);
        let retry_at = now.plus_seconds(retry_delay(attempts));
        self.store
            .finish_event_unprovisioned(id, EventStatus::Failed, cause, Some(retry_at))
            .await
    }

    /// Receipt → outcome of a settled event.
    fn observe(&self, received_ms: i64) {
        if let Some(metrics) = &self.metrics {
            let lag = self.clock.now_millis() - received_ms;
            metrics.processing_lag.observe(lag.max(0) as f64 / 1000.0);
        }
    }

    /// Processes until nothing is due; returns how many events it settled.
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut done = 0;
        while let Step::Done(settled) = self.process_next().await? {
            done += settled;
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
        // Settled ones are left as they are: a release only touches an
        // unsettled event under this lease.
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
