//! `ringback topics create|check`.

use anyhow::bail;
use clap::Subcommand;

use ringback::config::Config;
use ringback::publish::topics;
use ringback::startup::check;

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create every record kind's topic with `kafka.new_topics` (partitions, replication
    /// factor, retention); topics that exist are left as they are. Safe to run again.
    Create,
    /// List the topics ringback publishes to and whether the brokers have them.
    Check,
}

/// `ringback topics create|check`.
pub async fn run(config: &Config, command: TopicsCommand) -> anyhow::Result<()> {
    let Some(brokers) = config.kafka.brokers.real() else {
        bail!("topics needs real brokers: set kafka.brokers (RINGBACK__KAFKA__BROKERS)");
    };
    match command {
        TopicsCommand::Create => {
            let new = &config.kafka.new_topics;
            let outcomes = topics::create(brokers, &config.kafka, check::CONNECT_TIMEOUT).await?;
            for o in outcomes {
                println!(
                    "{:<8} {} (partitions {}, replication factor {}{})",
                    o.outcome,
                    o.topic,
                    new.partitions,
                    new.replication_factor,
                    new.retention
                        .map(|r| format!(", retention {}", humantime::format_duration(r)))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        TopicsCommand::Check => {
            let (brokers, kafka) = (brokers.to_owned(), config.kafka.clone());
            let check = tokio::task::spawn_blocking(move || {
                topics::check(&brokers, &kafka, check::CONNECT_TIMEOUT)
            })
            .await??;
            for (topic, partitions) in &check.present {
                println!("present  {topic} ({partitions} partitions)");
            }
            for topic in &check.missing {
                println!("missing  {topic}");
            }
            if !check.missing.is_empty() {
                bail!(
                    "{} topic(s) missing: run `ringback topics create`",
                    check.missing.len()
                );
            }
            Ok(())
        }
    }
}
