//! The fast path: committed entries handed over in memory are sent at once, and every delivery
//! report is settled here, whichever path sent the message.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureRecord, Producer as _};
use uuid::Uuid;

use super::producer::Restart;
use super::{kafka, Mode, Publisher, Report};
use crate::domain::OutboxEntry;
use crate::error::error_chain;
use crate::metrics::Delivered;

impl Publisher {
    /// Sends entries on the fast path, without waiting for their delivery. At the first one
    /// refused for now, the rest are left to the catch-up that the refusal starts, which sends
    /// them from the outbox after it, in commit order.
    pub(super) fn send_all(&mut self, entries: Vec<OutboxEntry>) {
        if self.commit_rows {
            self.commits.track_hand_off(&entries);
        }
        for (i, entry) in entries.iter().enumerate() {
            if !self.send(entry) {
                // The rest wait in the outbox (their commit's row, given back whole); so must
                // every later hand-off, or it would overtake them: caught up from the outbox,
                // in commit order.
                for unsent in &entries[i + 1..] {
                    self.commits.abandon(unsent.id);
                }
                self.missed.store(true, Ordering::Relaxed);
                self.set_mode(Mode::CatchingUp);
                break;
            }
        }
    }

    /// Hands an entry to the producer. A refusal at enqueue time (queue full, message too
    /// large) becomes an immediate failed delivery, so every outcome is settled in one place.
    /// Returns `false` when the producer refused the entry at once for a reason that may pass
    /// (its queue full, the topic's metadata not there yet): the entries after it must not be
    /// sent before it is, or they would overtake it in its partition.
    pub(super) fn send(&mut self, entry: &OutboxEntry) -> bool {
        let Some(producer) = self.producer.as_ref().map(|p| &p.current) else {
            // Outbox-only mode sends nothing; the entry waits in the outbox.
            return false;
        };
        let topic = self.config.topic(entry.kind.as_str());
        let record = FutureRecord::to(&topic)
            .key(entry.key.as_bytes())
            .payload(entry.payload.as_bytes())
            .headers(kafka::headers(entry));
        let id = entry.id;
        let sent = std::time::Instant::now();
        self.unsettled.insert(id);
        match producer.send_result(record) {
            Ok(future) => {
                self.inflight.push(Box::pin(async move {
                    let result = match future.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e),
                        Err(_canceled) => Err(rdkafka::error::KafkaError::Canceled),
                    };
                    Report {
                        id,
                        topic,
                        sent,
                        result,
                    }
                }));
                true
            }
            Err((e, _)) => {
                let permanent = kafka::is_permanent(&e);
                self.inflight.push(Box::pin(std::future::ready(Report {
                    id,
                    topic,
                    sent,
                    result: Err(e),
                })));
                permanent
            }
        }
    }

    /// Handles one delivery report. Returns whether it was delivered.
    pub(super) async fn settle(&mut self, done: Report) -> bool {
        let outcome = match &done.result {
            Ok(()) => Delivered::Delivered,
            Err(e) if kafka::is_permanent(e) => Delivered::Failed,
            Err(_) => Delivered::Retry,
        };
        self.metrics
            .kafka_settled(&done.topic, outcome, done.sent.elapsed());
        match done.result {
            Ok(()) => {
                self.delivered.push(done.id);
                if let Some(row) = self.commits.settled(done.id, true) {
                    self.marks.push(row);
                }
                self.progressed();
                true
            }
            Err(e) if outcome == Delivered::Failed => {
                self.unsettled.remove(&done.id);
                tracing::error!(id = %done.id, topic = %done.topic, error = %e, "message can never be delivered; marked failed in the outbox");
                if let Err(se) = self.store.mark_failed(done.id, &e.to_string()).await {
                    tracing::warn!(error = %error_chain(&se), "could not mark an outbox entry failed");
                }
                // Its commit's row is published once the others are.
                match self.commits.settled(done.id, false) {
                    Some(row) if row != done.id => self.marks.push(row),
                    _ => {}
                }
                false
            }
            Err(e) => {
                self.unsettled.remove(&done.id);
                self.commits.abandon(done.id);
                // What librdkafka still queues behind the failed message would overtake it
                // (its re-send comes from the outbox, after them): purge it, so it fails too
                // and everything is re-sent from the outbox in commit order. A purged
                // message's own report is no new failure.
                if !matches!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::PurgeQueue)
                ) {
                    if let Some(p) = &self.producer {
                        p.current
                            .purge(rdkafka::producer::PurgeConfig::default().queue());
                    }
                }
                if !self.note_fatal_error() && kafka::is_fenced(&e) && self.restart.is_none() {
                    tracing::error!(error = %e, "the broker fenced the Kafka producer; it will be replaced");
                    self.restart = Some(Restart::Fatal);
                }
                if self.mode == Mode::Live {
                    tracing::warn!(error = %e, "delivery failed; catching up from the outbox");
                    self.set_mode(Mode::CatchingUp);
                }
                self.set_error(Some(e.to_string()));
                false
            }
        }
    }

    /// Marks the outbox rows whose entries were all delivered published, in one statement;
    /// first trims the commits' rows given back of their records delivered meanwhile.
    pub(super) async fn flush(&mut self) {
        let trims = self.commits.take_trims();
        for (i, (row, delivered)) in trims.iter().enumerate() {
            if let Err(e) = self.store.trim_commit_row(*row, delivered).await {
                // At worst those records are sent again (consumers dedupe on ce_id).
                tracing::warn!(error = %error_chain(&e), "could not trim a commit's outbox row");
                self.commits.keep_trims(trims[i..].to_vec());
                break;
            }
        }
        if self.delivered.is_empty() && self.marks.is_empty() {
            return;
        }
        let keep = !self.config.retention.is_zero();
        let marked = if self.marks.is_empty() {
            Ok(())
        } else {
            self.store.mark_published(&self.marks, keep).await
        };
        match marked {
            Ok(()) => {
                self.marks.clear();
                for id in self.delivered.drain(..) {
                    self.unsettled.remove(&id);
                }
            }
            // Kept for the next flush; at worst the sweeper re-sends them (consumers dedupe
            // on ce_id).
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not mark entries published"),
        }
    }

    /// Waits for the reports of `pending` deliveries, at most `delivery_bound`, settling each;
    /// returns the outbox rows of those that were not delivered for now (failed for now, or
    /// never reported), to give back. Reports missing at the bound ask for a new producer.
    pub(super) async fn settle_all(
        &mut self,
        pending: &mut FuturesUnordered<BoxFuture<'static, Report>>,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Vec<Uuid> {
        let mut unreported: HashSet<Uuid> = ids.into_iter().collect();
        let mut retry = Vec::new();
        let until = tokio::time::Instant::now() + self.delivery_bound();
        loop {
            match tokio::time::timeout_at(until, pending.next()).await {
                Ok(Some(done)) => {
                    let id = done.id;
                    unreported.remove(&id);
                    let transient = done.result.as_ref().is_err_and(|e| !kafka::is_permanent(e));
                    let row = self.commits.row(id);
                    self.settle(done).await;
                    if transient {
                        retry.push(row);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::error!(
                        unreported = unreported.len(),
                        bound = ?self.delivery_bound(),
                        "delivery reports did not come within their bound; replacing the producer"
                    );
                    for id in &unreported {
                        self.unsettled.remove(id);
                    }
                    pending.clear();
                    self.set_error(Some(
                        "delivery reports missing past the message timeout".into(),
                    ));
                    self.restart = Some(Restart::Unreported);
                    for id in unreported.drain() {
                        retry.push(self.commits.abandon(id));
                    }
                    break;
                }
            }
        }
        retry
    }
}
