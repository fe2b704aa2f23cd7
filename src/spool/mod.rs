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
//! before its spooled `answer`). The drainer (`batch::drain`) commits entries in order and
//! deletes each once committed; when it finds the spool empty with nothing on its way, it turns
//! the spool inactive under the same gate the batchers take to decide, so no batch slips in
//! behind its back.
//!
//! A spool that cannot be opened or fails SQLite's `quick_check` at start is moved aside
//! (`<path>.corrupt-<time>`), what can still be read from it is copied into a new one, and the
//! event is counted: ringback keeps serving.
//!
//! Here: the protocol (append, the gate, status). `file`: opening, checking, quarantine and
//! salvage; `writer`: the group-commit writer; `entries`: what the drainer takes and removes.

mod entries;
mod file;
mod writer;

pub use entries::Entry;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::domain::Row;
use crate::error::error_chain;
use crate::metrics::{Metrics, SpoolAppend};
use file::free_bytes;
use writer::Append;

/// The format of an entry's payload: JSON of the batch's `Vec<Row>` in their serde form.
/// A newer binary keeps reading every version it knows; bump it when the serde form of a
/// record changes in a way older entries cannot be read with.
pub const FORMAT_VERSION: i64 = 1;

/// Why a batch could not be spooled. Nothing of it was stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// `spool.max_bytes` reached.
    #[error("the spool is full ({bytes} of {max} bytes)")]
    Full { bytes: u64, max: u64 },
    /// The write failed (disk full, I/O error), with its cause (shared: one write answers
    /// every append of its group).
    #[error("writing the spool failed")]
    Write(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The spool is shutting down.
    #[error("the spool is closed")]
    Closed,
}

/// Where new batches go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolMode {
    /// Straight to the database.
    #[default]
    Direct,
    /// To the spool, behind what it holds, until the drainer empties it.
    Spooling,
    /// To the spool, and not drained yet: the process started while its database was away,
    /// and has not reached it and applied its migrations since (see [`Spool::hold`]).
    Holding,
}

/// What `/readyz` and the metrics show of the spool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpoolStatus {
    pub mode: SpoolMode,
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

/// The spool. Shared by the batchers (appends) and the drainer.
pub struct Spool {
    pool: SqlitePool,
    writer: mpsc::Sender<Append>,
    state: Arc<Mutex<State>>,
    /// Whether new batches go to the spool. Read without the gate on the hot path; only
    /// changed under it.
    active: AtomicBool,
    /// Whether the drainer waits: set at start when the database cannot be reached (its
    /// schema may be older than this binary's until the migrations run).
    held: AtomicBool,
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

impl Spool {
    /// Whether new batches go to the spool.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Spools `rows` if the spool is active (`force`: in any case, making it active), and
    /// waits for the fsync. `None`: not active, the caller commits directly.
    pub async fn append(&self, rows: &[Row], force: bool) -> Option<Result<(), SpoolError>> {
        if !force && !self.is_active() {
            return None;
        }
        let gate = self.gate.lock().await;
        if !force && !self.is_active() {
            return None;
        }
        let payload = match serde_json::to_vec(rows) {
            Ok(p) => p,
            Err(e) => return Some(Err(SpoolError::Write(Arc::new(e)))),
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
                self.metrics.spool_append(SpoolAppend::Full);
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
            records: rows.len() as u64,
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
        self.metrics.spool_append(if result.is_ok() {
            SpoolAppend::Ok
        } else {
            SpoolAppend::Error
        });
        self.publish_status();
        Some(result)
    }

    /// Waits until an append lands (or `every` passes).
    pub async fn wait_for_work(&self, every: Duration) {
        let _ = tokio::time::timeout(every, self.work.notified()).await;
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

    /// Sends every batch to the spool and keeps the drainer from committing them until
    /// [`release`](Self::release): for a process that starts while its database is away. What
    /// is acknowledged meanwhile is on disk, and reaches the database only once its schema is
    /// this binary's.
    pub async fn hold(&self) {
        let _gate = self.gate.lock().await;
        self.held.store(true, Ordering::Release);
        self.active.store(true, Ordering::Release);
        self.publish_status();
    }

    /// Lets the drainer commit what the spool holds (the database is reached and migrated).
    pub fn release(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.publish_status();
            self.work.notify_one();
        }
    }

    /// Whether the drainer waits for [`release`](Self::release).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Turns the spool inactive if it holds nothing and nothing is on its way; returns whether
    /// it is now inactive. Under the gate, so no batch is queued meanwhile. A held spool stays
    /// active.
    pub async fn finish_if_empty(&self) -> bool {
        let _gate = self.gate.lock().await;
        if self.is_held() {
            return false;
        }
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
            mode: match (self.is_active(), self.is_held()) {
                (_, true) => SpoolMode::Holding,
                (true, false) => SpoolMode::Spooling,
                (false, false) => SpoolMode::Direct,
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
            s.mode != SpoolMode::Direct,
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

#[cfg(test)]
mod tests;
