//! Durable storage: the [`Store`] trait and its PostgreSQL and SQLite implementations.
//!
//! A batch is committed in ONE transaction. Records carry a deterministic id derived from their
//! dedupe key, and every insert is `ON CONFLICT DO NOTHING`, so a platform retry (or the same
//! record twice in one batch) becomes a [`Outcome::Duplicate`] and never a second row.

pub mod calls;
mod config;
pub mod dead_letters;
mod dialect;
pub mod maintain;
mod pg_unnest;
pub(crate) use pg_unnest::stored_without_payload;
mod postgres;
mod rows;
mod sqlite;
mod tables;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{Claimed, OutboxEntry, Outcome, RecordKind, Row, StoredRecord};
pub use config::DatabaseConfig;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused work for now; retrying may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database rejected the statement; retrying will not help.
    #[error("database rejected the batch")]
    Rejected(#[source] sqlx::Error),
    /// A record the database refused could not be kept as a dead letter either.
    #[error("{0}")]
    Unstorable(String),
    /// The migrations could not be applied: the database's schema is newer than this binary's
    /// (`VersionMissing`: a migration it does not know was applied), or a migration changed or
    /// failed. (Losing the connection meanwhile is [`Self::Unavailable`].)
    #[error("applying migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("creating the database directory {0} failed")]
    Directory(String, #[source] std::io::Error),
}

impl StoreError {
    /// Whether the same work could succeed if tried again shortly.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => match Self::from(e) {
                Self::Unavailable(e) => Self::Unavailable(e),
                Self::Rejected(e) => Self::Migrate(sqlx::migrate::MigrateError::Execute(e)),
                other => other,
            },
            e => Self::Migrate(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let transient = match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
            E::Protocol(_) => true,
            E::Database(db) => transient_database_error(db.as_ref()),
            _ => false,
        };
        if transient {
            Self::Unavailable(e)
        } else {
            Self::Rejected(e)
        }
    }
}

/// Whether the database's own error is one that retrying can get past, read by the backend
/// that raised it: a PostgreSQL SQLSTATE such as `22021` is five characters, not a number,
/// and read as SQLite's code it would look like `SQLITE_BUSY` (`22021 & 0xff == 5`).
fn transient_database_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return postgres_transient(pg.code());
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
        return db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
    }
    false
}

/// PostgreSQL's SQLSTATE classes that retrying can get past: connection exceptions (08),
/// insufficient resources (53), operator intervention (57, a restart or a shutdown),
/// serialization failure and deadlock, and a read-only transaction (25006: after a failover the
/// address leads to a demoted primary or a standby until it is moved; the store replaces its
/// connections). Everything else is permanent, data exceptions (22: a NUL character, a value
/// out of range) and integrity violations (23) above all: the same rows would be refused again.
pub(crate) fn postgres_transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || sqlstate.starts_with("57")
        || matches!(sqlstate, "40001" | "40P01" | "25006")
}

