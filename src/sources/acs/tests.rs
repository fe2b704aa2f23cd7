use chrono::{TimeZone, Timelike, Utc};
use serde_json::json;

use super::*;

fn ctx() -> ParseContext {
    ParseContext {
        source: "acs".into(),
        received_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        region: None,
    }
}

fn records(body: &serde_json::Value) -> Parsed {
    match parse_body(body.to_string().as_bytes(), &ctx()).unwrap() {
        Delivery::Records(p) => p,
        Delivery::Validation { .. } => panic!("not a validation"),
    }
}

fn eg(t: &str, time: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"id": "e1", "topic": "/t", "subject": "s", "eventType": t, "eventTime": time,
           "data": data, "dataVersion": "1.0", "metadataVersion": "1"})
}

#[test]
fn times_with_seven_digits_and_either_offset() {
    for time in [
        "2020-09-18T00:22:20.2855749Z",
        "2020-09-18T00:22:20.2855749+00:00",
    ] {
        let p = records(&json!([eg(
            "Microsoft.Communication.SomethingNew",
            time,
            json!({})
        )]));
        let Record::Webhook(e) = &p.records[0] else {
            panic!()
        };
        assert_eq!(e.header.occurred_at.nanosecond(), 285_574_900, "{time}");
    }
}

#[test]
fn escaped_strings_are_decoded() {
    let body = r#"[{"id":"e\u0031","eventType":"Microsoft.Communication.SMSReceived","eventTime":"2020-09-18T00:27:47Z","data":{"From":"+1","To":"+2","Message":"line\nbreak \"quoted\" \u00e9\ud83d\ude00"}}]"#;
    let Delivery::Records(p) = parse_body(body.as_bytes(), &ctx()).unwrap() else {
        panic!()
    };
    let Record::Phone(e) = &p.records[0] else {
        panic!()
    };
    assert_eq!(e.header.event_id, "e1");
    assert_eq!(e.message.as_deref(), Some("line\nbreak \"quoted\" é😀"));
    assert!(e.header.raw.contains(r"\u00e9"), "raw is kept as sent");
}

#[test]
fn kinds_by_type() {
    use RecordKind::*;
    let kind = |t: &str| kind_of(&format!("Microsoft.Communication.{t}"));
    assert_eq!(kind("SMSReceived"), Some(PhoneEvent));
    assert_eq!(kind("IncomingCall"), Some(PhoneEvent));
    assert_eq!(kind("CallTransferAccepted"), Some(AcsCallEvent));
    assert_eq!(kind("RecordingFileStatusUpdated"), Some(AcsCallEvent));
    assert_eq!(kind("ChatMessageDeletedInThread"), Some(ChatEvent));
    assert_eq!(
        kind("ChatParticipantAddedToThreadWithUser"),
        Some(ChatEvent)
    );
    assert_eq!(kind("BrandNewThing"), Some(WebhookEvent));
    assert_eq!(kind_of("Microsoft.Storage.BlobCreated"), None);
}

#[test]
fn envelope_errors() {
    let err = |body: &str| parse_body(body.as_bytes(), &ctx()).unwrap_err();
    assert_eq!(err("[]").code, "empty_batch");
    assert_eq!(err("42").code, "invalid_type");
    assert_eq!(err("[{").code, "invalid_json");
    let single = eg(
        "Microsoft.Communication.SMSReceived",
        "2020-09-18T00:27:47Z",
        json!({"To": "+2"}),
    );
    let e = err(&single.to_string());
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("missing_field", Some("data.From"))
    );
}

