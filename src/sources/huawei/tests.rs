use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::domain::CdrFlag;
use crate::simulate::sample;

fn ctx() -> ParseContext {
    ParseContext {
        source: Arc::from("hw"),
        received_at: Utc.with_ymd_and_hms(2019, 1, 24, 3, 5, 0).unwrap(),
        region: None,
    }
}

fn parse(body: &str) -> Result<Parsed, Rejection> {
    parse_body(body.as_bytes(), &ctx())
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/huawei/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn cdrs(parsed: &Parsed) -> Vec<&Cdr> {
    parsed
        .records
        .iter()
        .map(|r| match r {
            Record::Cdr(c) => c.as_ref(),
            other => panic!("not a CDR: {other:?}"),
        })
        .collect()
}

#[test]
fn documented_status_samples_parse() {
    for name in ["callout", "alerting", "answer", "collectInfo", "disconnect"] {
        let parsed = parse(&fixture(name)).unwrap();
        let [Record::CallEvent(e)] = parsed.records.as_slice() else {
            panic!("{name}: {:?}", parsed.records)
        };
        assert_eq!(e.event_type.as_str(), name);
        assert!(e.session_id.starts_with("1201_612_"));
        assert!(e.raw.contains("sessionId"));
    }
    let parsed = parse(&fixture("disconnect")).unwrap();
    let Record::CallEvent(e) = &parsed.records[0] else {
        unreachable!()
    };
    assert_eq!(e.state_code, Some(0));
    assert_eq!(e.party_type.as_deref(), Some("1"));
    assert_eq!(
        e.occurred_at,
        Utc.with_ymd_and_hms(2019, 1, 24, 3, 4, 49).unwrap()
    );
}

#[test]
fn documented_fee_sample_parses_with_derived_figures() {
    let parsed = parse(&fixture("fee")).unwrap();
    let [cdr] = cdrs(&parsed)[..] else { panic!() };
    assert_eq!(cdr.icid.as_deref(), Some("CAE-20190124110424-12019775"));
    assert_eq!(cdr.meta.dedupe_key, "icid:CAE-20190124110424-12019775");
    assert_eq!(cdr.service_type.as_deref(), Some("002"));
    assert!(cdr.derived.answered);
    assert_eq!(cdr.derived.talk_seconds, Some(11));
    assert_eq!(cdr.derived.billable_minutes, Some(1));
    assert!(parsed.rejected.is_empty());
}

#[test]
fn status_epoch_timestamps_are_read() {
    let body = |ts: serde_json::Value| {
        json!({"eventType": "answer", "statusInfo": {"sessionId": "s", "timestamp": ts}})
            .to_string()
    };
    let want = Utc.with_ymd_and_hms(2019, 1, 24, 3, 4, 24).unwrap();
    for ts in [
        json!(1548299064),
        json!(1548299064000_i64),
        json!("1548299064"),
    ] {
        let parsed = parse(&body(ts.clone())).unwrap();
        let Record::CallEvent(e) = &parsed.records[0] else {
            unreachable!()
        };
        assert_eq!(e.occurred_at, want, "{ts}");
    }
}

#[test]
fn sample_bodies_of_1_2_and_50_parse() {
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    for n in [1, 2, 50] {
        let body = sample::fee_body(7, n, end).to_string();
        let parsed = parse(&body).unwrap();
        assert_eq!(parsed.records.len(), n);
        assert!(parsed.rejected.is_empty());
    }
    let parsed = parse(&sample::fee_body(7, 50, end).to_string()).unwrap();
    let answered = cdrs(&parsed).iter().filter(|c| c.derived.answered).count();
    assert_eq!(answered, 40, "every fifth sample call is unanswered");
}

fn rejection(body: &str) -> Rejection {
    parse(body).unwrap_err()
}

#[test]
fn envelope_errors_have_codes_and_fields() {
    let r = rejection("{\"eventType\": \"fee\", ");
    assert_eq!((r.code.as_str(), r.field), ("invalid_json", None));

    let r = rejection(r#"{"eventType":"hangup","statusInfo":{}}"#);
    assert_eq!(r.code.as_str(), "unknown_event_type");
    assert_eq!(r.field.as_deref(), Some("eventType"));

    let r = rejection(r#"{"eventType":"Callout","statusInfo":{}}"#);
    assert_eq!(
        r.code, "unknown_event_type",
        "event types are case-sensitive"
    );

    let r = rejection(r#"{"statusInfo":{}}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("missing_field", Some("eventType"))
    );

    let r = rejection(r#"{"eventType":"fee"}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("missing_field", Some("feeLst"))
    );

    let r = rejection(r#"{"eventType":"fee","feeLst":[]}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("fee_list_empty", Some("feeLst"))
    );

    let r = rejection(r#"{"eventType":"fee","feeLst":{}}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("invalid_type", Some("feeLst"))
    );

    let r = rejection(r#"[1,2]"#);
    assert_eq!(r.code.as_str(), "invalid_type");

    let r = rejection(r#"{"eventType":"answer"} {}"#);
    assert_eq!(r.code.as_str(), "invalid_json");

    let r = parse_body(b"{\"eventType\":\"\xff\"}", &ctx()).unwrap_err();
    assert_eq!(r.code.as_str(), "invalid_utf8");
}

#[test]
fn fifty_one_records_are_refused_whole() {
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let r = rejection(&sample::fee_body(1, 51, end).to_string());
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("fee_list_too_long", Some("feeLst"))
    );
}

#[test]
fn status_errors_point_into_status_info() {
    let r = rejection(r#"{"eventType":"answer","statusInfo":{"timestamp":"2019-01-24 03:04:24"}}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("missing_field", Some("statusInfo.sessionId"))
    );

    let r = rejection(
        r#"{"eventType":"answer","statusInfo":{"sessionId":"s","timestamp":"yesterday"}}"#,
    );
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("invalid_time", Some("statusInfo.timestamp"))
    );

    let r = rejection(
        r#"{"eventType":"disconnect","statusInfo":{"sessionId":"s","timestamp":"2019-01-24 03:04:24","stateCode":"8001"}}"#,
    );
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("invalid_type", Some("statusInfo.stateCode"))
    );

    let r = rejection(r#"{"eventType":"answer","statusInfo":"s"}"#);
    assert_eq!(
        (r.code.as_str(), r.field.as_deref()),
        ("invalid_type", Some("statusInfo"))
    );

    let r = rejection(
        r#"{"eventType":"answer","statusInfo":{"sessionId":"a","sessionId":"b","timestamp":"2019-01-24 03:04:24"}}"#,
    );
    assert_eq!(r.code.as_str(), "duplicate_field");
}

#[test]
fn bad_records_are_rejected_alone_with_their_path() {
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let mut body = sample::fee_body(3, 5, end);
    let list = body["feeLst"].as_array_mut().unwrap();
    list[1]["direction"] = json!("0");
    list[2]["callEndTime"] = json!("24/01/2019");
    list[3].as_object_mut().unwrap().remove("sessionId");
    list[4]["direction"] = json!(2);
    let parsed = parse(&body.to_string()).unwrap();
    assert_eq!(parsed.records.len(), 1);
    let got: Vec<_> = parsed
        .rejected
        .iter()
        .map(|r| {
            (
                r.index,
                r.rejection.code.as_str(),
                r.rejection.field.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "invalid_type", "feeLst[1].direction".to_owned()),
            (2, "invalid_time", "feeLst[2].callEndTime".to_owned()),
            (3, "missing_field", "feeLst[3].sessionId".to_owned()),
            (4, "invalid_value", "feeLst[4].direction".to_owned()),
        ]
    );
    assert!(parsed.rejected[0].raw.contains("\"direction\":\"0\""));
}

#[test]
fn lenient_content_is_normalised_and_kept() {
    let mut body = serde_json::from_str::<serde_json::Value>(&fixture("fee")).unwrap();
    let rec = &mut body["feeLst"][0];
    rec["callerNum"] = json!("0086 138-0000-0022");
    rec["calleeNum"] = json!(8613800000021_u64);
    rec["serviceType"] = json!(2);
    rec["someNewField"] = json!({"x": 1});
    rec["failTime"] = json!("");
    let parsed = parse(&body.to_string()).unwrap();
    let [cdr] = cdrs(&parsed)[..] else { panic!() };
    assert_eq!(cdr.caller_num.as_str(), "+8613800000022");
    assert_eq!(cdr.callee_num.as_str(), "8613800000021");
    assert_eq!(cdr.service_type.as_deref(), Some("2"));
    assert!(cdr.raw.contains("0086 138-0000-0022"));
    assert!(cdr.raw.contains("someNewField"));
    assert_eq!(cdr.times.fail, None);
}

#[test]
fn impossible_times_flag_the_record() {
    let mut body = serde_json::from_str::<serde_json::Value>(&fixture("fee")).unwrap();
    body["feeLst"][0]["callEndTime"] = json!("2019-01-24 03:04:30");
    let parsed = parse(&body.to_string()).unwrap();
    let [cdr] = cdrs(&parsed)[..] else { panic!() };
    assert_eq!(cdr.derived.flags, vec![CdrFlag::EndBeforeAnswer]);
}

#[test]
fn cdr_without_icid_dedupes_on_session() {
    let mut body = serde_json::from_str::<serde_json::Value>(&fixture("fee")).unwrap();
    body["feeLst"][0].as_object_mut().unwrap().remove("icid");
    let parsed = parse(&body.to_string()).unwrap();
    let [cdr] = cdrs(&parsed)[..] else { panic!() };
    assert!(cdr.meta.dedupe_key.starts_with("session:1201_612_"));
}

#[test]
fn extreme_epoch_timestamps_are_refused_not_a_panic() {
    for ts in [i64::MIN, i64::MAX, -100_000_000_000] {
        let body =
            json!({"eventType": "answer", "statusInfo": {"sessionId": "s", "timestamp": ts}})
                .to_string();
        match parse(&body) {
            Err(r) => assert_eq!(r.code.as_str(), "invalid_time", "{ts}"),
            Ok(p) => assert_eq!(p.records.len(), 1, "{ts}"),
        }
    }
}
