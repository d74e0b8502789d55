//! Prometheus metrics, one registry per running app (no process-wide
//! recorder), so that several apps in one test process count separately.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<ReceivedLabels, Counter>,
    pub webhook_rejections: Family<RejectedLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram>,
    pub outbox_sent: Family<OutboxSentLabels, Counter>,
    pub outbox_failures: Family<OutboxFailureLabels, Counter>,
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
        Arc::new(Self {
            registry,
            events_received,
            webhook_rejections,
            request_duration,
            outbox_sent,
            outbox_failures,
        })
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
