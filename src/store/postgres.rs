//! PostgreSQL, the production store.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, Postgres};

use super::rows::{self, Dialect};
use super::{Store, StoreError};
use crate::config::DatabaseConfig;
use crate::domain::{Outcome, Record};

const DIALECT: Dialect = Dialect {
    uuid_cast: "::uuid",
    json_cast: "::jsonb",
    flags_cast: "::text[]",
    flags: rows::flags_pg,
    // The protocol allows 65535 bound parameters per statement.
    max_params: 60_000,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect(&config.url)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The connection pool, for queries outside the ingest path (tests, tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        sqlx::raw_sql(super::LOOKUPS).execute(&self.pool).await?;
        Ok(())
    }

    async fn commit(&self, records: &[Record]) -> Result<Vec<Outcome>, StoreError> {
        rows::commit_batch!(self.pool, Postgres, &DIALECT, records)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
