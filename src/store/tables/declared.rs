//! Every table's declaration: its columns, their types, and how each is read from a row.

use chrono::{DateTime, Utc};
use sqlx::postgres::Postgres;
use sqlx::query_builder::Separated;
use sqlx::sqlite::Sqlite;

use super::{Column, Columns, PgQuery, Table, Ty, Values};
use crate::domain::{
    AcsCallEvent, CallEvent, Cdr, ChatEvent, DeadLetter, EventHeader, Handshake, Nonce,
    OutboxEntry, PhoneEvent, PhoneNumber, WebhookEvent,
};
use crate::store::dialect::{flags_pg, Dialect};

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

table!(CDRS: Cdr = "cdrs", true, [
    "id": Uuid => |c| c.meta.id,
    "source": Text => |c| &*c.meta.source,
    "dedupe_key": Text => |c| c.meta.dedupe_key.as_str(),
    "icid": Text => |c| c.icid.as_deref(),
    "session_id": Text => |c| c.session_id.as_str(),
    "direction": Int2 => |c| c.direction,
    "sp_id": Text => |c| c.sp_id.as_str(),
    "app_key": Text => |c| c.app_key.as_str(),
    "bind_num": Text => |c| c.bind_num.as_str(),
    "caller_num": Text => |c| c.caller_num.as_str(),
    "callee_num": Text => |c| c.callee_num.as_str(),
    "fwd_display_num": Text => |c| num(&c.fwd_display_num),
    "fwd_dst_num": Text => |c| num(&c.fwd_dst_num),
    "fwd_start_time": Time => |c| c.times.fwd_start,
    "fwd_alerting_time": Time => |c| c.times.fwd_alerting,
    "fwd_answer_time": Time => |c| c.times.fwd_answer,
    "call_end_time": Time => |c| c.times.call_end,
    "fwd_unasw_rsn": Int4 => |c| c.fwd_unasw_rsn,
    "fail_time": Time => |c| c.times.fail,
    "ul_fail_reason": Int4 => |c| c.ul_fail_reason,
    "sip_status_code": Int4 => |c| c.sip_status_code,
    "call_out_start_time": Time => |c| c.times.call_out_start,
    "call_out_alerting_time": Time => |c| c.times.call_out_alerting,
    "call_out_answer_time": Time => |c| c.times.call_out_answer,
    "call_out_unasw_rsn": Int4 => |c| c.call_out_unasw_rsn,
    "dyn_ivr_start_time": Time => |c| c.times.dyn_ivr_start,
    "dyn_ivr_path": Text => |c| c.dyn_ivr_path.as_deref(),
    "record_flag": Int2 => |c| c.record_flag,
    "record_start_time": Time => |c| c.times.record_start,
    "record_object_name": Text => |c| c.record_object_name.as_deref(),
    "record_bucket_name": Text => |c| c.record_bucket_name.as_deref(),
    "record_domain": Text => |c| c.record_domain.as_deref(),
    "record_file_download_url": Text => |c| c.record_file_download_url.as_deref(),
    "tts_play_times": Int4 => |c| c.tts_play_times,
    "tts_trans_duration": Int4 => |c| c.tts_trans_duration,
    "service_type": Text => |c| c.service_type.as_deref(),
    "host_name": Text => |c| c.host_name.as_deref(),
    "user_data": Text => |c| c.user_data.as_deref(),
    "started_at": Time => |c| c.derived.started_at,
    "answered_at": Time => |c| c.derived.answered_at,
    "ended_at": Time => |c| c.derived.ended_at,
    "answered": Bool => |c| c.derived.answered,
    "ring_seconds": Int4 => |c| c.derived.ring_seconds,
    "pdd_seconds": Int4 => |c| c.derived.pdd_seconds,
    "talk_seconds": Int4 => |c| c.derived.talk_seconds,
    "billable_minutes": Int4 => |c| c.derived.billable_minutes,
    "flags": Flags => |c| &c.derived.flags,
    "received_at": Time => |c| c.meta.received_at,
    "occurred_at": Time => |c| c.stored_at(),
    "raw": Json => |c| c.raw.as_str(),
]);