#[test]
fn the_validation_event_is_recognised() {
    let body = json!([{"id": "v", "eventType": VALIDATION_EVENT, "eventTime": "2022-10-28T04:23:35.1981776Z",
                       "data": {"validationCode": "512d", "validationUrl": "https://x/validate"}}]);
    match parse_body(body.to_string().as_bytes(), &ctx()).unwrap() {
        Delivery::Validation { code, url } => {
            assert_eq!(code, "512d");
            assert_eq!(url.as_deref(), Some("https://x/validate"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stored_events_rebuild_with_the_same_id() {
    let body = json!([eg(
        "Microsoft.Communication.ChatMessageReceived",
        "2021-02-19T00:25:59.9436666Z",
        json!({"threadId": "t", "messageId": "m"})
    )]);
    let p = records(&body);
    let Record::Chat(e) = &p.records[0] else {
        panic!()
    };
    let again = parse_stored(&e.header.raw, &ctx()).unwrap();
    assert_eq!(again.id(), p.records[0].id());
}

/// CloudEvents identifies an event by (`source`, `id`), Event Grid by (`topic`, `id`): Call
/// Automation sends callbacks of different calls (sources) that share an id, and each is an
/// event of its own; the same (source, id) again is a redelivery.
#[test]
fn an_event_is_its_id_within_its_source_or_topic() {
    let ce = |source: &str, t: &str| {
        json!({"specversion": "1.0", "id": "shared-id", "source": source,
               "type": format!("Microsoft.Communication.{t}"),
               "time": "2024-01-02T03:04:05Z", "data": {}})
    };
    let p = records(&json!([
        ce("calling/callConnections/a", "PlayCompleted"),
        ce("calling/callConnections/b", "PlayFailed"),
        ce("calling/callConnections/c", "RecognizeFailed"),
        ce("calling/callConnections/a", "PlayCompleted"),
    ]));
    let ids: Vec<_> = p.records.iter().map(Record::id).collect();
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    assert_ne!(ids[0], ids[2]);
    assert_eq!(ids[0], ids[3], "the same source and id: one event");
    let Record::AcsCall(e) = &p.records[0] else {
        panic!()
    };
    assert_eq!(
        e.header.meta.dedupe_key,
        "event:calling/callConnections/a|shared-id"
    );
    // Event Grid: the topic scopes the id; a `|` in it cannot fake another scope.
    let eg_in = |topic: &str, id: &str| {
        let mut e = eg(
            "Microsoft.Communication.SomethingNew",
            "2024-01-02T03:04:05Z",
            json!({}),
        );
        e["topic"] = json!(topic);
        e["id"] = json!(id);
        e
    };
    let p = records(&json!([
        eg_in("/t1", "x"),
        eg_in("/t2", "x"),
        eg_in("/t1|x", "y"),
        eg_in("/t1", "x|y")
    ]));
    let keys: Vec<_> = p
        .records
        .iter()
        .map(|r| match r {
            Record::Webhook(e) => e.header.meta.dedupe_key.clone(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        keys,
        [
            "event:/t1|x",
            "event:/t2|x",
            "event:/t1%7Cx|y",
            "event:/t1|x|y"
        ]
    );
}

/// A CloudEvent without `time` is stored under 1970-01-01, not when it arrived: its
/// redelivery, received later, is the same row in the same partition.
#[test]
fn a_cloudevent_without_time_keeps_one_time() {
    let body = json!({"specversion": "1.0", "id": "no-time", "source": "/s",
                      "type": "Microsoft.Communication.CallConnected", "data": {}});
    let at = |h| ParseContext {
        source: "acs".into(),
        received_at: Utc.with_ymd_and_hms(2024, 1, 2, h, 0, 0).unwrap(),
        region: None,
    };
    let parse = |ctx: &ParseContext| match parse_body(body.to_string().as_bytes(), ctx).unwrap() {
        Delivery::Records(p) => p.records,
        Delivery::Validation { .. } => panic!(),
    };
    let (first, later) = (parse(&at(3)), parse(&at(9)));
    let time = |r: &Record| match r {
        Record::AcsCall(e) => e.header.occurred_at,
        _ => panic!(),
    };
    assert_eq!(first[0].id(), later[0].id());
    assert_eq!(time(&first[0]), time(&later[0]));
    assert_eq!(time(&first[0]), chrono::DateTime::UNIX_EPOCH);
}

#[test]
fn durations_that_are_not_finite_numbers_are_left_out() {
    for duration in [
        json!("NaN"),
        json!("inf"),
        json!("-infinity"),
        json!("1e999"),
    ] {
        let p = records(&json!([eg(
            "Microsoft.Communication.CallEnded",
            "2024-01-02T03:04:05Z",
            json!({"callDurationInSeconds": duration, "group": {"id": "g"}})
        )]));
        let Record::AcsCall(e) = &p.records[0] else {
            panic!("{duration}: {:?}", p.rejected)
        };
        assert_eq!(e.duration_seconds, None, "{duration}");
    }
}
