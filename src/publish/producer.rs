//! The Kafka producer's lifecycle: made at start, watched for progress, replaced when it can
//! never send again (a fatal error) or stops reporting (a stall).

use std::time::Duration;

use chrono::Utc;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};

use super::Publisher;

/// Makes a Kafka producer: at start, and again whenever the one in use cannot make progress.
pub type ProducerFactory = Box<dyn Fn() -> Result<FutureProducer, KafkaError> + Send + Sync>;

/// The producer in use and how to replace it.
pub struct Producer {
    pub(super) current: FutureProducer,
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

/// Why a producer is replaced.
pub(super) use crate::metrics::ProducerRestart as Restart;

impl Publisher {
    /// Lease for claimed entries: longer than librdkafka may take to deliver them.
    pub(super) fn lease(&self) -> Duration {
        self.delivery_bound() + Duration::from_secs(30)
    }

    /// How long a delivery report may take: librdkafka promises one within
    /// `kafka.message_timeout`; beyond this bound the producer is deemed stuck and replaced.
    pub(super) fn delivery_bound(&self) -> Duration {
        self.config.message_timeout + Duration::from_secs(10)
    }

    /// How long entries may wait with no delivery succeeding before the producer is replaced
    /// (and the publisher reported stalled from then on, until a delivery succeeds).
    pub(super) fn stall_after(&self) -> Duration {
        2 * self.delivery_bound()
    }

    /// A delivery succeeded, or nothing waits: not stalled.
    pub(super) fn progressed(&mut self) {
        self.progress = std::time::Instant::now();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = status.stalled_since.take() {
            tracing::info!(%since, "the publisher delivers again");
            self.metrics.publisher_stalled(false);
        }
    }

    /// Fault injection (see [`super::PublisherHandle::inject_fatal_error`]).
    #[cfg(feature = "testkit")]
    #[allow(unsafe_code)]
    pub(super) fn raise_fatal_error(&self) {
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

    /// Asks for a new producer when the one in use has a fatal error (logged once); returns
    /// whether it has one.
    pub(super) fn note_fatal_error(&mut self) -> bool {
        let Some((code, reason)) = self.fatal_error() else {
            return false;
        };
        if self.restart.is_none() {
            tracing::error!(
                ?code,
                reason,
                "the Kafka producer hit a fatal error; it will be replaced"
            );
        }
        self.restart = Some(Restart::Fatal);
        true
    }

    /// The producer's fatal error, if it has one: it can never send again.
    pub(super) fn fatal_error(&self) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
        self.producer.as_ref()?.current.client().fatal_error()
    }

    /// Marks the publisher stalled when entries have waited `stall_after` with no delivery,
    /// and asks for a new producer each time that much more passes.
    pub(super) fn watch_progress(&mut self) {
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
    pub(super) fn restart_producer(&mut self) {
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
                self.metrics.producer_restarted(reason, restarts);
            }
            Err(e) => {
                tracing::error!(error = %e, reason = reason.as_str(), "could not create a new Kafka producer; keeping the old one");
                self.restart = Some(reason);
            }
        }
    }
}
