//! Prometheus metrics, one registry per running app (no process-wide
//! recorder), so that several apps in one test process count separately.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReceivedLabels {
    /// The Stripe event type; only signature-verified events are counted, so
    /// only Stripe chooses these values.
    pub r#type: String,
    /// `stored` for a first delivery, `duplicate` for a redelivery.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectedLabels {
    pub code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/v1/events/{id}`), never the raw path: bounded
    /// cardinality and no ids or emails in metrics.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutboxSentLabels {
    /// The message kind (`onboarding`, `support_alert`, …): a fixed set.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutboxFailureLabels {
    pub kind: String,
    /// Whether the failure made the message `dead` at once (a 5xx, a render error).
    pub permanent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DerivationLabels {
    /// `events`: every event read in full (no checkpoint in the scope);
    /// `checkpoint`: a subscription's history from its checkpoint;
    /// `refold`: a checkpoint set aside and the history read in full (an
    /// event created inside it arrived late, or it could not be read).
    pub history: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CaseKindLabels {
    /// The case kind (`missing_workspace`, …): a fixed set.
    pub kind: String,
}

/// The backlog an on-call engineer alerts on, read from the database at
/// each scrape (every instance reports the shared database's figures).
#[derive(Debug, Default)]
pub struct Backlog {
    pub inbox: Gauge,
    pub oldest_unprocessed_age: Gauge,
    pub failed_events: Gauge,
    pub outbox_pending: Gauge,
    pub outbox_dead: Gauge,
    pub held_cases: Family<CaseKindLabels, Gauge>,
    /// When the figures were last read: a stale value means the read fails.
    pub read_at: Gauge,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<ReceivedLabels, Counter>,
    pub webhook_rejections: Family<RejectedLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram>,
    pub outbox_sent: Family<OutboxSentLabels, Counter>,
    pub outbox_failures: Family<OutboxFailureLabels, Counter>,
    pub backlog: Backlog,
    /// From an event's receipt to its outcome (processed, held, ignored).
    pub processing_lag: Histogram,
    /// From a message being queued to the transport accepting it, by kind.
    pub delivery_lag: Family<OutboxSentLabels, Histogram>,
    pub derivations: Family<DerivationLabels, Counter>,
}

/// Seconds, 10 ms … ~1.4 h.
fn lag_buckets() -> Histogram {
    // 1 ms to about 2.3 hours: most events settle well under a second.
    Histogram::new(exponential_buckets(0.001, 2.0, 24))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("admit");
        let events_received = Family::<ReceivedLabels, Counter>::default();
        registry.register(
            "webhook_events_received",
            "Signature-verified Stripe events received, by type and whether they were new",
            events_received.clone(),
        );
        let webhook_rejections = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "webhook_rejections",
            "Webhook deliveries refused, by error code",
            webhook_rejections.clone(),
        );
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 1 ms … ~16 s
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            request_duration.clone(),
        );
        let outbox_sent = Family::<OutboxSentLabels, Counter>::default();
        registry.register(
            "outbox_sent",
            "Outbox messages the transport accepted, by kind",
            outbox_sent.clone(),
        );
        let outbox_failures = Family::<OutboxFailureLabels, Counter>::default();
        registry.register(
            "outbox_failures",
            "Failed outbox delivery attempts, by kind and whether the failure was permanent",
            outbox_failures.clone(),
        );
        let backlog = Backlog::default();
        registry.register(
            "inbox_backlog",
            "Events stored and waiting to be processed",
            backlog.inbox.clone(),
        );
        registry.register(
            "inbox_oldest_unprocessed_age_seconds",
            "How long the oldest event waiting to be processed has waited (0 when none waits)",
            backlog.oldest_unprocessed_age.clone(),
        );
        registry.register(
            "inbox_failed_events",
            "Events whose processing failed (retried with backoff, or waiting for a replay)",
            backlog.failed_events.clone(),
        );
        registry.register(
            "outbox_pending",
            "Messages waiting to be sent",
            backlog.outbox_pending.clone(),
        );
        registry.register(
            "outbox_dead",
            "Messages that failed every attempt and wait for an operator",
            backlog.outbox_dead.clone(),
        );
        registry.register(
            "backlog_read_timestamp_seconds",
            "When the backlog gauges were last read from the database (unix seconds)",
            backlog.read_at.clone(),
        );
        registry.register(
            "cases_held",
            "Held cases waiting for a person, by kind",
            backlog.held_cases.clone(),
        );
        let processing_lag = lag_buckets();
        registry.register(
            "event_processing_lag_seconds",
            "From an event's receipt to the processor step that settled it (events of the same scope settled by that step's derivation are not counted again)",
            processing_lag.clone(),
        );
        let delivery_lag = Family::<OutboxSentLabels, Histogram>::new_with_constructor(lag_buckets);
        registry.register(
            "outbox_delivery_lag_seconds",
            "From a message being queued (its paid event processed) to the transport accepting it, by kind",
            delivery_lag.clone(),
        );
        let derivations = Family::<DerivationLabels, Counter>::default();
        registry.register(
            "derivations",
            "Scope derivations the processor planned, by how it read the subscriptions' history",
            derivations.clone(),
        );
        Arc::new(Self {
            registry,
            derivations,
            events_received,
            webhook_rejections,
            request_duration,
            outbox_sent,
            outbox_failures,
            backlog,
            processing_lag,
            delivery_lag,
        })
    }

    /// Sets the backlog gauges from the database's figures.
    pub fn observe_backlog(&self, backlog: &admit_store::Backlog, now: admit_core::Timestamp) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.backlog.inbox.set(n(backlog.inbox));
        self.backlog.oldest_unprocessed_age.set(
            backlog
                .oldest_unprocessed
                .map_or(0, |t| (now.unix() - t.unix()).max(0)),
        );
        self.backlog.failed_events.set(n(backlog.failed_events));
        self.backlog.outbox_pending.set(n(backlog.pending_mail));
        self.backlog.outbox_dead.set(n(backlog.dead_mail));
        // Every kind reads 0 when none is held, rather than vanishing or
        // keeping a stale count.
        let kinds = admit_core::provisioning::CaseKind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain(std::iter::once("duplicate_customer"));
        for kind in kinds {
            let held = backlog
                .held
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, count)| *count);
            self.backlog
                .held_cases
                .get_or_create(&CaseKindLabels {
                    kind: kind.to_owned(),
                })
                .set(n(held));
        }
        self.backlog.read_at.set(now.unix());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
