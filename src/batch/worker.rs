//! A batch worker: gathers submissions into a batch while its previous commit is in flight,
//! commits it in one transaction (retrying what may pass, spooling what cannot wait, isolating
//! what the database refuses), answers each submission, hands the new entries to the publisher.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Spooling, Submission, SubmitError, Submitted, Worker};
use crate::domain::{OutboxEntry, Outcome, Row};
use crate::error::error_chain;
use crate::message;
use crate::spool::SpoolError;

/// A batch being gathered: its rows, their outbox entries (encoded as each submission arrives,
/// while the previous commit is in flight), and where each submission's answer goes.
#[derive(Default)]
struct Prepared {
    rows: Vec<Row>,
    entries: OutboxEntries,
    acks: Acks,
}

impl Prepared {
    fn push(&mut self, s: Submission) {
        s.rows.iter().for_each(|r| self.entries.add(r));
        self.acks.push((s.rows.len(), s.ack));
        self.rows.extend(s.rows);
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The outbox entries of a batch: one per record id (the same record twice in a batch is
/// one row, so one message), none for the rows that are not records.
#[derive(Default)]
struct OutboxEntries {
    entries: Vec<OutboxEntry>,
    seen: std::collections::HashSet<uuid::Uuid>,
}

impl OutboxEntries {
    fn add(&mut self, row: &Row) {
        if let Some(record) = row.record() {
            if self.seen.insert(record.id()) {
                self.entries.push(message::encode(record));
            }
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
pub(super) async fn run(
    mut rx: mpsc::Receiver<Submission>,
    worker: Worker,
    stop: CancellationToken,
) {
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
            if batch.len() + next.rows.len() > max {
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

pub(super) fn outbox_entries(rows: &[Row]) -> Vec<OutboxEntry> {
    let mut entries = OutboxEntries::default();
    rows.iter().for_each(|r| entries.add(r));
    entries.entries
}

impl Worker {
    /// Commits a batch and answers its submissions: to the spool while it is active; else to
    /// the database, spooling the batch instead when the commit fails for now or takes longer
    /// than `spool.fallback_after` (with spooling on).
    async fn commit_prepared(&self, batch: Prepared) {
        let Prepared {
            rows,
            entries: OutboxEntries { entries, .. },
            acks,
        } = batch;
        if let Some(spooling) = &self.spooling {
            if let Some(result) = spooling.spool.append(&rows, false).await {
                return answer_spooled(acks, result);
            }
        }
        let started = std::time::Instant::now();
        let result = match &self.spooling {
            None => self.commit_with_retries(&rows, &entries).await,
            Some(spooling) => {
                let attempt = self.store.commit(&rows, &entries);
                match tokio::time::timeout(spooling.fallback_after, attempt).await {
                    Ok(Err(e)) if e.is_transient() => {
                        let reason = format!("the commit failed: {}", error_chain(&e));
                        self.metrics.commit_finished(started.elapsed());
                        return self.spool_instead(spooling, rows, acks, &reason).await;
                    }
                    // Abandoned, not undone: if it commits after all, the drain finds its
                    // records already stored (the same ids) and stores nothing twice.
                    Err(_) => {
                        let reason = format!(
                            "the commit took longer than spool.fallback_after ({:?})",
                            spooling.fallback_after
                        );
                        self.metrics.commit_finished(started.elapsed());
                        return self.spool_instead(spooling, rows, acks, &reason).await;
                    }
                    Ok(Err(e)) => {
                        self.metrics.commit_attempt_failed(
                            &error_chain(&e),
                            false,
                            1,
                            rows.len(),
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
            Err(e) if !e.is_transient() => self.isolate(rows, acks).await,
            Ok(outcomes) => {
                self.hand_off(&rows, &outcomes, entries);
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
    pub(super) async fn isolate(&self, rows: Vec<Row>, acks: Acks) {
        let mut rest = rows.as_slice();
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
    pub(super) async fn commit_with_retries(
        &self,
        rows: &[Row],
        entries: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, crate::store::StoreError> {
        let mut backoff = self.config.retry_backoff;
        let mut attempt = 0;
        loop {
            match self.store.commit(rows, entries).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) => {
                    let retrying = e.is_transient() && attempt < self.config.commit_retries;
                    self.metrics.commit_attempt_failed(
                        &error_chain(&e),
                        e.is_transient(),
                        attempt + 1,
                        rows.len(),
                        retrying,
                    );
                    if !retrying {
                        return Err(e);
                    }
                    attempt += 1;
                    tokio::time::sleep(crate::retry::jittered(backoff)).await;
                    backoff = backoff.saturating_mul(2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Spools a batch the database could not take in time, and answers it.
    pub(super) async fn spool_instead(
        &self,
        spooling: &Spooling,
        rows: Vec<Row>,
        acks: Acks,
        reason: &str,
    ) {
        self.metrics.batch_spooled(rows.len(), reason);
        let result = spooling
            .spool
            .append(&rows, true)
            .await
            .unwrap_or(Err(SpoolError::Closed));
        answer_spooled(acks, result);
    }

    /// Has the publisher catch up from the outbox, in commit order, instead of taking entries
    /// handed to it (see `drain`).
    pub(super) fn catch_up_instead(&self) {
        if let Some(publisher) = &self.publisher {
            publisher.catch_up();
        }
    }

    /// Hands the entries of the records that were new to the publisher.
    pub(super) fn hand_off(&self, rows: &[Row], outcomes: &[Outcome], entries: Vec<OutboxEntry>) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let inserted: std::collections::HashSet<_> = rows
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
