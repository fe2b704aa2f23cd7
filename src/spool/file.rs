//! The spool's file: opened with the settings its promise needs, checked at start, moved aside
//! when damaged, and what can still be read from a damaged one rescued.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::writer::{insert_entry, write, APPEND_QUEUE};
use super::{Spool, State};
use crate::config::SpoolConfig;
use crate::error::error_chain;
use crate::metrics::Metrics;

/// `auto_vacuum = INCREMENTAL` (it takes effect in a new file, before its first table): what a
/// drain frees can be given back to the disk ([`Spool::finish_if_empty`]).
const SCHEMA: &str = "\
    PRAGMA auto_vacuum = INCREMENTAL;\
    CREATE TABLE IF NOT EXISTS entries (\
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,\
        version    INTEGER NOT NULL,\
        created_at TEXT    NOT NULL,\
        records    INTEGER NOT NULL,\
        bytes      INTEGER NOT NULL,\
        payload    BLOB    NOT NULL);\
    CREATE TABLE IF NOT EXISTS failed (\
        seq        INTEGER PRIMARY KEY,\
        version    INTEGER NOT NULL,\
        created_at TEXT    NOT NULL,\
        failed_at  TEXT    NOT NULL,\
        reason     TEXT    NOT NULL,\
        payload    BLOB    NOT NULL);";

async fn connect(path: &Path, create: bool) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        // Exclusive locking, set before WAL: SQLite then keeps the WAL index in its own memory
        // instead of a memory-mapped `-shm` file, which, on a full disk, kills the process
        // with SIGBUS when it grows (seen in tests/it/spool.rs on a full ext4). The cost: one
        // connection, and no other process can read the spool while ringback runs.
        .locking_mode(SqliteLockingMode::Exclusive)
        .journal_mode(SqliteJournalMode::Wal)
        // A commit returns once the WAL is fsync'd: what a 2xx promises.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        // One connection, shared by the writer and the drainer (exclusive locking).
        .max_connections(1)
        .connect_with(options)
        .await
}

/// Opens the file and checks it; the error says why it cannot be used.
async fn open_checked(path: &Path) -> Result<SqlitePool, String> {
    let pool = connect(path, true).await.map_err(|e| error_chain(&e))?;
    // `fetch_all` throughout: a statement left unfinished (`fetch_one`) would keep its
    // connection's read snapshot open, and that connection would read a stale spool.
    let check: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(&pool)
        .await;
    match check {
        Ok(ok) if ok == ["ok"] => {}
        Ok(problems) => {
            pool.close().await;
            return Err(format!("quick_check: {}", problems.join("; ")));
        }
        Err(e) => {
            pool.close().await;
            return Err(error_chain(&e));
        }
    }
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(pool)
}

/// A row of `entries` rescued from a damaged file: version, created_at, records, payload.
type Rescued = (i64, String, i64, Vec<u8>);

/// The rows of `entries` that can still be read from a damaged file, in order.
async fn salvage(path: &Path) -> Vec<Rescued> {
    let Ok(pool) = connect(path, false).await else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut after = i64::MIN;
    // Row by row: a damaged page fails the rows on it, not the ones before or after.
    loop {
        let row = sqlx::query(
            "SELECT seq, version, created_at, records, payload FROM entries \
             WHERE seq > ?1 ORDER BY seq LIMIT 1",
        )
        .bind(after)
        .fetch_all(&pool)
        .await
        .map(|mut rows| rows.pop());
        match row {
            Ok(Some(r)) => {
                after = r.get("seq");
                rows.push((
                    r.get("version"),
                    r.get("created_at"),
                    r.get("records"),
                    r.get("payload"),
                ))
            }
            _ => break,
        }
    }
    pool.close().await;
    rows
}

impl Spool {
    /// Opens (or creates) the spool at `config.path`, moving a damaged file aside, and starts
    /// its writer on `tasks`.
    pub async fn open(
        config: &SpoolConfig,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("creating the spool directory {}: {e}", dir.display())
            })?;
        }
        let mut state = State::default();
        let pool = match open_checked(&path).await {
            Ok(pool) => pool,
            Err(reason) => {
                let aside = quarantine(&path)?;
                tracing::error!(
                    spool = %path.display(),
                    moved_to = %aside.display(),
                    reason,
                    "the spool is damaged: moved aside; what can be read is kept"
                );
                metrics.spool_corrupt();
                state.corruption_events += 1;
                let rescued = salvage(&aside).await;
                let pool = open_checked(&path).await.map_err(anyhow::Error::msg)?;
                for (version, created_at, records, payload) in &rescued {
                    insert_entry(*version, created_at, *records, payload)
                        .execute(&pool)
                        .await?;
                }
                tracing::warn!(
                    entries = rescued.len(),
                    "entries rescued from the damaged spool"
                );
                pool
            }
        };
        let rows = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0), \
                    MIN(created_at) FROM entries",
        )
        .fetch_all(&pool)
        .await?;
        let row = &rows[0];
        state.entries = row.get::<i64, _>(0) as u64;
        state.records = row.get::<i64, _>(1) as u64;
        state.bytes = row.get::<i64, _>(2) as u64;
        state.oldest = row.get(3);
        state.failed_entries = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM failed")
            .fetch_all(&pool)
            .await?[0] as u64;
        if state.entries > 0 {
            tracing::warn!(
                entries = state.entries,
                records = state.records,
                "the spool holds batches from before; they are committed before any new one"
            );
        }
        let active = state.entries > 0;
        let state = Arc::new(Mutex::new(state));
        let (writer, rx) = mpsc::channel(APPEND_QUEUE);
        let work = Arc::new(Notify::new());
        tasks.spawn(write(pool.clone(), rx, state.clone(), work.clone(), stop));
        let spool = Arc::new(Self {
            pool,
            writer,
            state,
            active: AtomicBool::new(active),
            held: AtomicBool::new(false),
            gate: tokio::sync::Mutex::new(()),
            work,
            max_bytes: config.max_bytes,
            min_free_bytes: config.min_free_bytes,
            dir: path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned(),
            metrics,
        });
        spool.metrics.spool_opened(config.max_bytes);
        spool.publish_status();
        Ok(spool)
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`, when it tells.
pub(super) fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Moves a damaged spool file (and its WAL) aside; returns where it went.
fn quarantine(path: &Path) -> anyhow::Result<PathBuf> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            std::fs::rename(&from, &to).map_err(|e| {
                anyhow::anyhow!("moving the damaged spool {} aside: {e}", from.display())
            })?;
        }
    }
    Ok(aside)
}
