//! Huawei Cloud VoiceCall: call-status (`callout`, `alerting`, `answer`, `collectInfo`,
//! `disconnect`) and fee (CDR) pushes. See `docs/platforms/huawei-reference.md`.

mod wire;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::lenient::LenientString;
use super::{deserialize, join_path, object, ParseContext, Parsed, RecordRejection, Rejection};
use crate::domain::Code;
use crate::domain::{
    parse_platform_time, CallEvent, CallEventType, Cdr, CdrTimes, PhoneNumber, Record, RecordKind,
    RecordMeta, Region,
};

/// Most CDRs Huawei merges into one fee push.
pub const MAX_FEE_RECORDS: usize = 50;

/// `serviceType` of voice callback (语音回呼), whose billed leg is the forward leg.
const SERVICE_TYPE_CALLBACK: &str = "002";

/// Reads a push body. An invalid envelope refuses the whole body; in a fee body each CDR is
/// judged on its own, so one bad record never costs the others.
pub fn parse_body(body: &[u8], ctx: &ParseContext) -> Result<Parsed, Rejection> {
    let text = super::utf8(body)?;
    let envelope: wire::Envelope = object(text, "")?;
    let event_type = envelope
        .event_type
        .ok_or_else(|| missing(Path::root(), "eventType"))?;
    if event_type == "fee" {
        let list = envelope
            .fee_lst
            .ok_or_else(|| missing(Path::root(), "feeLst"))?;
        if list.is_empty() {
            return Err(Rejection::new(
                Code::FeeListEmpty,
                "feeLst must hold 1 to 50 records",
                Some("feeLst".into()),
            ));
        }
        if list.len() > MAX_FEE_RECORDS {
            return Err(Rejection::new(
                Code::FeeListTooLong,
                format!(
                    "feeLst holds {} records; at most {MAX_FEE_RECORDS} are allowed",
                    list.len()
                ),
                Some("feeLst".into()),
            ));
        }
        let mut parsed = Parsed {
            records: Vec::with_capacity(list.len()),
            rejected: Vec::new(),
        };
        for (index, raw) in list.into_iter().enumerate() {
            match parse_fee(raw, index, ctx) {
                Ok(cdr) => parsed.records.push(Record::Cdr(Box::new(cdr))),
                Err(rejection) => parsed.rejected.push(RecordRejection {
                    index,
                    kind: RecordKind::Cdr,
                    rejection,
                    raw: raw.get().to_owned(),
                }),
            }
        }
        return Ok(parsed);
    }
    let Some(kind) = CallEventType::from_wire(&event_type) else {
        return Err(Rejection::new(
            Code::UnknownEventType,
            format!(
                "eventType {event_type:?} is not one of callout, alerting, answer, collectInfo, \
                 disconnect, fee (names are case-sensitive)"
            ),
            Some("eventType".into()),
        ));
    };
    let raw = envelope
        .status_info
        .ok_or_else(|| missing(Path::root(), "statusInfo"))?;
    let event = parse_status(kind, raw, ctx)?;
    Ok(Parsed {
        records: vec![Record::CallEvent(Box::new(event))],
        rejected: Vec::new(),
    })
}

/// Rebuilds a stored record from the JSON it was received as (`raw` of `cdrs` or
/// `call_events`), for `ringback replay`. The same input gives the same record and id.
pub fn parse_stored(
    kind: RecordKind,
    event_type: Option<&str>,
    raw: &str,
    ctx: &ParseContext,
) -> Result<Record, Rejection> {
    let raw: &RawValue = deserialize(raw, "")?;
    match kind {
        RecordKind::Cdr => Ok(Record::Cdr(Box::new(parse_fee(raw, 0, ctx)?))),
        RecordKind::CallStatus => {
            let event_type = event_type
                .and_then(CallEventType::from_wire)
                .ok_or_else(|| missing(Path::root(), "eventType"))?;
            Ok(Record::CallEvent(Box::new(parse_status(
                event_type, raw, ctx,
            )?)))
        }
        other => Err(Rejection::new(
            Code::InvalidValue,
            format!("{} records do not come from Huawei", other.as_str()),
            None,
        )),
    }
}

/// A JSON path prefix; joined with a field name only when an error needs it.
#[derive(Clone, Copy)]
struct Path<'a> {
    prefix: &'a str,
    index: Option<usize>,
}

