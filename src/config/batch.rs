//! `[batch]`: the queue and the group commit.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records committed in one transaction.
    pub max_records: usize,
    /// How long an open batch may wait for more records before it commits. Zero (the
    /// default): it never waits; a batch commits at once when no commit of its worker is in
    /// flight, and else gathers what arrives until that commit ends (group commit). Set it to
    /// trade latency for bigger batches.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub linger: Duration,
    /// Requests waiting for the batchers (all of them together); when full, ingest answers
    /// 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Batchers committing concurrently (PostgreSQL). One call's records always go through
    /// the same one, so they stay in order. SQLite has one writer: it always uses 1.
    pub workers: usize,
    /// Retries of a commit that failed for a transient reason (connection lost, pool
    /// timeout) before the waiting requests are answered 503.
    pub commit_retries: u32,
    /// Pause before the first retry; doubled for each further one.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_backoff: Duration,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 50,
            linger: Duration::ZERO,
            queue_capacity: 1024,
            workers: 4,
            commit_retries: 2,
            retry_backoff: Duration::from_millis(100),
            retry_after_secs: 5,
        }
    }
}

impl BatchConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.max_records) {
            return Err(invalid("batch.max_records", "must be between 1 and 10000"));
        }
        if self.linger > Duration::from_secs(1) {
            return Err(invalid("batch.linger", "must be at most 1s"));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("batch.queue_capacity", "must be at least 1"));
        }
        if !(1..=64).contains(&self.workers) {
            return Err(invalid("batch.workers", "must be between 1 and 64"));
        }
        Ok(())
    }
}
