//! The batcher: records from all requests flow through bounded queues (one per worker) into
//! batches of up to `batch.max_records` records, each committed in one transaction: at once when
//! the worker has no commit in flight, else as soon as that commit ends, with whatever arrived
//! meanwhile (group commit). Every request waits on a oneshot for its own records' outcome, so
//! a 2xx is only ever sent after the commit.

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
use crate::spool::{Entry, Spool, SpoolError};
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

/// What became of a submission's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// One per record, in order. For a spooled submission every record counts as inserted:
    /// duplicates are recognised when the spool is drained.
    pub outcomes: Vec<Outcome>,
    /// Kept in the local spool (fsync'd), not yet in the database.
    pub spooled: bool,
}

struct Submission {
    records: Vec<Record>,
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
            tasks.spawn(drain_spool(worker.clone(), stop.clone()));
        }
        let mut shards = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(per_worker);
            shards.push(tx);
            tasks.spawn(run(rx, worker.clone(), stop.clone()));
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
    pub async fn submit(&self, records: Vec<Record>) -> Result<Submitted, SubmitError> {
        if records.is_empty() {
            return Ok(Submitted {
                outcomes: Vec::new(),
                spooled: false,
            });
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

/// A batch being gathered: its records, their outbox entries (encoded as each submission
/// arrives, while the previous commit is in flight), and where each submission's answer goes.
#[derive(Default)]
struct Prepared {
    records: Vec<Record>,
    entries: OutboxEntries,
    acks: Acks,
}

impl Prepared {
    fn push(&mut self, s: Submission) {
        s.records.iter().for_each(|r| self.entries.add(r));
        self.acks.push((s.records.len(), s.ack));
        self.records.extend(s.records);
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

/// The outbox entries of a batch: one per record id (the same record twice in a batch is
/// one row, so one message), none for dead letters.
#[derive(Default)]
struct OutboxEntries {
    entries: Vec<OutboxEntry>,
    seen: std::collections::HashSet<uuid::Uuid>,
}

impl OutboxEntries {
    fn add(&mut self, record: &Record) {
        if self.seen.insert(record.id()) {
            self.entries.extend(message::encode(record));
        }
    }
}

/// What a gathering batch waited for.
enum Waited {
    Submission(Submission),
    CommitEnded,
}

/// A worker's loop: adaptive group commit, one commit in flight at a time.
///
/// With no commit in flight, a submission is committed at once with whatever else is already
/// queued (no linger). While a commit is in flight, what arrives is gathered (and its outbox
/// entries encoded) into the next batch, which is committed the moment the first one ends. So a
/// lone request pays one commit, and under load the batches grow by themselves to what arrives
/// during one commit, up to `batch.max_records`. `batch.linger`, when set, additionally holds an
/// open batch up to that long for more records (bigger batches, at the cost of latency).
///
/// Commits of one worker never overlap, so they complete in the order their submissions were
/// taken: one call's records (always on the same worker) are committed in arrival order.
async fn run(mut rx: mpsc::Receiver<Submission>, worker: Worker, stop: CancellationToken) {
    let max = worker.config.max_records;
    let linger = worker.config.linger;
    let mut carried: Option<Submission> = None;
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        // The batch's first submission: carried over, or the next to arrive. An idle worker
        // (nothing in flight) waits here.
        let first = match carried.take() {
            Some(s) => Some(s),
            None => tokio::select! {
                s = rx.recv() => s,
                _ = stop.cancelled(), if !rx.is_closed() => {
                    rx.close();
                    continue;
                }
            },
        };
        let Some(first) = first else { break };
        let mut batch = Prepared::default();
        batch.push(first);
        let deadline = Instant::now() + linger;
        // Gather what is queued; while the previous commit runs, what arrives meanwhile; with
        // a linger, what arrives before it ends.
        while batch.len() < max {
            let next = match rx.try_recv() {
                Ok(s) => s,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let lingering = !linger.is_zero() && Instant::now() < deadline;
                    let waited = match in_flight.as_mut().filter(|c| !c.is_finished()) {
                        None if !lingering => break,
                        None => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(s)) => Waited::Submission(s),
                            Ok(None) | Err(_) => break,
                        },
                        Some(commit) => tokio::select! {
                            biased;
                            _ = commit => Waited::CommitEnded,
                            s = rx.recv() => match s {
                                Some(s) => Waited::Submission(s),
                                None => break,
                            },
                        },
                    };
                    match waited {
                        Waited::Submission(s) => s,
                        // The previous commit ended: this batch goes now (or, lingering, once
                        // the linger is over or it is full).
                        Waited::CommitEnded => {
                            in_flight = None;
                            if lingering {
                                continue;
                            }
                            break;
                        }
                    }
                }
            };
            // A submission is never split: one request, one transaction.
            if batch.len() + next.records.len() > max {
                carried = Some(next);
                break;
            }
            batch.push(next);
        }
        if let Some(commit) = in_flight.take() {
            let _ = commit.await;
        }
        worker.metrics.batch_taken(batch.len(), rx.len());
        let w = worker.clone();
        in_flight = Some(tokio::spawn(async move { w.commit_prepared(batch).await }));
    }
    if let Some(commit) = in_flight.take() {
        let _ = commit.await;
    }
    tracing::debug!("batcher drained and stopped");
}

