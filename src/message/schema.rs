//! The value of a record's message: JSON, schema `ringback.record.v1`. The schema is
//! documented in docs/reference/kafka.md; add fields freely, but renaming or retyping one needs a new
//! schema version.

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

use serde_json::value::RawValue;

use crate::domain::{
    AcsCallEvent, CallEvent, Cdr, ChatEvent, EventHeader, OutboxEntry, PhoneEvent, PhoneNumber,
    Record, RecordKind, WebhookEvent,
};

/// The value's `schema` field.
pub const SCHEMA: &str = "ringback.record.v1";

#[derive(Serialize, JsonSchema)]
struct Envelope<'a, T> {
    /// Always `ringback.record.v1`: fields may be added within a version, never renamed or
    /// retyped.
    schema: &'static str,
    /// The record id (UUIDv5 of source, kind and dedupe key), also the `ce_id` header: the same
    /// record always has the same id, so consumers dedupe on it.
    id: Uuid,
    /// The record kind, one per topic.
    kind: &'static str,
    /// The configured source (ringback's name for the sender).
    source: &'a str,
    /// When it happened (the event's time; a CDR's end, else start, else its receipt).
    occurred_at: DateTime<Utc>,
    /// When ringback received it.
    received_at: DateTime<Utc>,
    /// The record's fields.
    data: T,
}

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

#[derive(Serialize, JsonSchema)]
struct CallStatusData<'a> {
    event_type: &'static str,
    session_id: &'a str,
    caller: Option<&'a str>,
    called: Option<&'a str>,
    user_data: Option<&'a str>,
    digit_info: Option<&'a str>,
    party_type: Option<&'a str>,
    state_code: Option<i32>,
    state_desc: Option<&'a str>,
}

#[derive(Serialize, JsonSchema)]
struct CdrData<'a> {
    icid: Option<&'a str>,
    session_id: &'a str,
    direction: i16,
    sp_id: &'a str,
    app_key: &'a str,
    bind_num: &'a str,
    caller_num: &'a str,
    callee_num: &'a str,
    fwd_display_num: Option<&'a str>,
    fwd_dst_num: Option<&'a str>,
    fwd_start_time: Option<DateTime<Utc>>,
    fwd_alerting_time: Option<DateTime<Utc>>,
    fwd_answer_time: Option<DateTime<Utc>>,
    call_end_time: Option<DateTime<Utc>>,
    fwd_unasw_rsn: Option<i32>,
    fail_time: Option<DateTime<Utc>>,
    ul_fail_reason: Option<i32>,
    sip_status_code: Option<i32>,
    call_out_start_time: Option<DateTime<Utc>>,
    call_out_alerting_time: Option<DateTime<Utc>>,
    call_out_answer_time: Option<DateTime<Utc>>,
    call_out_unasw_rsn: Option<i32>,
    dyn_ivr_start_time: Option<DateTime<Utc>>,
    dyn_ivr_path: Option<&'a str>,
    record_flag: Option<i16>,
    record_start_time: Option<DateTime<Utc>>,
    record_object_name: Option<&'a str>,
    record_bucket_name: Option<&'a str>,
    record_domain: Option<&'a str>,
    record_file_download_url: Option<&'a str>,
    tts_play_times: Option<i32>,
    tts_trans_duration: Option<i32>,
    service_type: Option<&'a str>,
    host_name: Option<&'a str>,
    user_data: Option<&'a str>,
    started_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    answered: bool,
    ring_seconds: Option<i32>,
    pdd_seconds: Option<i32>,
    talk_seconds: Option<i32>,
    billable_minutes: Option<i32>,
    flags: Vec<&'static str>,
}

