//! `[maintenance]` and `[report]`: partitions ahead, and the rollups.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// How often partitions are made ahead and expired ones dropped (every replica runs it;
    /// they take turns under an advisory lock). 0 turns it off (`ringback maintain` from cron).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Months of partitions kept ready beyond the current one (PostgreSQL).
    pub months_ahead: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            months_ahead: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// The time zone of the rollups' hours and days (an IANA name, e.g. Asia/Shanghai).
    /// Changing it changes the rollups' buckets: rebuild them (`ringback maintain
    /// --rebuild-rollups --since …`).
    pub timezone: String,
    /// How often new CDRs and disconnects are folded into the rollups (PostgreSQL). 0 turns
    /// it off (`ringback maintain` folds them too).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub rollup_interval: Duration,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            rollup_interval: Duration::from_secs(30),
        }
    }
}

impl MaintenanceConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=36).contains(&self.months_ahead) {
            return Err(invalid(
                "maintenance.months_ahead",
                "must be between 1 and 36",
            ));
        }
        Ok(())
    }
}

impl ReportConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.timezone.trim().is_empty() {
            return Err(invalid(
                "report.timezone",
                "expected an IANA time zone, e.g. UTC or Asia/Shanghai",
            ));
        }
        Ok(())
    }
}
