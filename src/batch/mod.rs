//! The batcher: records from all requests flow through ONE bounded queue into batches of up to
//! `batch.max_records` records (or whatever arrived within `batch.linger`), each committed in
//! one transaction. Every request waits on a oneshot for its own records' outcome, so a 2xx is
//! only ever sent after the commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BatchConfig;
use crate::domain::{OutboxEntry, Outcome, Record};
use crate::error::error_chain;
use crate::message;
use crate::metrics::Metrics;
use crate::publish::PublisherHandle;
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
}

struct Submission {
    records: Vec<Record>,
    ack: oneshot::Sender<Result<Vec<Outcome>, SubmitError>>,
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
    /// Starts the batcher tasks on `tasks`. Once `stop` is cancelled the queues take no more
    /// submissions; what they hold is committed, then the tasks end.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: BatchConfig,
        stop: CancellationToken,
        tasks: &TaskTracker,
        publisher: Option<PublisherHandle>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let workers = config.workers.max(1);
        let per_worker = config.queue_capacity.div_ceil(workers).max(1);
        let mut shards = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(per_worker);
            shards.push(tx);
            tasks.spawn(run(
                rx,
                store.clone(),
                config.clone(),
                stop.clone(),
                publisher.clone(),
                metrics.clone(),
            ));
        }
        Self {
            in_flight: (0..shards.len()).map(|_| AtomicUsize::new(0)).collect(),
            shards: shards.into(),
        }
    }

    /// The worker for a submission: the least busy one for CDRs only, else the one its first
    /// record's call/conversation key hashes to.
    fn shard(&self, records: &[Record]) -> usize {
        use std::hash::{Hash, Hasher};
        if self.shards.len() == 1 {
            return 0;
        }
        if records.iter().all(|r| matches!(r, Record::Cdr(_))) {
            return (0..self.shards.len())
                .min_by_key(|&i| self.in_flight[i].load(Ordering::Relaxed))
                .unwrap_or(0);
        }
        match records.iter().find_map(Record::ordering_key) {
            Some(key) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % self.shards.len() as u64) as usize
            }
            None => 0,
        }
    }

    /// Queues `records` and waits until they are committed. Never waits for queue space: a
    /// full queue is refused at once so the caller can answer 503.
    pub async fn submit(&self, records: Vec<Record>) -> Result<Vec<Outcome>, SubmitError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (ack, done) = oneshot::channel();
        let shard = self.shard(&records);
        self.in_flight[shard].fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&self.in_flight[shard]);
        self.shards[shard]
            .try_send(Submission { records, ack })
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

async fn run(
    mut rx: mpsc::Receiver<Submission>,
    store: Arc<dyn Store>,
    config: BatchConfig,
    stop: CancellationToken,
    publisher: Option<PublisherHandle>,
    metrics: Arc<Metrics>,
) {
    let mut carried: Option<Submission> = None;
    loop {
        let first = match carried.take() {
            Some(s) => s,
            None => {
                let next = tokio::select! {
                    s = rx.recv() => s,
                    _ = stop.cancelled(), if !rx.is_closed() => {
                        rx.close();
                        continue;
                    }
                };
                match next {
                    Some(s) => s,
                    None => break,
                }
            }
        };
        let mut size = first.records.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + config.linger;
        while size < config.max_records {
            let next = match rx.try_recv() {
                Ok(s) => s,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(s)) => s,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            // A submission is never split: one request, one transaction.
            if size + next.records.len() > config.max_records {
                carried = Some(next);
                break;
            }
            size += next.records.len();
            batch.push(next);
        }
        metrics.batch_taken(size, rx.len());
        commit(store.as_ref(), batch, &config, publisher.as_ref(), &metrics).await;
    }
    tracing::debug!("batcher drained and stopped");
}

/// The outbox entries of a batch: one per record id (the same record twice in a batch is
/// one row, so one message), none for dead letters.
fn outbox_entries(records: &[Record]) -> Vec<OutboxEntry> {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    records
        .iter()
        .filter(|r| seen.insert(r.id()))
        .filter_map(message::encode)
        .collect()
}

async fn commit(
    store: &dyn Store,
    batch: Vec<Submission>,
    config: &BatchConfig,
    publisher: Option<&PublisherHandle>,
    metrics: &Metrics,
) {
    let mut records = Vec::with_capacity(batch.iter().map(|s| s.records.len()).sum());
    let mut acks = Vec::with_capacity(batch.len());
    for s in batch {
        acks.push((s.records.len(), s.ack));
        records.extend(s.records);
    }
    let entries = outbox_entries(&records);
    let mut backoff = config.retry_backoff;
    let mut attempt = 0;
    let started = std::time::Instant::now();
    let result = loop {
        match store.commit(&records, &entries).await {
            Ok(outcomes) => break Ok(outcomes),
            Err(e) => {
                let retrying = e.is_transient() && attempt < config.commit_retries;
                metrics.commit_attempt_failed(
                    &error_chain(&e),
                    e.is_transient(),
                    attempt + 1,
                    records.len(),
                    retrying,
                );
                if !retrying {
                    break Err(e);
                }
                attempt += 1;
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(Duration::from_secs(5));
            }
        }
    };
    metrics.commit_finished(started.elapsed());
    match result {
        Ok(outcomes) => {
            if let Some(publisher) = publisher {
                let inserted: std::collections::HashSet<_> = records
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| **o == Outcome::Inserted)
                    .map(|(r, _)| r.id())
                    .collect();
                publisher.offer(
                    entries
                        .into_iter()
                        .filter(|e| inserted.contains(&e.id))
                        .collect(),
                );
            }
            let mut outcomes = outcomes.into_iter();
            for (n, ack) in acks {
                // A requester that went away (client hung up) no longer needs its answer; its
                // records are committed all the same.
                let _ = ack.send(Ok(outcomes.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            let err = SubmitError::Store {
                transient: e.is_transient(),
            };
            for (_, ack) in acks {
                let _ = ack.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
