//! Keeping tables usable for years (docs/analytics.md): monthly partitions made ahead,
//! retention by dropping whole expired partitions, and the call-quality rollups.
//!
//! PostgreSQL only, but for retention: SQLite has no partitions, so its expired rows are
//! deleted in batches, and it has no rollups (no time zones, and it is the store for trying
//! ringback out, not for years of CDRs).
//!
//! Every replica runs this on a timer, and an operator may run `ringback maintain` at the same
//! time: partition DDL takes turns under one advisory lock, folding takes queued rows with
//! `SKIP LOCKED` (each row is folded by one of them, once), and a rebuild excludes folding
//! while it runs.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use sqlx::{PgPool, Row, SqlitePool};

use super::StoreError;

/// The partitioned tables and their partition column, in migration 0010's order.
pub const TABLES: [(&str, &str); 8] = [
    ("cdrs", "occurred_at"),
    ("call_events", "occurred_at"),
    ("phone_number_events", "occurred_at"),
    ("acs_call_events", "occurred_at"),
    ("chat_events", "occurred_at"),
    ("webhook_events", "occurred_at"),
    ("dead_letters", "received_at"),
    ("handshakes", "received_at"),
];

/// The advisory lock of partition DDL (the one `ringback_create_partitions` takes).
const PARTITIONS_LOCK: &str = "ringback.partitions";
/// The advisory lock folds share and a rebuild takes alone.
const ROLLUPS_LOCK: &str = "ringback.rollups";
/// Rows deleted per statement by SQLite retention, and queued rows folded per statement.
const BATCH: i64 = 5_000;

/// The database maintenance runs on.
#[derive(Debug, Clone)]
pub enum Maintainer {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A partition dropped, or rows deleted, by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub table: &'static str,
    /// The partition dropped (PostgreSQL), or `None` for deleted rows (SQLite).
    pub partition: Option<String>,
    pub rows: u64,
}

/// What a rebuild recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub cdrs: i64,
    pub disconnects: i64,
}

impl Maintainer {
    /// Makes the monthly partitions of every table from last month to `months_ahead` months
    /// after this one; returns `(table, partitions made)`, with a table's error in its place
    /// (the others are still made).
    pub async fn ensure_partitions(
        &self,
        now: DateTime<Utc>,
        months_ahead: u32,
    ) -> Vec<(&'static str, Result<i32, StoreError>)> {
        let Self::Postgres(pool) = self else {
            return Vec::new();
        };
        let first = month_start(now, -1);
        let last = month_start(now, i32::try_from(months_ahead).unwrap_or(36));
        let mut made = Vec::with_capacity(TABLES.len());
        for (table, _) in TABLES {
            let result = sqlx::query_scalar("SELECT ringback_create_partitions($1, $2, $3)")
                .bind(table)
                .bind(first)
                .bind(last)
                .fetch_one(pool)
                .await
                .map_err(StoreError::from);
            made.push((table, result));
        }
        made
    }

