//! The local spool: where a batch goes when PostgreSQL cannot take it in time (a transient
//! error, or a commit slower than `spool.fallback_after`), so a push the platform never resends
//! is still answered 2xx only once it is on disk, and reaches the database later, in order.
//!
//! One SQLite file in WAL mode with `synchronous=FULL`: a commit is on disk (the WAL fsync'd)
//! before it returns. Appends go through one writer task that puts every append waiting at that
//! moment into one transaction: one fsync covers them all (group commit), and no append is
//! answered before its fsync. Each entry is one batch (its records, dead letters included, in
//! their serde form) with a format version.
//!
//! While the spool holds anything (or an append is on its way), it is *active*: every new
//! batch goes to it too, so nothing overtakes what waits (a call's `disconnect` never lands
//! before its spooled `answer`). The drainer (`batch::drain_spool`) commits entries in order and
//! deletes each once committed; when it finds the spool empty with nothing on its way, it turns
//! the spool inactive under the same gate the batchers take to decide, so no batch slips in
//! behind its back.
//!
//! A spool that cannot be opened or fails SQLite's `quick_check` at start is moved aside
//! (`<path>.corrupt-<time>`), what can still be read from it is copied into a new one, and the
//! event is counted: ringback keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SpoolConfig;
use crate::domain::Record;
use crate::error::error_chain;
use crate::metrics::Metrics;

/// The format of an entry's payload: JSON of the batch's `Vec<Record>` in their serde form.
/// A newer binary keeps reading every version it knows; bump it when the serde form of a
/// record changes in a way older entries cannot be read with.
pub const FORMAT_VERSION: i64 = 1;

/// Appends waiting for the writer at most; each is one batch, so memory stays bounded.
const APPEND_QUEUE: usize = 1024;
/// Appends one transaction (one fsync) takes at most…
const GROUP_MAX: usize = 256;
/// …and bytes (it may exceed it by one append).
const GROUP_MAX_BYTES: usize = 4 << 20;

/// Why a batch could not be spooled. Nothing of it was stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// `spool.max_bytes` reached.
    #[error("the spool is full ({bytes} of {max} bytes)")]
    Full { bytes: u64, max: u64 },
    /// The write failed (disk full, I/O error).
    #[error("writing the spool failed: {0}")]
    Write(String),
    /// The spool is shutting down.
    #[error("the spool is closed")]
    Closed,
}

/// What `/readyz` and the metrics show of the spool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpoolStatus {
    /// `spooling` while batches go to the spool, `direct` otherwise.
    pub mode: &'static str,
    pub entries: u64,
    pub records: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub oldest_age_seconds: f64,
    /// Records committed from the spool since start.
    pub drained_records: u64,
    /// Entries the database refused for good, kept in the spool's `failed` table.
    pub failed_entries: u64,
    /// Damaged spool files moved aside and unreadable entries, since start.
    pub corruption_events: u64,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
    /// Write transactions (fsyncs) since start: with many appends at once, fewer than appends.
    pub writes: u64,
}

#[derive(Default)]
struct State {
    entries: u64,
    records: u64,
    bytes: u64,
    /// Appends queued for the writer, not yet on disk.
    pending: u64,
    pending_bytes: u64,
    oldest: Option<DateTime<Utc>>,
    drained_records: u64,
    failed_entries: u64,
    corruption_events: u64,
    last_error: Option<String>,
    writes: u64,
}

struct Append {
    payload: Vec<u8>,
    records: u64,
    created_at: DateTime<Utc>,
    ack: oneshot::Sender<Result<(), SpoolError>>,
}

/// One spooled batch, as the drainer reads it.
pub struct Entry {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    /// The batch, or why it cannot be read (an unknown format version, damaged bytes).
    pub records: Result<Vec<Record>, String>,
    records_count: u64,
    bytes: u64,
}

