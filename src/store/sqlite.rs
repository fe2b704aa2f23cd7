//! SQLite, the embedded default: one file, no server.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use uuid::Uuid;

use super::dialect::SQLITE as DIALECT;
use super::rows::{self, Split};
use super::tables::OutboxRow;
use super::DatabaseConfig;
use super::{Backlog, Store, StoreError};
use crate::domain::{Claimed, OutboxEntry, Outcome, RecordKind, Row, StoredRecord};

/// A list of uuids as the JSON array `json_each` reads.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
        .expect("strings serialise")
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The replica's mark on the outbox entries it commits (see [`Store::set_owner`]).
    owner: std::sync::OnceLock<Uuid>,
}

impl SqliteStore {
    /// The batch's transaction (see [`Store::commit`]; PostgreSQL's is `PgStore::commit`):
    /// insert each table's rows in chunks, collect the ids the database reports as inserted,
    /// write the outbox entries of exactly those records, commit once.
    async fn commit_records(
        &self,
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        let d = &DIALECT;
        let mut tx = self.pool.begin().await?;
        // Nonces first: the records of a request whose nonce is taken are left out.
        let mut claimed = HashSet::new();
        let nonces = Split::new(rows).nonces;
        rows::insert_rows!(tx, claimed, d, nonces, Sqlite);
        let refused: HashSet<Uuid> = rows::nonce_ids(rows)
            .difference(&claimed)
            .copied()
            .collect();
        let split = Split::without(rows, &refused);
        let mut inserted = split.always_inserted();
        inserted.extend(claimed);
        rows::insert_rows!(tx, inserted, d, split.call_events, Sqlite);
        rows::insert_rows!(tx, inserted, d, split.cdrs, Sqlite);
        rows::insert_others!(tx, inserted, d, split, Sqlite);
        let created_at = Utc::now();
        let entries: Vec<OutboxRow<'_>> = outbox
            .iter()
            .filter(|e| inserted.contains(&e.id))
            .map(|entry| OutboxRow {
                entry,
                payload: Some(entry.payload.as_str()),
                created_at,
                owner: self.owner(),
            })
            .collect();
        let entries: Vec<&OutboxRow<'_>> = entries.iter().collect();
        rows::insert_rows!(tx, inserted, d, entries, Sqlite);
        tx.commit().await?;
        Ok(super::outcomes(rows, inserted))
    }

    /// The name on the outbox entries this store commits (random unless set).
    fn owner(&self) -> Uuid {
        *self.owner.get_or_init(Uuid::new_v4)
    }

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
        Ok(Self {
            pool,
            owner: std::sync::OnceLock::new(),
        })
    }

    /// The admin API's pool (see [`super::connect_admin`]): two read-only connections.
    pub fn admin_pool(config: &DatabaseConfig) -> Result<SqlitePool, StoreError> {
        let options = SqliteConnectOptions::from_str(&config.url)?
            .read_only(true)
            .busy_timeout(config.acquire_timeout);
        Ok(SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options))
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
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = self.commit_records(rows, outbox).await?;
        let taken = super::taken_nonces(rows, &outcomes);
        if !taken.is_empty() {
            let held: Vec<(String, String)> = sqlx::query_as(&DIALECT.nonce_claims())
                .bind(id_list(&taken))
                .fetch_all(&self.pool)
                .await?;
            super::reclaim(rows, &mut outcomes, &held);
        }
        Ok(outcomes)
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        min_age: Duration,
        own: bool,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = Utc::now();
        let rows = sqlx::query(&DIALECT.claim_outbox())
            .bind(now + lease)
            .bind(now)
            .bind(now - min_age)
            .bind(i64::from(limit))
            .bind(own.then(|| self.owner().to_string()))
            .fetch_all(&self.pool)
            .await?;
        // SQLite keeps every entry's value.
        Ok(rows::claimed_in_commit_order(&rows)
            .into_iter()
            .map(Claimed::Ready)
            .collect())
    }

    async fn mark_published(&self, ids: &[Uuid], keep: bool) -> Result<(), StoreError> {
        if !keep {
            sqlx::query(&DIALECT.delete_published())
                .bind(id_list(ids))
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        sqlx::query(&DIALECT.mark_published())
            .bind(Utc::now())
            .bind(id_list(ids))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_outbox(&self, ids: &[Uuid], error: &str) -> Result<(), StoreError> {
        sqlx::query(&DIALECT.release_outbox())
            .bind(error)
            .bind(id_list(ids))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_own_leases(&self) -> Result<u64, StoreError> {
        rows::shared::execute_with(
            &self.pool,
            &DIALECT.release_owned(),
            self.owner().to_string(),
        )
        .await
    }

    async fn mark_failed(&self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query(&DIALECT.mark_failed())
            .bind(Utc::now())
            .bind(reason)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn set_owner(&self, owner: Uuid) -> bool {
        self.owner.set(owner).is_ok()
    }

    fn maintainer(&self) -> Option<super::maintain::Maintainer> {
        Some(super::maintain::Maintainer::Sqlite(self.pool.clone()))
    }

    fn dead_letters(&self) -> Option<super::dead_letters::DeadLetters> {
        Some(super::dead_letters::DeadLetters::Sqlite(self.pool.clone()))
    }

    fn calls(&self) -> Option<super::calls::Calls> {
        Some(super::calls::Calls::Sqlite(self.pool.clone()))
    }

    async fn outbox_backlog(&self) -> Result<Backlog, StoreError> {
        rows::shared::outbox_backlog(&self.pool, &DIALECT).await
    }

    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        rows::shared::execute_with(&self.pool, &DIALECT.prune_outbox(), before).await
    }

    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        rows::shared::execute_with(&self.pool, &DIALECT.purge_nonces(), before).await
    }

    async fn replay_page(
        &self,
        kind: RecordKind,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        rows::shared::replay_page(&self.pool, &DIALECT, kind, since, until, after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
