//! `[database]`: the store's settings. They live with the store, which sits below `config` in
//! the layers (`tests/it/layers.rs`); `config` holds them as its `database` section.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` or `sqlite://PATH?mode=rwc` (the embedded default).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before a request fails with 503.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub acquire_timeout: Duration,
    /// Apply pending migrations when `serve` starts (they are also run by `ringback migrate`).
    pub migrate_on_start: bool,
    /// How long a commit, claim or ping may wait for PostgreSQL before it is abandoned and
    /// counted as an outage (its connection closed): what notices a database that hangs or a
    /// network that went silent, long before the kernel's TCP timeout. Commits of the live path
    /// are spooled sooner, after `spool.fallback_after`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub operation_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/ringback.db?mode=rwc".into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
            operation_timeout: Duration::from_secs(10),
        }
    }
}

impl DatabaseConfig {
    /// Rejects settings that cannot work: the key (within `[database]`) and why.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let url = &self.url;
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(("url", "expected postgres://… or sqlite://PATH?mode=rwc"));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1"));
        }
        if self.operation_timeout < Duration::from_secs(1) {
            return Err(("operation_timeout", "must be at least 1s"));
        }
        Ok(())
    }
}