/// The spool. Shared by the batchers (appends) and the drainer.
pub struct Spool {
    pool: SqlitePool,
    writer: mpsc::Sender<Append>,
    state: Arc<Mutex<State>>,
    /// Whether new batches go to the spool. Read without the gate on the hot path; only
    /// changed under it.
    active: AtomicBool,
    /// Taken to decide that a batch goes to the spool and to queue it, and by the drainer to
    /// decide that the spool is empty: a batch is never queued behind the drainer's back.
    gate: tokio::sync::Mutex<()>,
    work: Arc<Notify>,
    max_bytes: u64,
    /// Free space appends leave on the spool's disk.
    min_free_bytes: u64,
    /// The spool's directory (for its free space).
    dir: PathBuf,
    metrics: Arc<Metrics>,
}

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
        // with SIGBUS when it grows (seen in tests/spool.rs on a full ext4). The cost: one
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
                    sqlx::query(
                        "INSERT INTO entries (version, created_at, records, bytes, payload) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .bind(version)
                    .bind(created_at)
                    .bind(records)
                    .bind(payload.len() as i64)
                    .bind(payload)
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

    /// Whether new batches go to the spool.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Spools `records` if the spool is active (`force`: in any case, making it active), and
    /// waits for the fsync. `None`: not active, the caller commits directly.
    pub async fn append(&self, records: &[Record], force: bool) -> Option<Result<(), SpoolError>> {
        if !force && !self.is_active() {
            return None;
        }
        let gate = self.gate.lock().await;
        if !force && !self.is_active() {
            return None;
        }
        let payload = match serde_json::to_vec(records) {
            Ok(p) => p,
            Err(e) => return Some(Err(SpoolError::Write(e.to_string()))),
        };
        let free = free_bytes(&self.dir);
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let held = st.bytes + st.pending_bytes;
            // What is queued is not on disk yet: it counts against the free space too.
            let disk_full = free
                .is_some_and(|f| f < self.min_free_bytes + st.pending_bytes + payload.len() as u64);
            if held + payload.len() as u64 > self.max_bytes || disk_full {
                drop(st);
                self.metrics.spool_append("full");
                return Some(Err(SpoolError::Full {
                    bytes: held,
                    max: self.max_bytes,
                }));
            }
            st.pending += 1;
            st.pending_bytes += payload.len() as u64;
        }
        if !self.active.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "spooling: batches go to the local spool until the database takes them again"
            );
            self.publish_status();
        }
        let (ack, done) = oneshot::channel();
        let append = Append {
            payload,
            records: records.len() as u64,
            created_at: Utc::now().trunc_subsecs(6),
            ack,
        };
        if let Err(refused) = self.writer.send(append).await {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.pending -= 1;
            st.pending_bytes -= refused.0.payload.len() as u64;
            return Some(Err(SpoolError::Closed));
        }
        drop(gate);
        let result = done.await.unwrap_or(Err(SpoolError::Closed));
        self.metrics
            .spool_append(if result.is_ok() { "ok" } else { "error" });
        self.publish_status();
        Some(result)
    }

    /// Waits until an append lands (or `every` passes).
    pub async fn wait_for_work(&self, every: Duration) {
        let _ = tokio::time::timeout(every, self.work.notified()).await;
    }

    /// The oldest entry, if any.
    pub async fn oldest(&self) -> Result<Option<Entry>, sqlx::Error> {
        Ok(self.oldest_up_to(1).await?.pop())
    }

    /// The oldest entries, in order, as many as hold at most `max_records` records together
    /// (at least one).
    pub async fn oldest_up_to(&self, max_records: u64) -> Result<Vec<Entry>, sqlx::Error> {
        // One read transaction: the sizes and the payloads from the same snapshot. Sizes
        // first, so no more payloads are read than are taken.
        let mut tx = self.pool.begin().await?;
        let sizes: Vec<(i64, i64)> =
            sqlx::query_as("SELECT seq, records FROM entries ORDER BY seq LIMIT 256")
                .fetch_all(&mut *tx)
                .await?;
        let Some(&(first, _)) = sizes.first() else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let mut last = first;
        let mut records = 0;
        for (seq, count) in sizes {
            if seq != first && records + count as u64 > max_records {
                break;
            }
            records += count as u64;
            last = seq;
        }
        let rows = sqlx::query(
            "SELECT seq, version, created_at, records, bytes, payload FROM entries \
             WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(Self::entry).collect())
    }

    fn entry(r: &sqlx::sqlite::SqliteRow) -> Entry {
        let version: i64 = r.get("version");
        let payload: Vec<u8> = r.get("payload");
        let records = if version > FORMAT_VERSION {
            Err(format!(
                "format version {version} is newer than this binary's ({FORMAT_VERSION})"
            ))
        } else {
            serde_json::from_slice(&payload).map_err(|e| format!("unreadable entry: {e}"))
        };
        Entry {
            seq: r.get("seq"),
            created_at: r.get("created_at"),
            records,
            records_count: r.get::<i64, _>("records") as u64,
            bytes: r.get::<i64, _>("bytes") as u64,
        }
    }

    /// Deletes an entry the database committed.
    pub async fn remove(&self, entry: &Entry) -> Result<(), sqlx::Error> {
        self.remove_all(std::slice::from_ref(entry)).await
    }

    /// Deletes entries the database committed, in one transaction.
    pub async fn remove_all(&self, entries: &[Entry]) -> Result<(), sqlx::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        // Exactly the entries read, by their numbers: never one that was not.
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        let seqs = serde_json::to_string(&seqs).expect("numbers serialise");
        let mut conn = self.pool.acquire().await?;
        let deleted =
            match sqlx::query("DELETE FROM entries WHERE seq IN (SELECT value FROM json_each(?1))")
                .bind(seqs)
                .execute(&mut *conn)
                .await
            {
                Ok(done) => done.rows_affected(),
                Err(e) => {
                    conn.close_on_drop();
                    return Err(e);
                }
            };
        if deleted != entries.len() as u64 {
            tracing::warn!(
                deleted,
                read = entries.len(),
                "the spool lost track of its entries"
            );
        }
        for entry in entries {
            self.forget(entry, |st| st.drained_records += entry.records_count);
            self.metrics.spool_drained(entry.records_count);
        }
        Ok(())
    }

    /// Moves an entry that can never be committed (the database refuses it, or it cannot be
    /// read) to the `failed` table, with the reason: it is kept, and never retried.
    pub async fn fail(&self, entry: &Entry, reason: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let moved = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO failed (seq, version, created_at, failed_at, reason, payload) \
                 SELECT seq, version, created_at, ?2, ?3, payload FROM entries WHERE seq = ?1",
            )
            .bind(entry.seq)
            .bind(Utc::now())
            .bind(reason)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM entries WHERE seq = ?1")
                .bind(entry.seq)
                .execute(&mut *conn)
                .await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if let Err(e) = moved {
            // As in the writer: a connection a failed write left mid-transaction is closed.
            conn.close_on_drop();
            return Err(e);
        }
        let unreadable = entry.records.is_err();
        self.forget(entry, |st| {
            st.failed_entries += 1;
            st.corruption_events += u64::from(unreadable);
        });
        tracing::error!(
            seq = entry.seq,
            records = entry.records_count,
            reason,
            "a spooled batch can never be committed; kept in the spool's failed table"
        );
        self.metrics.spool_failed();
        if unreadable {
            self.metrics.spool_corrupt();
        }
        Ok(())
    }

    fn forget(&self, entry: &Entry, also: impl FnOnce(&mut State)) {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.entries = st.entries.saturating_sub(1);
            st.records = st.records.saturating_sub(entry.records_count);
            st.bytes = st.bytes.saturating_sub(entry.bytes);
            // The oldest went; the next one's time is read at the next refresh.
            st.oldest = None;
            also(&mut st);
        }
        self.publish_status();
    }

    /// Turns the spool inactive if it holds nothing and nothing is on its way; returns whether
    /// it is now inactive. Under the gate, so no batch is queued meanwhile.
    pub async fn finish_if_empty(&self) -> bool {
        let _gate = self.gate.lock().await;
        let empty = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.entries == 0 && st.pending == 0
        };
        if empty && self.active.swap(false, Ordering::AcqRel) {
            tracing::info!("spool drained: batches are committed directly again");
            self.publish_status();
            // Give the room the drained batches took back to the disk: free pages cut from the
            // file, the WAL truncated. Best effort: a failure only leaves the file larger.
            if let Err(e) =
                sqlx::raw_sql("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
                    .execute(&self.pool)
                    .await
            {
                tracing::debug!(error = %error_chain(&e), "could not shrink the spool file");
            }
        }
        empty
    }

    /// Whether a batch of about `bytes` would fit now.
    pub fn has_room(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bytes + st.pending_bytes < self.max_bytes
    }

    pub fn status(&self) -> SpoolStatus {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        SpoolStatus {
            mode: if self.is_active() {
                "spooling"
            } else {
                "direct"
            },
            entries: st.entries,
            records: st.records,
            bytes: st.bytes,
            max_bytes: self.max_bytes,
            oldest_age_seconds: st
                .oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
            drained_records: st.drained_records,
            failed_entries: st.failed_entries,
            corruption_events: st.corruption_events,
            last_error: st.last_error.clone(),
            writes: st.writes,
        }
    }

    /// Refreshes the oldest entry's time from the file (after drains) and the gauges.
    pub async fn refresh(&self) {
        let stale = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.oldest.is_none() && st.entries > 0
        };
        if stale {
            if let Ok(oldest) = sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
                "SELECT MIN(created_at) FROM entries",
            )
            .fetch_all(&self.pool)
            .await
            {
                self.state.lock().unwrap_or_else(|p| p.into_inner()).oldest =
                    oldest.into_iter().flatten().next();
            }
        }
        self.publish_status();
    }

    fn publish_status(&self) {
        let s = self.status();
        self.metrics.spool_state(
            s.mode == "spooling",
            s.entries,
            s.records,
            s.bytes,
            s.oldest_age_seconds,
        );
    }

    /// Closes the file; what it holds stays for the next start.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir`, when it tells.
