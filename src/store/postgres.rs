//! PostgreSQL, the production store.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::Row as _;
use uuid::Uuid;

use super::dialect::POSTGRES as DIALECT;
use super::pg_unnest;
use super::rows;
use super::tables::key_claim;
use super::DatabaseConfig;
use super::{Backlog, Store, StoreError};
use crate::domain::{Claimed, OutboxEntry, Outcome, RecordKind, Row, StoredRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The replica's mark on the outbox entries it commits (see [`Store::set_owner`]).
    owner: std::sync::OnceLock<Uuid>,
    /// How long an operation may wait for the database (`database.operation_timeout`).
    deadline: Duration,
    suspect: Suspect,
}

/// When an operation last ran out of its deadline: for a while after, connections are pinged,
/// within [`PING_BOUND`], before they are used and when they are given back, and closed when
/// they do not answer. A path that went silent (no RST: a black hole, a firewall that forgot
/// the connection, a failover to another address) leaves connections that would otherwise
/// hang until the kernel's TCP timeout (about 15 minutes) each time they are used.
///
/// A read-only answer (SQLSTATE 25006: the address now leads to a demoted primary or a
/// standby) marks a failover: every connection opened before it is closed when next used or
/// given back, so new ones reach the server the address leads to now.
///
/// Each new connection also reads the server's WAL timeline: a promoted standby writes on a
/// new one, so a connection that finds another timeline than the last one seen has reached
/// the new primary of a failover. That is logged and counted ([`Store::failovers`]) and marks
/// a failover as above.
#[derive(Debug, Clone, Default)]
struct Suspect {
    since: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failover: std::sync::Arc<std::sync::atomic::AtomicU64>,
    timeline: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failovers: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// SQLSTATE `read_only_sql_transaction`.
const READ_ONLY: &str = "25006";

/// How long connections stay suspect after a deadline ran out.
const SUSPECT_FOR: Duration = Duration::from_secs(120);
/// How long a suspect connection's ping may take.
const PING_BOUND: Duration = Duration::from_secs(2);

impl Suspect {
    fn now_ms() -> u64 {
        u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
    }