impl<'a> Path<'a> {
    const fn root() -> Self {
        Self {
            prefix: "",
            index: None,
        }
    }

    fn base(self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.prefix),
            None => self.prefix.to_owned(),
        }
    }

    fn field(self, name: &str) -> String {
        join_path(&self.base(), name)
    }
}

fn missing(at: Path<'_>, name: &str) -> Rejection {
    Rejection::new(
        Code::MissingField,
        format!("{name} is required"),
        Some(at.field(name)),
    )
}

fn required(value: Option<String>, at: Path<'_>, name: &str) -> Result<String, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(missing(at, name)),
    }
}

fn required_number(
    value: Option<LenientString>,
    region: Option<Region>,
    at: Path<'_>,
    name: &str,
) -> Result<PhoneNumber, Rejection> {
    number(value, region).ok_or_else(|| missing(at, name))
}

/// A number as sent, in E.164 when it is a national number of the source's region.
fn number(value: Option<LenientString>, region: Option<Region>) -> Option<PhoneNumber> {
    value.and_then(|v| PhoneNumber::parse_in(&v.0, region))
}

fn text(value: Option<LenientString>) -> Option<String> {
    value.map(|v| v.0)
}

fn time(value: Option<&str>, at: Path<'_>, name: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
    match value {
        None => Ok(None),
        Some(v) => parse_platform_time(v)
            .map_err(|e| Rejection::new(Code::InvalidTime, e.to_string(), Some(at.field(name)))),
    }
}

fn int32(value: Option<i64>, at: Path<'_>, name: &str) -> Result<Option<i32>, Rejection> {
    value
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                Rejection::new(
                    Code::InvalidValue,
                    format!("{v} is out of range for a 32-bit integer"),
                    Some(at.field(name)),
                )
            })
        })
        .transpose()
}

fn flag01(value: Option<i64>, at: Path<'_>, name: &str) -> Result<Option<i16>, Rejection> {
    match value {
        None => Ok(None),
        Some(v @ (0 | 1)) => Ok(Some(v as i16)),
        Some(v) => Err(Rejection::new(
            Code::InvalidValue,
            format!("must be 0 or 1, got {v}"),
            Some(at.field(name)),
        )),
    }
}