    /// Rows in each table's default partition.
    pub async fn default_rows(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        let mut counts = Vec::with_capacity(TABLES.len());
        for (table, _) in TABLES {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}_default"))
                .fetch_one(pool)
                .await?;
            counts.push((table, n));
        }
        Ok(counts)
    }

    /// Applies `retention` (per table, `None` keeps forever) as of `now`: drops every monthly
    /// partition whose last instant is older than the retention (PostgreSQL), or deletes the
    /// older rows in batches (SQLite).
    pub async fn expire(
        &self,
        now: DateTime<Utc>,
        retention: &[(&'static str, Option<Duration>)],
    ) -> Result<Vec<Expired>, StoreError> {
        let mut expired = Vec::new();
        for &(table, keep) in retention {
            let Some(keep) = keep else { continue };
            let Some(column) = TABLES.iter().find(|(t, _)| *t == table).map(|(_, c)| *c) else {
                continue;
            };
            let cutoff = now - chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
            match self {
                Self::Postgres(pool) => expired.extend(drop_partitions(pool, table, cutoff).await?),
                Self::Sqlite(pool) => {
                    let rows = delete_rows(pool, table, column, cutoff).await?;
                    if rows > 0 {
                        expired.push(Expired {
                            table,
                            partition: None,
                            rows,
                        });
                    }
                }
            }
        }
        Ok(expired)
    }

    /// Folds queued CDRs and disconnects into the rollups, `timezone`'s hours and days, until
    /// none is left; returns how many it folded and how many wait (queued meanwhile).
    pub async fn fold_rollups(&self, timezone: &str) -> Result<(u64, i64), StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok((0, 0));
        };
        let sql = fold_sql();
        let mut folded = 0u64;
        loop {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
                .bind(ROLLUPS_LOCK)
                .execute(&mut *tx)
                .await?;
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(timezone)
                .bind(BATCH)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            folded += u64::try_from(n).unwrap_or(0);
            if n < BATCH {
                break;
            }
        }
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM rollup_queue")
            .fetch_one(pool)
            .await?;
        Ok((folded, waiting))
    }

    /// Recomputes the rollups of `timezone`'s days `since..until` from the raw rows, as one
    /// snapshot: what is queued of those days is dropped from the queue (the recompute counts
    /// it), what commits later is queued and folded on top.
    pub async fn rebuild_rollups(
        &self,
        timezone: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<Rebuilt, StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok(Rebuilt {
                cdrs: 0,
                disconnects: 0,
            });
        };
        let mut conn = pool.acquire().await?;
        // Taken before the transaction, so that its snapshot is taken after every fold that
        // held the lock has committed.
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(ROLLUPS_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = rebuild_in(&mut conn, timezone, since, until).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(ROLLUPS_LOCK)
            .execute(&mut *conn)
            .await;
        let rebuilt = result?;
        unlocked?;
        Ok(rebuilt)
    }

    /// Whether PostgreSQL knows `timezone` (an unknown one would fail every fold).
    pub async fn check_timezone(&self, timezone: &str) -> Result<(), StoreError> {
        if let Self::Postgres(pool) = self {
            sqlx::query("SELECT now() AT TIME ZONE $1")
                .bind(timezone)
                .execute(pool)
                .await?;
        }
        Ok(())
    }
}

async fn rebuild_in(
    conn: &mut sqlx::PgConnection,
    timezone: &str,
    since: NaiveDate,
    until: NaiveDate,
) -> Result<Rebuilt, StoreError> {
    use sqlx::Acquire;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    // The days' bounds as instants, in the report's time zone ($1), from $2 to $3.
    let (lower, upper) = (
        "($2::date::timestamp AT TIME ZONE $1)",
        "($3::date::timestamp AT TIME ZONE $1)",
    );
    sqlx::query(&format!(
        "DELETE FROM rollup_queue WHERE occurred_at >= {lower} AND occurred_at < {upper}"
    ))
    .bind(timezone)
    .bind(since)
    .bind(until)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM cdr_hourly WHERE hour >= $1::date AND hour < $2::date")
        .bind(since)
        .bind(until)
        .execute(&mut *tx)
        .await?;
    for table in ["cdr_daily", "cdr_numbers_daily", "hangup_causes_daily"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE day >= $1 AND day < $2"))
            .bind(since)
            .bind(until)
            .execute(&mut *tx)
            .await?;
    }
    let sources = format!(
        "c AS (SELECT c.*, c.occurred_at AT TIME ZONE $1 AS local FROM cdrs c \
               WHERE c.occurred_at >= {lower} AND c.occurred_at < {upper}), \
         e AS (SELECT e.source, e.state_code, e.occurred_at AT TIME ZONE $1 AS local \
               FROM call_events e \
               WHERE e.event_type = 'disconnect' AND e.state_code IS NOT NULL \
                 AND e.occurred_at >= {lower} AND e.occurred_at < {upper})"
    );
    let sql = format!(
        "WITH {sources}, {} SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM e)",
        aggregates()
    );
    let row = sqlx::query(&sql)
        .bind(timezone)
        .bind(since)
        .bind(until)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Rebuilt {
        cdrs: row.try_get(0)?,
        disconnects: row.try_get(1)?,
    })
}

