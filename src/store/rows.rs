//! A batch's records split by table, and the inserts that run them (with `tables`' builders);
//! rows read back from claims and replays.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row as SqlRow, Type};
use uuid::Uuid;

use crate::domain::{
    AcsCallEvent, CallEvent, Cdr, ChatEvent, DeadLetter, Handshake, Nonce, OutboxEntry, PhoneEvent,
    Record, Row, WebhookEvent,
};

/// The rows of one batch split by table, in batch order.
#[derive(Default)]
pub(crate) struct Split<'a> {
    /// X-AKSK nonces, each guarding the records that follow it (see `domain::Nonce`).
    pub nonces: Vec<&'a Nonce>,
    pub call_events: Vec<&'a CallEvent>,
    /// The nonce guarding each call event, parallel to `call_events`.
    pub call_event_guards: Vec<Option<Uuid>>,
    pub cdrs: Vec<&'a Cdr>,
    pub cdr_guards: Vec<Option<Uuid>>,
    pub phone: Vec<&'a PhoneEvent>,
    pub acs_calls: Vec<&'a AcsCallEvent>,
    pub chats: Vec<&'a ChatEvent>,
    pub webhooks: Vec<&'a WebhookEvent>,
    pub dead_letters: Vec<&'a DeadLetter>,
    pub handshakes: Vec<&'a Handshake>,
}

impl<'a> Split<'a> {
    pub fn new(rows: &'a [Row]) -> Self {
        Self::without(rows, &HashSet::new())
    }

    /// The batch without the records guarded by a `refused` nonce (one another request
    /// claimed before), nor those nonces.
    pub fn without(rows: &'a [Row], refused: &HashSet<Uuid>) -> Self {
        let mut split = Self::default();
        // A record twice in one batch is one row: its later copies (which may carry other
        // times, so another partition) are left out, and answered as duplicates by
        // `store::outcomes`.
        let mut seen = HashSet::new();
        for (row, guard) in rows.iter().zip(guards(rows)) {
            if guard.is_some_and(|g| refused.contains(&g)) {
                continue;
            }
            let record = match row {
                Row::Nonce(n) if !refused.contains(&n.id) => {
                    split.nonces.push(n);
                    continue;
                }
                Row::Nonce(_) => continue,
                Row::DeadLetter(d) => {
                    split.dead_letters.push(d);
                    continue;
                }
                Row::Handshake(h) => {
                    split.handshakes.push(h);
                    continue;
                }
                Row::Record(record) => record,
            };
            if !seen.insert(record.id()) {
                continue;
            }
            match record {
                Record::CallEvent(e) => {
                    split.call_events.push(e);
                    split.call_event_guards.push(guard);
                }
                Record::Cdr(c) => {
                    split.cdrs.push(c);
                    split.cdr_guards.push(guard);
                }
                Record::Phone(e) => split.phone.push(e),
                Record::AcsCall(e) => split.acs_calls.push(e),
                Record::Chat(e) => split.chats.push(e),
                Record::Webhook(e) => split.webhooks.push(e),
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

    /// The ids of the records of the tables other than `cdrs` whose ids are claimed in
    /// `record_keys` (see `tables::KEYED_TABLES`; the CDRs' are claimed by their statement).
    pub fn keyed_ids(&self) -> Vec<Uuid> {
        self.phone
            .iter()
            .map(|e| e.header.meta.id)
            .chain(self.acs_calls.iter().map(|e| e.header.meta.id))
            .chain(self.chats.iter().map(|e| e.header.meta.id))
            .chain(self.webhooks.iter().map(|e| e.header.meta.id))
            .collect()
    }

    /// Keeps, of those records, the ones whose key was `claimed` (new): the others are stored
    /// already, maybe under another time.
    pub fn retain_keyed(&mut self, claimed: &HashSet<Uuid>) {
        self.phone.retain(|e| claimed.contains(&e.header.meta.id));
        self.acs_calls
            .retain(|e| claimed.contains(&e.header.meta.id));
        self.chats.retain(|e| claimed.contains(&e.header.meta.id));
        self.webhooks
            .retain(|e| claimed.contains(&e.header.meta.id));
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

/// For each row, the nonce guarding it: a `Nonce` guards the `guards` rows after it.
pub(crate) fn guards(rows: &[Row]) -> Vec<Option<Uuid>> {
    let mut current: Option<(Uuid, u32)> = None;
    rows.iter()
        .map(|row| {
            if let Row::Nonce(n) = row {
                current = Some((n.id, n.guards));
                return None;
            }
            match &mut current {
                Some((id, left)) if *left > 0 => {
                    *left -= 1;
                    Some(*id)
                }
                _ => None,
            }
        })
        .collect()
}

/// The ids of the batch's nonces.
pub(crate) fn nonce_ids(rows: &[Row]) -> HashSet<Uuid> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Nonce(n) => Some(n.id),
            _ => None,
        })
        .collect()
}

/// The outbox entries an `UPDATE … RETURNING seq, CAST(id AS TEXT) AS id, kind, key, payload,
/// source, occurred_at` claimed, in commit order (RETURNING promises no order).
pub(crate) fn claimed_in_commit_order<R>(rows: &[R]) -> Vec<OutboxEntry>
where
    R: SqlRow,
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
    R: SqlRow,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<DateTime<Utc>>: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter()
        .filter_map(|r| {
            Some(crate::domain::StoredRecord {
                id: Uuid::parse_str(r.get::<&str, _>("id")).ok()?,
                source: r.get("source"),
                received_at: r.get("received_at"),
                event_type: r.get("event_type"),
                raw: r.get("raw"),
                webhook: r
                    .get::<Option<String>, _>("webhook_id")
                    .zip(r.get::<Option<DateTime<Utc>>, _>("webhook_at")),
            })
        })
        .collect()
}

/// The statements both databases run alike, on a pool of either: the SQL from the dialect,
/// the same values bound. (What binds differently, lists of ids, stays with each store.)
pub(crate) mod shared {
    use chrono::{DateTime, Utc};
    use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

