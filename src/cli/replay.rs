//! `ringback replay`.

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use ringback::config::Config;
use ringback::domain::RecordKind;
use ringback::publish::{kafka, replay};
use ringback::store;

/// Re-publishes stored records of `kind` received in `[since, until)`.
pub async fn run(
    config: Config,
    kind: String,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let kind = RecordKind::from_name(&kind)
        .with_context(|| format!("--kind {kind:?}: expected one of call-status, cdr"))?;
    let Some(brokers) = config.kafka.brokers.real() else {
        bail!("replay needs real brokers: set kafka.brokers (RINGBACK__KAFKA__BROKERS)");
    };
    let range = replay::Range {
        kind,
        since,
        until: until.unwrap_or_else(Utc::now),
    };
    let store = store::connect(&config.database).await?;
    let producer = kafka::producer(brokers, &config.kafka)?;
    let topic = config.kafka.topic(kind.as_str());
    println!(
        "replaying {} records received in [{}, {}) to {topic}",
        kind.as_str(),
        range.since,
        range.until
    );
    let sent = replay::replay(
        store.as_ref(),
        &producer,
        &config.kafka,
        &config.sources,
        &range,
        |sent| println!("  {sent} sent"),
    )
    .await?;
    println!("done: {sent} records re-published to {topic}");
    store.close().await;
    Ok(())
}
