//! Catching up: pending entries claimed from the outbox in commit order (after a failure, a
//! dropped hand-off, a crash or another replica gone) and sent until none is left; in live
//! mode, a periodic sweep for entries older than `sweep_grace`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use uuid::Uuid;

use super::producer::Restart;
use super::{Mode, Publisher, Regions, Report, MIN_BACKOFF};
use crate::domain::{Claimed, OutboxEntry};
use crate::error::error_chain;
use crate::message;
use crate::store::{Store, StoreError};

impl Publisher {
    /// Publishes pending entries from the outbox in commit order until none is left; returns
    /// to the fast path then. On failure, waits (backing off) and stays catching up.
    pub(super) async fn catch_up(&mut self) {
        // The fast path's messages still in flight are settled first: their entries are
        // unpublished in the outbox too, and claiming them now would send them a second time
        // while librdkafka still holds the first.
        let mut inflight = std::mem::take(&mut self.inflight);
        let delivered: HashSet<Uuid> = self.delivered.iter().copied().collect();
        let ids: Vec<Uuid> = self.unsettled.difference(&delivered).copied().collect();
        self.settle_all(&mut inflight, ids).await;
        self.flush().await;
        self.watch_progress();
        self.restart_producer();
        // A producer that failed for good (fenced after a long broker pause, a lost
        // idempotent sequence) is replaced at once, once per catch-up, not after a pause that
        // may have grown to kafka.max_backoff while the broker was away.
        let mut replaced_fatal = false;
        loop {
            // Hand-offs queued so far were committed before the claim below, so the claim
            // sees their entries (this replica's own, of any age, its earlier lives' included):
            // dropping them loses nothing and keeps commit order. Another replica's entries are
            // claimed only once older than sweep_grace: younger ones are in flight from its
            // memory.
            while self.rx.try_recv().is_ok() {}
            // Likewise every hand-off dropped so far: the claim below sees its entries.
            self.missed.store(false, Ordering::SeqCst);
            let claimed = match self.claim(true).await {
                Ok(claimed) => self.ready(claimed).await,
                Err(e) => Err(e),
            };
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "could not read the outbox");
                    self.set_error(Some(format!("store: {e}")));
                    self.pause().await;
                    return;
                }
            };
            if claimed.is_empty() {
                if !self.go_live() {
                    continue;
                }
                self.backoff = MIN_BACKOFF;
                self.set_error(None);
                self.progressed();
                return;
            }
            if !self.publish_claimed(claimed).await {
                let fatal = self.note_fatal_error() || self.restart == Some(Restart::Fatal);
                if !replaced_fatal && fatal {
                    replaced_fatal = true;
                    self.restart_producer();
                    if self.restart.is_none() {
                        tracing::warn!(
                            "replaced the failed Kafka producer; catching up again at once"
                        );
                        continue;
                    }
                }
                self.pause().await;
                return;
            }
            self.backoff = MIN_BACKOFF;
        }
    }

    /// Takes hand-offs again after a claim found nothing pending, unless one was dropped
    /// since that claim began: its entries, committed after the claim read the outbox, are in
    /// no claim yet, and the hand-offs taken from now on (the same calls' later records among
    /// them) would overtake them. Then it stays catching up, and returns `false`: claim again.
    ///
    /// Hand-offs are taken from the moment `live` is set; one dropped before that sets
    /// `missed` after reading `live` unset. Both sides use sequentially consistent order, so
    /// either the swap below sees `missed`, or that hand-off's `catch_up()` clears `live` after
    /// this sets it, and every hand-off after it is dropped too, for the next tick's catch-up.
    fn go_live(&mut self) -> bool {
        self.live.store(true, Ordering::SeqCst);
        if self.missed.swap(false, Ordering::SeqCst) {
            self.live.store(false, Ordering::SeqCst);
            return false;
        }
        self.set_mode(Mode::Live);
        true
    }

    /// In live mode: entries older than `sweep_grace` are not the fast path's (a crash, a
    /// dropped hand-off, another replica that went away); send them in commit order.
    pub(super) async fn sweep_leftovers(&mut self) {
        match self.claim(false).await {
            Ok(claimed) if !claimed.is_empty() => {
                // Entries this process is still delivering (a slow broker) are not leftovers:
                // give them back, so a failed delivery can be caught up at once. A commit's row
                // goes back whole when any of its records is in flight.
                let in_delivery: HashSet<Uuid> = claimed
                    .iter()
                    .filter(|e| self.unsettled.contains(&e.id()) || self.commits.is_open(e.row()))
                    .map(Claimed::row)
                    .collect();
                let (mine, claimed): (Vec<Claimed>, Vec<Claimed>) = claimed
                    .into_iter()
                    .partition(|e| in_delivery.contains(&e.row()));
                if !mine.is_empty() {
                    let ids: Vec<Uuid> = in_delivery.into_iter().collect();
                    if let Err(e) = self.store.release_outbox(&ids, "in delivery").await {
                        tracing::debug!(error = %error_chain(&e), "could not release in-flight entries");
                    }
                }
                let claimed = match self.ready(claimed).await {
                    Ok(claimed) if !claimed.is_empty() => claimed,
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "sweep could not mark an entry failed");
                        return;
                    }
                };
                tracing::info!(entries = claimed.len(), "sweeper found unpublished entries");
                if !self.publish_claimed(claimed).await {
                    self.set_mode(Mode::CatchingUp);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error_chain(&e), "sweep could not read the outbox"),
        }
    }

    /// Sends claimed entries and waits for every delivery report. Returns whether all of them
    /// were settled (delivered or permanently failed); the others' rows are released for a
    /// retry.
    async fn publish_claimed(&mut self, claimed: Vec<(OutboxEntry, Uuid)>) -> bool {
        for (entry, row) in &claimed {
            if *row != entry.id {
                self.commits.track(*row, [entry.id]);
            }
        }
        let claimed: Vec<OutboxEntry> = claimed.into_iter().map(|(entry, _)| entry).collect();
        let mut pending: FuturesUnordered<BoxFuture<'static, Report>> = FuturesUnordered::new();
        std::mem::swap(&mut self.inflight, &mut pending);
        // Stopped at the first entry refused for now: the ones after it wait for the next
        // attempt, so none overtakes it in its partition.
        let sent = claimed
            .iter()
            .position(|entry| !self.send(entry))
            .map_or(claimed.len(), |refused| refused + 1);
        // `self.inflight` now holds only this batch's futures; the live ones wait aside.
        std::mem::swap(&mut self.inflight, &mut pending);
        let mut retry = self
            .settle_all(&mut pending, claimed[..sent].iter().map(|e| e.id))
            .await;
        for entry in &claimed[sent..] {
            retry.push(self.commits.abandon(entry.id));
        }
        self.flush().await;
        if retry.is_empty() {
            return true;
        }
        retry.sort_unstable();
        retry.dedup();
        let error = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error
            .clone()
            .unwrap_or_default();
        if let Err(e) = self.store.release_outbox(&retry, &error).await {
            tracing::warn!(error = %error_chain(&e), "could not release outbox entries (their lease will expire)");
        }
        false
    }

    /// Claims pending entries in commit order (see [`crate::store::Store::claim_outbox`]):
    /// `own`, this replica's of any age; the others once older than `sweep_grace`.
    async fn claim(&mut self, own: bool) -> Result<Vec<Claimed>, StoreError> {
        self.store
            .claim_outbox(
                self.config.sweep_batch,
                self.lease(),
                self.config.sweep_grace,
                own,
            )
            .await
    }

    /// The claimed entries' messages, each with its outbox row (see [`ready`]).
    async fn ready(
        &mut self,
        claimed: Vec<Claimed>,
    ) -> Result<Vec<(OutboxEntry, Uuid)>, StoreError> {
        ready_in_rows(&*self.store, &self.regions, claimed).await
    }
}