table!(CALL_EVENTS: CallEvent = "call_events", true, [
    "id": Uuid => |e| e.meta.id,
    "source": Text => |e| &*e.meta.source,
    "dedupe_key": Text => |e| e.meta.dedupe_key.as_str(),
    "event_type": Text => |e| e.event_type.as_str(),
    "session_id": Text => |e| e.session_id.as_str(),
    "occurred_at": Time => |e| e.occurred_at,
    "caller": Text => |e| num(&e.caller),
    "called": Text => |e| num(&e.called),
    "user_data": Text => |e| e.user_data.as_deref(),
    "digit_info": Text => |e| e.digit_info.as_deref(),
    "party_type": Text => |e| e.party_type.as_deref(),
    "state_code": Int4 => |e| e.state_code,
    "state_desc": Text => |e| e.state_desc.as_deref(),
    "received_at": Time => |e| e.meta.received_at,
    "raw": Json => |e| e.raw.as_str(),
]);

/// The columns every ACS event table starts with (the event's header), then its own, then
/// `received_at` and `raw`.
macro_rules! event_table {
    ($table:ident : $row:ty = $name:literal,
     [$( $col:literal : $ty:ident => |$r:ident| $value:expr ),* $(,)?]) => {
        table!($table: $row = $name, true, [
            "id": Uuid => |e| header(e).meta.id,
            "source": Text => |e| &*header(e).meta.source,
            "event_id": Text => |e| header(e).event_id.as_str(),
            "dedupe_key": Text => |e| header(e).meta.dedupe_key.as_str(),
            "event_type": Text => |e| header(e).event_type.as_str(),
            "schema": Text => |e| header(e).schema.as_str(),
            "subject": Text => |e| header(e).subject.as_deref(),
            "occurred_at": Time => |e| header(e).occurred_at,
            $( $col: $ty => |$r| $value, )*
            "received_at": Time => |e| header(e).meta.received_at,
            "raw": Json => |e| header(e).raw.as_str(),
        ]);
    };
}

/// The header of an ACS event row.
trait HasHeader {
    fn header(&self) -> &EventHeader;
}

fn header<T: HasHeader>(row: &T) -> &EventHeader {
    row.header()
}

macro_rules! has_header {
    ($($row:ty),+) => {
        $( impl HasHeader for $row {
            fn header(&self) -> &EventHeader {
                &self.header
            }
        } )+
    };
}

has_header!(PhoneEvent, AcsCallEvent, ChatEvent, WebhookEvent);

event_table!(PHONE_EVENTS: PhoneEvent = "phone_number_events", [
    "phone_number": Text => |e| num(&e.phone_number),
    "direction": Text => |e| e.direction.as_str(),
    "from_number": Text => |e| num(&e.from),
    "to_number": Text => |e| num(&e.to),
    "message_id": Text => |e| e.message_id.as_deref(),
    "message": Text => |e| e.message.as_deref(),
    "delivery_status": Text => |e| e.delivery_status.as_deref(),
    "delivery_status_details": Text => |e| e.delivery_status_details.as_deref(),
    "delivery_attempts": Int4 => |e| e.delivery_attempts,
    "tag": Text => |e| e.tag.as_deref(),
    "server_call_id": Text => |e| e.server_call_id.as_deref(),
    "correlation_id": Text => |e| e.correlation_id.as_deref(),
    "caller_display_name": Text => |e| e.caller_display_name.as_deref(),
]);

event_table!(ACS_CALL_EVENTS: AcsCallEvent = "acs_call_events", [
    "server_call_id": Text => |e| e.server_call_id.as_deref(),
    "call_connection_id": Text => |e| e.call_connection_id.as_deref(),
    "correlation_id": Text => |e| e.correlation_id.as_deref(),
    "group_id": Text => |e| e.group_id.as_deref(),
    "room_id": Text => |e| e.room_id.as_deref(),
    "operation_context": Text => |e| e.operation_context.as_deref(),
    "result_code": Int4 => |e| e.result_code,
    "result_sub_code": Int4 => |e| e.result_sub_code,
    "result_message": Text => |e| e.result_message.as_deref(),
    "participant_id": Text => |e| e.participant_id.as_deref(),
    "participant_phone": Text => |e| num(&e.participant_phone),
    "participant_count": Int4 => |e| e.participant_count,
    "duration_seconds": Float8 => |e| e.duration_seconds,
    "end_reason_code": Int4 => |e| e.end_reason_code,
    "end_reason_sub_code": Int4 => |e| e.end_reason_sub_code,
    "recording_id": Text => |e| e.recording_id.as_deref(),
    "recording_state": Text => |e| e.recording_state.as_deref(),
    "recording_content_location": Text => |e| e.recording_content_location.as_deref(),
    "recording_metadata_location": Text => |e| e.recording_metadata_location.as_deref(),
    "recording_duration_ms": Int8 => |e| e.recording_duration_ms,
    "transfer_target": Text => |e| e.transfer_target.as_deref(),
    "transferee": Text => |e| e.transferee.as_deref(),
]);