/// One fold: takes up to `$2` queued rows (`SKIP LOCKED`: a concurrent fold takes others),
/// adds their CDRs and disconnects to the rollups in time zone `$1`, deletes them from the
/// queue, all in one statement; returns how many it took.
fn fold_sql() -> String {
    format!(
        "WITH q AS ( \
             DELETE FROM rollup_queue WHERE ctid = ANY (ARRAY( \
                 SELECT ctid FROM rollup_queue LIMIT $2 FOR UPDATE SKIP LOCKED)) \
             RETURNING kind, id, occurred_at), \
         c AS (SELECT c.*, c.occurred_at AT TIME ZONE $1 AS local \
               FROM q JOIN cdrs c ON q.kind = 'cdr' AND c.id = q.id AND c.occurred_at = q.occurred_at), \
         e AS (SELECT e.source, e.state_code, e.occurred_at AT TIME ZONE $1 AS local \
               FROM q JOIN call_events e \
                 ON q.kind = 'disconnect' AND e.id = q.id AND e.occurred_at = q.occurred_at), \
         {} \
         SELECT count(*) FROM q",
        aggregates()
    )
}

/// The rollups' inserts over `c` (CDRs with their local time `local`) and `e` (disconnect
/// events), as CTEs: each adds to the rows that exist, so a fold adds its rows and a rebuild
/// (which emptied its days first) sets them.
fn aggregates() -> String {
    const FIGURES: &str = "calls, answered, talk_seconds, billable_minutes, ring_seconds, \
                           ring_calls, pdd_seconds, pdd_calls, flagged";
    const SUMS: &str = "count(*), count(*) FILTER (WHERE answered), \
                        coalesce(sum(talk_seconds), 0), coalesce(sum(billable_minutes), 0), \
                        coalesce(sum(ring_seconds), 0), count(ring_seconds), \
                        coalesce(sum(pdd_seconds), 0), count(pdd_seconds), \
                        count(*) FILTER (WHERE cardinality(flags) > 0)";
    let add = |names: &str| {
        names
            .split(',')
            .map(str::trim)
            .map(|n| format!("{n} = t.{n} + excluded.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let figures = add(FIGURES);
    let numbers = add("calls, answered, talk_seconds, billable_minutes");
    format!(
        "h AS (INSERT INTO cdr_hourly AS t (hour, source, app_key, service_type, direction, {FIGURES}) \
               SELECT date_trunc('hour', local), source, app_key, coalesce(service_type, ''), \
                      direction, {SUMS} \
               FROM c GROUP BY 1, 2, 3, 4, 5 \
               ON CONFLICT (hour, source, app_key, service_type, direction) DO UPDATE SET {figures}), \
         d AS (INSERT INTO cdr_daily AS t (day, source, app_key, service_type, direction, {FIGURES}) \
               SELECT local::date, source, app_key, coalesce(service_type, ''), direction, {SUMS} \
               FROM c GROUP BY 1, 2, 3, 4, 5 \
               ON CONFLICT (day, source, app_key, service_type, direction) DO UPDATE SET {figures}), \
         n AS (INSERT INTO cdr_numbers_daily AS t \
                   (day, source, role, number, calls, answered, talk_seconds, billable_minutes) \
               SELECT local::date, source, r.role, r.number, count(*), \
                      count(*) FILTER (WHERE answered), coalesce(sum(talk_seconds), 0), \
                      coalesce(sum(billable_minutes), 0) \
               FROM c CROSS JOIN LATERAL (VALUES ('caller', caller_num), ('callee', callee_num), \
                                                 ('bind', bind_num)) AS r(role, number) \
               GROUP BY 1, 2, 3, 4 \
               ON CONFLICT (day, source, role, number) DO UPDATE SET {numbers}), \
         x AS (INSERT INTO hangup_causes_daily AS t (day, source, kind, code, calls) \
               SELECT day, source, kind, code, count(*) FROM ( \
                   SELECT local::date AS day, source, 'release_point' AS kind, \
                          ul_fail_reason AS code FROM c WHERE ul_fail_reason IS NOT NULL \
                   UNION ALL \
                   SELECT local::date, source, 'q850', coalesce(fwd_unasw_rsn, call_out_unasw_rsn) \
                   FROM c WHERE coalesce(fwd_unasw_rsn, call_out_unasw_rsn) IS NOT NULL \
                   UNION ALL \
                   SELECT local::date, source, 'state_code', state_code FROM e) AS u \
               GROUP BY 1, 2, 3, 4 \
               ON CONFLICT (day, source, kind, code) DO UPDATE SET calls = t.calls + excluded.calls)"
    )
}

/// Drops `table`'s monthly partitions that end at or before `cutoff`.
async fn drop_partitions(
    pool: &PgPool,
    table: &'static str,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Expired>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = to_regclass($1) ORDER BY 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let mut dropped = Vec::new();
    for name in names {
        let Some(end) = partition_end(table, &name) else {
            continue; // the default partition, or one an operator made
        };
        if end > cutoff {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(PARTITIONS_LOCK)
            .execute(&mut *tx)
            .await?;
        let rows: Option<i64> = sqlx::query_scalar(
            "SELECT c.reltuples::bigint FROM pg_class c WHERE c.oid = to_regclass($1)",
        )
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        let Some(rows) = rows else {
            continue; // another replica dropped it meanwhile
        };
        if super::tables::KEYED_TABLES.contains(&table) {
            // The partition's identities go with it (migration 0013).
            sqlx::query(&format!(
                "DELETE FROM record_keys WHERE id IN (SELECT id FROM \"{name}\")"
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(&format!("DROP TABLE IF EXISTS \"{name}\""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        dropped.push(Expired {
            table,
            partition: Some(name),
            rows: u64::try_from(rows).unwrap_or(0),
        });
    }
    Ok(dropped)
}

/// Deletes `table`'s rows older than `cutoff` in batches; returns how many.
async fn delete_rows(
    pool: &SqlitePool,
    table: &str,
    column: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM {table} WHERE rowid IN \
         (SELECT rowid FROM {table} WHERE {column} < $1 LIMIT {BATCH})"
    );
    let mut deleted = 0;
    loop {
        let done = sqlx::query(&sql).bind(cutoff).execute(pool).await?;
        deleted += done.rows_affected();
        if done.rows_affected() < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            return Ok(deleted);
        }
    }
}

/// The first instant of the month `offset` months from `now`'s (UTC).
fn month_start(now: DateTime<Utc>, offset: i32) -> DateTime<Utc> {
    let months = now.year() * 12 + i32::try_from(now.month0()).unwrap_or(0) + offset;
    let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
    Utc.with_ymd_and_hms(year, u32::try_from(month0).unwrap_or(0) + 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// When partition `name` of `table` (`<table>_pYYYY_MM`) ends: the first instant after it.
fn partition_end(table: &str, name: &str) -> Option<DateTime<Utc>> {
    let suffix = name.strip_prefix(table)?.strip_prefix("_p")?;
    let (year, month) = suffix.split_once('_')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    let start = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()?;
    Some(month_start(start, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn months_step_over_years() {
        let now = at("2026-12-02T15:00:00Z");
        assert_eq!(month_start(now, -1), at("2026-11-01T00:00:00Z"));
        assert_eq!(month_start(now, 0), at("2026-12-01T00:00:00Z"));
        assert_eq!(month_start(now, 1), at("2027-01-01T00:00:00Z"));
        assert_eq!(month_start(now, 3), at("2027-03-01T00:00:00Z"));
        assert_eq!(month_start(now, -12), at("2025-12-01T00:00:00Z"));
    }

    #[test]
    fn a_partition_ends_where_its_month_does() {
        assert_eq!(
            partition_end("cdrs", "cdrs_p2026_12"),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(partition_end("cdrs", "cdrs_default"), None);
        // Another table's partition, whose name starts with this one's.
        assert_eq!(partition_end("cdrs", "cdrs_x_p2026_12"), None);
        assert_eq!(partition_end("cdrs", "cdrs_p2026_13"), None);
        assert_eq!(partition_end("cdrs", "cdrs_p26_12"), None);
    }
}
