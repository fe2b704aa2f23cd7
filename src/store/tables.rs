//! Each table's columns, declared once. A declaration names each column, the type it travels
//! as, and how it is read from a row's value; from it come the column list, the parameter count
//! per row, the multi-row `VALUES` binder both databases use ([`insert_values`]) and the
//! PostgreSQL `UNNEST` binder, one array per column ([`Columns::bind_arrays`], used by
//! `pg_unnest`). Adding a column means: the domain type, the wire type, one line here, and a
//! migration per database.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::query_builder::Separated;
use sqlx::sqlite::Sqlite;
use sqlx::{Database, QueryBuilder};

use super::dialect::{flags_pg, Dialect};
use crate::domain::{
    AcsCallEvent, CallEvent, Cdr, ChatEvent, DeadLetter, EventHeader, Handshake, Nonce,
    OutboxEntry, PhoneEvent, PhoneNumber, WebhookEvent,
};

/// How a column's value travels: its PostgreSQL array element type, and the cast that turns
/// the bound value into the column's type where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Uuid,
    Text,
    /// Bound as text, stored as `jsonb` (PostgreSQL) or text (SQLite).
    Json,
    /// CDR flags: bound as one text (an array literal, or a JSON array on SQLite).
    Flags,
    Int2,
    Int4,
    Int8,
    Float8,
    Bool,
    Time,
    Bytes,
}

impl Ty {
    /// The element type of the bound array in an `UNNEST` insert.
    const fn array(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Text | Self::Json | Self::Flags => "text",
            Self::Int2 => "int2",
            Self::Int4 => "int4",
            Self::Int8 => "int8",
            Self::Float8 => "float8",
            Self::Bool => "bool",
            Self::Time => "timestamptz",
            Self::Bytes => "bytea",
        }
    }

    /// The cast applied when an `UNNEST` insert selects the column.
    const fn cast(self) -> Option<&'static str> {
        match self {
            Self::Json => Some("jsonb"),
            // An array of arrays must be rectangular: each row's flags travel as one literal.
            Self::Flags => Some("text[]"),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: Ty,
}

/// A table's declaration.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Whether rows are deduplicated on `id` (records), or always inserted (dead letters,
    /// handshakes, outbox entries).
    pub dedupe: bool,
}

impl Table {
    /// Bound parameters per row of a `VALUES` insert.
    pub const fn params(&self) -> usize {
        self.columns.len()
    }

    /// `a, b, c`
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// The pieces of `INSERT INTO t (cols) SELECT <select> FROM UNNEST(<arrays>) AS u(cols)`,
    /// its arrays numbered from `*param` on (which it advances past them): `(select, arrays)`.
    pub fn unnest(&self, param: &mut usize) -> (String, String) {
        let select: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.ty.cast() {
                Some(cast) => format!("{}::{cast}", c.name),
                None => c.name.to_owned(),
            })
            .collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                *param += 1;
                format!("${param}::{}[]", c.ty.array())
            })
            .collect();
        (select.join(", "), arrays.join(", "))
    }

    /// `INSERT INTO t (cols) SELECT … FROM UNNEST(…) AS u(cols) [ON CONFLICT DO NOTHING
    /// RETURNING id]`.
    pub fn unnest_insert(&self, param: &mut usize) -> String {
        self.unnest_insert_guarded(param, None)
    }

    /// [`unnest_insert`](Self::unnest_insert) with one more array, each row's guard (a nonce
    /// id, or NULL), when `claimed` names the CTE of the nonces this statement claimed: a row
    /// is inserted only when it has no guard or its guard was claimed.
    pub fn unnest_insert_guarded(&self, param: &mut usize, claimed: Option<&str>) -> String {
        self.unnest_insert_keyed(param, claimed, None)
    }

    /// [`unnest_insert_guarded`](Self::unnest_insert_guarded) of a table whose rows are only
    /// inserted when the CTE `keys` claimed their id in `record_keys` (see [`key_claim`]).
    pub fn unnest_insert_keyed(
        &self,
        param: &mut usize,
        claimed: Option<&str>,
        keys: Option<&str>,
    ) -> String {
        let names = self.column_list();
        let (select, mut arrays) = self.unnest(param);
        let (mut alias, mut conditions) = (names.clone(), Vec::new());
        if let Some(cte) = claimed {
            *param += 1;
            arrays.push_str(&format!(", ${param}::uuid[]"));
            alias.push_str(", guard");
            conditions.push(format!(
                "(guard IS NULL OR guard IN (SELECT id FROM {cte}))"
            ));
        }
        if let Some(keys) = keys {
            conditions.push(format!("id IN (SELECT id FROM {keys})"));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // No conflict target: on PostgreSQL the record tables are partitioned and their key is
        // (id, partition time), which a row's retry shares (see migration 0010).
        let tail = if self.dedupe {
            " ON CONFLICT DO NOTHING RETURNING id"
        } else {
            ""
        };
        format!(
            "INSERT INTO {} ({names}) SELECT {select} FROM UNNEST({arrays}) AS u({alias}){filter}{tail}",
            self.name
        )
    }
}

