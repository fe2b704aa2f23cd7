//! SQLite, the embedded default: one file, no server.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::rows::{self, Dialect};
use super::{Store, StoreError};
use crate::config::DatabaseConfig;
use crate::domain::{Outcome, Record};

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

    async fn commit(&self, records: &[Record]) -> Result<Vec<Outcome>, StoreError> {
        rows::commit_batch!(self.pool, Sqlite, &DIALECT, records)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
