//! The spool's writer: every append waiting when it wakes goes into one transaction, one fsync
//! (group commit), and no append is answered before its fsync.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::{SpoolError, State, FORMAT_VERSION};
use crate::error::error_chain;

/// Appends waiting for the writer at most; each is one batch, so memory stays bounded.
pub(super) const APPEND_QUEUE: usize = 1024;
/// Appends one transaction (one fsync) takes at most…
const GROUP_MAX: usize = 256;
/// …and bytes (it may exceed it by one append).
const GROUP_MAX_BYTES: usize = 4 << 20;

/// A batch on its way to the file.
pub(super) struct Append {
    pub(super) payload: Vec<u8>,
    pub(super) records: u64,
    pub(super) created_at: DateTime<Utc>,
    pub(super) ack: oneshot::Sender<Result<(), SpoolError>>,
}

/// The writer: every append waiting when it wakes goes into one transaction, one fsync.
pub(super) async fn write(
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
                Err(e) => st.last_error = Some(error_chain(e)),
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %error_chain(e), batches = group.len(), "could not write the spool; those pushes are refused (503)");
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
        .map_err(|e| SpoolError::Write(Arc::new(e)))?;
    let result = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for a in group {
            insert_entry(FORMAT_VERSION, a.created_at, a.records as i64, &a.payload)
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
        return Err(SpoolError::Write(Arc::new(e)));
    }
    Ok(())
}

/// The one INSERT of an entry: an append's, or one rescued from a damaged file.
pub(super) fn insert_entry<'q, T>(
    version: i64,
    created_at: T,
    records: i64,
    payload: &'q [u8],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>
where
    T: 'q + sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO entries (version, created_at, records, bytes, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(version)
    .bind(created_at)
    .bind(records)
    .bind(payload.len() as i64)
    .bind(payload)
}