/// The record tables whose ids are claimed in `record_keys` before a row is inserted
/// (PostgreSQL; migration 0013): all but `call_events`, whose id includes its partition time.
pub(crate) const KEYED_TABLES: [&str; 5] = [
    "cdrs",
    "phone_number_events",
    "acs_call_events",
    "chat_events",
    "webhook_events",
];

/// `INSERT INTO record_keys (id) SELECT … ON CONFLICT DO NOTHING RETURNING id` of the ids bound
/// as array `$ids`, each with its guard in array `$guards` when `claimed` names the CTE of the
/// nonces the statement claimed (a key of a refused request is not taken).
pub(crate) fn key_claim(ids: usize, guards: Option<(usize, &str)>) -> String {
    match guards {
        None => format!(
            "INSERT INTO record_keys (id) SELECT id FROM UNNEST(${ids}::uuid[]) AS u(id) \
             ON CONFLICT DO NOTHING RETURNING id"
        ),
        Some((guards, claimed)) => format!(
            "INSERT INTO record_keys (id) SELECT id FROM UNNEST(${ids}::uuid[], ${guards}::uuid[]) \
             AS u(id, guard) WHERE guard IS NULL OR guard IN (SELECT id FROM {claimed}) \
             ON CONFLICT DO NOTHING RETURNING id"
        ),
    }
}

pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// A row type and the table it is stored in.
pub(crate) trait Columns<'a>: Sized {
    const TABLE: &'static Table;

    /// Binds one array per column, in declaration order (PostgreSQL `UNNEST`).
    fn bind_arrays(query: PgQuery<'a>, rows: &[&'a Self]) -> PgQuery<'a>;
}

/// Pushes one row's values onto a `VALUES` list of database `DB`.
pub(crate) trait Values<'a, DB: Database> {
    fn push_row(b: &mut Separated<'_, 'a, DB, &'static str>, row: &'a Self, d: &Dialect);
}

/// `INSERT INTO t (cols) VALUES (…), (…) ON CONFLICT DO NOTHING [RETURNING CAST(id AS TEXT)]`
/// for a chunk of rows (at most `d.max_params / T::TABLE.params()` of them).
pub(crate) fn insert_values<'a, DB, R>(rows: &[&'a R], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Columns<'a> + Values<'a, DB>,
{
    let table = R::TABLE;
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {} ({}) ",
        table.name,
        table.column_list()
    ));
    qb.push_values(rows.iter().copied(), |mut b, row| {
        R::push_row(&mut b, row, d)
    });
    // Rows of the other tables (dead letters, handshakes, outbox entries) have ids of their
    // own; one stored already (a spooled batch committed, then drained again) is skipped.
    qb.push(if table.dedupe {
        " ON CONFLICT DO NOTHING RETURNING CAST(id AS TEXT)"
    } else {
        " ON CONFLICT DO NOTHING"
    });
    qb
}

/// Most rows of a `VALUES` insert whose prepared statement a connection keeps (a batch's
/// usual size, 50 records, fits).
pub(crate) const CACHED_STATEMENT_ROWS: usize = 64;

/// `rows` in chunks of at most as many rows as one statement of dialect `d` can bind.
pub(crate) fn chunks<'r, 'a, R: Columns<'a>>(
    rows: &'r [&'a R],
    d: &Dialect,
) -> std::slice::Chunks<'r, &'a R> {
    rows.chunks((d.max_params / R::TABLE.params()).max(1))
}