    use uuid::Uuid;

    use crate::domain::{RecordKind, StoredRecord};
    use crate::store::dialect::Dialect;
    use crate::store::{Backlog, StoreError};

    pub(crate) async fn outbox_backlog<DB>(
        pool: &Pool<DB>,
        d: &Dialect,
    ) -> Result<Backlog, StoreError>
    where
        DB: Database,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
        usize: sqlx::ColumnIndex<DB::Row>,
        for<'r> i64: Decode<'r, DB> + Type<DB>,
        for<'r> Option<DateTime<Utc>>: Decode<'r, DB> + Type<DB>,
    {
        let row = sqlx::query::<DB>(&d.outbox_backlog())
            .fetch_one(pool)
            .await?;
        Ok(Backlog {
            pending: row.try_get(0)?,
            oldest: row.try_get(1)?,
            failed: row.try_get(2)?,
        })
    }

    /// Runs a statement of the dialect with one parameter `$1` (`prune_outbox` and
    /// `purge_nonces` with a time, `release_owned` with an owner), returning the rows it touched.
    pub(crate) async fn execute_with<DB, T>(
        pool: &Pool<DB>,
        sql: &str,
        value: T,
    ) -> Result<u64, StoreError>
    where
        DB: Database,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> T: Encode<'q, DB> + Type<DB> + Send + 'q,
        DB::QueryResult: RowsAffected,
    {
        let done = sqlx::query::<DB>(sql).bind(value).execute(pool).await?;
        Ok(done.rows_affected())
    }

    /// `rows_affected` of either database's query result.
    pub(crate) trait RowsAffected {
        fn rows_affected(&self) -> u64;
    }

    impl RowsAffected for sqlx::postgres::PgQueryResult {
        fn rows_affected(&self) -> u64 {
            self.rows_affected()
        }
    }

    impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
        fn rows_affected(&self) -> u64 {
            self.rows_affected()
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn replay_page<DB>(
        pool: &Pool<DB>,
        d: &Dialect,
        kind: RecordKind,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>
    where
        DB: Database,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'c> &'c str: sqlx::ColumnIndex<DB::Row>,
        for<'r> &'r str: Decode<'r, DB> + Type<DB>,
        for<'r> String: Decode<'r, DB> + Type<DB>,
        for<'r> Option<String>: Decode<'r, DB> + Type<DB>,
        for<'r> DateTime<Utc>: Decode<'r, DB> + Type<DB>,
        for<'r> Option<DateTime<Utc>>: Decode<'r, DB> + Type<DB>,
    {
        let (after_at, after_id) = after.unwrap_or((since, Uuid::nil()));
        let sql = d.replay_page(kind);
        let rows = sqlx::query::<DB>(&sql)
            .bind(since)
            .bind(until)
            .bind(after_at)
            .bind(after_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        Ok(super::stored_records(&rows))
    }
}

/// Inserts `rows` (of one table) in chunks, adding the ids the database reports as inserted to
/// `inserted` (rows of tables that are not deduplicated are all inserted, and not reported).
macro_rules! insert_rows {
    ($tx:ident, $inserted:ident, $d:expr, $rows:expr, $db:ty) => {
        for chunk in $crate::store::tables::chunks(&$rows, $d) {
            let mut qb = $crate::store::tables::insert_values::<$db, _>(chunk, $d);
            // A statement of many rows (one request's thousands of ACS events) is not kept in
            // the connection's statement cache: each such size would stay there, per
            // connection, with its thousands of parameter types.
            let cache = chunk.len() <= $crate::store::tables::CACHED_STATEMENT_ROWS;
            if $crate::store::tables::table_of(chunk).dedupe {
                let ids: Vec<String> = qb
                    .build_query_scalar()
                    .persistent(cache)
                    .fetch_all(&mut *$tx)
                    .await?;
                $inserted.extend(ids.iter().filter_map(|s| ::uuid::Uuid::parse_str(s).ok()));
            } else {
                qb.build().persistent(cache).execute(&mut *$tx).await?;
            }
        }
    };
}
pub(crate) use insert_rows;

/// The tables other than `call_events`, `cdrs` and `outbox` (which PostgreSQL writes with
/// `UNNEST`, see `pg_unnest`): inserted with the shared multi-row builder on both backends.
macro_rules! insert_others {
    ($tx:ident, $inserted:ident, $d:expr, $split:ident, $db:ty) => {
        let d: &$crate::store::dialect::Dialect = $d;
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.phone, $db);
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.acs_calls, $db);
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.chats, $db);
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.webhooks, $db);
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.handshakes, $db);
        $crate::store::rows::insert_rows!($tx, $inserted, d, $split.dead_letters, $db);
    };
}
pub(crate) use insert_others;
