//! The spool's drainer (the spool's protocol: `spool/mod.rs`): what the spool holds is committed
//! oldest first, through the same commit as a direct batch, and deleted once committed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::worker::outbox_entries;
use super::Worker;
use crate::domain::{Outcome, Row};
use crate::error::error_chain;
use crate::spool::{Entry, Spool};

/// Commits what the spool holds, oldest first, through the same commit as a direct batch (a
/// record a crash mid-drain already committed is recognised by its id and stored once), hands
/// the new entries to the publisher, deletes each entry once committed. A transient failure
/// waits and tries the same entry again; a record the database refuses for good becomes a
/// dead letter and the rest is committed (see [`isolate`]); an entry is set aside in the spool
/// only when not even that can be stored. When the spool is empty it turns inactive: batches go direct again.
pub(super) async fn drain_spool(worker: Worker, stop: CancellationToken) {
    let Some(spooling) = worker.spooling.clone() else {
        return;
    };
    let spool = &spooling.spool;
    let mut backoff = DRAIN_MIN_BACKOFF;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = spool.wait_for_work(DRAIN_TICK) => {}
        }
        spool.refresh().await;
        if !spool.is_active() || spool.is_held() {
            continue;
        }
        loop {
            if stop.is_cancelled() {
                break;
            }
            let mut entries = match spool.oldest_up_to(DRAIN_RECORDS).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "could not read the spool");
                    break;
                }
            };
            if entries.is_empty() {
                if spool.finish_if_empty().await {
                    break;
                }
                // An append is on its way to disk: it is next.
                spool.wait_for_work(DRAIN_TICK).await;
                continue;
            }
            // An entry that cannot be read is set aside on its own; the ones before it go first.
            match entries.iter().position(|e| e.rows.is_err()) {
                Some(0) => {
                    let entry = &entries[0];
                    let reason = entry.rows.as_ref().err().cloned().unwrap_or_default();
                    if let Err(e) = spool.fail(entry, &reason).await {
                        tracing::error!(error = %error_chain(&e), "could not set a spooled batch aside");
                        break;
                    }
                    continue;
                }
                Some(bad) => entries.truncate(bad),
                None => {}
            }
            match drain_entries(&worker, spool, &entries).await {
                Drained::Committed => backoff = DRAIN_MIN_BACKOFF,
                Drained::Unavailable => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(crate::retry::jittered(backoff)) => {}
                    }
                    backoff = (backoff * 2).min(DRAIN_MAX_BACKOFF);
                    break;
                }
                Drained::SpoolError => break,
            }
        }
    }
    tracing::debug!("spool drainer stopped");
}

/// What became of a drain attempt.
enum Drained {
    /// Committed (or set aside for good), and deleted from the spool.
    Committed,
    /// The database does not take it yet.
    Unavailable,
    /// The spool itself failed.
    SpoolError,
}

/// Commits consecutive spooled entries in one transaction (their records in order), hands the
/// new outbox entries to the publisher, deletes the entries. When the database refuses them
/// for good, each is tried alone, and within the one at fault each record (see [`isolate`]).
async fn drain_entries(worker: &Worker, spool: &Spool, entries: &[Entry]) -> Drained {
    let rows: Vec<Row> = entries
        .iter()
        .filter_map(|e| e.rows.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let outbox = outbox_entries(&rows);
    match worker.store.commit(&rows, &outbox).await {
        Ok(outcomes) => {
            if outcomes.contains(&Outcome::Duplicate) {
                // Stored already: most often by the very commit this batch was spooled instead
                // of, abandoned at `spool.fallback_after` and landed after all. Its outbox
                // entries are older than this drain's and nobody was handed them; sending this
                // drain's now would let a call's later events overtake them on Kafka. The
                // publisher catches up from the outbox instead, in commit order.
                worker.catch_up_instead();
            } else {
                worker.hand_off(&rows, &outcomes, outbox);
            }
            remove_drained(spool, entries).await
        }
        Err(e) if e.is_transient() => {
            tracing::debug!(error = %error_chain(&e), "the database does not take the spool yet");
            Drained::Unavailable
        }
        Err(e) if entries.len() > 1 => {
            tracing::warn!(error = %error_chain(&e), entries = entries.len(), "the database refused spooled batches; trying them one by one");
            for entry in entries {
                match Box::pin(drain_entries(worker, spool, std::slice::from_ref(entry))).await {
                    Drained::Committed => {}
                    other => return other,
                }
            }
            Drained::Committed
        }
        Err(_) => {
            // The entry alone is refused: its records one by one, the culprits kept as dead
            // letters (see `isolate`), so the drain goes on.
            let failure = match worker.commit_alone(&rows).await {
                Ok(_) => return remove_drained(spool, entries).await,
                Err(e) if e.is_transient() => return Drained::Unavailable,
                Err(e) => e,
            };
            // Not even the dead letters could be stored: the entry is set aside whole.
            match spool.fail(&entries[0], &error_chain(&failure)).await {
                Ok(()) => Drained::Committed,
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "could not set a spooled batch aside");
                    Drained::SpoolError
                }
            }
        }
    }
}

/// Deletes drained entries from the spool.
async fn remove_drained(spool: &Spool, entries: &[Entry]) -> Drained {
    if let Err(e) = spool.remove_all(entries).await {
        // Committed, still in the spool: the next drain stores them again as duplicates,
        // which stores nothing.
        tracing::warn!(error = %error_chain(&e), "could not delete drained batches from the spool");
        return Drained::SpoolError;
    }
    Drained::Committed
}

/// Records one drain commit takes at most (several spooled batches together: a spool fills
/// with the small batches of an outage's status pushes, and one commit each would drain
/// slower than they arrive).
const DRAIN_RECORDS: u64 = 500;

/// How often the drainer looks at the spool when nothing wakes it.
const DRAIN_TICK: Duration = Duration::from_secs(1);
const DRAIN_MIN_BACKOFF: Duration = Duration::from_millis(100);
const DRAIN_MAX_BACKOFF: Duration = Duration::from_secs(5);