event_table!(CHAT_EVENTS: ChatEvent = "chat_events", [
    "thread_id": Text => |e| e.thread_id.as_str(),
    "message_id": Text => |e| e.message_id.as_deref(),
    "sender_id": Text => |e| e.sender_id.as_deref(),
    "sender_display_name": Text => |e| e.sender_display_name.as_deref(),
    "recipient_id": Text => |e| e.recipient_id.as_deref(),
    "message_type": Text => |e| e.message_type.as_deref(),
    "message_body": Text => |e| e.message_body.as_deref(),
    "version": Int8 => |e| e.version,
    "participant_id": Text => |e| e.participant_id.as_deref(),
    "actor_id": Text => |e| e.actor_id.as_deref(),
    "topic": Text => |e| e.topic.as_deref(),
]);

event_table!(WEBHOOK_EVENTS: WebhookEvent = "webhook_events", [
    "data": Json => |e| e.data.as_str(),
]);

table!(DEAD_LETTERS: DeadLetter = "dead_letters", false, [
    "id": Uuid => |l| l.id,
    "source": Text => |l| &*l.source,
    "received_at": Time => |l| l.received_at,
    "request_id": Text => |l| l.request_id.as_deref(),
    "scope": Text => |l| l.scope.as_str(),
    "record_index": Int4 => |l| l.record_index,
    "code": Text => |l| l.code.as_str(),
    "detail": Text => |l| l.detail.as_str(),
    "field": Text => |l| l.field.as_deref(),
    "body": Bytes => |l| l.body.as_deref(),
    "body_bytes": Int4 => |l| l.body.as_ref().and_then(|b| i32::try_from(b.len()).ok()),
    "headers": Json => |l| l.headers.to_string(),
    "auth": Text => |l| l.auth.as_deref(),
]);

table!(HANDSHAKES: Handshake = "handshakes", false, [
    "id": Uuid => |h| h.id,
    "source": Text => |h| &*h.source,
    "received_at": Time => |h| h.received_at,
    "request_id": Text => |h| h.request_id.as_deref(),
    "kind": Text => |h| h.kind.as_str(),
    "detail": Json => |h| h.detail.to_string(),
]);

table!(NONCES: Nonce = "nonces", true, [
    "id": Uuid => |n| n.id,
    "claim": Uuid => |n| n.claim,
    "source": Text => |n| &*n.source,
    "nonce": Text => |n| n.nonce.as_str(),
    "expires_at": Time => |n| n.expires_at,
]);

/// An outbox row as a store writes it: the entry, its value as this store keeps it (`None`
/// where PostgreSQL rebuilds it from the record's row, see `store::pg_unnest::stored_without_payload`),
/// and when it was committed.
pub(crate) struct OutboxRow<'a> {
    pub entry: &'a OutboxEntry,
    pub payload: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    /// The committing process (see `Store::claim_outbox`).
    pub owner: uuid::Uuid,
}

table!(OUTBOX: OutboxRow<'a> = "outbox", false, [
    "id": Uuid => |o| o.entry.id,
    "kind": Text => |o| o.entry.kind.as_str(),
    "key": Text => |o| o.entry.key.as_str(),
    "payload": Text => |o| o.payload,
    "source": Text => |o| &*o.entry.source,
    "occurred_at": Time => |o| o.entry.occurred_at,
    "created_at": Time => |o| o.created_at,
    "owner": Uuid => |o| o.owner,
]);