/// The claimed entries' messages, rebuilt from their records' rows where the outbox keeps none
/// (`regions`: each source's default region, which the live messages' numbers were written in).
/// An entry that can no longer be rebuilt is marked failed: kept with the reason (`/readyz`,
/// `ringback_outbox_failed`), never claimed again.
pub async fn ready(
    store: &dyn Store,
    regions: &Regions,
    claimed: Vec<Claimed>,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let ready = ready_in_rows(store, regions, claimed).await?;
    Ok(ready.into_iter().map(|(entry, _)| entry).collect())
}

/// [`ready`], each message with the id of the outbox row holding it.
async fn ready_in_rows(
    store: &dyn Store,
    regions: &Regions,
    claimed: Vec<Claimed>,
) -> Result<Vec<(OutboxEntry, Uuid)>, StoreError> {
    let mut ready = Vec::with_capacity(claimed.len());
    for entry in claimed {
        let row = entry.row();
        match entry {
            Claimed::Ready(entry) => ready.push((entry, row)),
            Claimed::Stored { kind, record, .. } => {
                let region = regions.get(&record.source).copied();
                match message::rebuild(kind, &record, region) {
                    Ok(entry) => ready.push((entry, row)),
                    Err(e) => {
                        let reason = error_chain(&e);
                        tracing::error!(id = %record.id, reason, "an outbox entry cannot be published");
                        store.mark_failed(record.id, &reason).await?;
                    }
                }
            }
        }
    }
    Ok(ready)
}
