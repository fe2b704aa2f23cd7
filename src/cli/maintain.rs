//! `ringback maintain` and `ringback migrate`.

use anyhow::Context;
use chrono::Utc;

use ringback::config::Config;
use ringback::store;

/// Applies the database's migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

/// `ringback maintain`.
pub async fn run(
    config: Config,
    rebuild_since: Option<chrono::NaiveDate>,
    until: Option<chrono::NaiveDate>,
) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    let maintainer = store
        .maintainer()
        .context("this store has no maintenance")?;
    let timezone = config.report.timezone.clone();
    let retention_cdrs = config.retention.cdrs;
    let maintenance = ringback::maintenance::Maintenance::new(
        maintainer.clone(),
        std::sync::Arc::new(config),
        std::sync::Arc::new(ringback::metrics::Metrics::new()),
    );
    maintenance.check().await?;
    if let (Some(since), Some(keep)) = (rebuild_since, retention_cdrs) {
        let oldest = (Utc::now() - chrono::Duration::from_std(keep)?).date_naive();
        if since < oldest {
            anyhow::bail!(
                "--since {since}: retention.cdrs has dropped (or will drop) CDRs before \
                 {oldest}; a rebuild would recompute those days from the rows that are left, \
                 and the rollups are all that is kept of them. Rebuild from {oldest} on"
            );
        }
    }
    let round = maintenance.partitions().await;
    for (table, n) in &round.made {
        println!("{table}: {n} partitions made");
    }
    for e in &round.expired {
        match &e.partition {
            Some(p) => println!("{}: dropped {p} (about {} rows)", e.table, e.rows),
            None => println!("{}: deleted {} expired rows", e.table, e.rows),
        }
    }
    for (table, rows) in round.default_rows.iter().filter(|(_, n)| *n > 0) {
        println!("{table}: {rows} rows in {table}_default (no monthly partition holds their time)");
    }
    println!("rollups: {} rows folded", round.folded);
    if let Some(since) = rebuild_since {
        let until = until.unwrap_or_else(|| (Utc::now() + chrono::Duration::days(2)).date_naive());
        let rebuilt = maintainer
            .rebuild_rollups(&timezone, since, until)
            .await
            .context("rebuilding the rollups")?;
        println!(
            "rollups of {since}..{until} ({timezone}) rebuilt from {} CDRs and {} disconnects",
            rebuilt.cdrs, rebuilt.disconnects
        );
    }
    store.close().await;
    if round.failed.is_empty() {
        Ok(())
    } else {
        let failed: Vec<String> = round
            .failed
            .iter()
            .map(|(t, e)| format!("{t}: {e}"))
            .collect();
        anyhow::bail!("maintenance failed: {}", failed.join("; "))
    }
}
