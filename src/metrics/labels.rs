//! The label values of the metrics that take a fixed set: one enum each, its `as_str()` the
//! label, its `ALL` the series created at start (so a dashboard sees zeros, not gaps).

use serde::Serialize;

/// What the publisher is doing; `ringback_publisher_mode{mode}` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublisherMode {
    /// Sending freshly committed entries as they come.
    Live,
    /// Sending pending entries from the outbox (after a failure, a dropped hand-off, a crash).
    CatchingUp,
    /// No brokers configured: entries wait in the outbox.
    OutboxOnly,
    Stopped,
}

impl PublisherMode {
    pub const ALL: [Self; 4] = [
        Self::Live,
        Self::CatchingUp,
        Self::OutboxOnly,
        Self::Stopped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::CatchingUp => "catching_up",
            Self::OutboxOnly => "outbox_only",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a Kafka producer is replaced; `ringback_kafka_producer_restarts_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRestart {
    /// librdkafka raised a fatal error (an idempotent producer's sequence or epoch lost), or
    /// the broker fenced the producer (`ProducerFenced`, `InvalidProducerEpoch`): the instance
    /// can never send again.
    Fatal,
    /// Deliveries were not reported within their bound (`kafka.message_timeout` and a margin).
    Unreported,
    /// Entries waited with no delivery succeeding for `stall_after`.
    Stalled,
}

impl ProducerRestart {
    pub const ALL: [Self; 3] = [Self::Fatal, Self::Unreported, Self::Stalled];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Unreported => "unreported",
            Self::Stalled => "stalled",
        }
    }
}

/// A batch offered to the spool; `ringback_spool_appends_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolAppend {
    /// On disk (fsync'd).
    Ok,
    /// Refused: `spool.max_bytes` or the disk's free space reached (503 `spool_full`).
    Full,
    /// Refused: the write failed (503).
    Error,
}

impl SpoolAppend {
    pub const ALL: [Self; 3] = [Self::Ok, Self::Full, Self::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Full => "full",
            Self::Error => "error",
        }
    }
}
