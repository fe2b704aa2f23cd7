//! PostgreSQL's batch commit for the hot tables (`cdrs`, `call_events`, `outbox`): one
//! statement per batch, records and outbox together (see [`statement`]), each table's rows as
//! `INSERT … SELECT … FROM UNNEST($1::uuid[], $2::text[], …)`: one bound array per column
//! instead of one parameter per value, so the statement text never changes (prepared once per
//! connection), the client formats no placeholders and the server evaluates one projection
//! instead of a VALUES expression per row. A batch of only these tables needs no `BEGIN` and
//! `COMMIT`: one round trip instead of four. Measured with `cargo bench --bench e2e` (README,
//! Performance). The other tables are rare and keep the shared multi-row VALUES builder of
//! [`super::rows`].

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::Row;
use uuid::Uuid;

use super::rows;
use crate::domain::{CallEvent, Cdr, OutboxEntry, PhoneNumber};
use crate::message;

/// One column: its name, the element type of its bound array, and a cast applied when
/// selecting it (`raw` travels as text and becomes `jsonb` in the server).
type Column = (&'static str, &'static str, Option<&'static str>);

/// `INSERT INTO table (c…) SELECT c[::cast]… FROM UNNEST($n::t[], …) AS u(c…) [tail]`, its
/// arrays numbered from `*param` on (which it advances past them).
fn insert(table: &str, columns: &[Column], tail: &str, param: &mut usize) -> String {
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
        .map(|(_, ty, _)| {
            *param += 1;
            format!("${param}::{ty}[]")
        })
        .collect();
    format!(
        "INSERT INTO {table} ({names}) SELECT {} FROM UNNEST({}) AS u({names}) {tail}",
        select.join(", "),
        arrays.join(", ")
    )
}

/// Declares a table's columns once: `$columns()` lists them for [`insert`], `$bind` binds one
/// array per column, in the same order, onto a query.
macro_rules! columns {
    ($columns:ident, $bind:ident, $row:ty,
     [$( $name:literal : $ty:literal $(as $cast:literal)? => |$r:ident| $value:expr ),+ $(,)?]) => {
        fn $columns() -> &'static [Column] {
            &[$( ($name, $ty, columns!(@cast $($cast)?)) ),+]
        }

        fn $bind<'q>(
            query: Query<'q, Postgres, PgArguments>,
            rows: &[&'q $row],
        ) -> Query<'q, Postgres, PgArguments> {
            $( let query = query.bind(rows.iter().map(|$r| $value).collect::<Vec<_>>()); )+
            query
        }
    };
    (@cast $cast:literal) => { Some($cast) };
    (@cast) => { None };
}

fn num(n: &Option<PhoneNumber>) -> Option<&str> {
    n.as_ref().map(PhoneNumber::as_str)
}

columns!(cdr_columns, bind_cdrs, Cdr, [
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
]);

columns!(call_event_columns, bind_call_events, CallEvent, [
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
]);

