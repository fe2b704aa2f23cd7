//! PostgreSQL's batch commit for the hot tables (`cdrs`, `call_events`, `outbox`): one
//! statement per batch, records and outbox together (see [`statement`]), each table's rows as
//! `INSERT … SELECT … FROM UNNEST($1::uuid[], $2::text[], …)`: one bound array per column
//! instead of one parameter per value, so the statement text never changes (prepared once per
//! connection), the client formats no placeholders and the server evaluates one projection
//! instead of a VALUES expression per row. A batch of only these tables needs no `BEGIN` and
//! `COMMIT`: one round trip instead of four. Measured with `cargo bench --bench e2e`
//! (docs/development/benchmarks.md). The columns and their arrays come from the tables' declarations
//! ([`super::tables`]); the other tables are rare and keep the shared multi-row VALUES builder.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use sqlx::postgres::Postgres;
use sqlx::Row;
use uuid::Uuid;

use super::rows::Split;
use super::tables::{key_claim, Columns, OutboxRow, PgQuery, CALL_EVENTS, CDRS, NONCES, OUTBOX};
use crate::domain::{commit_row_id, CallEvent, Cdr, Nonce, OutboxEntry, RecordKind};

fn ids(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Uuid>, sqlx::Error> {
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// The statement committing a batch's CDRs and call events with the outbox entries of those
/// that were new, as one statement: data-modifying CTEs run in the statement's snapshot and
/// see each other's `RETURNING`, so the outbox gets exactly the records this statement
/// inserted (`ON CONFLICT (id) DO NOTHING`: a duplicate gets neither), plus the entries of
/// `also` (ids of the batch's other records, inserted earlier in the same transaction). Its
/// rows are the ids of the new CDRs and call events. One statement text per combination of
/// tables, so each is prepared once per connection.
///
/// A CDR is only inserted when its id is new in `record_keys` (claimed by the CTE `ck` of the
/// same statement), so a CDR sent again with other times (another partition) is a duplicate.
///
/// Conflicts are decided on `id` alone: an id is the UUIDv5 of (source, kind, dedupe key),
/// so the `(source, dedupe_key)` unique index can only conflict when `id` does; naming the
/// arbiter saves probing that second index before every insert. A row that broke that
/// equivalence would fail the batch loudly instead of being skipped.
///
/// With `nonces`, the batch's X-AKSK nonces are claimed first (`n`, `ON CONFLICT DO NOTHING`),
/// and each CDR and call event carries its guard (the nonce id of its request, or NULL): a row
/// whose nonce another request claimed before is not inserted. The nonce costs no round trip
/// of its own. The statement's rows then include the claimed nonces' ids.
fn statement(cdrs: bool, call_events: bool, nonces: bool) -> &'static str {
    static SQL: [OnceLock<String>; 8] = [const { OnceLock::new() }; 8];
    let index = usize::from(nonces) * 4 + usize::from(cdrs) * 2 + usize::from(call_events);
    SQL[index].get_or_init(|| {
        let mut param = 0;
        let mut ctes = Vec::new();
        let mut new = Vec::new();
        let claimed = nonces.then_some("n");
        if nonces {
            ctes.push(format!("n AS ({})", NONCES.unnest_insert(&mut param)));
        }
        if cdrs {
            // The CDRs' ids are claimed in `record_keys` first (see `tables::KEYED_TABLES`):
            // from the id array of the insert below (its first column) and its guards.
            debug_assert_eq!(CDRS.columns[0].name, "id");
            let guards = claimed.map(|n| (param + CDRS.params() + 1, n));
            ctes.push(format!("ck AS ({})", key_claim(param + 1, guards)));
            let insert = CDRS.unnest_insert_keyed(&mut param, claimed, Some("ck"));
            ctes.push(format!("c AS ({insert})"));
            new.push("SELECT id FROM c");
        }
        if call_events {
            let insert = CALL_EVENTS.unnest_insert_guarded(&mut param, claimed);
            ctes.push(format!("e AS ({insert})"));
            new.push("SELECT id FROM e");
        }
        if new.is_empty() {
            new.push("SELECT NULL::uuid AS id WHERE false");
        }
        ctes.push(format!("new AS ({})", new.join(" UNION ALL ")));
        let names = OUTBOX.column_list();
        let (select, arrays) = OUTBOX.unnest(&mut param);
        let also = param + 1;
        // `seq` is a column default, evaluated as rows leave the sort: commit order is batch
        // order.
        ctes.push(format!(
            "o AS (INSERT INTO outbox ({names}) SELECT {select} \
             FROM UNNEST({arrays}) WITH ORDINALITY AS u({names}, ord) \
             WHERE u.id IN (SELECT id FROM new) OR u.id = ANY(${also}::uuid[]) \
             ORDER BY ord)"
        ));
        // The commit's row for its new CDRs and call events, in batch order, named after the
        // first of them (`$hot_rows` holds each one's candidate name: `commit_row_id`).
        let (hot, hot_rows, created_at, owner) = (also + 1, also + 2, also + 3, also + 4);
        ctes.push(format!(
            "oc AS (INSERT INTO outbox (id, kind, ids, created_at, owner) \
             SELECT (array_agg(h.row ORDER BY h.ord))[1], '{COMMIT_KIND}', \
                    array_agg(h.id ORDER BY h.ord), ${created_at}::timestamptz, ${owner}::uuid \
             FROM UNNEST(${hot}::uuid[], ${hot_rows}::uuid[]) WITH ORDINALITY AS h(id, row, ord) \
             WHERE h.id IN (SELECT id FROM new) HAVING count(*) > 0)"
        ));
        let claimed = if nonces {
            " UNION ALL SELECT id FROM n"
        } else {
            ""
        };
        format!("WITH {} SELECT id FROM new{claimed}", ctes.join(", "))
    })
}

/// `outbox.kind` of a commit's row (see [`crate::domain::commit_row_id`]).
pub(crate) const COMMIT_KIND: &str = "commit";

/// A batch's outbox entries as PostgreSQL keeps them: a row each for the kinds that carry
/// their value, and the hot path's records (see [`stored_without_payload`]) in one row for
/// the commit, which only names them.
pub(crate) struct Outbox<'a> {
    pub rows: Vec<OutboxRow<'a>>,
    /// The hot path's records, in batch order, and each one's name for the commit's row.
    pub hot: Vec<Uuid>,
    pub hot_rows: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub owner: Uuid,
}

