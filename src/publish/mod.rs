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
//!
//! Here: the modes and the loop. `live`: the fast path and every delivery report; `catch_up`:
//! claims, sweeps and the messages rebuilt from stored records; `producer`: the producer's
//! lifecycle; `backlog`: the outbox gauges.

mod backlog;
mod catch_up;
mod commits;
pub mod kafka;
mod live;
mod producer;
pub mod replay;
#[cfg(test)]
mod tests;
pub mod topics;

pub use catch_up::ready;
use producer::Restart;
pub use producer::{Producer, ProducerFactory};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::Producer as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::KafkaConfig;
use crate::domain::{OutboxEntry, RecordKind, Region};
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::store::Store;

/// Hand-offs waiting for the publisher; beyond this they are dropped (the outbox has them).
const HANDOFF_CAPACITY: usize = 1024;
/// How often delivered entries are marked published in the database (one UPDATE for all).
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// First pause after a failed attempt while catching up; doubled up to `kafka.max_backoff`.
const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// Each source's default region (`sources.<name>.default_region`), by source name.
pub type Regions = std::collections::HashMap<String, Region>;

/// What the publisher is doing; shown in `/readyz` and the `publisher_mode` metric.
pub use crate::metrics::PublisherMode as Mode;

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
    #[cfg(feature = "testkit")]
    inject_fatal: Arc<AtomicBool>,
}

impl PublisherHandle {
    /// Fault injection for tests: makes the producer raise a fatal error at its next tick
    /// (librdkafka's `rd_kafka_test_fatal_error`), as a lost idempotent sequence would.
    #[cfg(feature = "testkit")]
    pub fn inject_fatal_error(&self) {
        self.inject_fatal.store(true, Ordering::Relaxed);
    }

    pub fn offer(&self, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        // A hand-off dropped (not live, or the queue full while the publisher waits on the
        // database) is caught up from the outbox, in commit order. Until then no later hand-off
        // may be taken: sent live, it would overtake the dropped one's entries of the same call.
        if !self.live.load(Ordering::SeqCst) || self.tx.try_send(entries).is_err() {
            self.catch_up();
        }
    }

    /// Stops taking hand-offs until the publisher has caught up from the outbox, in commit
    /// order: for entries committed that nobody handed it (a commit that was abandoned and
    /// landed after all), which the hand-offs after them must not overtake.
    pub fn catch_up(&self) {
        // Sequentially consistent, with the publisher's side (`Publisher::go_live`): a
        // hand-off dropped as the publisher goes live is either seen there or stops the
        // hand-offs after it.
        self.live.store(false, Ordering::SeqCst);
        self.missed.store(true, Ordering::SeqCst);
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    inflight: FuturesUnordered<BoxFuture<'static, Report>>,
    /// Entries sent and not yet marked published: the sweeper leaves them alone.
    unsettled: HashSet<Uuid>,
    /// Entries delivered since the last flush.
    delivered: Vec<Uuid>,
    /// Outbox rows all of whose entries were settled since the last flush: to mark published.
    marks: Vec<Uuid>,
    /// Whether the store keeps a commit's hot-path entries in one row ([`Store::commit_rows`]).
    commit_rows: bool,
    /// The commits' rows in flight.
    commits: commits::Commits,
    backoff: Duration,
    /// The last time a delivery succeeded or nothing waited: the stall watchdog's reference.
    progress: std::time::Instant,
    /// Set when the producer must be replaced before the next attempt.
    restart: Option<Restart>,
    /// Each source's default region, which messages rebuilt from stored records write their
    /// numbers in, as the live ones did.
    regions: Regions,
    #[cfg(feature = "testkit")]
    inject_fatal: Arc<AtomicBool>,
}

struct Report {
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
        regions: Regions,
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
        #[cfg(feature = "testkit")]
        let inject_fatal = Arc::new(AtomicBool::new(false));
        let handle = PublisherHandle {
            tx,
            missed: missed.clone(),
            live: live.clone(),
            status: status.clone(),
            #[cfg(feature = "testkit")]
            inject_fatal: inject_fatal.clone(),
        };
        let publisher = Self {
            commit_rows: store.commit_rows(),
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
            marks: Vec::new(),
            commits: commits::Commits::default(),
            backoff: MIN_BACKOFF,
            progress: std::time::Instant::now(),
            restart: None,
            regions,
            #[cfg(feature = "testkit")]
            inject_fatal,
        };
        (publisher, handle)
    }

    fn set_mode(&mut self, mode: Mode) {
        self.metrics.publisher_mode_changed(self.mode, mode);
        self.mode = mode;
        self.live.store(mode == Mode::Live, Ordering::SeqCst);
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
        let watcher = backlog::watch(
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
                    if self.check_health() {
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

    /// The tick's check of the fast path: a producer with a fatal error, deliveries unreported
    /// for too long, or a dropped hand-off each switch to catching up. Returns whether to catch
    /// up now.
    fn check_health(&mut self) -> bool {
        #[cfg(feature = "testkit")]
        if self.inject_fatal.swap(false, Ordering::Relaxed) {
            self.raise_fatal_error();
        }
        // A producer with a fatal error never sends again: replace it now, not when a delivery
        // happens to fail or the stall bound passes.
        if self.restart.is_none() && self.note_fatal_error() && self.mode == Mode::Live {
            self.set_mode(Mode::CatchingUp);
        }
        if self.mode == Mode::Live {
            if self.inflight.is_empty() {
                self.progressed();
            } else if self.progress.elapsed() > self.stall_after() {
                // librdkafka owes a report for each message within the message timeout; a
                // catch-up settles them within a bound.
                tracing::warn!(
                    in_flight = self.inflight.len(),
                    "no delivery reported for too long; catching up"
                );
                self.set_mode(Mode::CatchingUp);
            }
        }
        // Without a producer (outbox-only) there is nothing to catch up with.
        let missed = self.missed.swap(false, Ordering::Relaxed);
        if missed && self.mode == Mode::Live {
            self.set_mode(Mode::CatchingUp);
        }
        self.mode == Mode::CatchingUp
    }

    async fn pause(&mut self) {
        // Jittered: replicas that lost the broker together do not retry in lockstep.
        let wait = crate::retry::jittered(self.backoff);
        tracing::debug!(?wait, "publisher backing off");
        tokio::time::sleep(wait).await;
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
        backlog::refresh(&*self.store, &self.metrics, &self.status).await;
    }
}

/// The topic of each record kind, for logs and docs.
pub fn topics(config: &KafkaConfig) -> Vec<(RecordKind, String)> {
    RecordKind::ALL
        .iter()
        .map(|k| (*k, config.topic(k.as_str())))
        .collect()
}