fn free_bytes(dir: &Path) -> Option<u64> {
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

/// The writer: every append waiting when it wakes goes into one transaction, one fsync.
async fn write(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<Append>,
    state: Arc<Mutex<State>>,
    work: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            // Stopped after the batchers: what is queued is written, then the file closed.
            _ = stop.cancelled() => rx.try_recv().ok(),
            first = rx.recv() => first,
        };
        let Some(first) = first else { break };
        let mut bytes = first.payload.len();
        let mut group = vec![first];
        // Bounded in count and bytes: a transaction's WAL frames must fit in the room the
        // spool leaves on its disk (`spool.min_free_bytes`).
        while group.len() < GROUP_MAX && bytes < GROUP_MAX_BYTES {
            match rx.try_recv() {
                Ok(a) => {
                    bytes += a.payload.len();
                    group.push(a);
                }
                Err(_) => break,
            }
        }
        let result = insert(&pool, &group).await;
        {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            for a in &group {
                st.pending -= 1;
                st.pending_bytes -= a.payload.len() as u64;
            }
            match &result {
                Ok(()) => {
                    st.entries += group.len() as u64;
                    st.records += group.iter().map(|a| a.records).sum::<u64>();
                    st.bytes += group.iter().map(|a| a.payload.len() as u64).sum::<u64>();
                    if st.oldest.is_none() && st.entries == group.len() as u64 {
                        st.oldest = Some(group[0].created_at);
                    }
                    st.last_error = None;
                    st.writes += 1;
                }
                Err(e) => st.last_error = Some(e.to_string()),
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, batches = group.len(), "could not write the spool; those pushes are refused (503)");
        }
        for a in group {
            let _ = a.ack.send(result.clone());
        }
        work.notify_one();
    }
    pool.close().await;
}

async fn insert(pool: &SqlitePool, group: &[Append]) -> Result<(), SpoolError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| SpoolError::Write(error_chain(&e)))?;
    let result = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for a in group {
            sqlx::query(
                "INSERT INTO entries (version, created_at, records, bytes, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(FORMAT_VERSION)
            .bind(a.created_at)
            .bind(a.records as i64)
            .bind(a.payload.len() as i64)
            .bind(&a.payload)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = result {
        // A failed write (a full disk) may leave the connection inside its transaction,
        // holding a snapshot from before it: never hand it back. Closing it rolls back.
        conn.close_on_drop();
        return Err(SpoolError::Write(error_chain(&e)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
