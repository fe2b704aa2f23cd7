//! A record's Kafka message, shared by the layers that write it (the batch, into the outbox)
//! and send it (the publisher, `ringback replay`): its value ([`schema`], `ringback.record.v1`),
//! its CloudEvents headers ([`headers`]), and how a stored record's message is rebuilt
//! ([`rebuild`]). It sits below the batch and the publisher, and above the sources, whose
//! parsers a rebuild runs, and the store, which keeps what it is rebuilt from.

mod headers;
mod rebuild;
mod schema;

pub use headers::{ce_source, ce_type, headers};
pub use rebuild::{rebuild, RebuildError};
pub use schema::{encode, json_schema, SCHEMA};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Record, RecordKind};
    use crate::sources::{huawei, ParseContext};

    fn parse(body: &str) -> Vec<Record> {
        parse_in(body, None)
    }

    fn parse_in(body: &str, region: Option<crate::domain::Region>) -> Vec<Record> {
        let ctx = ParseContext {
            source: "hw".into(),
            received_at: "2026-11-21T08:00:00Z".parse().unwrap(),
            region,
        };
        huawei::parse_body(body.as_bytes(), &ctx).unwrap().records
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/huawei/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_cdr_message_carries_the_normalised_fields() {
        let records = parse(&fixture("fee"));
        let entry = encode(&records[0]);
        assert_eq!(entry.id, records[0].id());
        assert_eq!(entry.kind, RecordKind::Cdr);
        assert!(entry.key.starts_with("1201_612_"));
        let v: serde_json::Value = serde_json::from_str(&entry.payload).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["id"], entry.id.to_string());
        assert_eq!(v["kind"], "cdr");
        assert_eq!(v["source"], "hw");
        assert_eq!(v["occurred_at"], "2019-01-24T03:04:49Z");
        assert_eq!(v["received_at"], "2026-11-21T08:00:00Z");
        assert_eq!(v["data"]["icid"], "CAE-20190124110424-12019775");
        assert_eq!(v["data"]["talk_seconds"], 11);
        assert_eq!(v["data"]["billable_minutes"], 1);
        assert_eq!(v["data"]["answered"], true);
        assert_eq!(v["data"]["fail_time"], serde_json::Value::Null);
        assert_eq!(v["data"]["flags"], serde_json::json!([]));
    }

    #[test]
    fn a_rebuilt_message_writes_numbers_in_the_region_the_live_one_did() {
        let body = fixture("fee")
            .replace("\"+8613800000022\"", "\"138 0000 0022\"")
            .replace("\"+8675512345678\"", "\"(0755) 1234-5678\"");
        let cn: crate::domain::Region = "CN".parse().unwrap();
        let records = parse_in(&body, Some(cn));
        let live = encode(&records[0]);
        let v: serde_json::Value = serde_json::from_str(&live.payload).unwrap();
        assert_eq!(v["data"]["caller_num"], "+8613800000022");
        assert_eq!(v["data"]["bind_num"], "+8675512345678");
        let Record::Cdr(cdr) = &records[0] else {
            panic!("a CDR")
        };
        assert!(
            cdr.raw.contains("\"138 0000 0022\""),
            "raw keeps what was sent"
        );
        let stored = crate::domain::StoredRecord {
            id: live.id,
            source: "hw".into(),
            received_at: "2026-11-21T08:00:00Z".parse().unwrap(),
            event_type: None,
            raw: cdr.raw.clone(),
            webhook: None,
        };
        let rebuilt = rebuild(RecordKind::Cdr, &stored, Some(cn)).unwrap();
        assert_eq!(rebuilt.payload, live.payload);
        // Without the region the numbers would differ from the live message's.
        let unlocalized = rebuild(RecordKind::Cdr, &stored, None).unwrap();
        assert_ne!(unlocalized.payload, live.payload);
    }

    #[test]
    fn a_standard_webhooks_event_rebuilds_from_its_row() {
        use crate::auth::standard_webhooks::WebhookHeaders;
        use crate::sources::standard_webhooks;
        let ctx = crate::sources::ParseContext {
            source: "sw".into(),
            received_at: "2026-11-21T08:00:05Z".parse().unwrap(),
            region: None,
        };
        let h = WebhookHeaders {
            id: "msg_2Lh",
            timestamp: "1763712000",
            signature: "v1,x",
        };
        let body = br#"{"event": {"type": "invoice.paid"}, "amount": 42}"#;
        let parsed = standard_webhooks::parse_body(body, Some(&h), "/event/type", &ctx).unwrap();
        let live = encode(&parsed.records[0]);
        let Record::Webhook(event) = &parsed.records[0] else {
            panic!("a webhook event")
        };
        let stored = crate::domain::StoredRecord {
            id: live.id,
            source: "sw".into(),
            received_at: ctx.received_at,
            event_type: Some(event.header.event_type.clone()),
            raw: event.header.raw.clone(),
            webhook: Some((h.id.to_owned(), event.header.occurred_at)),
        };
        let rebuilt = rebuild(RecordKind::WebhookEvent, &stored, None).unwrap();
        assert_eq!((rebuilt.id, &rebuilt.key), (live.id, &live.key));
        assert_eq!(rebuilt.payload, live.payload);
        // Without the headers it is read as an ACS event, and refused.
        let headless = crate::domain::StoredRecord {
            webhook: None,
            ..stored
        };
        assert!(rebuild(RecordKind::WebhookEvent, &headless, None).is_err());
    }

    #[test]
    fn headers_follow_the_cloudevents_kafka_binding() {
        let records = parse(&fixture("disconnect"));
        let entry = encode(&records[0]);
        let h: std::collections::HashMap<_, _> = headers(&entry).into_iter().collect();
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_id"], records[0].id().to_string());
        assert_eq!(h["ce_type"], "io.ringback.call-status.v1");
        assert_eq!(h["ce_source"], "/ringback/sources/hw");
        assert_eq!(h["ce_time"], "2019-01-24T03:04:49.000Z");
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&entry.payload).unwrap();
        assert_eq!(v["data"]["event_type"], "disconnect");
        assert_eq!(v["data"]["state_code"], 0);
    }
}