fn call_status(e: &CallEvent) -> OutboxEntry {
    let value = Envelope {
        schema: SCHEMA,
        id: e.meta.id,
        kind: RecordKind::CallStatus.as_str(),
        source: &e.meta.source,
        occurred_at: e.occurred_at,
        received_at: e.meta.received_at,
        data: CallStatusData {
            event_type: e.event_type.as_str(),
            session_id: &e.session_id,
            caller: num(&e.caller),
            called: num(&e.called),
            user_data: e.user_data.as_deref(),
            digit_info: e.digit_info.as_deref(),
            party_type: e.party_type.as_deref(),
            state_code: e.state_code,
            state_desc: e.state_desc.as_deref(),
        },
    };
    OutboxEntry {
        id: e.meta.id,
        kind: RecordKind::CallStatus,
        key: e.session_id.clone(),
        payload: serde_json::to_string(&value).expect("plain data serialises"),
        source: e.meta.source.clone(),
        occurred_at: e.occurred_at,
    }
}

fn cdr(c: &Cdr) -> OutboxEntry {
    let (t, x) = (&c.times, &c.derived);
    let value = Envelope {
        schema: SCHEMA,
        id: c.meta.id,
        kind: RecordKind::Cdr.as_str(),
        source: &c.meta.source,
        occurred_at: c.occurred_at(),
        received_at: c.meta.received_at,
        data: CdrData {
            icid: c.icid.as_deref(),
            session_id: &c.session_id,
            direction: c.direction,
            sp_id: &c.sp_id,
            app_key: &c.app_key,
            bind_num: c.bind_num.as_str(),
            caller_num: c.caller_num.as_str(),
            callee_num: c.callee_num.as_str(),
            fwd_display_num: num(&c.fwd_display_num),
            fwd_dst_num: num(&c.fwd_dst_num),
            fwd_start_time: t.fwd_start,
            fwd_alerting_time: t.fwd_alerting,
            fwd_answer_time: t.fwd_answer,
            call_end_time: t.call_end,
            fwd_unasw_rsn: c.fwd_unasw_rsn,
            fail_time: t.fail,
            ul_fail_reason: c.ul_fail_reason,
            sip_status_code: c.sip_status_code,
            call_out_start_time: t.call_out_start,
            call_out_alerting_time: t.call_out_alerting,
            call_out_answer_time: t.call_out_answer,
            call_out_unasw_rsn: c.call_out_unasw_rsn,
            dyn_ivr_start_time: t.dyn_ivr_start,
            dyn_ivr_path: c.dyn_ivr_path.as_deref(),
            record_flag: c.record_flag,
            record_start_time: t.record_start,
            record_object_name: c.record_object_name.as_deref(),
            record_bucket_name: c.record_bucket_name.as_deref(),
            record_domain: c.record_domain.as_deref(),
            record_file_download_url: c.record_file_download_url.as_deref(),
            tts_play_times: c.tts_play_times,
            tts_trans_duration: c.tts_trans_duration,
            service_type: c.service_type.as_deref(),
            host_name: c.host_name.as_deref(),
            user_data: c.user_data.as_deref(),
            started_at: x.started_at,
            answered_at: x.answered_at,
            ended_at: x.ended_at,
            answered: x.answered,
            ring_seconds: x.ring_seconds,
            pdd_seconds: x.pdd_seconds,
            talk_seconds: x.talk_seconds,
            billable_minutes: x.billable_minutes,
            flags: x.flags.iter().map(|f| f.as_str()).collect(),
        },
    };
    OutboxEntry {
        id: c.meta.id,
        kind: RecordKind::Cdr,
        key: c.session_id.clone(),
        payload: serde_json::to_string(&value).expect("plain data serialises"),
        source: c.meta.source.clone(),
        occurred_at: c.occurred_at(),
    }
}

/// What every ACS event's `data` starts with, followed by its typed fields and the event as
/// sent (`event`), so consumers reach fields ringback does not model.
#[derive(Serialize, JsonSchema)]
struct AcsData<'a, T> {
    event_id: &'a str,
    event_type: &'a str,
    schema: &'static str,
    subject: Option<&'a str>,
    #[serde(flatten)]
    fields: T,
    /// The whole event, envelope and data, exactly as sent.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    event: &'a RawValue,
}

