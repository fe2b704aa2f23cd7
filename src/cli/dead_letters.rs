//! `ringback dead-letters list|show|reprocess`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use ringback::batch::Batcher;
use ringback::config::Config;
use ringback::ingest::reprocess::{Report, Reprocess};
use ringback::ingest::Source;
use ringback::metrics::Metrics;
use ringback::store::dead_letters::{DeadLetters, Filter, Letter};
use ringback::store::{self, Store};

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters (oldest first): id, time, source, scope, code, field, size, outcome.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter whole: reason, headers, body, what reprocessing made of it.
    Show {
        /// Its id.
        id: Uuid,
    },
    /// Run the kept bodies through the current parser of their source; commit what now parses
    /// (deduplicated, through the outbox to Kafka) and mark each letter with what became of it.
    /// Safe to run twice, or on two machines at once.
    Reprocess {
        #[command(flatten)]
        filter: FilterArgs,
        /// Report what would happen; commit and mark nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also try letters a previous run found still refused.
        #[arg(long)]
        again: bool,
        /// How long a letter stays with this run should it die holding it.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        lease: Duration,
    },
}

/// Which dead letters (every option given must hold).
#[derive(Args)]
pub struct FilterArgs {
    /// Of this source (its name in the configuration).
    #[arg(long)]
    source: Option<String>,
    /// With this error code (e.g. invalid_value).
    #[arg(long)]
    code: Option<String>,
    /// Of the request answered with this X-Request-Id (every answer carries one).
    #[arg(long)]
    request_id: Option<String>,
    /// Received at or after this instant (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Received before this instant (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// This dead letter (repeatable).
    #[arg(long = "id")]
    ids: Vec<Uuid>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Self {
        Self {
            source: a.source,
            code: a.code,
            request_id: a.request_id,
            since: a.since,
            until: a.until,
            ids: a.ids,
            ..Self::default()
        }
    }
}

pub async fn run(config: Config, command: DeadLettersCommand) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    let letters = store
        .dead_letters()
        .context("this store keeps no dead letters")?;
    let result = match command {
        DeadLettersCommand::List {
            filter,
            limit,
            json,
        } => list(&letters, filter.into(), limit, json).await,
        DeadLettersCommand::Show { id } => show(&letters, id).await,
        DeadLettersCommand::Reprocess {
            filter,
            dry_run,
            again,
            lease,
        } => {
            let options = (dry_run, again, lease);
            reprocess(&config, store.clone(), &letters, filter.into(), options).await
        }
    };
    store.close().await;
    result
}

async fn list(letters: &DeadLetters, filter: Filter, limit: u32, json: bool) -> anyhow::Result<()> {
    let page = letters.page(&filter, None, limit).await?;
    if !json {
        println!(
            "{:<36}  {:<27}  {:<10} {:<7} {:<24} {:<24} {:>7}  outcome",
            "id", "received_at", "source", "scope", "code", "field", "bytes"
        );
    }
    for l in &page {
        if json {
            println!("{}", serde_json::to_string(l)?);
            continue;
        }
        println!(
            "{:<36}  {:<27}  {:<10} {:<7} {:<24} {:<24} {:>7}  {}",
            l.id,
            l.received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            l.source,
            l.scope,
            l.code,
            l.field.as_deref().unwrap_or("-"),
            l.body_bytes.map_or("-".to_owned(), |b| b.to_string()),
            l.reprocess_outcome.as_deref().unwrap_or("-"),
        );
    }
    if page.len() as u32 == limit {
        eprintln!("(first {limit}; --limit shows more)");
    }
    Ok(())
}

async fn show(letters: &DeadLetters, id: Uuid) -> anyhow::Result<()> {
    let letter = letters
        .one(id)
        .await?
        .with_context(|| format!("no dead letter {id}"))?;
    let mut value = serde_json::to_value(&letter)?;
    value["body"] = match &letter.body {
        None => serde_json::Value::Null,
        Some(b) => String::from_utf8_lossy(b).into_owned().into(),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn reprocess(
    config: &Config,
    store: Arc<dyn Store>,
    letters: &DeadLetters,
    filter: Filter,
    (dry_run, again, lease): (bool, bool, Duration),
) -> anyhow::Result<()> {
    let sources: HashMap<String, Arc<Source>> = config
        .sources
        .iter()
        .map(|(name, c)| (name.clone(), Arc::new(Source::parser_only(name, c))))
        .collect();
    let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
    // The batch path `serve` commits through (dedupe, outbox), without a publisher: the
    // replicas' publishers send the new outbox entries to Kafka.
    let batcher = (!dry_run).then(|| {
        let metrics = Arc::new(Metrics::new());
        Batcher::spawn(
            store,
            config.batch.clone(),
            stop.clone(),
            &tasks,
            None,
            metrics,
            None,
        )
    });
    let run = Reprocess {
        letters,
        sources: &sources,
        batcher: batcher.as_ref(),
        claimant: ringback::ingest::reprocess::claimant(""),
        lease,
        again,
    };
    let verb = if dry_run { "would be" } else { "" };
    let report = run
        .run(&filter, |letter: &Letter, f| {
            let ids: Vec<String> = f.records.iter().map(Uuid::to_string).collect();
            println!(
                "{} {}{} {:<9} {} {}",
                letter.id,
                verb,
                if dry_run { " " } else { "" },
                f.outcome.as_str(),
                f.code.as_deref().unwrap_or(""),
                if ids.is_empty() {
                    String::new()
                } else {
                    format!("records {}", ids.join(","))
                },
            );
        })
        .await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    let report: Report = report?;
    println!("{}", serde_json::to_string(&report)?);
    if dry_run {
        println!("dry run: nothing was committed or marked");
    }
    Ok(())
}
