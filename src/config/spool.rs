//! `[spool]`: the local fsync'd spool.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// The local spool: where a batch goes when PostgreSQL cannot take it in time, so that pushes
/// the platform never resends are kept through a database outage (docs/durability.md).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Spool batches the database cannot take. Only with PostgreSQL: with SQLite as the store
    /// the spool would share its disk and its failures, so it is off.
    pub enabled: bool,
    /// The spool file (SQLite, WAL, `synchronous=FULL`), on a local disk.
    pub path: PathBuf,
    /// How long a push waits for its commit before its batch is spooled instead: a bound well
    /// under any sender's timeout. A transient database error spools at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub fallback_after: Duration,
    /// Most bytes the spool may hold; beyond it pushes get 503 `spool_full` with
    /// `Retry-After`. Size it as push rate × longest outage × bytes per push (docs/operations/deploy.md, Sizing).
    pub max_bytes: u64,
    /// Free space the spool leaves on its disk: appends beyond it are refused (503
    /// `spool_full`). SQLite needs room to move its WAL into the file and to delete what
    /// was drained; a spool that filled its disk to the last byte could do neither.
    pub min_free_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("data/spool.db"),
            fallback_after: Duration::from_secs(2),
            max_bytes: 1 << 30,
            min_free_bytes: 64 << 20,
        }
    }
}

impl SpoolConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.fallback_after < Duration::from_millis(10) {
            return Err(invalid("spool.fallback_after", "must be at least 10ms"));
        }
        if self.max_bytes < 1 << 20 {
            return Err(invalid("spool.max_bytes", "must be at least 1 MiB"));
        }
        Ok(())
    }
}
