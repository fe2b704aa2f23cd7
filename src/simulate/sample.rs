//! Realistic Huawei VoiceCall push bodies, shaped like the documented samples. Used by tests
//! and benchmarks (and by a load generator) so that they all exercise the same traffic.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// `2026-11-21 12:00:00`. Written out rather than `format("%Y-%m-%d %H:%M:%S")`, which parses
/// the pattern on every call: the load generator formats hundreds of these per request.
pub(crate) fn fmt(t: DateTime<Utc>) -> String {
    stamp(t, "-", " ", ":")
}

/// `20261121120000`.
fn compact(t: DateTime<Utc>) -> String {
    stamp(t, "", "", "")
}

fn stamp(t: DateTime<Utc>, date: &str, between: &str, time: &str) -> String {
    format!(
        "{:04}{date}{:02}{date}{:02}{between}{:02}{time}{:02}{time}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The session id Huawei would give call number `n` of `seed` starting at `at`.
pub fn session_id(seed: u64, n: u64, at: DateTime<Utc>) -> String {
    format!(
        "1201_612_{seed}_{n}_{}@callenabler245.huaweicaas.com",
        compact(at)
    )
}

/// One FeeInfo as the platform sends it (optional fields absent, not null).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SampleFee {
    direction: u8,
    sp_id: &'static str,
    app_key: &'static str,
    icid: String,
    bind_num: &'static str,
    session_id: String,
    caller_num: &'static str,
    callee_num: String,
    call_end_time: String,
    call_out_start_time: String,
    call_out_alerting_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_out_answer_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_out_unasw_rsn: Option<i32>,
    ul_fail_reason: i32,
    sip_status_code: i32,
    record_flag: i32,
    tts_play_times: i32,
    tts_trans_duration: i32,
    host_name: &'static str,
    user_data: String,
    service_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_display_num: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_dst_num: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_alerting_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_answer_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwd_unasw_rsn: Option<i32>,
}

/// Every third call is a voice notification (`001`), the rest voice callback (`002`); every
/// fifth call is not answered. All of them end at `end`, as the CDRs merged into one fee push
/// do.
fn sample_fee(seed: u64, n: u64, end: DateTime<Utc>) -> SampleFee {
    let start = end - Duration::seconds(30 + (n % 7) as i64 * 13);
    let at = |s: i64| fmt(start + Duration::seconds(s));
    let answered = n % 5 != 4;
    let notification = n % 3 == 0;
    SampleFee {
        direction: 0,
        sp_id: "CaaS_Test_01",
        app_key: "ka4kESI5s3YyurL1wpx63s9YnEm2",
        icid: format!("CAE-{}-{seed}-{n}", compact(end)),
        bind_num: "+8675512345678",
        session_id: session_id(seed, n, start),
        caller_num: "+8613800000022",
        callee_num: format!("+86138{:08}", (seed * 7919 + n) % 100_000_000),
        call_end_time: fmt(end),
        call_out_start_time: fmt(start),
        call_out_alerting_time: at(3),
        call_out_answer_time: (answered || !notification).then(|| at(7)),
        call_out_unasw_rsn: (notification && !answered).then_some(19),
        ul_fail_reason: if notification && !answered { 514 } else { 0 },
        sip_status_code: 0,
        record_flag: 0,
        tts_play_times: 0,
        tts_trans_duration: 0,
        host_name: "callenabler245.huaweicaas.com",
        user_data: format!("order-{n}"),
        service_type: if notification { "001" } else { "002" },
        fwd_display_num: (!notification).then_some("+8613800000022"),
        fwd_dst_num: (!notification).then_some("+8613866887021"),
        fwd_start_time: (!notification).then(|| at(7)),
        fwd_alerting_time: (!notification).then(|| at(12)),
        fwd_answer_time: (!notification && answered).then(|| at(14)),
        fwd_unasw_rsn: (!notification && !answered).then_some(19),
    }
}

/// One FeeInfo (see [`fee_body`] for the mix of calls).
pub fn fee_info(seed: u64, n: u64, end: DateTime<Utc>) -> Value {
    serde_json::to_value(sample_fee(seed, n, end)).expect("a sample serialises")
}

/// [`fee_body`] as the bytes sent: serialised straight from typed values, several times
/// faster than building a `Value` (the load generator's hot path).
pub fn fee_body_string(seed: u64, count: usize, end: DateTime<Utc>) -> String {
    #[derive(Serialize)]
    struct Body {
        #[serde(rename = "eventType")]
        event_type: &'static str,
        #[serde(rename = "feeLst")]
        fee_lst: Vec<SampleFee>,
    }
    let body = Body {
        event_type: "fee",
        fee_lst: (0..count as u64)
            .map(|n| sample_fee(seed, n, end))
            .collect(),
    };
    serde_json::to_string(&body).expect("a sample serialises")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_string_is_the_body() {
        let end = Utc::now();
        for seed in [0, 7, 123_456] {
            let sent: Value = serde_json::from_str(&fee_body_string(seed, 50, end)).unwrap();
            assert_eq!(sent, fee_body(seed, 50, end));
        }
        // The mix: notifications and callbacks, answered and not, each with its own fields.
        let body = fee_body(1, 15, end);
        let list = body["feeLst"].as_array().unwrap();
        assert_eq!(list[0]["serviceType"], "001");
        assert_eq!(list[1]["serviceType"], "002");
        assert!(list[1].get("fwdAnswerTime").is_some());
        assert_eq!(list[4]["fwdUnaswRsn"], 19);
        assert_eq!(list[9]["callOutUnaswRsn"], 19);
        assert_eq!(list[9]["ulFailReason"], 514);
        assert!(list[9].get("callOutAnswerTime").is_none());
        assert_eq!(list[0]["callEndTime"], fmt(end));
        assert_eq!(fmt(end), end.format("%Y-%m-%d %H:%M:%S").to_string());
    }
}
