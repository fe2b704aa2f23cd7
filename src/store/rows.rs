//! The INSERT statements, written once for both databases. Values are bound by reference from
//! the records; the few type differences (uuid, json, text[]) are casts given by a [`Dialect`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use uuid::Uuid;

use sqlx::query_builder::Separated;

use crate::domain::{
    AcsCallEvent, CallEvent, Cdr, CdrFlag, ChatEvent, DeadLetter, EventHeader, Handshake,
    OutboxEntry, PhoneEvent, PhoneNumber, Record, WebhookEvent,
};

/// How one database spells what the other spells differently.
pub(crate) struct Dialect {
    /// Appended to a bound uuid text (`::uuid` in PostgreSQL).
    pub uuid_cast: &'static str,
    /// Appended to a bound JSON text (`::jsonb` in PostgreSQL).
    pub json_cast: &'static str,
    /// Appended to a bound flags text (`::text[]` in PostgreSQL).
    pub flags_cast: &'static str,
    /// Renders CDR flags as the bound text.
    pub flags: fn(&[CdrFlag]) -> String,
    /// Most bound parameters in one statement.
    pub max_params: usize,
}

/// `{a,b}`: a PostgreSQL array literal (flag names need no quoting).
pub(crate) fn flags_pg(flags: &[CdrFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    format!("{{{}}}", names.join(","))
}

/// `["a","b"]`: a JSON array, queryable with SQLite's json functions.
pub(crate) fn flags_json(flags: &[CdrFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    serde_json::to_string(&names).expect("strings serialise")
}

/// Records of one batch split by table, in batch order.
#[derive(Default)]
pub(crate) struct Split<'a> {
    pub call_events: Vec<&'a CallEvent>,
    pub cdrs: Vec<&'a Cdr>,
    pub phone: Vec<&'a PhoneEvent>,
    pub acs_calls: Vec<&'a AcsCallEvent>,
    pub chats: Vec<&'a ChatEvent>,
    pub webhooks: Vec<&'a WebhookEvent>,
    pub dead_letters: Vec<&'a DeadLetter>,
    pub handshakes: Vec<&'a Handshake>,
}

impl<'a> Split<'a> {
    pub fn new(records: &'a [Record]) -> Self {
        let mut split = Self::default();
        for record in records {
            match record {
                Record::CallEvent(e) => split.call_events.push(e),
                Record::Cdr(c) => split.cdrs.push(c),
                Record::Phone(e) => split.phone.push(e),
                Record::AcsCall(e) => split.acs_calls.push(e),
                Record::Chat(e) => split.chats.push(e),
                Record::Webhook(e) => split.webhooks.push(e),
                Record::DeadLetter(d) => split.dead_letters.push(d),
                Record::Handshake(h) => split.handshakes.push(h),
            }
        }
        split
    }

    /// Whether the batch has records of no table but `cdrs` and `call_events`.
    pub fn only_hot(&self) -> bool {
        self.phone.is_empty()
            && self.acs_calls.is_empty()
            && self.chats.is_empty()
            && self.webhooks.is_empty()
            && self.dead_letters.is_empty()
            && self.handshakes.is_empty()
    }

    /// Dead letters and handshakes are never deduplicated: all of them count as inserted.
    pub fn always_inserted(&self) -> HashSet<Uuid> {
        self.dead_letters
            .iter()
            .map(|d| d.id)
            .chain(self.handshakes.iter().map(|h| h.id))
            .collect()
    }
}

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

/// Bound parameters per call-event row.
pub(crate) const CALL_EVENT_PARAMS: usize = 15;

const CALL_EVENT_COLUMNS: &str = "INSERT INTO call_events (id, source, dedupe_key, event_type, \
     session_id, occurred_at, caller, called, user_data, digit_info, party_type, state_code, \
     state_desc, received_at, raw) ";

/// `INSERT … ON CONFLICT DO NOTHING RETURNING id` for a chunk of call events.
pub(crate) fn insert_call_events<'a, DB>(
    rows: &[&'a CallEvent],
    d: &Dialect,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(CALL_EVENT_COLUMNS);
    qb.push_values(rows.iter().copied(), |mut b, e: &'a CallEvent| {
        b.push_bind(e.meta.id.to_string())
            .push_unseparated(d.uuid_cast);
        b.push_bind(&*e.meta.source)
            .push_bind(e.meta.dedupe_key.as_str())
            .push_bind(e.event_type.as_str())
            .push_bind(e.session_id.as_str())
            .push_bind(e.occurred_at)
            .push_bind(num(&e.caller))
            .push_bind(num(&e.called))
            .push_bind(e.user_data.as_deref())
            .push_bind(e.digit_info.as_deref())
            .push_bind(e.party_type.as_deref())
            .push_bind(e.state_code)
            .push_bind(e.state_desc.as_deref())
            .push_bind(e.meta.received_at)
            .push_bind(e.raw.as_str())
            .push_unseparated(d.json_cast);
    });
    qb.push(" ON CONFLICT DO NOTHING RETURNING CAST(id AS TEXT)");
    qb
}

