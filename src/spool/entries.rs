//! The spool's entries as the drainer takes them: the oldest first, deleted once committed, or
//! moved to the `failed` table when they can never be.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Spool, FORMAT_VERSION};
use crate::domain::Row;

/// One spooled batch, as the drainer reads it.
pub struct Entry {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    /// The batch, or why it cannot be read (an unknown format version, damaged bytes).
    pub rows: Result<Vec<Row>, String>,
    pub(super) records_count: u64,
    pub(super) bytes: u64,
}

impl Spool {
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
        let rows = if version > FORMAT_VERSION {
            Err(format!(
                "format version {version} is newer than this binary's ({FORMAT_VERSION})"
            ))
        } else {
            serde_json::from_slice(&payload).map_err(|e| format!("unreadable entry: {e}"))
        };
        Entry {
            seq: r.get("seq"),
            created_at: r.get("created_at"),
            rows,
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
        let unreadable = entry.rows.is_err();
        self.forget(entry, |st| {
            st.failed_entries += 1;
            st.corruption_events += u64::from(unreadable);
        });
        self.metrics
            .spool_failed(entry.seq, entry.records_count, reason);
        if unreadable {
            self.metrics.spool_corrupt();
        }
        Ok(())
    }
}
