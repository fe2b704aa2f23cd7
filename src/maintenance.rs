//! Runs the store's maintenance (`store::maintain`) on timers in `serve`, and once for
//! `ringback maintain`, with a log line and a metric for everything it does.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::store::maintain::{Expired, Maintainer};

/// What one round of partition upkeep did.
#[derive(Debug, Default)]
pub struct Round {
    /// Partitions made, per table.
    pub made: Vec<(&'static str, i32)>,
    /// Rows folded into the rollups before retention ran.
    pub folded: u64,
    pub expired: Vec<Expired>,
    /// Rows in each table's default partition.
    pub default_rows: Vec<(&'static str, i64)>,
    /// Tasks that failed, with the error.
    pub failed: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Maintenance {
    maintainer: Maintainer,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
}

impl Maintenance {
    pub fn new(maintainer: Maintainer, config: Arc<Config>, metrics: Arc<Metrics>) -> Self {
        let tables: Vec<&str> = crate::store::maintain::TABLES
            .iter()
            .map(|(t, _)| *t)
            .collect();
        metrics.init_maintenance(&tables);
        Self {
            maintainer,
            config,
            metrics,
        }
    }

    /// Makes partitions ahead, folds what is queued into the rollups (before retention can
    /// drop the rows it needs), applies retention and reads the default partitions.
    pub async fn partitions(&self) -> Round {
        let now = Utc::now();
        let mut round = Round::default();
        for (table, made) in self
            .maintainer
            .ensure_partitions(now, self.config.maintenance.months_ahead)
            .await
        {
            match made {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(table, partitions = n, "made monthly partitions ahead");
                    round.made.push((table, n));
                }
                Err(e) => {
                    let e = error_chain(&e);
                    tracing::error!(table, error = %e, "could not make partitions; rows of months without one go to the default partition");
                    self.metrics.maintenance_failed("partitions");
                    round.failed.push((format!("partitions of {table}"), e));
                }
            }
        }
        match self.rollups().await {
            Ok(folded) => round.folded = folded,
            Err(e) => {
                // Retention would drop rows the rollups have not counted yet.
                round.failed.push(("rollups (retention skipped)".into(), e));
                return round;
            }
        }
        match self
            .maintainer
            .expire(now, &self.config.retention.by_table())
            .await
        {
            Ok(expired) => {
                for e in &expired {
                    match &e.partition {
                        Some(partition) => {
                            tracing::info!(
                                table = e.table,
                                partition,
                                rows = e.rows,
                                "retention dropped an expired partition"
                            );
                            self.metrics.partition_dropped(e.table);
                        }
                        None => {
                            tracing::info!(
                                table = e.table,
                                rows = e.rows,
                                "retention deleted expired rows"
                            );
                            self.metrics.retention_deleted(e.table, e.rows);
                        }
                    }
                }
                round.expired = expired;
            }
            Err(e) => {
                let e = error_chain(&e);
                tracing::error!(error = %e, "retention failed");
                self.metrics.maintenance_failed("retention");
                round.failed.push(("retention".into(), e));
            }
        }
        match self.maintainer.default_rows().await {
            Ok(counts) => {
                for &(table, rows) in &counts {
                    if rows > 0 {
                        tracing::warn!(table, rows, "rows in the default partition: their time is absent or outside every monthly partition");
                    }
                    self.metrics.partition_default_rows(table, rows);
                }
                round.default_rows = counts;
            }
            Err(e) => {
                let e = error_chain(&e);
                tracing::warn!(error = %e, "could not count the default partitions' rows");
                round.failed.push(("default partitions".into(), e));
            }
        }
        round
    }

    /// Folds what is queued into the rollups; returns how many rows it folded.
    pub async fn rollups(&self) -> Result<u64, String> {
        match self
            .maintainer
            .fold_rollups(&self.config.report.timezone)
            .await
        {
            Ok((folded, waiting)) => {
                if folded > 0 {
                    tracing::debug!(folded, waiting, "folded into the rollups");
                }
                self.metrics.rollups_folded(folded, waiting);
                Ok(folded)
            }
            Err(e) => {
                let e = error_chain(&e);
                tracing::error!(error = %e, "could not fold into the rollups");
                self.metrics.maintenance_failed("rollups");
                Err(e)
            }
        }
    }

    /// Checks what a typo would fail on every round: the report's time zone.
    pub async fn check(&self) -> anyhow::Result<()> {
        let zone = &self.config.report.timezone;
        self.maintainer.check_timezone(zone).await.map_err(|e| {
            anyhow::anyhow!(
                "report.timezone {zone:?}: {} (expected an IANA name, e.g. Asia/Shanghai)",
                error_chain(&e)
            )
        })
    }

    /// The timers of `serve`: partitions and retention every `maintenance.interval` (the first
    /// round at once), rollups every `report.rollup_interval`; a zero interval turns one off.
    pub async fn run(self, stop: CancellationToken) {
        let every = |d: std::time::Duration| {
            (!d.is_zero()).then(|| {
                let mut t = tokio::time::interval(d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            })
        };
        let mut partitions = every(self.config.maintenance.interval);
        let mut rollups = every(self.config.report.rollup_interval);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick(&mut partitions) => {
                    if !self.bounded("partitions", self.partitions(), &stop).await {
                        return;
                    }
                }
                _ = tick(&mut rollups) => {
                    if !self.bounded("rollups", self.rollups(), &stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Runs one round, abandoned at `stop` (returns `false`: stop now) or after
    /// [`ROUND_BOUND`] (counted as a failure of `task`; the next tick tries again). Abandoning
    /// is safe: each step is a transaction of its own, rolled back with its connection. The
    /// bound matters on a network that went silent: a query on a connection whose peer
    /// vanished never returns, and it once held a shutdown for good (and would hold the
    /// rollups until a restart).
    async fn bounded<T>(
        &self,
        task: &'static str,
        round: impl std::future::Future<Output = T>,
        stop: &CancellationToken,
    ) -> bool {
        tokio::select! {
            _ = stop.cancelled() => false,
            done = tokio::time::timeout(ROUND_BOUND, round) => {
                if done.is_err() {
                    tracing::error!(task, bound = ?ROUND_BOUND, "a maintenance round did not finish in time; abandoned, tried again at the next tick");
                    self.metrics.maintenance_failed(task);
                }
                true
            }
        }
    }
}

/// The longest a maintenance round may take before it is abandoned.
const ROUND_BOUND: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The next tick of `timer`, or never without one.
async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
