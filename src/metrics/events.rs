//! What the rest of ringback reports: one method per event, which updates the metrics it
//! concerns and logs the line that goes with it (in the spirit of vector's `internal_events`).

use std::time::Duration;

use super::{Metrics, ProducerRestart, PublisherMode, SpoolAppend};
use crate::domain::{Code, Outcome, Record, RecordKind};

/// What the metrics need to know of a record, taken before the record is handed to the
/// batcher, and counted once its outcome is known ([`Metrics::records_committed`]).
pub enum Fact {
    Call(&'static str),
    Cdr {
        answered: bool,
        talk_seconds: u64,
        billable_minutes: u64,
    },
    SmsReport(&'static str),
    Other(RecordKind),
}

/// SMS delivery statuses as ACS documents them; anything else is counted as `other`, so a
/// sender cannot grow the label set.
const SMS_STATUSES: [&str; 5] = ["Delivered", "Failed", "Expired", "Sent", "Queued"];

impl Fact {
    pub fn of(record: &Record) -> Self {
        match record {
            Record::CallEvent(e) => Self::Call(e.event_type.as_str()),
            Record::Cdr(c) => Self::Cdr {
                answered: c.derived.answered,
                talk_seconds: c.derived.talk_seconds.unwrap_or(0).max(0) as u64,
                billable_minutes: c.derived.billable_minutes.unwrap_or(0).max(0) as u64,
            },
            Record::Phone(e) if e.direction == crate::domain::Direction::Outbound => {
                let status = e.delivery_status.as_deref().unwrap_or("");
                Self::SmsReport(
                    SMS_STATUSES
                        .into_iter()
                        .find(|s| s.eq_ignore_ascii_case(status))
                        .unwrap_or("other"),
                )
            }
            other => Self::Other(other.kind()),
        }
    }

    const fn kind(&self) -> RecordKind {
        match self {
            Self::Call(_) => RecordKind::CallStatus,
            Self::Cdr { .. } => RecordKind::Cdr,
            Self::SmsReport(_) => RecordKind::PhoneEvent,
            Self::Other(kind) => *kind,
        }
    }
}

/// How a Kafka delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Delivered,
    /// Failed for now; the entry stays in the outbox.
    Retry,
    /// Can never be delivered; the entry is marked failed.
    Failed,
}

impl Delivered {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

impl Metrics {
    // --- HTTP

    /// A request came in.
    pub fn request_started(&self) {
        self.http_in_flight.inc();
    }

