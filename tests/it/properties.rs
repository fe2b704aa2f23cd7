//! Properties over generated inputs (proptest): a valid CDR survives parse → Kafka JSON →
//! decode unchanged; any change to a signed Standard Webhooks message is refused; no body,
//! however malformed, makes a parser panic.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use ringback::auth::standard_webhooks::{self, WebhookHeaders};
use ringback::domain::Record;
use ringback::message;
use ringback::sources::{acs, huawei, ParseContext};

fn ctx() -> ParseContext {
    ParseContext {
        source: "prop".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
        region: None,
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

prop_compose! {
    fn fee_info()(
        direction in 0i64..=1,
        start in 1_500_000_000i64..1_900_000_000,
        ring in 0i64..120,
        talk in 0i64..7200,
        answered in any::<bool>(),
        callee in "\\+86[0-9]{11}",
        icid in "[A-Za-z0-9-]{1,40}",
        user_data in "\\PC{0,40}",
        fail_reason in any::<i32>(),
        service in prop::sample::select(vec!["001", "002", "003"]),
    ) -> Value {
        let start = DateTime::from_timestamp(start, 0).unwrap();
        let alert = start + Duration::seconds(3);
        let answer = alert + Duration::seconds(ring);
        let end = if answered { answer + Duration::seconds(talk) } else { alert + Duration::seconds(ring) };
        let mut v = json!({
            "direction": direction, "spId": "sp", "appKey": "app", "icid": icid,
            "bindNum": "+8675512345678", "sessionId": format!("s-{icid}"),
            "callerNum": "+8613800000022", "calleeNum": callee,
            "callOutStartTime": time(start), "callOutAlertingTime": time(alert),
            "callEndTime": time(end), "ulFailReason": fail_reason, "serviceType": service,
            "userData": user_data,
        });
        if answered {
            v["callOutAnswerTime"] = json!(time(answer));
        }
        v
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_valid_cdr_survives_parse_encode_decode(info in fee_info()) {
        let body = json!({"eventType": "fee", "feeLst": [info.clone()]}).to_string();
        let parsed = huawei::parse_body(body.as_bytes(), &ctx()).unwrap();
        prop_assert!(parsed.rejected.is_empty());
        let Record::Cdr(cdr) = &parsed.records[0] else { panic!("not a CDR") };
        let entry = message::encode(&parsed.records[0]);
        let decoded: Value = serde_json::from_str(&entry.payload).unwrap();
        let data = &decoded["data"];
        prop_assert_eq!(decoded["id"].as_str().unwrap(), cdr.meta.id.to_string());
        prop_assert_eq!(&data["icid"], &info["icid"]);
        prop_assert_eq!(&data["direction"], &info["direction"]);
        prop_assert_eq!(&data["callee_num"], &info["calleeNum"]);
        prop_assert_eq!(&data["user_data"], &info["userData"]);
        prop_assert_eq!(&data["ul_fail_reason"], &info["ulFailReason"]);
        prop_assert_eq!(&data["service_type"], &info["serviceType"]);
        let end: DateTime<Utc> = data["call_end_time"].as_str().unwrap().parse().unwrap();
        prop_assert_eq!(time(end), info["callEndTime"].as_str().unwrap());
        prop_assert_eq!(data["talk_seconds"].as_i64(), cdr.derived.talk_seconds.map(i64::from));
        // Voice callback (002) bills the forward leg, absent here: not answered by that leg.
        let answered = info.get("callOutAnswerTime").is_some() && info["serviceType"] != "002";
        prop_assert_eq!(data["answered"].as_bool(), Some(answered));
        // Parsing the same record again gives the same id (dedupe and replay rely on it).
        let again = huawei::parse_body(body.as_bytes(), &ctx()).unwrap();
        prop_assert_eq!(again.records[0].id(), parsed.records[0].id());
    }

    #[test]
    fn any_change_to_a_signed_message_is_refused(
        body in proptest::collection::vec(any::<u8>(), 1..400),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let secret = standard_webhooks::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let ts = "1614265330";
        let now = DateTime::from_timestamp(1614265330, 0).unwrap();
        let signature = standard_webhooks::sign(&secret, "msg_1", ts, &body);
        let headers = WebhookHeaders { id: "msg_1", timestamp: ts, signature: &signature };
        let tolerance = Duration::minutes(5);
        let keys = [secret];
        prop_assert!(standard_webhooks::verify(&keys, Some(&headers), &body, tolerance, now).is_ok());
        let mut mutated = body.clone();
        let i = position.index(mutated.len());
        mutated[i] ^= flip;
        let refused = standard_webhooks::verify(&keys, Some(&headers), &mutated, tolerance, now);
        prop_assert_eq!(refused.unwrap_err().code, "signature_mismatch");
        let other_id = WebhookHeaders { id: "msg_2", ..headers.clone() };
        prop_assert!(standard_webhooks::verify(&keys, Some(&other_id), &body, tolerance, now).is_err());
    }

    #[test]
    fn no_body_makes_a_parser_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = huawei::parse_body(&body, &ctx());
        let _ = acs::parse_body(&body, &ctx());
    }

    #[test]
    fn no_json_shaped_body_makes_a_parser_panic(body in "[\\[\\]{}\",:0-9a-zA-Z eE.+-]{0,300}") {
        let _ = huawei::parse_body(body.as_bytes(), &ctx());
        let _ = acs::parse_body(body.as_bytes(), &ctx());
    }
}