const CDR_COLUMNS: &str = "INSERT INTO cdrs (id, source, dedupe_key, icid, session_id, direction, \
     sp_id, app_key, bind_num, caller_num, callee_num, fwd_display_num, fwd_dst_num, \
     fwd_start_time, fwd_alerting_time, fwd_answer_time, call_end_time, fwd_unasw_rsn, fail_time, \
     ul_fail_reason, sip_status_code, call_out_start_time, call_out_alerting_time, \
     call_out_answer_time, call_out_unasw_rsn, dyn_ivr_start_time, dyn_ivr_path, record_flag, \
     record_start_time, record_object_name, record_bucket_name, record_domain, \
     record_file_download_url, tts_play_times, tts_trans_duration, service_type, host_name, \
     user_data, started_at, answered_at, ended_at, answered, ring_seconds, talk_seconds, \
     billable_minutes, flags, received_at, raw) ";

/// Bound parameters per CDR row.
pub(crate) const CDR_PARAMS: usize = 48;

/// `INSERT … ON CONFLICT DO NOTHING RETURNING id` for a chunk of CDRs.
pub(crate) fn insert_cdrs<'a, DB>(rows: &[&'a Cdr], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i16: Encode<'a, DB> + Type<DB>,
    Option<i16>: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
    Option<DateTime<Utc>>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(CDR_COLUMNS);
    qb.push_values(rows.iter().copied(), |mut b, c: &'a Cdr| {
        let t = &c.times;
        let x = &c.derived;
        b.push_bind(c.meta.id.to_string())
            .push_unseparated(d.uuid_cast);
        b.push_bind(&*c.meta.source)
            .push_bind(c.meta.dedupe_key.as_str())
            .push_bind(c.icid.as_deref())
            .push_bind(c.session_id.as_str())
            .push_bind(c.direction)
            .push_bind(c.sp_id.as_str())
            .push_bind(c.app_key.as_str())
            .push_bind(c.bind_num.as_str())
            .push_bind(c.caller_num.as_str())
            .push_bind(c.callee_num.as_str())
            .push_bind(num(&c.fwd_display_num))
            .push_bind(num(&c.fwd_dst_num))
            .push_bind(t.fwd_start)
            .push_bind(t.fwd_alerting)
            .push_bind(t.fwd_answer)
            .push_bind(t.call_end)
            .push_bind(c.fwd_unasw_rsn)
            .push_bind(t.fail)
            .push_bind(c.ul_fail_reason)
            .push_bind(c.sip_status_code)
            .push_bind(t.call_out_start)
            .push_bind(t.call_out_alerting)
            .push_bind(t.call_out_answer)
            .push_bind(c.call_out_unasw_rsn)
            .push_bind(t.dyn_ivr_start)
            .push_bind(c.dyn_ivr_path.as_deref())
            .push_bind(c.record_flag)
            .push_bind(t.record_start)
            .push_bind(c.record_object_name.as_deref())
            .push_bind(c.record_bucket_name.as_deref())
            .push_bind(c.record_domain.as_deref())
            .push_bind(c.record_file_download_url.as_deref())
            .push_bind(c.tts_play_times)
            .push_bind(c.tts_trans_duration)
            .push_bind(c.service_type.as_deref())
            .push_bind(c.host_name.as_deref())
            .push_bind(c.user_data.as_deref())
            .push_bind(x.started_at)
            .push_bind(x.answered_at)
            .push_bind(x.ended_at)
            .push_bind(x.answered)
            .push_bind(x.ring_seconds)
            .push_bind(x.talk_seconds)
            .push_bind(x.billable_minutes)
            .push_bind((d.flags)(&x.flags))
            .push_unseparated(d.flags_cast);
        b.push_bind(c.meta.received_at)
            .push_bind(c.raw.as_str())
            .push_unseparated(d.json_cast);
    });
    qb.push(" ON CONFLICT DO NOTHING RETURNING CAST(id AS TEXT)");
    qb
}

