//! PostgreSQL inserts for the hot tables (`cdrs`, `call_events`, `outbox`) as one
//! `INSERT … SELECT … FROM UNNEST($1::uuid[], $2::text[], …)` per table and batch: one bound
//! array per column instead of one parameter per value, so the statement text never changes
//! (one prepared statement per table, planned once), the client formats no placeholders and
//! the server evaluates one projection instead of a VALUES expression per row. Measured with
//! `cargo bench --bench e2e` (README, Performance). The other tables are rare and keep the
//! shared multi-row VALUES builder of [`super::rows`].

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::rows;
use crate::domain::{CallEvent, Cdr, OutboxEntry, PhoneNumber};

/// One column: its name, the element type of its bound array, and a cast applied when
/// selecting it (`raw` travels as text and becomes `jsonb` in the server).
type Column = (&'static str, &'static str, Option<&'static str>);

/// `INSERT INTO table (c…) SELECT c[::cast]… FROM UNNEST($1::t[], …) AS u(c…) [tail]`.
fn statement(table: &str, columns: &[Column], tail: &str) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let names = names.join(", ");
    let select: Vec<String> = columns
        .iter()
        .map(|(name, _, cast)| match cast {
            Some(cast) => format!("{name}::{cast}"),
            None => (*name).to_owned(),
        })
        .collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty, _))| format!("${}::{ty}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {} FROM UNNEST({}) AS u({names}) {tail}",
        select.join(", "),
        arrays.join(", ")
    )
}

/// Builds the statement once per table, binds one array per column (in the order of the
/// column list) and yields the query.
macro_rules! unnest {
    ($table:literal, $tail:literal, $rows:expr,
     [$( $name:literal : $ty:literal $(as $cast:literal)? => |$r:ident| $value:expr ),+ $(,)?]) => {{
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            statement($table, &[$( ($name, $ty, unnest!(@cast $($cast)?)) ),+], $tail)
        });
        let rows = $rows;
        let query = sqlx::query(sql.as_str());
        $( let query = query.bind(rows.iter().map(|$r| $value).collect::<Vec<_>>()); )+
        query
    }};
    (@cast $cast:literal) => { Some($cast) };
    (@cast) => { None };
}

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

/// Inserts the CDRs that are new; returns their ids.
pub(crate) async fn cdrs(tx: &mut PgConnection, rows: &[&Cdr]) -> Result<Vec<Uuid>, sqlx::Error> {
    ids(cdrs_query(rows).fetch_all(tx).await?)
}