#[derive(Serialize, JsonSchema)]
struct PhoneData<'a> {
    phone_number: Option<&'a str>,
    direction: &'static str,
    from: Option<&'a str>,
    to: Option<&'a str>,
    message_id: Option<&'a str>,
    message: Option<&'a str>,
    delivery_status: Option<&'a str>,
    delivery_status_details: Option<&'a str>,
    delivery_attempts: Option<i32>,
    tag: Option<&'a str>,
    server_call_id: Option<&'a str>,
    correlation_id: Option<&'a str>,
    caller_display_name: Option<&'a str>,
}

#[derive(Serialize, JsonSchema)]
struct CallData<'a> {
    server_call_id: Option<&'a str>,
    call_connection_id: Option<&'a str>,
    correlation_id: Option<&'a str>,
    group_id: Option<&'a str>,
    room_id: Option<&'a str>,
    operation_context: Option<&'a str>,
    result_code: Option<i32>,
    result_sub_code: Option<i32>,
    result_message: Option<&'a str>,
    participant_id: Option<&'a str>,
    participant_phone: Option<&'a str>,
    participant_count: Option<i32>,
    duration_seconds: Option<f64>,
    end_reason_code: Option<i32>,
    end_reason_sub_code: Option<i32>,
    recording_id: Option<&'a str>,
    recording_state: Option<&'a str>,
    recording_content_location: Option<&'a str>,
    recording_metadata_location: Option<&'a str>,
    recording_duration_ms: Option<i64>,
    transfer_target: Option<&'a str>,
    transferee: Option<&'a str>,
}

#[derive(Serialize, JsonSchema)]
struct ChatData<'a> {
    thread_id: &'a str,
    message_id: Option<&'a str>,
    sender_id: Option<&'a str>,
    sender_display_name: Option<&'a str>,
    recipient_id: Option<&'a str>,
    message_type: Option<&'a str>,
    message_body: Option<&'a str>,
    version: Option<i64>,
    participant_id: Option<&'a str>,
    actor_id: Option<&'a str>,
    topic: Option<&'a str>,
}

#[derive(Serialize, JsonSchema)]
struct NoFields {}

fn acs<T: Serialize>(kind: RecordKind, h: &EventHeader, key: String, fields: T) -> OutboxEntry {
    // The raw event was parsed from JSON, so it is JSON.
    let event: Box<RawValue> =
        RawValue::from_string(h.raw.clone()).expect("the stored event is valid JSON");
    let value = Envelope {
        schema: SCHEMA,
        id: h.meta.id,
        kind: kind.as_str(),
        source: &h.meta.source,
        occurred_at: h.occurred_at,
        received_at: h.meta.received_at,
        data: AcsData {
            event_id: &h.event_id,
            event_type: &h.event_type,
            schema: h.schema.as_str(),
            subject: h.subject.as_deref(),
            fields,
            event: &event,
        },
    };
    OutboxEntry {
        id: h.meta.id,
        kind,
        key,
        payload: serde_json::to_string(&value).expect("plain data serialises"),
        source: h.meta.source.clone(),
        occurred_at: h.occurred_at,
    }
}

fn phone(e: &PhoneEvent, key: String) -> OutboxEntry {
    acs(
        RecordKind::PhoneEvent,
        &e.header,
        key,
        PhoneData {
            phone_number: num(&e.phone_number),
            direction: e.direction.as_str(),
            from: num(&e.from),
            to: num(&e.to),
            message_id: e.message_id.as_deref(),
            message: e.message.as_deref(),
            delivery_status: e.delivery_status.as_deref(),
            delivery_status_details: e.delivery_status_details.as_deref(),
            delivery_attempts: e.delivery_attempts,
            tag: e.tag.as_deref(),
            server_call_id: e.server_call_id.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            caller_display_name: e.caller_display_name.as_deref(),
        },
    )
}