    /// A request ended; `answered` holds its route, source and status when it was answered.
    pub fn request_ended(&self, answered: Option<(&str, &str, &str)>, elapsed: Duration) {
        self.http_in_flight.dec();
        if let Some((route, source, status)) = answered {
            self.http_requests
                .with_label_values(&[route, source, status])
                .inc();
            self.http_duration
                .with_label_values(&[route, source])
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A hook request's body was read whole.
    pub fn body_read(&self, source: &str, bytes: usize) {
        self.http_body_bytes
            .with_label_values(&[source])
            .observe(bytes as f64);
    }

    /// Counts an authenticated push its sender marks as a retry of an earlier attempt.
    pub fn sender_retried(&self, source: &str) {
        self.sender_retries.with_label_values(&[source]).inc();
    }

    // --- Input

    /// Counts a refused request or record, and logs it: one line per refusal, with its code.
    pub fn rejected(&self, source: &str, code: Code, field: Option<&str>, auth: bool) {
        let code = code.as_str();
        self.rejections.with_label_values(&[source, code]).inc();
        if auth {
            // Logged by the caller for the first few per minute only (forged traffic must not
            // fill the logs either).
            self.auth_failures.with_label_values(&[source, code]).inc();
            tracing::debug!(source, code, "authentication failed");
            return;
        }
        tracing::info!(source, code, field, "input refused");
    }

    /// One record of a multi-record body was refused (the others go on).
    pub fn record_rejected(&self, source: &str, kind: RecordKind, code: Code, field: Option<&str>) {
        self.rejected(source, code, field, false);
        self.records
            .with_label_values(&[source, kind.as_str(), "rejected"])
            .inc();
    }

    /// The database refused a record itself (see `batch::isolate`): it is kept as a dead
    /// letter, its batch-mates are committed.
    pub fn record_unstorable(&self, source: &str, kind: &str, reason: &str) {
        let code = crate::domain::UNSTORABLE.as_str();
        self.rejections.with_label_values(&[source, code]).inc();
        tracing::warn!(
            source,
            kind,
            reason,
            "the database refused a record; kept as a dead letter"
        );
    }

    /// A dead letter was committed.
    pub fn dead_letter_kept(&self, source: &str, code: Code) {
        self.dead_letters
            .with_label_values(&[source, code.as_str()])
            .inc();
    }

    /// A request's records were committed: counts them by outcome, and the domain figures of
    /// the new ones (`facts` and `outcomes` in the same order).
    pub fn records_committed(&self, source: &str, facts: &[Fact], outcomes: &[Outcome]) {
        for (fact, outcome) in facts.iter().zip(outcomes) {
            let kind = fact.kind();
            let outcome = match outcome {
                Outcome::Inserted => "accepted",
                Outcome::Duplicate => "duplicate",
                Outcome::Refused => "refused",
            };
            self.records
                .with_label_values(&[source, kind.as_str(), outcome])
                .inc();
            if outcome != "accepted" {
                continue;
            }
            match *fact {
                Fact::Call(event_type) => {
                    self.call_events
                        .with_label_values(&[source, event_type])
                        .inc();
                }
                Fact::Cdr {
                    answered,
                    talk_seconds,
                    billable_minutes,
                } => {
                    let answered = if answered { "true" } else { "false" };
                    self.cdrs.with_label_values(&[source, answered]).inc();
                    self.talk_seconds
                        .with_label_values(&[source])
                        .inc_by(talk_seconds);
                    self.billable_seconds
                        .with_label_values(&[source])
                        .inc_by(billable_minutes * 60);
                }
                Fact::SmsReport(status) => {
                    self.sms_delivery_reports
                        .with_label_values(&[source, status])
                        .inc();
                }
                Fact::Other(_) => {}
            }
        }
    }

    /// A request's records were spooled (on disk locally, not yet in the database): counted
    /// by kind with outcome `spooled`; their figures are counted nowhere else.
    pub fn records_spooled(&self, source: &str, facts: &[Fact]) {
        for kind in facts.iter().map(Fact::kind) {
            self.records
                .with_label_values(&[source, kind.as_str(), "spooled"])
                .inc();
        }
    }

    // --- Batching and store

    /// A batcher took a batch of `records` records; `waiting` submissions are left queued.
    pub fn batch_taken(&self, records: usize, waiting: usize) {
        self.queue_depth.set(waiting as i64);
        self.batch_records.observe(records as f64);
    }

    /// A commit attempt failed; `retrying` says whether another attempt follows.
    pub fn commit_attempt_failed(
        &self,
        error: &str,
        transient: bool,
        attempt: u32,
        records: usize,
        retrying: bool,
    ) {
        let kind = if transient { "transient" } else { "permanent" };
        self.store_errors.with_label_values(&[kind]).inc();
        if retrying {
            tracing::warn!(error, attempt, records, "commit failed; retrying");
        } else {
            tracing::error!(
                error,
                records,
                "commit failed; the batch's requests get 5xx"
            );
        }
    }

    /// A batch the database could not take in time went to the spool instead.
    pub fn batch_spooled(&self, records: usize, reason: &str) {
        tracing::warn!(records, reason, "batch spooled");
    }

    /// A batch's commit ended (retries included), whether it succeeded or not.
    pub fn commit_finished(&self, elapsed: Duration) {
        self.commit_duration.observe(elapsed.as_secs_f64());
    }

    /// The database answered a health check, or did not.
    pub fn store_checked(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// The store's count of failovers seen since start (see `Store::failovers`).
    pub fn store_failovers(&self, total: u64) {
        let seen = self.store_failovers.get();
        if total > seen {
            self.store_failovers.inc_by(total - seen);
        }
    }

    // --- Publishing

    /// A delivery report came back for a message to `topic`. Only a transient failure says
    /// the brokers were not reached: a permanent refusal is an answer.
    pub fn kafka_settled(&self, topic: &str, outcome: Delivered, elapsed: Duration) {
        self.kafka_broker_up
            .set(i64::from(outcome != Delivered::Retry));
        self.kafka_delivery
            .with_label_values(&[topic])
            .observe(elapsed.as_secs_f64());
        self.kafka_messages
            .with_label_values(&[topic, outcome.as_str()])
            .inc();
    }

    /// The publisher replaced its Kafka producer.
    pub fn producer_restarted(&self, reason: ProducerRestart, restarts: u64) {
        let reason = reason.as_str();
        self.producer_restarts.with_label_values(&[reason]).inc();
        tracing::warn!(reason, restarts, "replaced the Kafka producer");
    }

    /// The publisher stalled (entries wait, no delivery succeeds), or delivers again.
    pub fn publisher_stalled(&self, stalled: bool) {
        self.publisher_stalled.set(i64::from(stalled));
    }

    // --- Spool

    /// The spool was opened with room for `max_bytes`.
    pub fn spool_opened(&self, max_bytes: u64) {
        self.spool_max_bytes.set(max_bytes as i64);
    }

    /// The spool's state now.
    pub fn spool_state(
        &self,
        spooling: bool,
        entries: u64,
        records: u64,
        bytes: u64,
        oldest_age_seconds: f64,
    ) {
        self.spool_spooling.set(i64::from(spooling));
        self.spool_entries.set(entries as i64);
        self.spool_records.set(records as i64);
        self.spool_bytes.set(bytes as i64);
        self.spool_oldest_age.set(oldest_age_seconds);
    }

    /// A batch was offered to the spool.
    pub fn spool_append(&self, outcome: SpoolAppend) {
        self.spool_appends
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// `records` spooled records were committed to the database.
    pub fn spool_drained(&self, records: u64) {
        self.spool_drained.inc_by(records);
    }

    /// A spooled batch was refused for good and kept aside (the spool's `failed` table).
    pub fn spool_failed(&self, seq: i64, records: u64, reason: &str) {
        self.spool_failed.inc();
        tracing::error!(
            seq,
            records,
            reason,
            "a spooled batch can never be committed; kept in the spool's failed table"
        );
    }

    /// A damaged spool file was moved aside, or an entry could not be read.
    pub fn spool_corrupt(&self) {
        self.spool_corruption.inc();
    }

    /// The outbox's backlog as last read.
    pub fn outbox_backlog(&self, pending: i64, oldest_age_seconds: f64, failed: i64) {
        self.outbox_pending.set(pending);
        self.outbox_oldest_age.set(oldest_age_seconds);
        self.outbox_failed.set(failed);
    }

    /// The publisher is now in mode `to` (logged when it changed).
    pub fn publisher_mode_changed(&self, from: PublisherMode, to: PublisherMode) {
        if from != to {
            tracing::info!(from = from.as_str(), to = to.as_str(), "publisher mode");
        }
        for mode in PublisherMode::ALL {
            self.publisher_mode
                .with_label_values(&[mode.as_str()])
                .set(i64::from(mode == to));
        }
    }

    /// The maintenance series exist (at 0) from the start, for alerts and dashboards: per
    /// task, and per table of `tables`.
    pub fn init_maintenance(&self, tables: &[&str]) {
        for task in ["partitions", "retention", "rollups"] {
            self.maintenance_errors.with_label_values(&[task]).inc_by(0);
        }
        for table in tables {
            self.partitions_dropped
                .with_label_values(&[table])
                .inc_by(0);
            self.partition_default_rows
                .with_label_values(&[table])
                .set(0);
        }
    }

    /// An expired partition of `table` was dropped.
    pub fn partition_dropped(&self, table: &str) {
        self.partitions_dropped.with_label_values(&[table]).inc();
    }

    /// Retention deleted `rows` rows of `table` (SQLite).
    pub fn retention_deleted(&self, table: &str, rows: u64) {
        self.retention_deleted
            .with_label_values(&[table])
            .inc_by(rows);
    }

    /// `table`'s default partition holds `rows` rows.
    pub fn partition_default_rows(&self, table: &str, rows: i64) {
        self.partition_default_rows
            .with_label_values(&[table])
            .set(rows);
    }

    /// `rows` queued rows were folded into the rollups; `waiting` are left.
    pub fn rollups_folded(&self, rows: u64, waiting: i64) {
        self.rollup_folded.inc_by(rows);
        self.rollup_queue.set(waiting);
    }

    /// A maintenance `task` failed.
    pub fn maintenance_failed(&self, task: &str) {
        self.maintenance_errors.with_label_values(&[task]).inc();
    }
}