    fn mark(&self) {
        self.since
            .store(Self::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    fn mark_failover(&self) {
        self.failover
            .store(Self::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// A new connection found the primary on `timeline`.
    fn saw_timeline(&self, timeline: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let before = self.timeline.swap(timeline, Relaxed);
        if before != 0 && before != timeline {
            let n = self.failovers.fetch_add(1, Relaxed) + 1;
            tracing::warn!(
                from = before,
                to = timeline,
                failovers = n,
                "the database failed over: a new primary on another timeline; replacing every \
                 connection opened before"
            );
            self.mark_failover();
        }
    }

    fn is_recent(&self) -> bool {
        let at = self.since.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && Self::now_ms().saturating_sub(at) < SUSPECT_FOR.as_millis() as u64
    }

    /// Whether a connection may be used: opened after the last failover, and answering (when
    /// connections are suspect).
    async fn answers(
        &self,
        conn: &mut sqlx::PgConnection,
        meta: sqlx::pool::PoolConnectionMetadata,
    ) -> bool {
        use sqlx::Connection as _;
        let failover = self.failover.load(std::sync::atomic::Ordering::Relaxed);
        let opened = Self::now_ms().saturating_sub(meta.age.as_millis() as u64);
        if failover != 0 && opened <= failover {
            tracing::info!("closed a database connection opened before the failover");
            return false;
        }
        if !self.is_recent() {
            return true;
        }
        let alive = matches!(
            tokio::time::timeout(PING_BOUND, conn.ping()).await,
            Ok(Ok(()))
        );
        if !alive {
            tracing::info!("closed a database connection that no longer answers");
        }
        alive
    }
}

impl PgStore {
    /// The name on the outbox entries this store commits (random unless set).
    fn owner(&self) -> Uuid {
        *self.owner.get_or_init(Uuid::new_v4)
    }

    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let suspect = Suspect::default();
        let pool = Self::pool_options(config, &suspect)
            .connect(&config.url)
            .await?;
        Ok(Self::with(pool, config.operation_timeout, suspect))
    }

    /// A store whose connections are opened on first use: for a process that starts while
    /// its database is away (see `startup`). Fails only on a URL that does not parse.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let suspect = Suspect::default();
        let pool = Self::pool_options(config, &suspect).connect_lazy(&config.url)?;
        Ok(Self::with(pool, config.operation_timeout, suspect))
    }

    /// The admin API's pool (see [`super::connect_admin`]): its sessions start read-only,
    /// with a `statement_timeout`.
    pub fn admin_pool(config: &DatabaseConfig) -> Result<PgPool, StoreError> {
        use std::str::FromStr;
        let timeout = super::ADMIN_STATEMENT_TIMEOUT.as_millis().to_string();
        let options = sqlx::postgres::PgConnectOptions::from_str(&config.url)?.options([
            ("statement_timeout", timeout.as_str()),
            ("default_transaction_read_only", "on"),
        ]);
        Ok(PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options))
    }

    fn pool_options(config: &DatabaseConfig, suspect: &Suspect) -> PgPoolOptions {
        let (on_acquire, on_release, on_connect) =
            (suspect.clone(), suspect.clone(), suspect.clone());
        PgPoolOptions::new()
            .max_connections(config.max_connections)
            // No ping round trip before every acquire (one per batch): a connection that died
            // fails its first statement instead, which the batcher retries as a transient
            // error on a fresh connection, so nothing is lost and the hot path is cheaper.
            // Only while connections are suspect (a deadline ran out) are they pinged, within
            // a bound: sqlx's own ping when a connection is given back has none.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let suspect = on_acquire.clone();
                Box::pin(async move { Ok(suspect.answers(conn, meta).await) })
            })
            .after_release(move |conn, meta| {
                let suspect = on_release.clone();
                Box::pin(async move { Ok(suspect.answers(conn, meta).await) })
            })
            // A new connection that reaches a server in recovery (the address still leads to
            // a standby, or to a primary being demoted) is refused: a transient failure, so
            // pushes are spooled until the address leads to a primary again.
            .after_connect(move |conn, _| {
                let suspect = on_connect.clone();
                Box::pin(async move {
                    let (in_recovery, timeline): (bool, Option<String>) = sqlx::query_as(
                        "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL \
                         ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    if let Some(t) = timeline.and_then(|t| u64::from_str_radix(&t, 16).ok()) {
                        suspect.saw_timeline(t);
                    }
                    if in_recovery {
                        tracing::warn!("the database address leads to a server in recovery (a standby); waiting for a primary");
                        return Err(sqlx::Error::Protocol(
                            "the server is in recovery (a standby), not a primary".into(),
                        ));
                    }
                    Ok(())
                })
            })
            .acquire_timeout(config.acquire_timeout)
    }

    fn with(pool: PgPool, deadline: Duration, suspect: Suspect) -> Self {
        Self {
            pool,
            owner: std::sync::OnceLock::new(),
            deadline,
            suspect,
        }
    }