/// The CDR insert with its arrays bound.
pub(crate) fn cdrs_query<'a>(rows: &'a [&'a Cdr]) -> Query<'a, Postgres, PgArguments> {
    unnest!("cdrs", "ON CONFLICT DO NOTHING RETURNING id", rows, [
        "id": "uuid" => |c| c.meta.id,
        "source": "text" => |c| &*c.meta.source,
        "dedupe_key": "text" => |c| c.meta.dedupe_key.as_str(),
        "icid": "text" => |c| c.icid.as_deref(),
        "session_id": "text" => |c| c.session_id.as_str(),
        "direction": "int2" => |c| c.direction,
        "sp_id": "text" => |c| c.sp_id.as_str(),
        "app_key": "text" => |c| c.app_key.as_str(),
        "bind_num": "text" => |c| c.bind_num.as_str(),
        "caller_num": "text" => |c| c.caller_num.as_str(),
        "callee_num": "text" => |c| c.callee_num.as_str(),
        "fwd_display_num": "text" => |c| num(&c.fwd_display_num),
        "fwd_dst_num": "text" => |c| num(&c.fwd_dst_num),
        "fwd_start_time": "timestamptz" => |c| c.times.fwd_start,
        "fwd_alerting_time": "timestamptz" => |c| c.times.fwd_alerting,
        "fwd_answer_time": "timestamptz" => |c| c.times.fwd_answer,
        "call_end_time": "timestamptz" => |c| c.times.call_end,
        "fwd_unasw_rsn": "int4" => |c| c.fwd_unasw_rsn,
        "fail_time": "timestamptz" => |c| c.times.fail,
        "ul_fail_reason": "int4" => |c| c.ul_fail_reason,
        "sip_status_code": "int4" => |c| c.sip_status_code,
        "call_out_start_time": "timestamptz" => |c| c.times.call_out_start,
        "call_out_alerting_time": "timestamptz" => |c| c.times.call_out_alerting,
        "call_out_answer_time": "timestamptz" => |c| c.times.call_out_answer,
        "call_out_unasw_rsn": "int4" => |c| c.call_out_unasw_rsn,
        "dyn_ivr_start_time": "timestamptz" => |c| c.times.dyn_ivr_start,
        "dyn_ivr_path": "text" => |c| c.dyn_ivr_path.as_deref(),
        "record_flag": "int2" => |c| c.record_flag,
        "record_start_time": "timestamptz" => |c| c.times.record_start,
        "record_object_name": "text" => |c| c.record_object_name.as_deref(),
        "record_bucket_name": "text" => |c| c.record_bucket_name.as_deref(),
        "record_domain": "text" => |c| c.record_domain.as_deref(),
        "record_file_download_url": "text" => |c| c.record_file_download_url.as_deref(),
        "tts_play_times": "int4" => |c| c.tts_play_times,
        "tts_trans_duration": "int4" => |c| c.tts_trans_duration,
        "service_type": "text" => |c| c.service_type.as_deref(),
        "host_name": "text" => |c| c.host_name.as_deref(),
        "user_data": "text" => |c| c.user_data.as_deref(),
        "started_at": "timestamptz" => |c| c.derived.started_at,
        "answered_at": "timestamptz" => |c| c.derived.answered_at,
        "ended_at": "timestamptz" => |c| c.derived.ended_at,
        "answered": "bool" => |c| c.derived.answered,
        "ring_seconds": "int4" => |c| c.derived.ring_seconds,
        "talk_seconds": "int4" => |c| c.derived.talk_seconds,
        "billable_minutes": "int4" => |c| c.derived.billable_minutes,
        // An array of arrays must be rectangular: each row's flags travel as an array literal.
        "flags": "text" as "text[]" => |c| rows::flags_pg(&c.derived.flags),
        "received_at": "timestamptz" => |c| c.meta.received_at,
        "raw": "text" as "jsonb" => |c| c.raw.as_str(),
    ])
}

/// Inserts the call events that are new; returns their ids.
pub(crate) async fn call_events(
    tx: &mut PgConnection,
    rows: &[&CallEvent],
) -> Result<Vec<Uuid>, sqlx::Error> {
    ids(call_events_query(rows).fetch_all(tx).await?)
}

/// The call-event insert with its arrays bound.
pub(crate) fn call_events_query<'a>(rows: &'a [&'a CallEvent]) -> Query<'a, Postgres, PgArguments> {
    unnest!("call_events", "ON CONFLICT DO NOTHING RETURNING id", rows, [
        "id": "uuid" => |e| e.meta.id,
        "source": "text" => |e| &*e.meta.source,
        "dedupe_key": "text" => |e| e.meta.dedupe_key.as_str(),
        "event_type": "text" => |e| e.event_type.as_str(),
        "session_id": "text" => |e| e.session_id.as_str(),
        "occurred_at": "timestamptz" => |e| e.occurred_at,
        "caller": "text" => |e| num(&e.caller),
        "called": "text" => |e| num(&e.called),
        "user_data": "text" => |e| e.user_data.as_deref(),
        "digit_info": "text" => |e| e.digit_info.as_deref(),
        "party_type": "text" => |e| e.party_type.as_deref(),
        "state_code": "int4" => |e| e.state_code,
        "state_desc": "text" => |e| e.state_desc.as_deref(),
        "received_at": "timestamptz" => |e| e.meta.received_at,
        "raw": "text" as "jsonb" => |e| e.raw.as_str(),
    ])
}

/// Writes the outbox entries of a batch. `seq` is a column default, evaluated as rows leave
/// the sort, so commit order is batch order.
pub(crate) async fn outbox(
    tx: &mut PgConnection,
    entries: &[&OutboxEntry],
    created_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&OutboxEntry) -> &str| entries.iter().map(|e| f(e)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO outbox (id, kind, key, payload, source, occurred_at, created_at) \
         SELECT id, kind, key, payload, source, occurred_at, $7 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) \
           WITH ORDINALITY AS u(id, kind, key, payload, source, occurred_at, ord) \
         ORDER BY ord",
    )
    .bind(entries.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(column(|e| e.kind.as_str()))
    .bind(column(|e| e.key.as_str()))
    .bind(column(|e| e.payload.as_str()))
    .bind(column(|e| &e.source))
    .bind(entries.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(created_at)
    .execute(tx)
    .await?;
    Ok(())
}

fn ids(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Uuid>, sqlx::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}