/// Where records are committed.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Applies pending schema migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Failovers seen since start: new connections that found the primary on another WAL
    /// timeline than before (PostgreSQL; always 0 for SQLite).
    fn failovers(&self) -> u64 {
        0
    }

    /// Commits `rows` in one transaction, with the `outbox` entries of those records that are
    /// new (a duplicate's entry is dropped: it was published before). Returns what happened to
    /// each row, in order. On error nothing was committed.
    async fn commit(
        &self,
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError>;

    /// Claims up to `limit` unpublished entries that no publisher holds, for `lease`, in
    /// commit order: those at least `min_age` old, and with `own`, this store's own (committed
    /// through it, in this process) of any age. Another replica's young entries are its
    /// publisher's, in flight from memory. Concurrent publishers never claim the same entry.
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        min_age: Duration,
        own: bool,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Whether a commit's hot-path records (CDRs and call events) share one outbox row, whose
    /// id is [`crate::domain::commit_row_id`] of the first of them (PostgreSQL), instead of a
    /// row each. The publisher then marks that row published once every one of them is
    /// delivered, and gives it back whole when one is not.
    fn commit_rows(&self) -> bool {
        false
    }

    /// Records that the entries of these outbox rows (a record's own, or a commit's: see
    /// [`Store::commit_rows`]) reached Kafka: marks them published when `keep` (they are pruned
    /// after the retention), deletes them otherwise (no retention: one write, not two).
    async fn mark_published(&self, ids: &[Uuid], keep: bool) -> Result<(), StoreError>;

    /// Takes `delivered` out of the commit's row `row` (given back with those already on
    /// Kafka, see [`Store::commit_rows`]), so a catch-up does not send them again; deletes the
    /// row when none is left.
    async fn trim_commit_row(&self, _row: Uuid, _delivered: &[Uuid]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gives claimed outbox rows back (delivery failed for now), noting the error.
    async fn release_outbox(&self, ids: &[Uuid], error: &str) -> Result<(), StoreError>;

    /// Ends every lease on this store's own unpublished entries (see [`Store::set_owner`]) and
    /// returns how many there were. Only for a replica starting up while it holds its name
    /// exclusively: its earlier life's leases are then leases of a process that is gone, and
    /// waiting them out would let newer entries of the same keys overtake the older ones.
    async fn release_own_leases(&self) -> Result<u64, StoreError>;

    /// Marks a record's entry as never publishable; it is kept, with the reason, and not
    /// retried. A record held in its commit's row gets a failed row of its own; the commit's
    /// row goes on to be published for the others.
    async fn mark_failed(&self, id: Uuid, reason: &str) -> Result<(), StoreError>;

    /// Names the replica committing through this store: its outbox entries carry the name, and
    /// `claim_outbox(…, own = true)` takes them at any age, those of its earlier lives (a
    /// restart) included. Set once, before the first commit; without it a random name per
    /// store. Returns false when it was set already.
    fn set_owner(&self, owner: Uuid) -> bool;

    /// Partitions, retention and rollups on this store's database (`None`: a store of tests).
    fn maintainer(&self) -> Option<maintain::Maintainer> {
        None
    }

    /// The dead letters on this store's database, for `ringback dead-letters` (`None`: a
    /// store of tests).
    fn dead_letters(&self) -> Option<dead_letters::DeadLetters> {
        None
    }

    /// The calls on this store's database, for `ringback calls` (`None`: a store of tests).
    fn calls(&self) -> Option<calls::Calls> {
        None
    }

    /// Unpublished entries: how many, and since when the oldest waits.
    async fn outbox_backlog(&self) -> Result<Backlog, StoreError>;

    /// Deletes entries published before `before`; returns how many.
    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes X-AKSK nonces that expired before `before`; returns how many.
    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Stored records of `kind` received in `[since, until)`, ordered by (received_at, id),
    /// after the `after` cursor: the input of `ringback replay`.
    async fn replay_page(
        &self,
        kind: RecordKind,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes connections; called once on shutdown.
    async fn close(&self);
}

/// The outbox's unpublished entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Entries waiting to be published.
    pub pending: i64,
    /// When the oldest of them was committed.
    pub oldest: Option<DateTime<Utc>>,
    /// Entries marked as never publishable.
    pub failed: i64,
}

/// Huawei's code tables, upserted after the schema migrations on both databases (one copy of
/// the data for both dialects; a corrected meaning reaches existing databases).
pub(crate) const LOOKUPS: &str = include_str!("lookups.sql");

/// Opens the store `config.url` names.
pub async fn connect(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    if config.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(config).await?))
    } else {
        Ok(Arc::new(PgStore::connect(config).await?))
    }
}