/// Bound parameters per dead-letter row.
pub(crate) const DEAD_LETTER_PARAMS: usize = 12;

/// Plain `INSERT` for a chunk of dead letters (their ids are random; nothing to dedupe).
pub(crate) fn insert_dead_letters<'a, DB>(
    rows: &[&'a DeadLetter],
    d: &Dialect,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Option<&'a [u8]>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO dead_letters (id, source, received_at, request_id, scope, record_index, \
         code, detail, field, body, body_bytes, headers) ",
    );
    qb.push_values(rows.iter().copied(), |mut b, l: &'a DeadLetter| {
        b.push_bind(l.id.to_string()).push_unseparated(d.uuid_cast);
        b.push_bind(&*l.source)
            .push_bind(l.received_at)
            .push_bind(l.request_id.as_deref())
            .push_bind(l.scope.as_str())
            .push_bind(l.record_index)
            .push_bind(l.code)
            .push_bind(l.detail.as_str())
            .push_bind(l.field.as_deref())
            .push_bind(l.body.as_deref())
            .push_bind(l.body.as_ref().and_then(|b| i32::try_from(b.len()).ok()))
            .push_bind(l.headers.to_string())
            .push_unseparated(d.json_cast);
    });
    qb
}

/// Bound parameters per outbox row.
pub(crate) const OUTBOX_PARAMS: usize = 7;

/// Plain `INSERT` for a chunk of outbox entries (only ever for newly inserted records).
pub(crate) fn insert_outbox<'a, DB>(
    rows: &[&'a OutboxEntry],
    created_at: DateTime<Utc>,
    d: &Dialect,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO outbox (id, kind, key, payload, source, occurred_at, created_at) ",
    );
    qb.push_values(rows.iter().copied(), |mut b, e: &'a OutboxEntry| {
        b.push_bind(e.id.to_string()).push_unseparated(d.uuid_cast);
        b.push_bind(e.kind.as_str())
            .push_bind(e.key.as_str())
            .push_bind(e.payload.as_str())
            .push_bind(&*e.source)
            .push_bind(e.occurred_at)
            .push_bind(created_at);
    });
    qb
}

const EVENT_HEADER: &str =
    "id, source, event_id, dedupe_key, event_type, schema, subject, occurred_at";
/// Bound parameters of the header and tail columns every ACS event table has.
pub(crate) const EVENT_COMMON_PARAMS: usize = 10;

fn push_header<'a, DB>(b: &mut Separated<'_, 'a, DB, &'static str>, h: &'a EventHeader, d: &Dialect)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    b.push_bind(h.meta.id.to_string())
        .push_unseparated(d.uuid_cast);
    b.push_bind(&*h.meta.source)
        .push_bind(h.event_id.as_str())
        .push_bind(h.meta.dedupe_key.as_str())
        .push_bind(h.event_type.as_str())
        .push_bind(h.schema)
        .push_bind(h.subject.as_deref())
        .push_bind(h.occurred_at);
}

fn push_tail<'a, DB>(b: &mut Separated<'_, 'a, DB, &'static str>, h: &'a EventHeader, d: &Dialect)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    b.push_bind(h.meta.received_at)
        .push_bind(h.raw.as_str())
        .push_unseparated(d.json_cast);
}

