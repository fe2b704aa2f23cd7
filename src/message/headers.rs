//! The CloudEvents Kafka-binding headers of a message (binary mode): consumers route on them
//! without parsing the value.

use crate::domain::{OutboxEntry, RecordKind};

/// CloudEvents `type` of a record kind.
pub fn ce_type(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::CallStatus => "io.ringback.call-status.v1",
        RecordKind::Cdr => "io.ringback.cdr.v1",
        RecordKind::PhoneEvent => "io.ringback.phone-event.v1",
        RecordKind::AcsCallEvent => "io.ringback.call-event.v1",
        RecordKind::ChatEvent => "io.ringback.chat-event.v1",
        RecordKind::WebhookEvent => "io.ringback.webhook-event.v1",
    }
}

/// CloudEvents `source` of a configured source.
pub fn ce_source(source: &str) -> String {
    format!("/ringback/sources/{source}")
}

/// The CloudEvents Kafka-binding headers of an entry, as (name, value) pairs.
pub fn headers(entry: &OutboxEntry) -> [(&'static str, String); 7] {
    [
        ("ce_specversion", "1.0".to_owned()),
        ("ce_id", entry.id.to_string()),
        ("ce_type", ce_type(entry.kind).to_owned()),
        ("ce_source", ce_source(&entry.source)),
        (
            "ce_time",
            entry
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        ("ce_subject", entry.key.clone()),
        ("content-type", "application/json".to_owned()),
    ]
}
