//! The INSERT statements, written once for both databases. Values are bound by reference from
//! the records; the few type differences (uuid, json, text[]) are casts given by a [`Dialect`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use crate::domain::{CallEvent, Cdr, CdrFlag, DeadLetter, OutboxEntry, PhoneNumber, Record};

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
    pub dead_letters: Vec<&'a DeadLetter>,
}

impl<'a> Split<'a> {
    pub fn new(records: &'a [Record]) -> Self {
        let mut split = Self::default();
        for record in records {
            match record {
                Record::CallEvent(e) => split.call_events.push(e),
                Record::Cdr(c) => split.cdrs.push(c),
                Record::DeadLetter(d) => split.dead_letters.push(d),
            }
        }
        split
    }

    /// Dead letters are never deduplicated: all of them count as inserted.
    pub fn dead_letter_ids(&self) -> HashSet<Uuid> {
        self.dead_letters.iter().map(|d| d.id).collect()
    }
}

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

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

/// Most rows per statement for a table with `params` bound parameters per row.
pub(crate) fn chunk_rows(d: &Dialect, params: usize) -> usize {
    (d.max_params / params).max(1)
}

/// The batch transaction, the same for both backends: insert each table's rows in chunks,
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
        let mut inserted = split.dead_letter_ids();
        let mut tx = $pool.begin().await?;
        for chunk in split.call_events.chunks(chunk_rows(d, 15)) {
            let mut qb = rows::insert_call_events::<$db>(chunk, d);
            let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(ids.iter().filter_map(|s| ::uuid::Uuid::parse_str(s).ok()));
        }
        for chunk in split.cdrs.chunks(chunk_rows(d, rows::CDR_PARAMS)) {
            let mut qb = rows::insert_cdrs::<$db>(chunk, d);
            let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(ids.iter().filter_map(|s| ::uuid::Uuid::parse_str(s).ok()));
        }
        for chunk in split
            .dead_letters
            .chunks(chunk_rows(d, rows::DEAD_LETTER_PARAMS))
        {
            let mut qb = rows::insert_dead_letters::<$db>(chunk, d);
            qb.build().execute(&mut *tx).await?;
        }
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