fn status_time(value: wire::Timestamp, at: Path<'_>) -> Result<DateTime<Utc>, Rejection> {
    let epoch = match value {
        wire::Timestamp::Epoch(n) => Some(n),
        wire::Timestamp::Text(ref s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        wire::Timestamp::Text(s) => {
            return time(Some(&s), at, "timestamp")?.ok_or_else(|| missing(at, "timestamp"))
        }
    };
    // Seconds until the year 5138; beyond that the number can only be milliseconds.
    let parsed = epoch.and_then(|n| {
        if n.unsigned_abs() < 100_000_000_000 {
            DateTime::from_timestamp(n, 0)
        } else {
            DateTime::from_timestamp_millis(n)
        }
    });
    parsed.ok_or_else(|| {
        Rejection::new(
            Code::InvalidTime,
            "not a valid UNIX timestamp",
            Some(at.field("timestamp")),
        )
    })
}

fn parse_status(
    event_type: CallEventType,
    raw: &RawValue,
    ctx: &ParseContext,
) -> Result<CallEvent, Rejection> {
    let at = Path {
        prefix: "statusInfo",
        index: None,
    };
    let info: wire::StatusInfo = object(raw.get(), "statusInfo")?;
    let session_id = required(info.session_id, at, "sessionId")?;
    let occurred_at = status_time(info.timestamp.ok_or_else(|| missing(at, "timestamp"))?, at)?;
    let state_code = int32(info.state_code, at, "stateCode")?;
    let dedupe_key = CallEvent::dedupe_key(&session_id, event_type, occurred_at);
    Ok(CallEvent {
        meta: RecordMeta::new(
            ctx.source.clone(),
            RecordKind::CallStatus,
            dedupe_key,
            ctx.received_at,
        ),
        event_type,
        session_id,
        occurred_at,
        caller: number(info.caller, ctx.region),
        called: number(info.called, ctx.region),
        user_data: info.user_data,
        digit_info: text(info.digit_info),
        party_type: text(info.party_type),
        state_code,
        state_desc: info.state_desc,
        raw: raw.get().to_owned(),
    })
}

fn parse_fee(raw: &RawValue, index: usize, ctx: &ParseContext) -> Result<Cdr, Rejection> {
    let at = Path {
        prefix: "feeLst",
        index: Some(index),
    };
    let fee: wire::FeeInfo = object(raw.get(), &at.base())?;
    let direction = match fee.direction {
        None => return Err(missing(at, "direction")),
        Some(v @ (0 | 1)) => v as i16,
        Some(v) => {
            return Err(Rejection::new(
                Code::InvalidValue,
                format!("direction must be 0 or 1, got {v}"),
                Some(at.field("direction")),
            ))
        }
    };
    let sp_id = required(fee.sp_id, at, "spId")?;
    let app_key = required(fee.app_key, at, "appKey")?;
    let session_id = required(fee.session_id, at, "sessionId")?;
    let bind_num = required_number(fee.bind_num, ctx.region, at, "bindNum")?;
    let caller_num = required_number(fee.caller_num, ctx.region, at, "callerNum")?;
    let callee_num = required_number(fee.callee_num, ctx.region, at, "calleeNum")?;
    let times = CdrTimes {
        fwd_start: time(fee.fwd_start_time.as_deref(), at, "fwdStartTime")?,
        fwd_alerting: time(fee.fwd_alerting_time.as_deref(), at, "fwdAlertingTime")?,
        fwd_answer: time(fee.fwd_answer_time.as_deref(), at, "fwdAnswerTime")?,
        call_end: time(fee.call_end_time.as_deref(), at, "callEndTime")?,
        fail: time(fee.fail_time.as_deref(), at, "failTime")?,
        call_out_start: time(fee.call_out_start_time.as_deref(), at, "callOutStartTime")?,
        call_out_alerting: time(
            fee.call_out_alerting_time.as_deref(),
            at,
            "callOutAlertingTime",
        )?,
        call_out_answer: time(fee.call_out_answer_time.as_deref(), at, "callOutAnswerTime")?,
        dyn_ivr_start: time(fee.dyn_ivr_start_time.as_deref(), at, "dynIVRStartTime")?,
        record_start: time(fee.record_start_time.as_deref(), at, "recordStartTime")?,
    };
    let service_type = text(fee.service_type);
    let callback = service_type.as_deref() == Some(SERVICE_TYPE_CALLBACK)
        || times.fwd_start.is_some()
        || times.fwd_alerting.is_some()
        || times.fwd_answer.is_some();
    let derived = times.derive(callback, ctx.received_at);
    let icid = fee.icid.filter(|s| !s.trim().is_empty());
    let dedupe_key = Cdr::dedupe_key(icid.as_deref(), &session_id);
    Ok(Cdr {
        meta: RecordMeta::new(
            ctx.source.clone(),
            RecordKind::Cdr,
            dedupe_key,
            ctx.received_at,
        ),
        direction,
        sp_id,
        app_key,
        icid,
        bind_num,
        session_id,
        caller_num,
        callee_num,
        fwd_display_num: number(fee.fwd_display_num, ctx.region),
        fwd_dst_num: number(fee.fwd_dst_num, ctx.region),
        times,
        fwd_unasw_rsn: int32(fee.fwd_unasw_rsn, at, "fwdUnaswRsn")?,
        ul_fail_reason: int32(fee.ul_fail_reason, at, "ulFailReason")?,
        sip_status_code: int32(fee.sip_status_code, at, "sipStatusCode")?,
        call_out_unasw_rsn: int32(fee.call_out_unasw_rsn, at, "callOutUnaswRsn")?,
        dyn_ivr_path: fee.dyn_ivr_path,
        record_flag: flag01(fee.record_flag, at, "recordFlag")?,
        record_object_name: fee.record_object_name,
        record_bucket_name: fee.record_bucket_name,
        record_domain: fee.record_domain,
        record_file_download_url: fee.record_file_download_url,
        tts_play_times: int32(fee.tts_play_times, at, "ttsPlayTimes")?,
        tts_trans_duration: int32(fee.tts_trans_duration, at, "ttsTransDuration")?,
        service_type,
        host_name: fee.host_name,
        user_data: fee.user_data,
        derived,
        raw: raw.get().to_owned(),
    })
}

#[cfg(test)]
mod tests;