/// The table rows of type `R` are stored in.
pub(crate) fn table_of<'a, R: Columns<'a>>(_: &[&'a R]) -> &'static Table {
    R::TABLE
}

/// A value as its `UNNEST` array element.
macro_rules! array_value {
    (Flags, $v:expr) => {
        flags_pg($v)
    };
    ($ty:ident, $v:expr) => {
        $v
    };
}

/// Pushes a value onto a `VALUES` row, with the dialect's cast where its type needs one.
macro_rules! push_value {
    ($b:ident, $d:ident, Uuid, $v:expr) => {
        $b.push_bind($v.to_string()).push_unseparated($d.uuid_cast);
    };
    ($b:ident, $d:ident, Json, $v:expr) => {
        $b.push_bind($v).push_unseparated($d.json_cast);
    };
    ($b:ident, $d:ident, Flags, $v:expr) => {
        $b.push_bind(($d.flags)($v)).push_unseparated($d.flags_cast);
    };
    ($b:ident, $d:ident, $ty:ident, $v:expr) => {
        $b.push_bind($v);
    };
}

/// Declares a table: `table!(CONST: RowType = "name", dedupe, [ "column": Ty => |row| value, … ])`.
macro_rules! table {
    ($table:ident : $row:ty = $name:literal, $dedupe:literal,
     [$( $col:literal : $ty:ident => |$r:ident| $value:expr ),+ $(,)?]) => {
        pub(crate) const $table: Table = Table {
            name: $name,
            columns: &[$( Column { name: $col, ty: Ty::$ty } ),+],
            dedupe: $dedupe,
        };

        impl<'a> Columns<'a> for $row {
            const TABLE: &'static Table = &$table;

            fn bind_arrays(query: PgQuery<'a>, rows: &[&'a Self]) -> PgQuery<'a> {
                $(
                    let query = query.bind(
                        rows.iter().map(|&$r| array_value!($ty, $value)).collect::<Vec<_>>(),
                    );
                )+
                query
            }
        }

        table!(@values Postgres, $row, [$( $ty => |$r| $value ),+]);
        table!(@values Sqlite, $row, [$( $ty => |$r| $value ),+]);
    };
    (@values $db:ty, $row:ty, [$( $ty:ident => |$r:ident| $value:expr ),+]) => {
        impl<'a> Values<'a, $db> for $row {
            fn push_row(b: &mut Separated<'_, 'a, $db, &'static str>, row: &'a Self, d: &Dialect) {
                $( { let $r = row; push_value!(b, d, $ty, $value); } )+
            }
        }
    };
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_table_lists_each_column_once() {
        let tables = [
            &CDRS,
            &CALL_EVENTS,
            &PHONE_EVENTS,
            &ACS_CALL_EVENTS,
            &CHAT_EVENTS,
            &WEBHOOK_EVENTS,
            &DEAD_LETTERS,
            &HANDSHAKES,
            &OUTBOX,
            &NONCES,
        ];
        // The parameter counts the VALUES builders had before the declarations, but for
        // phone_number_events: its hand-kept count said 24 for its 23 columns; the outbox has
        // its owner since, and nonces are new; CDRs have their partition time and post-dial
        // delay since.
        let params = [50, 15, 23, 32, 21, 11, 13, 6, 8, 5];
        for (table, params) in tables.iter().zip(params) {
            let mut names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            assert_eq!(table.params(), params, "{}", table.name);
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), table.columns.len(), "{}", table.name);
        }
    }

    #[test]
    fn an_unnest_insert_numbers_its_arrays_and_casts_json() {
        let mut param = 3;
        let sql = CALL_EVENTS.unnest_insert(&mut param);
        assert_eq!(param, 3 + 15);
        assert!(sql.starts_with("INSERT INTO call_events (id, source, dedupe_key,"));
        assert!(sql.contains("raw::jsonb FROM UNNEST($4::uuid[], $5::text[]"));
        assert!(sql.ends_with("ON CONFLICT DO NOTHING RETURNING id"));
    }

    #[test]
    fn a_guarded_unnest_insert_binds_one_more_array_and_filters_on_it() {
        let mut param = 4;
        let sql = CDRS.unnest_insert_guarded(&mut param, Some("n"));
        assert_eq!(param, 4 + 50 + 1);
        assert!(sql.contains(", $55::uuid[]) AS u("), "{sql}");
        assert!(
            sql.contains(
                ", guard) WHERE (guard IS NULL OR guard IN (SELECT id FROM n)) ON CONFLICT"
            ),
            "{sql}"
        );
    }
}
