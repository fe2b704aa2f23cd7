//! SQLite, the embedded default: one file, no server.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Row;
use uuid::Uuid;

use super::rows::{self, Dialect};
use super::{Backlog, Store, StoreError};
use crate::config::DatabaseConfig;
use crate::domain::{OutboxEntry, Outcome, Record, RecordKind, StoredRecord};

/// A list of uuids as the JSON array `json_each` reads.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .expect("strings serialise")
}

const DIALECT: Dialect = Dialect {
    uuid_cast: "",
    json_cast: "",
    flags_cast: "",
    flags: rows::flags_json,
    // SQLITE_MAX_VARIABLE_NUMBER is 32766 since 3.32.
    max_params: 32_000,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        // WAL lets readers (analysts, /readyz) run beside the writer; synchronous=FULL makes a
        // commit survive power loss, which is what a 2xx promises.
        let options = SqliteConnectOptions::from_str(&config.url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(config.acquire_timeout)
            .foreign_keys(true);
        let in_memory = config.url.contains(":memory:") || config.url.contains("mode=memory");
        if !in_memory {
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Directory(dir.display().to_string(), e))?;
                }
            }
        }
        // Each connection to an in-memory database is a database of its own.
        let max = if in_memory { 1 } else { config.max_connections };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for queries outside the ingest path (tests, tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        sqlx::raw_sql(super::LOOKUPS).execute(&self.pool).await?;
        Ok(())
    }

    async fn commit(
        &self,
        records: &[Record],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        rows::commit_batch!(self.pool, Sqlite, &DIALECT, records, outbox)
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        min_age: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = Utc::now();
        // SQLite has one writer at a time: the UPDATE itself is the claim.
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = ?1, attempts = attempts + 1 \
             WHERE seq IN (SELECT seq FROM outbox \
                 WHERE published_at IS NULL AND failed_at IS NULL \
                   AND (leased_until IS NULL OR leased_until < ?2) AND created_at <= ?3 \
                 ORDER BY seq LIMIT ?4) \
             RETURNING seq, CAST(id AS TEXT) AS id, kind, key, payload, source, occurred_at",
        )
        .bind(now + lease)
        .bind(now)
        .bind(now - min_age)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows::claimed_in_commit_order(&rows))
    }

    async fn mark_published(&self, ids: &[Uuid], keep: bool) -> Result<(), StoreError> {
        if !keep {
            sqlx::query("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(id_list(ids))
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE outbox SET published_at = ?1, leased_until = NULL \
             WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(Utc::now())
        .bind(id_list(ids))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_outbox(&self, ids: &[Uuid], error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET leased_until = NULL, last_error = ?1 \
             WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(error)
        .bind(id_list(ids))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_failed(&self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET failed_at = ?1, last_error = ?2, leased_until = NULL WHERE id = ?3",
        )
        .bind(Utc::now())
        .bind(reason)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE failed_at IS NULL), \
                    MIN(created_at) FILTER (WHERE failed_at IS NULL), \
                    COUNT(*) FILTER (WHERE failed_at IS NOT NULL) \
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            pending: row.get(0),
            oldest: row.get(1),
            failed: row.get(2),
        })
    }

    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM outbox WHERE published_at < ?1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn replay_page(
        &self,
        kind: RecordKind,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let table = kind.table();
        // Every table but `cdrs` has the event type; replay needs it for call-status.
        let event_type = if kind == RecordKind::Cdr {
            "NULL"
        } else {
            "event_type"
        };
        let (after_at, after_id) = after.unwrap_or((since, Uuid::nil()));
        let sql = format!(
            "SELECT CAST(id AS TEXT) AS id, source, received_at, {event_type} AS event_type, raw \
             FROM {table} WHERE received_at >= ?1 AND received_at < ?2 \
               AND (received_at, id) > (?3, ?4) ORDER BY received_at, id LIMIT ?5"
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(until)
            .bind(after_at)
            .bind(after_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows::stored_records(&rows))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