/// `INSERT INTO <table> (<header>, <columns>, received_at, raw) VALUES … ON CONFLICT DO
/// NOTHING RETURNING id` for ACS events; `bind` pushes one row's own columns.
fn insert_events<'a, DB, T>(
    table: &str,
    columns: &str,
    rows: &[&'a T],
    header: fn(&'a T) -> &'a EventHeader,
    d: &Dialect,
    mut bind: impl FnMut(&mut Separated<'_, 'a, DB, &'static str>, &'a T),
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {table} ({EVENT_HEADER}, {columns}, received_at, raw) "
    ));
    qb.push_values(rows.iter().copied(), |mut b, row: &'a T| {
        push_header(&mut b, header(row), d);
        bind(&mut b, row);
        push_tail(&mut b, header(row), d);
    });
    qb.push(" ON CONFLICT DO NOTHING RETURNING CAST(id AS TEXT)");
    qb
}

/// Bound parameters per row of each ACS table (header and tail included).
pub(crate) const PHONE_PARAMS: usize = EVENT_COMMON_PARAMS + 14;
pub(crate) const ACS_CALL_PARAMS: usize = EVENT_COMMON_PARAMS + 22;
pub(crate) const CHAT_PARAMS: usize = EVENT_COMMON_PARAMS + 11;
pub(crate) const WEBHOOK_PARAMS: usize = EVENT_COMMON_PARAMS + 1;
pub(crate) const HANDSHAKE_PARAMS: usize = 6;

pub(crate) fn insert_phone<'a, DB>(rows: &[&'a PhoneEvent], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    insert_events(
        "phone_number_events",
        "phone_number, direction, from_number, to_number, message_id, message, \
         delivery_status, delivery_status_details, delivery_attempts, tag, server_call_id, \
         correlation_id, caller_display_name",
        rows,
        |e| &e.header,
        d,
        |b, e| {
            b.push_bind(num(&e.phone_number))
                .push_bind(e.direction)
                .push_bind(num(&e.from))
                .push_bind(num(&e.to))
                .push_bind(e.message_id.as_deref())
                .push_bind(e.message.as_deref())
                .push_bind(e.delivery_status.as_deref())
                .push_bind(e.delivery_status_details.as_deref())
                .push_bind(e.delivery_attempts)
                .push_bind(e.tag.as_deref())
                .push_bind(e.server_call_id.as_deref())
                .push_bind(e.correlation_id.as_deref())
                .push_bind(e.caller_display_name.as_deref());
        },
    )
}

pub(crate) fn insert_acs_calls<'a, DB>(
    rows: &[&'a AcsCallEvent],
    d: &Dialect,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    Option<i32>: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    Option<f64>: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    insert_events(
        "acs_call_events",
        "server_call_id, call_connection_id, correlation_id, group_id, room_id, \
         operation_context, result_code, result_sub_code, result_message, participant_id, \
         participant_phone, participant_count, duration_seconds, end_reason_code, \
         end_reason_sub_code, recording_id, recording_state, recording_content_location, \
         recording_metadata_location, recording_duration_ms, transfer_target, transferee",
        rows,
        |e| &e.header,
        d,
        |b, e| {
            b.push_bind(e.server_call_id.as_deref())
                .push_bind(e.call_connection_id.as_deref())
                .push_bind(e.correlation_id.as_deref())
                .push_bind(e.group_id.as_deref())
                .push_bind(e.room_id.as_deref())
                .push_bind(e.operation_context.as_deref())
                .push_bind(e.result_code)
                .push_bind(e.result_sub_code)
                .push_bind(e.result_message.as_deref())
                .push_bind(e.participant_id.as_deref())
                .push_bind(num(&e.participant_phone))
                .push_bind(e.participant_count)
                .push_bind(e.duration_seconds)
                .push_bind(e.end_reason_code)
                .push_bind(e.end_reason_sub_code)
                .push_bind(e.recording_id.as_deref())
                .push_bind(e.recording_state.as_deref())
                .push_bind(e.recording_content_location.as_deref())
                .push_bind(e.recording_metadata_location.as_deref())
                .push_bind(e.recording_duration_ms)
                .push_bind(e.transfer_target.as_deref())
                .push_bind(e.transferee.as_deref());
        },
    )
}