/// The batch's records for [`commit`]: its CDRs and call events, every outbox entry of the
/// batch, and the ids of its other records that were inserted (see [`statement`]).
pub(crate) struct Batch<'a> {
    pub nonces: &'a [&'a Nonce],
    pub cdrs: &'a [&'a Cdr],
    /// The nonce guarding each CDR (see [`statement`]), when the batch has nonces.
    pub cdr_guards: &'a [Option<Uuid>],
    pub call_events: &'a [&'a CallEvent],
    pub call_event_guards: &'a [Option<Uuid>],
    pub outbox: Outbox<'a>,
    pub also: Vec<Uuid>,
}

impl<'a> Batch<'a> {
    /// The batch of `split`'s CDRs, call events and nonces, with its `outbox`.
    pub fn of(split: &'a Split<'a>, outbox: Outbox<'a>) -> Self {
        Self {
            nonces: &split.nonces,
            cdrs: &split.cdrs,
            cdr_guards: &split.cdr_guards,
            call_events: &split.call_events,
            call_event_guards: &split.call_event_guards,
            outbox,
            also: Vec::new(),
        }
    }
}

/// The batch's statement with its arrays bound.
pub(crate) fn commit_query<'a>(batch: &'a Batch<'a>) -> PgQuery<'a> {
    let (cdrs, call_events) = (!batch.cdrs.is_empty(), !batch.call_events.is_empty());
    let nonces = !batch.nonces.is_empty();
    let mut query = sqlx::query(statement(cdrs, call_events, nonces));
    if nonces {
        query = Nonce::bind_arrays(query, batch.nonces);
    }
    if cdrs {
        query = Cdr::bind_arrays(query, batch.cdrs);
        if nonces {
            query = query.bind(batch.cdr_guards);
        }
    }
    if call_events {
        query = CallEvent::bind_arrays(query, batch.call_events);
        if nonces {
            query = query.bind(batch.call_event_guards);
        }
    }
    let outbox = &batch.outbox;
    let rows: Vec<&OutboxRow<'a>> = outbox.rows.iter().collect();
    OutboxRow::bind_arrays(query, &rows)
        .bind(&batch.also)
        .bind(&outbox.hot)
        .bind(&outbox.hot_rows)
        .bind(outbox.created_at)
        .bind(outbox.owner)
}

/// A batch's entries as PostgreSQL keeps them in the outbox (see [`Outbox`]).
pub(crate) fn outbox_rows(
    entries: &[OutboxEntry],
    created_at: DateTime<Utc>,
    owner: Uuid,
) -> Outbox<'_> {
    let (hot, rows): (Vec<&OutboxEntry>, Vec<&OutboxEntry>) = entries
        .iter()
        .partition(|entry| stored_without_payload(entry.kind));
    Outbox {
        rows: rows
            .into_iter()
            .map(|entry| OutboxRow {
                entry,
                payload: Some(entry.payload.as_str()),
                created_at,
                owner,
            })
            .collect(),
        hot_rows: hot.iter().map(|e| commit_row_id(e.id)).collect(),
        hot: hot.iter().map(|e| e.id).collect(),
        created_at,
        owner,
    }
}

/// Commits the batch's statement on `conn`; returns the ids of the new CDRs and call events.
pub(crate) async fn commit<'c, E>(conn: E, batch: &Batch<'_>) -> Result<Vec<Uuid>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    ids(commit_query(batch).fetch_all(conn).await?)
}

/// Whether a kind's outbox entries are stored without their value, in their commit's row:
/// CDRs and call events, the hot path's records, whose value is a function of the JSON kept in
/// their own row (the publisher rebuilds it, `message::rebuild`). Writing it a second time cost
/// about 8 % of the fee path's throughput, and a row per record in the outbox, inserted and
/// deleted, about as much again (docs/development/benchmarks.md); the fast path publishes the
/// value it already holds, and only a catch-up from the outbox rebuilds it.
pub(crate) fn stored_without_payload(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Cdr | RecordKind::CallStatus)
}
