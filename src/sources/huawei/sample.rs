//! Realistic Huawei VoiceCall push bodies, shaped like the documented samples. Used by tests
//! and benchmarks (and by a load generator) so that they all exercise the same traffic.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

fn fmt(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// The session id Huawei would give call number `n` of `seed` starting at `at`.
pub fn session_id(seed: u64, n: u64, at: DateTime<Utc>) -> String {
    format!(
        "1201_612_{seed}_{n}_{}@callenabler245.huaweicaas.com",
        at.format("%Y%m%d%H%M%S")
    )
}

/// One FeeInfo. Every third call is a voice notification (`001`), the rest voice callback
/// (`002`); every fifth call is not answered. All of them end at `end`, as the CDRs merged into
/// one fee push do.
pub fn fee_info(seed: u64, n: u64, end: DateTime<Utc>) -> Value {
    let start = end - Duration::seconds(30 + (n % 7) as i64 * 13);
    let callee = format!("+86138{:08}", (seed * 7919 + n) % 100_000_000);
    let mut info = json!({
        "direction": 0,
        "spId": "CaaS_Test_01",
        "appKey": "ka4kESI5s3YyurL1wpx63s9YnEm2",
        "icid": format!("CAE-{}-{seed}-{n}", end.format("%Y%m%d%H%M%S")),
        "bindNum": "+8675512345678",
        "sessionId": session_id(seed, n, start),
        "callerNum": "+8613800000022",
        "calleeNum": callee,
        "callEndTime": fmt(end),
        "callOutStartTime": fmt(start),
        "callOutAlertingTime": fmt(start + Duration::seconds(3)),
        "ulFailReason": 0,
        "sipStatusCode": 0,
        "recordFlag": 0,
        "ttsPlayTimes": 0,
        "ttsTransDuration": 0,
        "hostName": "callenabler245.huaweicaas.com",
        "userData": format!("order-{n}"),
    });
    let obj = info.as_object_mut().expect("object");
    let answered = n % 5 != 4;
    if n % 3 == 0 {
        obj.insert("serviceType".into(), json!("001"));
        if answered {
            obj.insert(
                "callOutAnswerTime".into(),
                json!(fmt(start + Duration::seconds(7))),
            );
        } else {
            obj.insert("callOutUnaswRsn".into(), json!(19));
            obj.insert("ulFailReason".into(), json!(514));
        }
    } else {
        obj.insert("serviceType".into(), json!("002"));
        obj.insert(
            "callOutAnswerTime".into(),
            json!(fmt(start + Duration::seconds(7))),
        );
        obj.insert("fwdDisplayNum".into(), json!("+8613800000022"));
        obj.insert("fwdDstNum".into(), json!("+8613866887021"));
        obj.insert(
            "fwdStartTime".into(),
            json!(fmt(start + Duration::seconds(7))),
        );
        obj.insert(
            "fwdAlertingTime".into(),
            json!(fmt(start + Duration::seconds(12))),
        );
        if answered {
            obj.insert(
                "fwdAnswerTime".into(),
                json!(fmt(start + Duration::seconds(14))),
            );
        } else {
            obj.insert("fwdUnaswRsn".into(), json!(19));
        }
    }
    info
}

/// A fee push of `count` CDRs (1..=50 for a valid one) ending at `end`.
pub fn fee_body(seed: u64, count: usize, end: DateTime<Utc>) -> Value {
    let list: Vec<Value> = (0..count as u64).map(|n| fee_info(seed, n, end)).collect();
    json!({"eventType": "fee", "feeLst": list})
}

/// A call-status push.
pub fn status_body(event_type: &str, session_id: &str, at: DateTime<Utc>) -> Value {
    let mut info = json!({
        "sessionId": session_id,
        "timestamp": fmt(at),
        "caller": "+8613800000022",
        "called": "+8613800000021",
        "userData": "customerId123",
    });
    let obj = info.as_object_mut().expect("object");
    match event_type {
        "collectInfo" => {
            obj.insert("digitInfo".into(), json!("1"));
        }
        "disconnect" => {
            obj.insert("partyType".into(), json!("1"));
            obj.insert("stateCode".into(), json!(0));
            obj.insert("stateDesc".into(), json!("The user releases the call."));
        }
        _ => {}
    }
    json!({"eventType": event_type, "statusInfo": info})
}