pub(crate) fn insert_chats<'a, DB>(rows: &[&'a ChatEvent], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    insert_events(
        "chat_events",
        "thread_id, message_id, sender_id, sender_display_name, recipient_id, message_type, \
         message_body, version, participant_id, actor_id, topic",
        rows,
        |e| &e.header,
        d,
        |b, e| {
            b.push_bind(e.thread_id.as_str())
                .push_bind(e.message_id.as_deref())
                .push_bind(e.sender_id.as_deref())
                .push_bind(e.sender_display_name.as_deref())
                .push_bind(e.recipient_id.as_deref())
                .push_bind(e.message_type.as_deref())
                .push_bind(e.message_body.as_deref())
                .push_bind(e.version)
                .push_bind(e.participant_id.as_deref())
                .push_bind(e.actor_id.as_deref())
                .push_bind(e.topic.as_deref());
        },
    )
}

pub(crate) fn insert_webhooks<'a, DB>(
    rows: &[&'a WebhookEvent],
    d: &Dialect,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    insert_events(
        "webhook_events",
        "data",
        rows,
        |e| &e.header,
        d,
        |b, e| {
            b.push_bind(e.data.as_str()).push_unseparated(d.json_cast);
        },
    )
}

pub(crate) fn insert_handshakes<'a, DB>(rows: &[&'a Handshake], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    DateTime<Utc>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO handshakes (id, source, received_at, request_id, kind, detail) ",
    );
    qb.push_values(rows.iter().copied(), |mut b, h: &'a Handshake| {
        b.push_bind(h.id.to_string()).push_unseparated(d.uuid_cast);
        b.push_bind(&*h.source)
            .push_bind(h.received_at)
            .push_bind(h.request_id.as_deref())
            .push_bind(h.kind)
            .push_bind(h.detail.to_string())
            .push_unseparated(d.json_cast);
    });
    qb
}

/// The outbox entries an `UPDATE … RETURNING seq, CAST(id AS TEXT) AS id, kind, key, payload,
/// source, occurred_at` claimed, in commit order (RETURNING promises no order).
pub(crate) fn claimed_in_commit_order<R>(rows: &[R]) -> Vec<OutboxEntry>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut claimed: Vec<(i64, OutboxEntry)> = rows
        .iter()
        .filter_map(|r| {
            let entry = OutboxEntry {
                id: Uuid::parse_str(r.get::<&str, _>("id")).ok()?,
                kind: crate::domain::RecordKind::from_name(r.get("kind"))?,
                key: r.get("key"),
                payload: r.get("payload"),
                source: r.get::<String, _>("source").into(),
                occurred_at: r.get("occurred_at"),
            };
            Some((r.get("seq"), entry))
        })
        .collect();
    claimed.sort_by_key(|(seq, _)| *seq);
    claimed.into_iter().map(|(_, e)| e).collect()
}

/// The records a `SELECT CAST(id AS TEXT) AS id, source, received_at, event_type, raw` read.
pub(crate) fn stored_records<R>(rows: &[R]) -> Vec<crate::domain::StoredRecord>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter()
        .filter_map(|r| {
            Some(crate::domain::StoredRecord {
                id: Uuid::parse_str(r.get::<&str, _>("id")).ok()?,
                source: r.get("source"),
                received_at: r.get("received_at"),
                event_type: r.get("event_type"),
                raw: r.get("raw"),
            })
        })
        .collect()
}

/// Most rows per statement for a table with `params` bound parameters per row.
pub(crate) fn chunk_rows(d: &Dialect, params: usize) -> usize {
    (d.max_params / params).max(1)
}