    /// Runs `op` within `database.operation_timeout`: past it, the operation is abandoned (its
    /// connection closed, see [`Suspect`]) and fails as the database being unavailable, which
    /// the batcher spools, the drainer and the publisher retry.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.deadline, op).await {
            Ok(Err(StoreError::Unavailable(sqlx::Error::Database(db))))
                if db.code().as_deref() == Some(READ_ONLY) =>
            {
                tracing::warn!(
                    error = %db,
                    "the database answered read-only: a failover (the address leads to a demoted \
                     primary or a standby); replacing every connection opened before it"
                );
                self.suspect.mark_failover();
                Err(StoreError::Unavailable(sqlx::Error::Database(db)))
            }
            Ok(result) => result,
            Err(_) => {
                self.suspect.mark();
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer from the database within database.operation_timeout ({:?})",
                        self.deadline
                    ),
                );
                Err(StoreError::Unavailable(sqlx::Error::Io(e)))
            }
        }
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self::with(
            pool,
            DatabaseConfig::default().operation_timeout,
            Suspect::default(),
        )
    }

    /// Starts a transaction. Connections are not pinged before use, so one the server dropped
    /// since its last use (a restart, a failover, an idle timeout) fails here, at `BEGIN`,
    /// before anything of the batch was sent.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.on_live_connection(|| self.pool.begin()).await
    }

    /// Runs a batch's one statement, on a live connection as [`Self::begin`] does. Running
    /// it again is safe even if the lost attempt did commit: its records would now conflict
    /// (`ON CONFLICT DO NOTHING`), so it inserts neither them nor their outbox entries a second
    /// time; they are answered as duplicates and published by the sweeper from the outbox rows
    /// the first attempt wrote.
    async fn commit_statement(
        &self,
        batch: &pg_unnest::Batch<'_>,
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        self.on_live_connection(|| pg_unnest::commit(&self.pool, batch))
            .await
    }

    /// Runs `attempt`; when it fails because its connection is gone, the connection is closed
    /// and `attempt` runs again on the next one, as many times as the pool has connections.
    async fn on_live_connection<T, F, Fut>(&self, mut attempt: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut stale = 0;
        loop {
            match attempt().await {
                Err(e) if dropped(&e) && stale < self.pool.options().get_max_connections() => {
                    stale += 1;
                    tracing::debug!(error = %e, "dropped a connection the server had closed");
                }
                result => return result,
            }
        }
    }

    /// The batch's transaction (see [`Store::commit`]).
    async fn commit_records(
        &self,
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        let split = rows::Split::new(rows);
        let outbox = pg_unnest::outbox_rows(outbox, Utc::now(), self.owner());
        if split.only_hot() {
            // One statement, its own transaction: one round trip for the whole batch, nonces
            // included.
            let batch = pg_unnest::Batch::of(&split, outbox);
            let inserted = self.commit_statement(&batch).await?;
            return Ok(super::outcomes(rows, inserted.into_iter().collect()));
        }
        let mut tx = self.begin().await?;
        // Nonces first: the records of a request whose nonce is taken are left out.
        let mut claimed = HashSet::new();
        rows::insert_rows!(tx, claimed, &DIALECT, split.nonces, Postgres);
        let refused: HashSet<Uuid> = rows::nonce_ids(rows)
            .difference(&claimed)
            .copied()
            .collect();
        let mut split = rows::Split::without(rows, &refused);
        let keyed = split.keyed_ids();
        if !keyed.is_empty() {
            let new_keys: HashSet<Uuid> = sqlx::query_scalar(&key_claim(1, None))
                .bind(&keyed)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            split.retain_keyed(&new_keys);
        }
        let mut inserted = split.always_inserted();
        inserted.extend(claimed);
        rows::insert_others!(tx, inserted, &DIALECT, split, Postgres);
        let batch = pg_unnest::Batch {
            // Claimed above, in this transaction.
            nonces: &[],
            also: inserted.iter().copied().collect(),
            ..pg_unnest::Batch::of(&split, outbox)
        };
        inserted.extend(pg_unnest::commit(&mut *tx, &batch).await?);
        tx.commit().await?;
        Ok(super::outcomes(rows, inserted))
    }

    /// Takes `records` (`$2`) out of the unpublished commit rows `WHERE {which}` (`$1` is
    /// `key`), keeping the others' order, and deletes a row left with none.
    async fn take_out_of_commit_rows(
        &self,
        which: &str,
        key: Uuid,
        records: &[Uuid],
    ) -> Result<(), sqlx::Error> {
        let trimmed: Vec<(Uuid, i32)> = sqlx::query_as(&format!(
            "UPDATE outbox SET ids = ARRAY(SELECT r FROM unnest(ids) WITH ORDINALITY \
                 AS m(r, ord) WHERE r <> ALL($2) ORDER BY ord) \
             WHERE ids IS NOT NULL AND published_at IS NULL AND {which} \
             RETURNING id, cardinality(ids)"
        ))
        .bind(key)
        .bind(records)
        .fetch_all(&self.pool)
        .await?;
        let empty: Vec<Uuid> = trimmed
            .into_iter()
            .filter(|(_, left)| *left == 0)
            .map(|(row, _)| row)
            .collect();
        if !empty.is_empty() {
            sqlx::query(&DIALECT.delete_published())
                .bind(&empty)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The connection pool, for queries outside the ingest path (tests, tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Whether an error says the connection is gone: a broken socket, or the server's last word
/// before it closed it (57P01 terminated by an administrator, 57P02/57P03 crash or start-up,
/// 08… connection exceptions).
fn dropped(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P0") || c.starts_with("08")),
        _ => false,
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
        // A 0.2.0 replica still running beside this one during a rolling upgrade knows no
        // commit rows (migration 0018): its sweeper marks them failed ("unknown record kind").
        // Nothing else ever does, so every start (the last replica upgraded included) gives
        // them back to be published.
        let revived = sqlx::query(
            "UPDATE outbox SET failed_at = NULL, last_error = NULL \
             WHERE kind = 'commit' AND failed_at IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if revived > 0 {
            tracing::warn!(
                rows = revived,
                "commit rows an earlier version marked failed are pending again"
            );
        }
        Ok(())
    }

    async fn commit(
        &self,
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        self.bounded(async {
            let mut outcomes = self.commit_records(rows, outbox).await?;
            let taken = super::taken_nonces(rows, &outcomes);
            if !taken.is_empty() {
                let held: Vec<(String, String)> = sqlx::query_as(&DIALECT.nonce_claims())
                    .bind(&taken)
                    .fetch_all(&self.pool)
                    .await?;
                super::reclaim(rows, &mut outcomes, &held);
            }
            Ok(outcomes)
        })
        .await
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        min_age: Duration,
        own: bool,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.bounded(async {
            let now = Utc::now();
            let rows = sqlx::query(claim_sql())
                .bind(now + lease)
                .bind(now)
                .bind(now - min_age)
                .bind(i64::from(limit))
                .bind(own.then_some(self.owner()))
                .fetch_all(&self.pool)
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: Uuid = row.try_get("id")?;
                match claimed_entry(id, row) {
                    Ok(entry) => claimed.push(entry),
                    // Never publishable (its row is gone, its kind unknown): kept with the reason
                    // (`/readyz`, `ringback_outbox_failed`) instead of being claimed again and
                    // again.
                    Err(reason) => {
                        tracing::error!(%id, reason, "an outbox entry cannot be published");
                        self.mark_failed(id, &reason).await?;
                    }
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn mark_published(&self, ids: &[Uuid], keep: bool) -> Result<(), StoreError> {
        self.bounded(async {
            if !keep {
                sqlx::query(&DIALECT.delete_published())
                    .bind(ids)
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
            sqlx::query(&DIALECT.mark_published())
                .bind(Utc::now())
                .bind(ids)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn release_outbox(&self, ids: &[Uuid], error: &str) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::query(&DIALECT.release_outbox())
                .bind(error)
                .bind(ids)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn release_own_leases(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            rows::shared::execute_with(
                &self.pool,
                &DIALECT.release_owned(),
                self.owner().to_string(),
            )
            .await
        })
        .await
    }

    async fn mark_failed(&self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        self.bounded(async {
            let marked = sqlx::query(&DIALECT.mark_failed())
                .bind(Utc::now())
                .bind(reason)
                .bind(id)
                .execute(&self.pool)
                .await?;
            if marked.rows_affected() == 0 {
                // A record of a commit's row: a failed row of its own, out of the commit's
                // row, which is published for the others (deleted if none is left). Rare
                // (a message too large, a record gone): the commit's row is found by a scan
                // of the unpublished commit rows, not of the whole outbox.
                sqlx::query(FAIL_COMMITTED_RECORD)
                    .bind(Utc::now())
                    .bind(reason)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                self.take_out_of_commit_rows("$1 = ANY(ids)", id, &[id])
                    .await?;
            }
            Ok(())
        })
        .await
    }

    fn commit_rows(&self) -> bool {
        true
    }

    async fn trim_commit_row(&self, row: Uuid, delivered: &[Uuid]) -> Result<(), StoreError> {
        self.bounded(async {
            self.take_out_of_commit_rows("id = $1", row, delivered)
                .await?;
            Ok(())
        })
        .await
    }

    fn failovers(&self) -> u64 {
        self.suspect
            .failovers
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_owner(&self, owner: Uuid) -> bool {
        self.owner.set(owner).is_ok()
    }

    fn maintainer(&self) -> Option<super::maintain::Maintainer> {
        Some(super::maintain::Maintainer::Postgres(self.pool.clone()))
    }

    fn dead_letters(&self) -> Option<super::dead_letters::DeadLetters> {
        Some(super::dead_letters::DeadLetters::Postgres(
            self.pool.clone(),
        ))
    }

    fn calls(&self) -> Option<super::calls::Calls> {
        Some(super::calls::Calls::Postgres(self.pool.clone()))
    }

    async fn outbox_backlog(&self) -> Result<Backlog, StoreError> {
        self.bounded(async { rows::shared::outbox_backlog(&self.pool, &DIALECT).await })
            .await
    }

    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.bounded(async {
            rows::shared::execute_with(&self.pool, &DIALECT.prune_outbox(), before).await
        })
        .await
    }

    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.bounded(async {
            rows::shared::execute_with(&self.pool, &DIALECT.purge_nonces(), before).await
        })
        .await
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
        self.bounded(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        // `close` waits for every connection to come back. One that was abandoned mid-query
        // on a silent network (a timed-out `bounded` operation) may never finish closing, and
        // a shutdown once waited on it for good (the fault suite's black-holed database):
        // give up on it after a bound; what the process holds is committed or spooled.
        if tokio::time::timeout(CLOSE_BOUND, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                bound = ?CLOSE_BOUND,
                "database connections still busy at shutdown; leaving them"
            );
        }
    }
}

/// The claim (see [`Store::claim_outbox`]; parameters as `Dialect::claim_outbox`'s, the
/// owner as a uuid): about `$4` records, whole rows, in commit order. A commit's row stands
/// for its records (its `ids`), each claimed with its record's row, which its message is
/// rebuilt from, as is a record's own row stored without its value; the others carry their
/// message.
///
/// How many rows: the pending rows are counted in commit order, without locking, up to the
/// one that reaches `$4` records (`k`); then the first `k` rows no other claim holds are
/// locked (SKIP LOCKED: a replica claiming at the same moment takes the next ones, never
/// these) and claimed up to the one that reaches `$4` records again (they may be larger than
/// those counted). Locking only what is claimed keeps two concurrent claims contiguous, and a
/// claim holds at most `$4` + `batch.max_records` − 1 records. Each record's row is looked up
/// by its id (a `LATERAL … LIMIT 1` per record: joined plainly, PostgreSQL hashed the whole
/// `cdrs` table for a claim of a few hundred).
fn claim_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let pending = "published_at IS NULL AND failed_at IS NULL \
             AND (leased_until IS NULL OR leased_until < $2) \
             AND (created_at <= $3 OR owner = $5::uuid)";
        let upto = |rows: &str| {
            format!(
                "SELECT seq FROM (SELECT seq, n, SUM(n) OVER (ORDER BY seq) AS upto \
                 FROM ({rows}) l) w WHERE upto - n < $4"
            )
        };
        let counted = upto(&format!(
            "SELECT seq, {n} AS n FROM outbox WHERE {pending} ORDER BY seq LIMIT $4",
            n = DIALECT.outbox_records
        ));
        let locked = upto(&format!(
            "SELECT seq, {n} AS n FROM outbox WHERE {pending} ORDER BY seq \
             LIMIT (SELECT count(*) FROM ({counted}) k) FOR UPDATE SKIP LOCKED",
            n = DIALECT.outbox_records
        ));
        format!(
            "WITH claimed AS (\
               UPDATE outbox SET leased_until = $1, attempts = attempts + 1 \
               WHERE seq IN ({locked}) \
               RETURNING seq, id, kind, key, payload, source, occurred_at, ids) \
             SELECT o.seq, COALESCE(m.id, o.id) AS id, o.id AS row_id, o.ids IS NOT NULL AS in_commit, \
                    CASE WHEN o.ids IS NULL THEN o.kind \
                         WHEN c.id IS NOT NULL THEN 'cdr' WHEN e.id IS NOT NULL THEN 'call-status' END AS kind, \
                    o.key, o.payload, COALESCE(o.source, c.source, e.source) AS source, o.occurred_at, \
                    COALESCE(c.received_at, e.received_at) AS received_at, \
                    e.event_type, COALESCE(c.raw, e.raw)::text AS raw \
             FROM claimed o \
             LEFT JOIN LATERAL unnest(o.ids) WITH ORDINALITY AS m(id, ord) ON true \
             LEFT JOIN LATERAL (SELECT id, source, received_at, raw FROM cdrs \
                 WHERE o.payload IS NULL AND o.kind IN ('cdr', '{commit}') \
                   AND id = COALESCE(m.id, o.id) LIMIT 1) c ON true \
             LEFT JOIN LATERAL (SELECT id, source, received_at, raw, event_type FROM call_events \
                 WHERE o.payload IS NULL AND o.kind IN ('call-status', '{commit}') \
                   AND id = COALESCE(m.id, o.id) LIMIT 1) e ON true \
             ORDER BY o.seq, m.ord",
            commit = pg_unnest::COMMIT_KIND,
        )
    })
}

/// Gives record `$3` of a commit's row a failed row of its own at `$1`, for reason `$2`, with
/// its kind, key and source from its record's row (`unknown` when that row is gone).
const FAIL_COMMITTED_RECORD: &str = "INSERT INTO outbox \
        (id, kind, key, source, occurred_at, created_at, failed_at, last_error) \
     SELECT $3, COALESCE(r.kind, 'unknown'), COALESCE(r.key, ''), COALESCE(r.source, ''), \
            COALESCE(r.occurred_at, $1), $1, $1, $2 \
       FROM (SELECT 1) one LEFT JOIN LATERAL ( \
            SELECT 'cdr' AS kind, session_id AS key, source, occurred_at FROM cdrs WHERE id = $3 \
            UNION ALL \
            SELECT 'call-status', session_id, source, occurred_at FROM call_events WHERE id = $3 \
            LIMIT 1) r ON true \
     ON CONFLICT (id) DO UPDATE SET failed_at = EXCLUDED.failed_at, last_error = EXCLUDED.last_error";

/// How long closing the pool may wait for its connections at shutdown.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// The entry a claimed outbox row stands for: its message, or its record's row when it was
/// stored without one; the reason when it cannot be published.
fn claimed_entry(id: Uuid, row: &PgRow) -> Result<Claimed, String> {
    let gone = || format!("record {id} is no longer stored, so its message cannot be rebuilt");
    // A commit's record has the kind of the table its row is in (none: gone).
    let kind: &str = row.get::<Option<&str>, _>("kind").ok_or_else(gone)?;
    let kind =
        RecordKind::from_name(kind).ok_or_else(|| format!("unknown record kind {kind:?}"))?;
    let source: String = row.get::<Option<String>, _>("source").unwrap_or_default();
    let commit = row
        .get::<bool, _>("in_commit")
        .then(|| row.get::<Uuid, _>("row_id"));
    let Some(payload) = row.get::<Option<String>, _>("payload") else {
        let raw = row.get::<Option<String>, _>("raw").ok_or_else(gone)?;
        let record = StoredRecord {
            id,
            source,
            received_at: row.get("received_at"),
            event_type: row.get("event_type"),
            raw,
            webhook: None,
        };
        return Ok(Claimed::Stored {
            kind,
            record,
            commit,
        });
    };
    Ok(Claimed::Ready(OutboxEntry {
        id,
        kind,
        key: row.get("key"),
        payload,
        source: source.into(),
        occurred_at: row
            .get::<Option<DateTime<Utc>>, _>("occurred_at")
            .unwrap_or_default(),
    }))
}
