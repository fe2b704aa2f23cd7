//! `[retention]`: how long each table keeps its rows.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// How long rows are kept, per table, by the time they are stored under (a record's own time;
/// dead letters' and handshakes' reception). Unset keeps them forever. On PostgreSQL whole
/// monthly partitions are dropped once their last day is older than this; on SQLite rows are
/// deleted in batches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub cdrs: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub call_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub phone_number_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub acs_call_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub chat_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub webhook_events: Option<Duration>,
    /// Refused input, 30 days by default: what anyone who can reach the hooks can make
    /// ringback write must not be kept for ever.
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub dead_letters: Option<Duration>,
    /// Answered subscription handshakes, 30 days by default.
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub handshakes: Option<Duration>,
}

/// The default retention of dead letters and handshakes.
pub const DEFAULT_REFUSED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            cdrs: None,
            call_events: None,
            phone_number_events: None,
            acs_call_events: None,
            chat_events: None,
            webhook_events: None,
            dead_letters: Some(DEFAULT_REFUSED_RETENTION),
            handshakes: Some(DEFAULT_REFUSED_RETENTION),
        }
    }
}

impl RetentionConfig {
    /// Each partitioned table with its retention, in `store::maintain::TABLES` order.
    pub fn by_table(&self) -> [(&'static str, Option<Duration>); 8] {
        [
            ("cdrs", self.cdrs),
            ("call_events", self.call_events),
            ("phone_number_events", self.phone_number_events),
            ("acs_call_events", self.acs_call_events),
            ("chat_events", self.chat_events),
            ("webhook_events", self.webhook_events),
            ("dead_letters", self.dead_letters),
            ("handshakes", self.handshakes),
        ]
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (table, keep) in self.by_table() {
            // A platform retries for hours: a shorter retention would take a retry's first
            // copy away and store the retry as new.
            if keep.is_some_and(|d| d < Duration::from_secs(86_400)) {
                return Err(invalid(
                    format!("retention.{table}"),
                    "must be at least 1d (or unset: keep forever)",
                ));
            }
        }
        Ok(())
    }
}
