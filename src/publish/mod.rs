//! The outbox relay: committed records → Kafka.
//!
//! Fast path: the batcher hands every freshly committed batch's entries to the publisher in
//! memory, and the publisher sends them at once. The database is the safety net: when a
//! delivery fails, when a hand-off is dropped (the hand-off queue is full), or when a sweep
//! finds entries left by a crash or by another replica, the publisher switches to catching
//! up — claiming pending entries from the outbox in commit order (with a lease, `FOR UPDATE
//! SKIP LOCKED` on PostgreSQL, so replicas never claim the same entry) — and returns to the
//! fast path once the outbox holds nothing pending. Delivered entries are marked published
//! after the delivery report; entries that can never be delivered are marked failed.

pub mod kafka;
pub mod replay;
pub mod topics;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::KafkaConfig;
use crate::domain::{OutboxEntry, RecordKind};
use crate::error::error_chain;
use crate::metrics::{Delivered, Metrics};
use crate::store::Store;

/// Hand-offs waiting for the publisher; beyond this they are dropped (the outbox has them).
const HANDOFF_CAPACITY: usize = 1024;
/// How often delivered entries are marked published in the database (one UPDATE for all).
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// First pause after a failed attempt while catching up; doubled up to `kafka.max_backoff`.
const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// What the publisher is doing; shown in `/readyz` and the `publisher_mode` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Sending freshly committed entries as they come.
    Live,
    /// Sending pending entries from the outbox (after a failure, a dropped hand-off, a crash).
    CatchingUp,
    /// No brokers configured: entries wait in the outbox.
    OutboxOnly,
    Stopped,
}

impl Mode {
    const ALL: [Self; 4] = [
        Self::Live,
        Self::CatchingUp,
        Self::OutboxOnly,
        Self::Stopped,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::CatchingUp => "catching_up",
            Self::OutboxOnly => "outbox_only",
            Self::Stopped => "stopped",
        }
    }
}

/// The publisher's state as `/readyz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub mode: Mode,
    /// Unpublished outbox entries at the last check.
    pub backlog: i64,
    /// Age of the oldest of them, in seconds.
    pub oldest_age_seconds: f64,
    /// Entries that can never be published.
    pub failed: i64,
    /// The last delivery or database error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Since when entries have waited with no delivery succeeding (catching up, brokers
    /// unreachable or the producer stuck); `None` while deliveries progress.
    pub stalled_since: Option<chrono::DateTime<Utc>>,
    /// Times the Kafka producer was replaced because it could not make progress.
    pub producer_restarts: u64,
}

/// Hands committed entries to the publisher. Never blocks: when the publisher is behind, the
/// hand-off is dropped and the publisher catches up from the outbox.
#[derive(Clone)]
pub struct PublisherHandle {
    tx: mpsc::Sender<Vec<OutboxEntry>>,
    missed: Arc<AtomicBool>,
    /// Whether the publisher is in [`Mode::Live`]. In any other mode a hand-off would only
    /// wait in the queue to be dropped, holding up to `HANDOFF_CAPACITY` batches of messages
    /// in memory for as long as an outage lasts; it is dropped at once instead.
    live: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    /// Fault injection: set to make the producer raise a fatal error.
    inject_fatal: Arc<AtomicBool>,
}

impl PublisherHandle {
    /// Fault injection for tests: makes the producer raise a fatal error at its next tick
    /// (librdkafka's `rd_kafka_test_fatal_error`), as a lost idempotent sequence would.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        self.inject_fatal.store(true, Ordering::Relaxed);
    }

    pub fn offer(&self, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        // A hand-off dropped while the mode changes to live is caught up at the next tick.
        if !self.live.load(Ordering::Acquire) || self.tx.try_send(entries).is_err() {
            self.missed.store(true, Ordering::Relaxed);
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Makes a Kafka producer: at start, and again whenever the one in use cannot make progress.
pub type ProducerFactory = Box<dyn Fn() -> Result<FutureProducer, KafkaError> + Send + Sync>;

/// The producer in use and how to replace it.
pub struct Producer {
    current: FutureProducer,
    make: ProducerFactory,
}

impl Producer {
    /// Makes the first producer.
    pub fn new(make: ProducerFactory) -> Result<Self, KafkaError> {
        Ok(Self {
            current: make()?,
            make,
        })
    }
}

/// Why a producer is replaced (the `reason` label of `ringback_kafka_producer_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// librdkafka raised a fatal error (an idempotent producer's sequence or epoch lost): the
    /// instance can never send again.
    Fatal,
    /// Deliveries were not reported within their bound (`kafka.message_timeout` and a margin).
    Unreported,
    /// Entries waited with no delivery succeeding for `stall_after`.
    Stalled,
}

impl Restart {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Unreported => "unreported",
            Self::Stalled => "stalled",
        }
    }
}