fn outbox_entries(records: &[Record]) -> Vec<OutboxEntry> {
    let mut entries = OutboxEntries::default();
    records.iter().for_each(|r| entries.add(r));
    entries.entries
}

impl Worker {
    /// Commits a batch and answers its submissions: to the spool while it is active; else to
    /// the database, spooling the batch instead when the commit fails for now or takes longer
    /// than `spool.fallback_after` (with spooling on).
    async fn commit_prepared(&self, batch: Prepared) {
        let Prepared {
            records,
            entries: OutboxEntries { entries, .. },
            acks,
        } = batch;
        if let Some(spooling) = &self.spooling {
            if let Some(result) = spooling.spool.append(&records, false).await {
                return answer_spooled(acks, result);
            }
        }
        let started = std::time::Instant::now();
        let result = match &self.spooling {
            None => self.commit_with_retries(&records, &entries).await,
            Some(spooling) => {
                let attempt = self.store.commit(&records, &entries);
                match tokio::time::timeout(spooling.fallback_after, attempt).await {
                    Ok(Err(e)) if e.is_transient() => {
                        let reason = format!("the commit failed: {}", error_chain(&e));
                        self.metrics.commit_finished(started.elapsed());
                        return self.spool_instead(spooling, records, acks, &reason).await;
                    }
                    // Abandoned, not undone: if it commits after all, the drain finds its
                    // records already stored (the same ids) and stores nothing twice.
                    Err(_) => {
                        let reason = format!(
                            "the commit took longer than spool.fallback_after ({:?})",
                            spooling.fallback_after
                        );
                        self.metrics.commit_finished(started.elapsed());
                        return self.spool_instead(spooling, records, acks, &reason).await;
                    }
                    Ok(Err(e)) => {
                        self.metrics.commit_attempt_failed(
                            &error_chain(&e),
                            false,
                            1,
                            records.len(),
                            false,
                        );
                        Err(e)
                    }
                    Ok(Ok(outcomes)) => Ok(outcomes),
                }
            }
        };
        self.metrics.commit_finished(started.elapsed());
        match result {
            Err(e) if !e.is_transient() => self.isolate(records, acks).await,
            Ok(outcomes) => {
                self.hand_off(&records, &outcomes, entries);
                let mut outcomes = outcomes.into_iter();
                for (n, ack) in acks {
                    // A requester that went away (client hung up) no longer needs its
                    // answer; its records are committed all the same.
                    let _ = ack.send(Ok(Submitted {
                        outcomes: outcomes.by_ref().take(n).collect(),
                        spooled: false,
                    }));
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

    /// Answers the submissions of a batch the database refused for good, each committed on
    /// its own (see [`isolate`]): a poisoned record fails alone, never its batch-mates.
    async fn isolate(&self, records: Vec<Record>, acks: Acks) {
        let mut rest = records.as_slice();
        for (n, ack) in acks {
            let (mine, others) = rest.split_at(n.min(rest.len()));
            rest = others;
            let answer = match self.commit_alone(mine).await {
                Ok(outcomes) => Ok(Submitted {
                    outcomes,
                    spooled: false,
                }),
                Err(e) if e.is_transient() => match &self.spooling {
                    Some(spooling) => {
                        let reason = format!("the commit failed: {}", error_chain(&e));
                        self.spool_instead(spooling, mine.to_vec(), vec![(n, ack)], &reason)
                            .await;
                        continue;
                    }
                    None => Err(SubmitError::Store { transient: true }),
                },
                Err(e) => {
                    self.metrics
                        .commit_attempt_failed(&error_chain(&e), false, 1, n, false);
                    Err(SubmitError::Store { transient: false })
                }
            };
            let _ = ack.send(answer);
        }
    }

    /// Commits with up to `batch.commit_retries` retries of transient failures (without a
    /// spool, a push can only wait or fail).
    async fn commit_with_retries(
        &self,
        records: &[Record],
        entries: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, crate::store::StoreError> {
        let mut backoff = self.config.retry_backoff;
        let mut attempt = 0;
        loop {
            match self.store.commit(records, entries).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) => {
                    let retrying = e.is_transient() && attempt < self.config.commit_retries;
                    self.metrics.commit_attempt_failed(
                        &error_chain(&e),
                        e.is_transient(),
                        attempt + 1,
                        records.len(),
                        retrying,
                    );
                    if !retrying {
                        return Err(e);
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Spools a batch the database could not take in time, and answers it.
    async fn spool_instead(
        &self,
        spooling: &Spooling,
        records: Vec<Record>,
        acks: Acks,
        reason: &str,
    ) {
        self.metrics.batch_spooled(records.len(), reason);
        let result = spooling
            .spool
            .append(&records, true)
            .await
            .unwrap_or(Err(SpoolError::Closed));
        answer_spooled(acks, result);
    }

    /// Hands the entries of the records that were new to the publisher.
    fn hand_off(&self, records: &[Record], outcomes: &[Outcome], entries: Vec<OutboxEntry>) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let inserted: std::collections::HashSet<_> = records
            .iter()
            .zip(outcomes)
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
}

/// Each submission's size and where its answer goes.
type Acks = Vec<(usize, oneshot::Sender<Result<Submitted, SubmitError>>)>;

/// Answers the submissions of a batch handed to the spool: 2xx (spooled) once it is on disk.
fn answer_spooled(acks: Acks, result: Result<(), SpoolError>) {
    for (n, ack) in acks {
        let _ = ack.send(match &result {
            Ok(()) => Ok(Submitted {
                outcomes: vec![Outcome::Inserted; n],
                spooled: true,
            }),
            Err(e) => Err(SubmitError::SpoolFull(e.clone())),
        });
    }
}

/// Commits what the spool holds, oldest first, through the same commit as a direct batch (a
/// record a crash mid-drain already committed is recognised by its id and stored once), hands
/// the new entries to the publisher, deletes each entry once committed. A transient failure
/// waits and tries the same entry again; a record the database refuses for good becomes a
/// dead letter and the rest is committed (see [`isolate`]); an entry is set aside in the spool
/// only when not even that can be stored. When the spool is empty it turns inactive: batches go direct again.
async fn drain_spool(worker: Worker, stop: CancellationToken) {
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
        if !spool.is_active() {
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
            match entries.iter().position(|e| e.records.is_err()) {
                Some(0) => {
                    let entry = &entries[0];
                    let reason = entry.records.as_ref().err().cloned().unwrap_or_default();
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
                        _ = tokio::time::sleep(backoff) => {}
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
    let records: Vec<Record> = entries
        .iter()
        .filter_map(|e| e.records.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let outbox = outbox_entries(&records);
    match worker.store.commit(&records, &outbox).await {
        Ok(outcomes) => {
            worker.hand_off(&records, &outcomes, outbox);
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
            let failure = match worker.commit_alone(&records).await {
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

mod isolate;

#[cfg(test)]
mod tests;