/// How long a statement of the admin API may run (its own pool's `statement_timeout`).
pub const ADMIN_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin API's own view of the database: a pool of two connections, opened on first use,
/// read-only, each statement bounded by [`ADMIN_STATEMENT_TIMEOUT`] (PostgreSQL), so operators'
/// queries can neither write nor hold the ingest pool's connections or the database for long.
pub fn connect_admin(
    config: &DatabaseConfig,
) -> Result<(calls::Calls, dead_letters::DeadLetters), StoreError> {
    if config.url.starts_with("sqlite:") {
        let pool = SqliteStore::admin_pool(config)?;
        return Ok((
            calls::Calls::Sqlite(pool.clone()),
            dead_letters::DeadLetters::Sqlite(pool),
        ));
    }
    let pool = PgStore::admin_pool(config)?;
    Ok((
        calls::Calls::Postgres(pool.clone()),
        dead_letters::DeadLetters::Postgres(pool),
    ))
}

/// Opens the PostgreSQL store `config.url` names without connecting: connections are opened on
/// first use. `None` for SQLite (an embedded file is never away).
pub fn connect_lazy(config: &DatabaseConfig) -> Option<Result<Arc<dyn Store>, StoreError>> {
    if config.url.starts_with("sqlite:") {
        return None;
    }
    Some(PgStore::connect_lazy(config).map(|s| Arc::new(s) as Arc<dyn Store>))
}

/// Entry points for the hot-path benchmarks (`benches/hot_paths.rs`); not an API.
#[doc(hidden)]
pub mod bench {
    use super::pg_unnest;
    use super::rows::Split;
    use crate::domain::{OutboxEntry, Row};

    /// Builds the PostgreSQL statement of a batch of CDRs and call events with its outbox
    /// entries (statement and bound arrays), as a commit does before sending it.
    pub fn build_postgres_commit(rows: &[Row], outbox: &[OutboxEntry]) {
        let split = Split::new(rows);
        let batch = pg_unnest::Batch::of(
            &split,
            pg_unnest::outbox_rows(outbox, chrono::Utc::now(), uuid::Uuid::nil()),
        );
        let _ = std::hint::black_box(pg_unnest::commit_query(&batch));
    }
}

/// The nonces of `rows` a commit found taken (outcome `Duplicate`): their ids, to look up
/// whose claim holds them.
pub(crate) fn taken_nonces(rows: &[Row], outcomes: &[Outcome]) -> Vec<Uuid> {
    rows.iter()
        .zip(outcomes)
        .filter_map(|(r, o)| match (r, o) {
            (Row::Nonce(n), Outcome::Duplicate) => Some(n.id),
            _ => None,
        })
        .collect()
}

/// A taken nonce held by this very request's claim (same source, nonce and body) was taken by
/// an earlier attempt of the same commit whose answer was lost (a dropped connection, a retry):
/// no replay, so it counts as inserted, and its records as the duplicates they now are.
pub(crate) fn reclaim(rows: &[Row], outcomes: &mut [Outcome], held: &[(String, String)]) {
    let held: std::collections::HashMap<Uuid, Uuid> = held
        .iter()
        .filter_map(|(id, claim)| Some((Uuid::parse_str(id).ok()?, Uuid::parse_str(claim).ok()?)))
        .collect();
    for (row, outcome) in rows.iter().zip(outcomes.iter_mut()) {
        if let Row::Nonce(n) = row {
            if *outcome == Outcome::Duplicate && held.get(&n.id) == Some(&n.claim) {
                *outcome = Outcome::Inserted;
            }
        }
    }
}

/// Turns the ids the database reports as inserted into one outcome per row. When the same id
/// occurs twice in a batch, the first occurrence is the insert and later ones duplicates.
pub(crate) fn outcomes(rows: &[Row], inserted: HashSet<Uuid>) -> Vec<Outcome> {
    let mut unclaimed = inserted;
    rows.iter()
        .map(|r| {
            if unclaimed.remove(&r.id()) {
                Outcome::Inserted
            } else {
                Outcome::Duplicate
            }
        })
        .collect()
}
