//! Every Prometheus metric, registered once, here. Label values are bounded: source names,
//! record kinds, outcomes, error codes and topics from config, never a number or an id.

use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metrics of one running application (tests run several side by side, so they are not
/// process globals).
pub struct Metrics {
    registry: Registry,
    /// Records by source, kind and outcome (`accepted`, `duplicate`, `rejected`).
    pub records: IntCounterVec,
    /// Outbox entries waiting to be published.
    pub outbox_pending: IntGauge,
    /// Age of the oldest unpublished outbox entry, in seconds (0 when none waits).
    pub outbox_oldest_age: Gauge,
    /// Outbox entries marked as never publishable.
    pub outbox_failed: IntGauge,
    /// Kafka messages by topic and outcome (`delivered`, `retry`, `failed`).
    pub kafka_messages: IntCounterVec,
    /// The publisher's mode: 1 for the current one of `live`, `catching_up`, `outbox_only`.
    pub publisher_mode: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("ringback".into()), None)
            .expect("the prefix is a valid metric name");
        let records = IntCounterVec::new(
            Opts::new("records_total", "Records by source, kind and outcome."),
            &["source", "kind", "outcome"],
        )
        .expect("valid metric");
        let outbox_pending = IntGauge::new(
            "outbox_pending",
            "Outbox entries waiting to be published to Kafka.",
        )
        .expect("valid metric");
        let outbox_oldest_age = Gauge::new(
            "outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox entry (0 when none waits).",
        )
        .expect("valid metric");
        let outbox_failed = IntGauge::new(
            "outbox_failed",
            "Outbox entries that can never be published (too large, not authorised).",
        )
        .expect("valid metric");
        let kafka_messages = IntCounterVec::new(
            Opts::new(
                "kafka_messages_total",
                "Kafka messages by topic and outcome.",
            ),
            &["topic", "outcome"],
        )
        .expect("valid metric");
        let publisher_mode = IntGaugeVec::new(
            Opts::new("publisher_mode", "1 for the publisher's current mode."),
            &["mode"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(records.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(outbox_pending.clone()),
            Box::new(outbox_oldest_age.clone()),
            Box::new(outbox_failed.clone()),
            Box::new(kafka_messages.clone()),
            Box::new(publisher_mode.clone()),
        ] {
            registry
                .register(metric)
                .expect("each metric is registered once");
        }
        Self {
            registry,
            records,
            outbox_pending,
            outbox_oldest_age,
            outbox_failed,
            kafka_messages,
            publisher_mode,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