/// Everything the publisher task owns.
pub struct Publisher {
    store: Arc<dyn Store>,
    producer: Option<Producer>,
    config: KafkaConfig,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Status>>,
    missed: Arc<AtomicBool>,
    live: Arc<AtomicBool>,
    rx: mpsc::Receiver<Vec<OutboxEntry>>,
    mode: Mode,
    inflight: FuturesUnordered<BoxFuture<'static, Delivery>>,
    /// Entries sent and not yet marked published: the sweeper leaves them alone.
    unsettled: HashSet<Uuid>,
    delivered: Vec<Uuid>,
    backoff: Duration,
    /// The last time a delivery succeeded or nothing waited: the stall watchdog's reference.
    progress: std::time::Instant,
    /// Set when the producer must be replaced before the next attempt.
    restart: Option<Restart>,
    inject_fatal: Arc<AtomicBool>,
}

struct Delivery {
    id: Uuid,
    topic: String,
    sent: std::time::Instant,
    result: Result<(), rdkafka::error::KafkaError>,
}

impl Publisher {
    /// Creates the publisher and its hand-off. `producer` is `None` in outbox-only mode.
    pub fn new(
        store: Arc<dyn Store>,
        producer: Option<Producer>,
        config: KafkaConfig,
        metrics: Arc<Metrics>,
    ) -> (Self, PublisherHandle) {
        let (tx, rx) = mpsc::channel(HANDOFF_CAPACITY);
        let mode = if producer.is_some() {
            // Whatever a previous run left is published before the fast path starts.
            Mode::CatchingUp
        } else {
            Mode::OutboxOnly
        };
        let status = Arc::new(Mutex::new(Status {
            mode,
            backlog: 0,
            oldest_age_seconds: 0.0,
            failed: 0,
            last_error: None,
            stalled_since: None,
            producer_restarts: 0,
        }));
        let missed = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicBool::new(false));
        let inject_fatal = Arc::new(AtomicBool::new(false));
        let handle = PublisherHandle {
            tx,
            missed: missed.clone(),
            live: live.clone(),
            status: status.clone(),
            inject_fatal: inject_fatal.clone(),
        };
        let publisher = Self {
            store,
            producer,
            config,
            metrics,
            status,
            missed,
            live,
            rx,
            mode,
            inflight: FuturesUnordered::new(),
            unsettled: HashSet::new(),
            delivered: Vec::new(),
            backoff: MIN_BACKOFF,
            progress: std::time::Instant::now(),
            restart: None,
            inject_fatal,
        };
        (publisher, handle)
    }

    fn set_mode(&mut self, mode: Mode) {
        if self.mode != mode {
            tracing::info!(
                from = self.mode.as_str(),
                to = mode.as_str(),
                "publisher mode"
            );
        }
        self.mode = mode;
        self.live.store(mode == Mode::Live, Ordering::Release);
        self.metrics
            .publisher_mode_changed(&Mode::ALL.map(Mode::as_str), mode.as_str());
        self.status.lock().unwrap_or_else(|p| p.into_inner()).mode = mode;
    }

    fn set_error(&self, error: Option<String>) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error = error;
    }

    /// Runs until `stop`; then publishes what it can within `kafka.shutdown_deadline`. The
    /// backlog figures are refreshed beside it, on a timer of their own, until it stops.
    pub async fn run(mut self, stop: CancellationToken) {
        self.set_mode(self.mode);
        let watching = stop.child_token();
        let watcher = watch_backlog(
            self.store.clone(),
            self.metrics.clone(),
            self.status.clone(),
            self.config.sweep_interval,
            watching.clone(),
        );
        let serve = async {
            self.serve(&stop).await;
            watching.cancel();
        };
        tokio::join!(serve, watcher);
        self.drain(self.config.shutdown_deadline).await;
        self.set_mode(Mode::Stopped);
    }

    /// The publisher's loop: the fast path, catch-ups, sweeps, until `stop` or until every
    /// handle is gone.
    async fn serve(&mut self, stop: &CancellationToken) {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.settle(done).await;
                }
                entries = self.rx.recv(), if self.mode != Mode::CatchingUp => match entries {
                    Some(entries) if self.mode == Mode::Live => self.send_all(entries),
                    Some(_) => {} // outbox-only: the entries wait in the database
                    None => break,
                },
                _ = flush.tick() => {
                    self.flush().await;
                    if self.inject_fatal.swap(false, Ordering::Relaxed) {
                        self.raise_fatal_error();
                    }
                    // A producer with a fatal error never sends again: replace it now, not
                    // when a delivery happens to fail or the stall bound passes.
                    if self.restart.is_none() {
                        if let Some((code, reason)) = self.fatal_error() {
                            tracing::error!(?code, reason, "the Kafka producer hit a fatal error; it will be replaced");
                            self.restart = Some(Restart::Fatal);
                            if self.mode == Mode::Live {
                                self.set_mode(Mode::CatchingUp);
                            }
                        }
                    }
                    if self.mode == Mode::Live {
                        if self.inflight.is_empty() {
                            self.progressed();
                        } else if self.progress.elapsed() > self.stall_after() {
                            // librdkafka owes a report for each message within the message
                            // timeout; a catch-up settles them within a bound.
                            tracing::warn!(in_flight = self.inflight.len(), "no delivery reported for too long; catching up");
                            self.set_mode(Mode::CatchingUp);
                        }
                    }
                    // Without a producer (outbox-only) there is nothing to catch up with.
                    let missed = self.missed.swap(false, Ordering::Relaxed);
                    if self.mode == Mode::CatchingUp || (missed && self.mode == Mode::Live) {
                        if self.mode == Mode::Live {
                            self.set_mode(Mode::CatchingUp);
                        }
                        // Waiting on deliveries can take up to kafka.message_timeout: stay
                        // responsive to shutdown (claimed entries' leases simply expire).
                        tokio::select! {
                            _ = self.catch_up() => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                }
                _ = sweep.tick() => {
                    self.prune().await;
                    if self.mode == Mode::Live {
                        tokio::select! {
                            _ = self.sweep_leftovers() => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                }
            }
        }
    }

    /// Sends entries on the fast path, without waiting for their delivery. At the first one
    /// refused for now, the rest are left to the catch-up that the refusal starts, which sends
    /// them from the outbox after it, in commit order.
    fn send_all(&mut self, entries: Vec<OutboxEntry>) {
        for entry in entries {
            if !self.send(&entry) {
                self.missed.store(true, Ordering::Relaxed);
                break;
            }
        }
    }

    /// Hands an entry to the producer. A refusal at enqueue time (queue full, message too
    /// large) becomes an immediate failed delivery, so every outcome is settled in one place.
    /// Returns `false` when the producer refused the entry at once for a reason that may pass
    /// (its queue full, the topic's metadata not there yet): the entries after it must not be
    /// sent before it is, or they would overtake it in its partition.
    fn send(&mut self, entry: &OutboxEntry) -> bool {
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
                    Delivery {
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
                self.inflight.push(Box::pin(std::future::ready(Delivery {
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
    async fn settle(&mut self, done: Delivery) -> bool {
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
                self.progressed();
                true
            }
            Err(e) if outcome == Delivered::Failed => {
                self.unsettled.remove(&done.id);
                tracing::error!(id = %done.id, topic = %done.topic, error = %e, "message can never be delivered; marked failed in the outbox");
                if let Err(se) = self.store.mark_failed(done.id, &e.to_string()).await {
                    tracing::warn!(error = %error_chain(&se), "could not mark an outbox entry failed");
                }
                false
            }
            Err(e) => {
                self.unsettled.remove(&done.id);
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
                if let Some((code, reason)) = self.fatal_error() {
                    if self.restart.is_none() {
                        tracing::error!(
                            ?code,
                            reason,
                            "the Kafka producer hit a fatal error; it will be replaced"
                        );
                    }
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

    /// Marks delivered entries published, in one statement.
    async fn flush(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        let keep = !self.config.retention.is_zero();
        match self.store.mark_published(&self.delivered, keep).await {
            Ok(()) => {
                for id in self.delivered.drain(..) {
                    self.unsettled.remove(&id);
                }
            }
            // Kept for the next flush; at worst the sweeper re-sends them (consumers dedupe
            // on ce_id).
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not mark entries published"),
        }
    }

    /// Lease for claimed entries: longer than librdkafka may take to deliver them.
    fn lease(&self) -> Duration {
        self.delivery_bound() + Duration::from_secs(30)
    }

    /// How long a delivery report may take: librdkafka promises one within
    /// `kafka.message_timeout`; beyond this bound the producer is deemed stuck and replaced.
    fn delivery_bound(&self) -> Duration {
        self.config.message_timeout + Duration::from_secs(10)
    }

    /// How long entries may wait with no delivery succeeding before the producer is replaced
    /// (and the publisher reported stalled from then on, until a delivery succeeds).
    fn stall_after(&self) -> Duration {
        2 * self.delivery_bound()
    }

    /// A delivery succeeded, or nothing waits: not stalled.
    fn progressed(&mut self) {
        self.progress = std::time::Instant::now();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = status.stalled_since.take() {
            tracing::info!(%since, "the publisher delivers again");
            self.metrics.publisher_stalled(false);
        }
    }

    /// Fault injection (see [`PublisherHandle::inject_fatal_error`]).
    fn raise_fatal_error(&self) {
        if let Some(p) = &self.producer {
            // SAFETY: the handle is the live producer's; librdkafka copies the reason.
            unsafe {
                rdkafka::bindings::rd_kafka_test_fatal_error(
                    p.current.client().native_ptr(),
                    rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                    c"injected by a test".as_ptr(),
                );
            }
        }
    }

    /// The producer's fatal error, if it has one: it can never send again.
    fn fatal_error(&self) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
        self.producer.as_ref()?.current.client().fatal_error()
    }

    /// Marks the publisher stalled when entries have waited `stall_after` with no delivery,
    /// and asks for a new producer each time that much more passes.
    fn watch_progress(&mut self) {
        if self.producer.is_none() || self.progress.elapsed() < self.stall_after() {
            return;
        }
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            if status.stalled_since.is_none() {
                let since = Utc::now()
                    - chrono::Duration::from_std(self.progress.elapsed()).unwrap_or_default();
                status.stalled_since = Some(since);
                tracing::error!(
                    %since,
                    backlog = status.backlog,
                    last_error = status.last_error.as_deref(),
                    "the publisher is stalled: entries wait and no delivery succeeds"
                );
                self.metrics.publisher_stalled(true);
            }
        }
        self.restart.get_or_insert(Restart::Stalled);
        // The next request for a new producer comes no sooner than `stall_after` from now.
        self.progress = std::time::Instant::now();
    }

    /// Replaces the producer when asked to. What the old one still holds is purged (its
    /// deliveries report as failed, and the entries wait in the outbox); it is dropped off
    /// the runtime's threads, since dropping joins librdkafka's.
    fn restart_producer(&mut self) {
        // A fatal error is why, whatever was noticed first (reports that never came, a
        // stall): the producer could never have sent again.
        let fatal = self.fatal_error().is_some();
        let (Some(reason), Some(producer)) = (self.restart.take(), self.producer.as_mut()) else {
            return;
        };
        let reason = if fatal { Restart::Fatal } else { reason };
        match (producer.make)() {
            Ok(new) => {
                let old = std::mem::replace(&mut producer.current, new);
                tokio::task::spawn_blocking(move || drop(old));
                let restarts = {
                    let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.producer_restarts += 1;
                    status.producer_restarts
                };
                self.metrics.producer_restarted(reason.as_str(), restarts);
            }
            Err(e) => {
                tracing::error!(error = %e, reason = reason.as_str(), "could not create a new Kafka producer; keeping the old one");
                self.restart = Some(reason);
            }
        }
    }

    /// Waits for the reports of `pending` deliveries, at most `delivery_bound`, settling each;
    /// returns the ids that were not delivered for now (failed for now, or never reported).
    /// Reports missing at the bound ask for a new producer.
    async fn settle_all(
        &mut self,
        pending: &mut FuturesUnordered<BoxFuture<'static, Delivery>>,
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
                    self.settle(done).await;
                    if transient {
                        retry.push(id);
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
                    retry.extend(unreported.drain());
                    break;
                }
            }
        }
        retry
    }

    /// Publishes pending entries from the outbox in commit order until none is left; returns
    /// to the fast path then. On failure, waits (backing off) and stays catching up.
    async fn catch_up(&mut self) {
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
        loop {
            // Hand-offs queued so far were committed before the claim below, so the claim
            // sees their entries (this replica's own, of any age, its earlier lives' included):
            // dropping them loses nothing and keeps commit order. Another replica's entries are
            // claimed only once older than sweep_grace: younger ones are in flight from its
            // memory.
            while self.rx.try_recv().is_ok() {}
            let claimed = match self
                .store
                .claim_outbox(
                    self.config.sweep_batch,
                    self.lease(),
                    self.config.sweep_grace,
                    true,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "could not read the outbox");
                    self.set_error(Some(format!("store: {e}")));
                    self.pause().await;
                    return;
                }
            };
            if claimed.is_empty() {
                self.backoff = MIN_BACKOFF;
                self.set_error(None);
                self.progressed();
                self.set_mode(Mode::Live);
                return;
            }
            if !self.publish_claimed(claimed).await {
                self.pause().await;
                return;
            }
            self.backoff = MIN_BACKOFF;
        }
    }

    /// In live mode: entries older than `sweep_grace` are not the fast path's (a crash, a
    /// dropped hand-off, another replica that went away); send them in commit order.
    async fn sweep_leftovers(&mut self) {
        match self
            .store
            .claim_outbox(
                self.config.sweep_batch,
                self.lease(),
                self.config.sweep_grace,
                false,
            )
            .await
        {
            Ok(claimed) if !claimed.is_empty() => {
                // Entries this process is still delivering (a slow broker) are not leftovers:
                // give them back, so a failed delivery can be caught up at once.
                let (mine, claimed): (Vec<OutboxEntry>, Vec<OutboxEntry>) = claimed
                    .into_iter()
                    .partition(|e| self.unsettled.contains(&e.id));
                if !mine.is_empty() {
                    let ids: Vec<Uuid> = mine.iter().map(|e| e.id).collect();
                    if let Err(e) = self.store.release_outbox(&ids, "in delivery").await {
                        tracing::debug!(error = %error_chain(&e), "could not release in-flight entries");
                    }
                }
                if claimed.is_empty() {
                    return;
                }
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
    /// were settled (delivered or permanently failed); the others are released for a retry.
    async fn publish_claimed(&mut self, claimed: Vec<OutboxEntry>) -> bool {
        let mut pending: FuturesUnordered<BoxFuture<'static, Delivery>> = FuturesUnordered::new();
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
        retry.extend(claimed[sent..].iter().map(|e| e.id));
        self.flush().await;
        if retry.is_empty() {
            return true;
        }
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

    async fn pause(&mut self) {
        tracing::debug!(backoff = ?self.backoff, "publisher backing off");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff.max(MIN_BACKOFF));
    }

    async fn prune(&mut self) {
        let before = Utc::now()
            - chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::zero());
        match self.store.prune_outbox(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "pruned published outbox entries"),
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not prune the outbox"),
        }
    }

    /// Shutdown: send what was handed over, wait for reports until `deadline`, mark them.
    async fn drain(&mut self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        if self.mode == Mode::Live {
            while let Ok(entries) = self.rx.try_recv() {
                self.send_all(entries);
            }
        }
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(until, self.inflight.next()).await {
                Ok(Some(done)) => {
                    self.settle(done).await;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        unsent = self.inflight.len(),
                        "shutdown deadline reached; unsent entries stay in the outbox"
                    );
                    break;
                }
            }
        }
        self.flush().await;
        if let Some(p) = &self.producer {
            let _ = p.current.flush(Duration::from_millis(100));
        }
        refresh_backlog(&*self.store, &self.metrics, &self.status).await;
    }
}

/// Refreshes the backlog figures every `every` until `stop`.
async fn watch_backlog(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Status>>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => refresh_backlog(&*store, &metrics, &status).await,
        }
    }
}

/// Reads the outbox backlog into the gauges and `/readyz`. Runs on a timer of its own (see
/// [`Publisher::run`]), so the figures stay current while the publisher waits on a broker
/// that is down, which is when dashboards need them most.
async fn refresh_backlog(store: &dyn Store, metrics: &Metrics, status: &Mutex<Status>) {
    match store.outbox_backlog().await {
        Ok(b) => {
            let age = b
                .oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics.outbox_backlog(b.pending, age, b.failed);
            let mut status = status.lock().unwrap_or_else(|p| p.into_inner());
            status.backlog = b.pending;
            status.oldest_age_seconds = age;
            status.failed = b.failed;
        }
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read the outbox backlog"),
    }
}

/// The topic of each record kind, for logs and docs.
pub fn topics(config: &KafkaConfig) -> Vec<(RecordKind, String)> {
    RecordKind::ALL
        .iter()
        .map(|k| (*k, config.topic(k.as_str())))
        .collect()
}