fn ids(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Uuid>, sqlx::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Outbox columns written from the entries' arrays (`created_at` is one value).
const OUTBOX_ARRAYS: &str = "id, kind, key, payload, source, occurred_at";

/// The statement committing a batch's CDRs and call events with the outbox entries of those
/// that were new, as one statement: data-modifying CTEs run in the statement's snapshot and
/// see each other's `RETURNING`, so the outbox gets exactly the records this statement
/// inserted (`ON CONFLICT (id) DO NOTHING`: a duplicate gets neither), plus the entries of
/// `also` (ids of the batch's other records, inserted earlier in the same transaction). Its
/// rows are the ids of the new CDRs and call events. One statement text per combination of
/// tables, so each is prepared once per connection.
///
/// Conflicts are decided on `id` alone: an id is the UUIDv5 of (source, kind, dedupe key),
/// so the `(source, dedupe_key)` unique index can only conflict when `id` does; naming the
/// arbiter saves probing that second index before every insert. A row that broke that
/// equivalence would fail the batch loudly instead of being skipped.
fn statement(cdrs: bool, call_events: bool) -> &'static str {
    static SQL: [OnceLock<String>; 4] = [const { OnceLock::new() }; 4];
    SQL[usize::from(cdrs) * 2 + usize::from(call_events)].get_or_init(|| {
        const TAIL: &str = "ON CONFLICT (id) DO NOTHING RETURNING id";
        let mut param = 0;
        let mut ctes = Vec::new();
        let mut new = Vec::new();
        if cdrs {
            ctes.push(format!(
                "c AS ({})",
                insert("cdrs", cdr_columns(), TAIL, &mut param)
            ));
            new.push("SELECT id FROM c");
        }
        if call_events {
            let sql = insert("call_events", call_event_columns(), TAIL, &mut param);
            ctes.push(format!("e AS ({sql})"));
            new.push("SELECT id FROM e");
        }
        if new.is_empty() {
            new.push("SELECT NULL::uuid AS id WHERE false");
        }
        ctes.push(format!("new AS ({})", new.join(" UNION ALL ")));
        let arrays: Vec<String> = ["uuid", "text", "text", "text", "text", "timestamptz"]
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::{ty}[]", param + 1 + i))
            .collect();
        let (created_at, also) = (param + 7, param + 8);
        // `seq` is a column default, evaluated as rows leave the sort: commit order is batch
        // order.
        ctes.push(format!(
            "o AS (INSERT INTO outbox ({OUTBOX_ARRAYS}, created_at) \
             SELECT {OUTBOX_ARRAYS}, ${created_at} \
             FROM UNNEST({}) WITH ORDINALITY AS u({OUTBOX_ARRAYS}, ord) \
             WHERE u.id IN (SELECT id FROM new) OR u.id = ANY(${also}::uuid[]) \
             ORDER BY ord)",
            arrays.join(", ")
        ));
        format!("WITH {} SELECT id FROM new", ctes.join(", "))
    })
}

/// The batch's records for [`commit`]: its CDRs and call events, every outbox entry of the
/// batch, and the ids of its other records that were inserted (see [`statement`]).
pub(crate) struct Batch<'a> {
    pub cdrs: &'a [&'a Cdr],
    pub call_events: &'a [&'a CallEvent],
    pub outbox: &'a [OutboxEntry],
    pub also: Vec<Uuid>,
}

/// The batch's statement with its arrays bound.
pub(crate) fn commit_query<'a>(
    batch: &'a Batch<'a>,
    created_at: DateTime<Utc>,
) -> Query<'a, Postgres, PgArguments> {
    let (cdrs, call_events) = (!batch.cdrs.is_empty(), !batch.call_events.is_empty());
    let mut query = sqlx::query(statement(cdrs, call_events));
    if cdrs {
        query = bind_cdrs(query, batch.cdrs);
    }
    if call_events {
        query = bind_call_events(query, batch.call_events);
    }
    let column = |f: fn(&'a OutboxEntry) -> &'a str| batch.outbox.iter().map(f).collect::<Vec<_>>();
    query
        .bind(batch.outbox.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(column(|e| e.kind.as_str()))
        .bind(column(|e| e.key.as_str()))
        // Written only where it cannot be rebuilt from the record's row (see
        // `message::stored_without_payload`).
        .bind(
            batch
                .outbox
                .iter()
                .map(|e| (!message::stored_without_payload(e.kind)).then_some(e.payload.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(column(|e| &e.source))
        .bind(
            batch
                .outbox
                .iter()
                .map(|e| e.occurred_at)
                .collect::<Vec<_>>(),
        )
        .bind(created_at)
        .bind(&batch.also)
}

/// Commits the batch's statement on `conn`; returns the ids of the new CDRs and call events.
pub(crate) async fn commit<'c, E>(conn: E, batch: &Batch<'_>) -> Result<Vec<Uuid>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    ids(commit_query(batch, Utc::now()).fetch_all(conn).await?)
}