fn acs_call(e: &AcsCallEvent, key: String) -> OutboxEntry {
    acs(
        RecordKind::AcsCallEvent,
        &e.header,
        key,
        CallData {
            server_call_id: e.server_call_id.as_deref(),
            call_connection_id: e.call_connection_id.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            group_id: e.group_id.as_deref(),
            room_id: e.room_id.as_deref(),
            operation_context: e.operation_context.as_deref(),
            result_code: e.result_code,
            result_sub_code: e.result_sub_code,
            result_message: e.result_message.as_deref(),
            participant_id: e.participant_id.as_deref(),
            participant_phone: num(&e.participant_phone),
            participant_count: e.participant_count,
            duration_seconds: e.duration_seconds,
            end_reason_code: e.end_reason_code,
            end_reason_sub_code: e.end_reason_sub_code,
            recording_id: e.recording_id.as_deref(),
            recording_state: e.recording_state.as_deref(),
            recording_content_location: e.recording_content_location.as_deref(),
            recording_metadata_location: e.recording_metadata_location.as_deref(),
            recording_duration_ms: e.recording_duration_ms,
            transfer_target: e.transfer_target.as_deref(),
            transferee: e.transferee.as_deref(),
        },
    )
}

fn chat(e: &ChatEvent, key: String) -> OutboxEntry {
    acs(
        RecordKind::ChatEvent,
        &e.header,
        key,
        ChatData {
            thread_id: &e.thread_id,
            message_id: e.message_id.as_deref(),
            sender_id: e.sender_id.as_deref(),
            sender_display_name: e.sender_display_name.as_deref(),
            recipient_id: e.recipient_id.as_deref(),
            message_type: e.message_type.as_deref(),
            message_body: e.message_body.as_deref(),
            version: e.version,
            participant_id: e.participant_id.as_deref(),
            actor_id: e.actor_id.as_deref(),
            topic: e.topic.as_deref(),
        },
    )
}

fn webhook(e: &WebhookEvent, key: String) -> OutboxEntry {
    acs(RecordKind::WebhookEvent, &e.header, key, NoFields {})
}

/// The message of a record. Its `ce_time` is the event time to the microsecond, as PostgreSQL
/// keeps it in the outbox, so that a message sent from the outbox carries the same headers as
/// one sent on the fast path (ACS times have 100 ns digits; the value keeps them).
pub fn encode(record: &Record) -> OutboxEntry {
    let mut entry = encode_exact(record);
    entry.occurred_at = entry.occurred_at.trunc_subsecs(6);
    entry
}

fn encode_exact(record: &Record) -> OutboxEntry {
    let key = || record.ordering_key();
    match record {
        Record::CallEvent(e) => call_status(e),
        Record::Cdr(c) => cdr(c),
        Record::Phone(e) => phone(e, key()),
        Record::AcsCall(e) => acs_call(e, key()),
        Record::Chat(e) => chat(e, key()),
        Record::Webhook(e) => webhook(e, key()),
    }
}

/// The JSON Schema (draft 2020-12) of the value of `kind`'s messages, from the types above: the
/// consumer contract, committed under `schemas/` (`tests/it/contracts.rs` keeps the two equal).
pub fn json_schema(kind: RecordKind) -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let generator = settings.into_generator();
    let schema = match kind {
        RecordKind::CallStatus => {
            generator.into_root_schema_for::<Envelope<'static, CallStatusData<'static>>>()
        }
        RecordKind::Cdr => generator.into_root_schema_for::<Envelope<'static, CdrData<'static>>>(),
        RecordKind::PhoneEvent => generator
            .into_root_schema_for::<Envelope<'static, AcsData<'static, PhoneData<'static>>>>(),
        RecordKind::AcsCallEvent => generator
            .into_root_schema_for::<Envelope<'static, AcsData<'static, CallData<'static>>>>(),
        RecordKind::ChatEvent => generator
            .into_root_schema_for::<Envelope<'static, AcsData<'static, ChatData<'static>>>>(),
        RecordKind::WebhookEvent => {
            generator.into_root_schema_for::<Envelope<'static, AcsData<'static, NoFields>>>()
        }
    };
    let mut value = schema.to_value();
    // What the types say only as `&'static str`: the schema's name and the record kind.
    value["title"] = format!("{SCHEMA} {}", kind.as_str()).into();
    value["$id"] = format!("https://ringback.dev/schemas/{}.v1.json", kind.as_str()).into();
    value["properties"]["schema"]["const"] = SCHEMA.into();
    value["properties"]["kind"]["const"] = kind.as_str().into();
    value
}
