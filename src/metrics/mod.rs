//! Every Prometheus metric, registered once, here. Label values are bounded: configured source
//! names (`unknown` for anything else), record kinds, outcomes, error codes, event types and
//! configured topics; never a phone number, a session id or an event id.
//!
//! The rest of ringback does not touch a metric: it reports what happened through the named
//! events of [`events`] (`records_committed`, `commit_finished`, `kafka_settled`, …), each of
//! which counts and logs together.

mod events;
mod labels;

pub use events::{Delivered, Fact};
pub use labels::{ProducerRestart, PublisherMode, SpoolAppend};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for callbacks: a commit takes a few ms; platforms give up after seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Body sizes: a status push is ~300 B, a 50-CDR fee push ~60 KiB.
const BODY_BUCKETS: &[f64] = &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0];
/// Records per batch (batch.max_records defaults to 50).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// One exported metric, as [`Metrics::catalogue`] describes it.
#[derive(Debug, Clone)]
pub struct MetricDoc {
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    pub help: String,
    pub labels: Vec<String>,
}

/// The metrics of one running application (tests run several side by side, so they are not
/// process globals).
pub struct Metrics {
    registry: Registry,
    catalogue: Vec<MetricDoc>,
    // HTTP
    /// Requests by route, source and status code.
    http_requests: IntCounterVec,
    /// Request duration by route and source.
    http_duration: HistogramVec,
    /// Requests being served.
    http_in_flight: IntGauge,
    /// Request body sizes by source.
    http_body_bytes: HistogramVec,
    /// Authenticated pushes their sender marks as a redelivery (Event Grid's
    /// `aeg-delivery-count` above 0), by source.
    sender_retries: IntCounterVec,
    // Records
    /// Records by source, kind and outcome (`accepted`, `duplicate`, `rejected`).
    records: IntCounterVec,
    /// Refused requests and records by source and error code (auth failures included).
    rejections: IntCounterVec,
    /// Authentication failures by source and code.
    auth_failures: IntCounterVec,
    /// Dead letters committed, by source and code.
    dead_letters: IntCounterVec,
    // Batching and store
    /// Records per committed batch.
    batch_records: Histogram,
    /// Requests waiting for the batcher.
    queue_depth: IntGauge,
    /// Duration of a batch's transaction (all attempts).
    commit_duration: Histogram,
    /// Failed commit attempts by kind (`transient`, `permanent`).
    store_errors: IntCounterVec,
    /// 1 while the database answers (checked every few seconds and by `/readyz`).
    store_up: IntGauge,
    store_failovers: prometheus::IntCounter,
    // Publishing
    /// Kafka messages by topic and outcome (`delivered`, `retry`, `failed`).
    kafka_messages: IntCounterVec,
    /// From send to delivery report, by topic.
    kafka_delivery: HistogramVec,
    /// 1 while the last delivery attempt reached the brokers, 0 after a failure.
    kafka_broker_up: IntGauge,
    /// Outbox entries waiting to be published.
    outbox_pending: IntGauge,
    /// Age of the oldest unpublished outbox entry, in seconds (0 when none waits).
    outbox_oldest_age: Gauge,
    /// Outbox entries marked as never publishable.
    outbox_failed: IntGauge,
    /// 1 for the publisher's current mode.
    publisher_mode: IntGaugeVec,
    /// 1 while entries wait and no delivery has succeeded for the stall bound.
    publisher_stalled: IntGauge,
    /// Kafka producers replaced, by reason.
    producer_restarts: IntCounterVec,
    // Spool
    spool_spooling: IntGauge,
    spool_entries: IntGauge,
    spool_records: IntGauge,
    spool_bytes: IntGauge,
    spool_max_bytes: IntGauge,
    spool_oldest_age: Gauge,
    spool_appends: IntCounterVec,
    spool_drained: IntCounter,
    spool_failed: IntCounter,
    spool_corruption: IntCounter,
    // Domain
    /// Accepted call-status events by source and event type.
    call_events: IntCounterVec,
    /// Accepted CDRs by source and whether the call was answered.
    cdrs: IntCounterVec,
    /// Talk seconds of accepted CDRs, by source.
    talk_seconds: IntCounterVec,
    /// Billable time of accepted CDRs (talk time rounded up to whole minutes), in seconds.
    billable_seconds: IntCounterVec,
    /// Accepted SMS delivery reports by source and status.
    sms_delivery_reports: IntCounterVec,
    // Maintenance
    /// Expired partitions dropped, by table.
    partitions_dropped: IntCounterVec,
    /// Rows deleted by retention on SQLite, by table.
    retention_deleted: IntCounterVec,
    /// Rows in a table's default partition (a time no monthly partition holds), as last read.
    partition_default_rows: IntGaugeVec,
    /// CDRs and disconnects folded into the rollups.
    rollup_folded: IntCounter,
    /// CDRs and disconnects waiting to be folded, as last read.
    rollup_queue: IntGauge,
    /// Maintenance runs that failed, by task.
    maintenance_errors: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut m = Self {
            http_requests: counter(
                "ringback_http_requests_total",
                "HTTP requests by route, source and status code.",
                &["route", "source", "status"],
            ),
            http_duration: histogram(
                "ringback_http_request_duration_seconds",
                "HTTP request duration, from the first byte to the answer (commit included).",
                &["route", "source"],
                LATENCY_BUCKETS,
            ),
            http_in_flight: IntGauge::new(
                "ringback_http_requests_in_flight",
                "HTTP requests being served.",
            )
            .expect("valid metric"),
            http_body_bytes: histogram(
                "ringback_http_request_body_bytes",
                "Hook request body sizes.",
                &["source"],
                BODY_BUCKETS,
            ),
            sender_retries: counter(
                "ringback_sender_retries_total",
                "Authenticated pushes their sender marks as a retry (Event Grid's aeg-delivery-count above 0): earlier attempts failed or went unanswered.",
                &["source"],
            ),
            records: counter(
                "ringback_records_total",
                "Records by source, kind and outcome (accepted, duplicate, rejected, refused, spooled).",
                &["source", "kind", "outcome"],
            ),
            rejections: counter(
                "ringback_rejections_total",
                "Refused requests and records by source and error code.",
                &["source", "code"],
            ),
            auth_failures: counter(
                "ringback_auth_failures_total",
                "Authentication failures by source and code.",
                &["source", "code"],
            ),
            dead_letters: counter(
                "ringback_dead_letters_total",
                "Dead letters committed, by source and code.",
                &["source", "code"],
            ),
            batch_records: Histogram::with_opts(
                HistogramOpts::new("ringback_batch_records", "Records per committed batch.")
                    .buckets(BATCH_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            queue_depth: IntGauge::new(
                "ringback_batch_queue_depth",
                "Requests waiting for the batcher.",
            )
            .expect("valid metric"),
            commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ringback_store_commit_duration_seconds",
                    "Duration of a batch's commit, retries included.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            store_errors: counter(
                "ringback_store_errors_total",
                "Failed commit attempts by kind (transient, permanent).",
                &["kind"],
            ),
            store_up: IntGauge::new(
                "ringback_store_up",
                "1 while the database answers (checked every few seconds and by /readyz).",
            )
            .expect("valid metric"),
            store_failovers: prometheus::IntCounter::new(
                "ringback_store_failovers_total",
                "Database failovers seen: a new connection found the primary on another WAL \
                 timeline.",
            )
            .expect("valid metric"),
            kafka_messages: counter(
                "ringback_kafka_messages_total",
                "Kafka messages by topic and outcome (delivered, retry, failed).",
                &["topic", "outcome"],
            ),
            kafka_delivery: histogram(
                "ringback_kafka_delivery_seconds",
                "From send to delivery report, by topic.",
                &["topic"],
                LATENCY_BUCKETS,
            ),
            kafka_broker_up: IntGauge::new(
                "ringback_kafka_broker_up",
                "1 while the last delivery attempt reached the brokers, 0 after a failure or \
                 with no brokers.",
            )
            .expect("valid metric"),
            outbox_pending: IntGauge::new(
                "ringback_outbox_pending",
                "Outbox entries waiting to be published to Kafka.",
            )
            .expect("valid metric"),
            outbox_oldest_age: Gauge::new(
                "ringback_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox entry (0 when none waits).",
            )
            .expect("valid metric"),
            outbox_failed: IntGauge::new(
                "ringback_outbox_failed",
                "Outbox entries that can never be published (too large, not authorised).",
            )
            .expect("valid metric"),
            publisher_mode: IntGaugeVec::new(
                Opts::new(
                    "ringback_publisher_mode",
                    "1 for the publisher's current mode.",
                ),
                &["mode"],
            )
            .expect("valid metric"),
            publisher_stalled: IntGauge::new(
                "ringback_publisher_stalled",
                "1 while outbox entries wait and no Kafka delivery has succeeded for twice the \
                 delivery bound (kafka.message_timeout + 10 s).",
            )
            .expect("valid metric"),
            producer_restarts: counter(
                "ringback_kafka_producer_restarts_total",
                "Kafka producers replaced because they could not make progress, by reason \
                 (fatal, unreported, stalled).",
                &["reason"],
            ),
            spool_spooling: gauge(
                "ringback_spool_spooling",
                "1 while new batches go to the local spool (it holds batches, or the database \
                 does not take them in time).",
            ),
            spool_entries: gauge("ringback_spool_entries", "Batches in the local spool."),
            spool_records: gauge("ringback_spool_records", "Records in the local spool."),
            spool_bytes: gauge(
                "ringback_spool_bytes",
                "Bytes of batches in the local spool.",
            ),
            spool_max_bytes: gauge("ringback_spool_max_bytes", "spool.max_bytes."),
            spool_oldest_age: Gauge::new(
                "ringback_spool_oldest_age_seconds",
                "Age of the oldest batch in the spool (0 when empty).",
            )
            .expect("valid metric"),
            spool_appends: counter(
                "ringback_spool_appends_total",
                "Batches offered to the spool, by outcome (ok: on disk; full, error: refused \
                 with 503 spool_full).",
                &["outcome"],
            ),
            spool_drained: IntCounter::new(
                "ringback_spool_drained_records_total",
                "Spooled records committed to the database.",
            )
            .expect("valid metric"),
            spool_failed: IntCounter::new(
                "ringback_spool_failed_total",
                "Spooled batches the database refused for good (kept in the spool's failed table).",
            )
            .expect("valid metric"),
            spool_corruption: IntCounter::new(
                "ringback_spool_corruption_total",
                "Damaged spool files moved aside at start, and unreadable spooled batches.",
            )
            .expect("valid metric"),
            call_events: counter(
                "ringback_call_events_total",
                "Accepted call-status events by source and event type.",
                &["source", "event_type"],
            ),
            cdrs: counter(
                "ringback_cdrs_total",
                "Accepted CDRs by source and whether the call was answered.",
                &["source", "answered"],
            ),
            talk_seconds: counter(
                "ringback_talk_seconds_total",
                "Talk seconds of accepted CDRs.",
                &["source"],
            ),
            billable_seconds: counter(
                "ringback_billable_seconds_total",
                "Billable time of accepted CDRs (per started minute), in seconds.",
                &["source"],
            ),
            sms_delivery_reports: counter(
                "ringback_sms_delivery_reports_total",
                "Accepted SMS delivery reports by source and status (Delivered, Failed, Expired, \
                 Sent, Queued, other).",
                &["source", "status"],
            ),
            partitions_dropped: counter(
                "ringback_partitions_dropped_total",
                "Expired monthly partitions dropped by retention, by table.",
                &["table"],
            ),
            retention_deleted: counter(
                "ringback_retention_deleted_rows_total",
                "Rows deleted by retention (SQLite, which has no partitions), by table.",
                &["table"],
            ),
            partition_default_rows: IntGaugeVec::new(
                Opts::new(
                    "ringback_partition_default_rows",
                    "Rows in a table's default partition: times no monthly partition holds \
                     (absent or absurd), as last read.",
                ),
                &["table"],
            )
            .expect("valid metric"),
            rollup_folded: IntCounter::new(
                "ringback_rollup_rows_folded_total",
                "CDRs and disconnect events folded into the rollup tables.",
            )
            .expect("valid metric"),
            rollup_queue: gauge(
                "ringback_rollup_queue",
                "CDRs and disconnect events waiting to be folded into the rollups, as last read.",
            ),
            maintenance_errors: counter(
                "ringback_maintenance_errors_total",
                "Maintenance runs that failed, by task (partitions, retention, rollups).",
                &["task"],
            ),
            registry,
            catalogue: Vec::new(),
        };
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ringback_build_info",
                "Always 1; the version of the running binary.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let collectors: Vec<(Box<dyn Collector>, &'static str)> = vec![
            (Box::new(m.http_requests.clone()), "counter"),
            (Box::new(m.http_duration.clone()), "histogram"),
            (Box::new(m.http_in_flight.clone()), "gauge"),
            (Box::new(m.http_body_bytes.clone()), "histogram"),
            (Box::new(m.sender_retries.clone()), "counter"),
            (Box::new(m.records.clone()), "counter"),
            (Box::new(m.rejections.clone()), "counter"),
            (Box::new(m.auth_failures.clone()), "counter"),
            (Box::new(m.dead_letters.clone()), "counter"),
            (Box::new(m.batch_records.clone()), "histogram"),
            (Box::new(m.queue_depth.clone()), "gauge"),
            (Box::new(m.commit_duration.clone()), "histogram"),
            (Box::new(m.store_errors.clone()), "counter"),
            (Box::new(m.store_up.clone()), "gauge"),
            (Box::new(m.store_failovers.clone()), "counter"),
            (Box::new(m.kafka_messages.clone()), "counter"),
            (Box::new(m.kafka_delivery.clone()), "histogram"),
            (Box::new(m.kafka_broker_up.clone()), "gauge"),
            (Box::new(m.outbox_pending.clone()), "gauge"),
            (Box::new(m.outbox_oldest_age.clone()), "gauge"),
            (Box::new(m.outbox_failed.clone()), "gauge"),
            (Box::new(m.publisher_mode.clone()), "gauge"),
            (Box::new(m.publisher_stalled.clone()), "gauge"),
            (Box::new(m.producer_restarts.clone()), "counter"),
            (Box::new(m.spool_spooling.clone()), "gauge"),
            (Box::new(m.spool_entries.clone()), "gauge"),
            (Box::new(m.spool_records.clone()), "gauge"),
            (Box::new(m.spool_bytes.clone()), "gauge"),
            (Box::new(m.spool_max_bytes.clone()), "gauge"),
            (Box::new(m.spool_oldest_age.clone()), "gauge"),
            (Box::new(m.spool_appends.clone()), "counter"),
            (Box::new(m.spool_drained.clone()), "counter"),
            (Box::new(m.spool_failed.clone()), "counter"),
            (Box::new(m.spool_corruption.clone()), "counter"),
            (Box::new(m.call_events.clone()), "counter"),
            (Box::new(m.cdrs.clone()), "counter"),
            (Box::new(m.talk_seconds.clone()), "counter"),
            (Box::new(m.billable_seconds.clone()), "counter"),
            (Box::new(m.sms_delivery_reports.clone()), "counter"),
            (Box::new(m.partitions_dropped.clone()), "counter"),
            (Box::new(m.retention_deleted.clone()), "counter"),
            (Box::new(m.partition_default_rows.clone()), "gauge"),
            (Box::new(m.rollup_folded.clone()), "counter"),
            (Box::new(m.rollup_queue.clone()), "gauge"),
            (Box::new(m.maintenance_errors.clone()), "counter"),
            (Box::new(build_info), "gauge"),
            // process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds…
            (
                Box::new(prometheus::process_collector::ProcessCollector::for_self()),
                "process",
            ),
        ];
        for kind in ["transient", "permanent"] {
            m.store_errors.with_label_values(&[kind]);
        }
        for reason in ProducerRestart::ALL {
            m.producer_restarts.with_label_values(&[reason.as_str()]);
        }
        for outcome in SpoolAppend::ALL {
            m.spool_appends.with_label_values(&[outcome.as_str()]);
        }
        for (c, kind) in collectors {
            for desc in c.desc() {
                // The process collector's figures: its counter is the one named `_total`.
                let kind = match kind {
                    "process" if desc.fq_name.ends_with("_total") => "counter",
                    "process" => "gauge",
                    kind => kind,
                };
                m.catalogue.push(MetricDoc {
                    name: desc.fq_name.clone(),
                    kind,
                    help: desc.help.clone(),
                    labels: desc.variable_labels.clone(),
                });
            }
            m.registry
                .register(c)
                .expect("each metric is registered once");
        }
        m
    }

    /// Every metric this process exports, in registration order: name, type, help and labels
    /// (`docs/reference/metrics.md` is generated from it, and a test keeps the two equal).
    pub fn catalogue(&self) -> &[MetricDoc] {
        &self.catalogue
    }

    /// Creates the series of a configured source at zero, so that dashboards and alerts (a
    /// source that never sent anything, `increase(…) == 0`) see them from the start.
    pub fn init_source(&self, source: &str, kind: crate::sources::Platform) {
        use crate::sources::Platform;
        self.http_requests
            .with_label_values(&["hooks", source, "200"]);
        self.http_duration.with_label_values(&["hooks", source]);
        // From zero, so that the first refusal is an increase (RingbackRecordsUnstorable).
        self.rejections
            .with_label_values(&[source, crate::domain::UNSTORABLE.as_str()]);
        for kind in kind.record_kinds() {
            for outcome in ["accepted", "duplicate", "rejected", "refused"] {
                self.records
                    .with_label_values(&[source, kind.as_str(), outcome]);
            }
        }
        match kind {
            Platform::HuaweiVoiceCall => {
                for event_type in crate::domain::CallEventType::ALL {
                    self.call_events
                        .with_label_values(&[source, event_type.as_str()]);
                }
                for answered in ["true", "false"] {
                    self.cdrs.with_label_values(&[source, answered]);
                }
                self.talk_seconds.with_label_values(&[source]);
                self.billable_seconds.with_label_values(&[source]);
            }
            Platform::AzureCommunication => {
                self.sender_retries.with_label_values(&[source]);
                for status in ["Delivered", "Failed"] {
                    self.sms_delivery_reports
                        .with_label_values(&[source, status]);
                }
            }
            Platform::StandardWebhooks => {}
        }
    }

    /// Creates the series of a topic at zero.
    pub fn init_topic(&self, topic: &str) {
        for outcome in ["delivered", "retry", "failed"] {
            self.kafka_messages.with_label_values(&[topic, outcome]);
        }
        self.kafka_delivery.with_label_values(&[topic]);
    }

    /// Hook requests per source since this process started: (source, answered 2xx, refused or
    /// failed), by source name (the console's overview).
    pub fn pushes(&self) -> Vec<(String, u64, u64)> {
        let mut by_source: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for family in self.http_requests.collect() {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                };
                let (Some(source), Some(status)) = (label("source"), label("status")) else {
                    continue;
                };
                if label("route").as_deref() != Some("hooks") {
                    continue;
                }
                let n = m.get_counter().get_value() as u64;
                let entry = by_source.entry(source).or_default();
                if status.starts_with('2') {
                    entry.0 += n;
                } else {
                    entry.1 += n;
                }
            }
        }
        by_source
            .into_iter()
            .map(|(s, (ok, no))| (s, ok, no))
            .collect()
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