/// Inserts `rows` in chunks with an `… RETURNING id` statement built by `build`, adding the
/// ids the database reports to `inserted`.
macro_rules! insert_returning {
    ($tx:ident, $inserted:ident, $d:expr, $rows:expr, $params:expr, $build:expr) => {
        for chunk in $rows.chunks($crate::store::rows::chunk_rows($d, $params)) {
            let mut qb = $build(chunk, $d);
            let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *$tx).await?;
            $inserted.extend(ids.iter().filter_map(|s| ::uuid::Uuid::parse_str(s).ok()));
        }
    };
}
pub(crate) use insert_returning;

/// The tables other than `call_events`, `cdrs` and `outbox` (which PostgreSQL writes with
/// `UNNEST`, see `pg_unnest`): inserted with the shared multi-row builders on both backends.
macro_rules! insert_others {
    ($tx:ident, $inserted:ident, $d:expr, $split:ident, $db:ty) => {
        let d: &$crate::store::rows::Dialect = $d;
        let split = &$split;
        $crate::store::rows::insert_returning!(
            $tx,
            $inserted,
            d,
            split.phone,
            $crate::store::rows::PHONE_PARAMS,
            $crate::store::rows::insert_phone::<$db>
        );
        $crate::store::rows::insert_returning!(
            $tx,
            $inserted,
            d,
            split.acs_calls,
            $crate::store::rows::ACS_CALL_PARAMS,
            $crate::store::rows::insert_acs_calls::<$db>
        );
        $crate::store::rows::insert_returning!(
            $tx,
            $inserted,
            d,
            split.chats,
            $crate::store::rows::CHAT_PARAMS,
            $crate::store::rows::insert_chats::<$db>
        );
        $crate::store::rows::insert_returning!(
            $tx,
            $inserted,
            d,
            split.webhooks,
            $crate::store::rows::WEBHOOK_PARAMS,
            $crate::store::rows::insert_webhooks::<$db>
        );
        for chunk in split.handshakes.chunks($crate::store::rows::chunk_rows(
            d,
            $crate::store::rows::HANDSHAKE_PARAMS,
        )) {
            let mut qb = $crate::store::rows::insert_handshakes::<$db>(chunk, d);
            qb.build().execute(&mut *$tx).await?;
        }
        for chunk in split.dead_letters.chunks($crate::store::rows::chunk_rows(
            d,
            $crate::store::rows::DEAD_LETTER_PARAMS,
        )) {
            let mut qb = $crate::store::rows::insert_dead_letters::<$db>(chunk, d);
            qb.build().execute(&mut *$tx).await?;
        }
    };
}
pub(crate) use insert_others;

/// The batch transaction as SQLite runs it (PostgreSQL's is `PgStore::commit`): insert each table's rows in chunks,
/// collect the ids the database reports as inserted, write the outbox entries of exactly
/// those records, commit once. A macro rather than a
/// generic function because sqlx's executor bounds over a generic `Database` would drown the
/// logic.
macro_rules! commit_batch {
    ($pool:expr, $db:ty, $dialect:expr, $records:expr, $outbox:expr) => {{
        use $crate::store::rows::{self, chunk_rows, Split};
        let records: &[$crate::domain::Record] = $records;
        let d: &rows::Dialect = $dialect;
        let split = Split::new(records);
        let mut inserted = split.always_inserted();
        let mut tx = $pool.begin().await?;
        rows::insert_returning!(
            tx,
            inserted,
            d,
            split.call_events,
            rows::CALL_EVENT_PARAMS,
            rows::insert_call_events::<$db>
        );
        rows::insert_returning!(
            tx,
            inserted,
            d,
            split.cdrs,
            rows::CDR_PARAMS,
            rows::insert_cdrs::<$db>
        );
        rows::insert_others!(tx, inserted, d, split, $db);
        let entries: Vec<&$crate::domain::OutboxEntry> = $outbox
            .iter()
            .filter(|e| inserted.contains(&e.id))
            .collect();
        let now = ::chrono::Utc::now();
        for chunk in entries.chunks(chunk_rows(d, rows::OUTBOX_PARAMS)) {
            let mut qb = rows::insert_outbox::<$db>(chunk, now, d);
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok($crate::store::outcomes(records, inserted))
    }};
}
pub(crate) use commit_batch;
