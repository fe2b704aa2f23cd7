//! The batcher: records from all requests flow through bounded queues (one per worker) into
//! batches of up to `batch.max_records` records, each committed in one transaction: at once when
//! the worker has no commit in flight, else as soon as that commit ends, with whatever arrived
//! meanwhile (group commit). Every request waits on a oneshot for its own records' outcome, so
//! a 2xx is only ever sent after the commit.
//!
//! Here: the handle and its queues. `worker`: a worker's loop and commit (retries, spooling,
//! the hand-off to the publisher); `isolate`: a refused batch taken apart; `drain`: the spool's
//! drainer.

mod drain;
mod isolate;
mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BatchConfig;
use crate::domain::{Outcome, Record, Row};
use crate::metrics::Metrics;
use crate::publish::PublisherHandle;
use crate::spool::{Spool, SpoolError};
use crate::store::Store;

/// Why a submission was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the service is overloaded; try again later.
    #[error("the ingest queue is full")]
    QueueFull,
    /// The batcher has stopped (shutting down).
    #[error("the service is shutting down")]
    Closed,
    /// The commit failed; nothing of the submission was stored.
    #[error("committing the batch failed")]
    Store {
        /// Whether retrying later could succeed (database unavailable).
        transient: bool,
    },
    /// The database could not take the batch and the spool could not either (full, or its
    /// disk): nothing was stored.
    #[error("the spool cannot take the batch: {0}")]
    SpoolFull(#[source] SpoolError),
}

/// What became of a submission's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// One per row, in order. For a spooled submission every row counts as inserted:
    /// duplicates are recognised when the spool is drained.
    pub outcomes: Vec<Outcome>,
    /// Kept in the local spool (fsync'd), not yet in the database.
    pub spooled: bool,
}

struct Submission {
    rows: Vec<Row>,
    ack: oneshot::Sender<Result<Submitted, SubmitError>>,
}

/// The spool and the bound on a direct commit, when spooling is on.
#[derive(Clone)]
pub struct Spooling {
    pub spool: Arc<Spool>,
    /// How long a batch waits for its commit before it is spooled instead.
    pub fallback_after: Duration,
}

/// What every batch worker (and the drainer) works with.
#[derive(Clone)]
struct Worker {
    store: Arc<dyn Store>,
    config: BatchConfig,
    publisher: Option<PublisherHandle>,
    metrics: Arc<Metrics>,
    spooling: Option<Spooling>,
}

/// Hands records to the batcher. Cheap to clone; the batcher stops once every handle is gone
/// and the queue is drained.
///
/// There are `batch.workers` batchers, each with its own queue and its own transactions, so
/// several commits are in flight at once (the database's own group commit then shares the
/// fsyncs). A request goes to the worker its first record's call/conversation key hashes to:
/// one call's records are always committed by the same worker, in arrival order, which keeps
/// them in order in the outbox and on Kafka.
///
/// A submission of CDRs only goes to the worker with the fewest submissions in flight
/// instead: a CDR is its call's last record and has a topic of its own, so nothing orders it
/// after another record of its call, and a fee push (50 calls) no longer waits behind another
/// push on a busy worker while one is idle.
#[derive(Clone)]
pub struct Batcher {
    shards: Arc<[mpsc::Sender<Submission>]>,
    /// Submissions queued or being committed, per worker.
    in_flight: Arc<[AtomicUsize]>,
}

/// Counts a submission in flight on its worker until dropped (answered, or the requester
/// went away).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batcher {
    /// Starts the batcher tasks on `tasks` (and, with `spooling`, the spool's drainer). Once
    /// `stop` is cancelled the queues take no more submissions; what they hold is committed,
    /// then the tasks end. What the spool holds then stays there for the next start.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: BatchConfig,
        stop: CancellationToken,
        tasks: &TaskTracker,
        publisher: Option<PublisherHandle>,
        metrics: Arc<Metrics>,
        spooling: Option<Spooling>,
    ) -> Self {
        let workers = config.workers.max(1);
        let per_worker = config.queue_capacity.div_ceil(workers).max(1);
        let worker = Worker {
            store,
            config,
            publisher,
            metrics,
            spooling,
        };
        if worker.spooling.is_some() {
            tasks.spawn(drain::drain_spool(worker.clone(), stop.clone()));
        }
        let mut shards = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(per_worker);
            shards.push(tx);
            tasks.spawn(worker::run(rx, worker.clone(), stop.clone()));
        }
        Self {
            in_flight: (0..shards.len()).map(|_| AtomicUsize::new(0)).collect(),
            shards: shards.into(),
        }
    }

    /// The worker for a submission: the least busy one for CDRs only, else the one its first
    /// record's call/conversation key hashes to.
    fn shard(&self, rows: &[Row]) -> usize {
        use std::hash::{Hash, Hasher};
        if self.shards.len() == 1 {
            return 0;
        }
        if rows
            .iter()
            .all(|r| matches!(r, Row::Record(Record::Cdr(_))))
        {
            return (0..self.shards.len())
                .min_by_key(|&i| self.in_flight[i].load(Ordering::Relaxed))
                .unwrap_or(0);
        }
        match rows.iter().find_map(Row::ordering_key) {
            Some(key) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % self.shards.len() as u64) as usize
            }
            None => 0,
        }
    }

    /// Queues `rows` and waits until they are committed. Never waits for queue space: a full
    /// queue is refused at once so the caller can answer 503.
    pub async fn submit(&self, rows: Vec<Row>) -> Result<Submitted, SubmitError> {
        if rows.is_empty() {
            return Ok(Submitted {
                outcomes: Vec::new(),
                spooled: false,
            });
        }
        let (ack, done) = oneshot::channel();
        let shard = self.shard(&rows);
        self.in_flight[shard].fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&self.in_flight[shard]);
        self.shards[shard]
            .try_send(Submission { rows, ack })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        done.await.map_err(|_| SubmitError::Closed)?
    }

    /// Submissions waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.shards
            .iter()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .sum()
    }
}

#[cfg(test)]
mod tests;
