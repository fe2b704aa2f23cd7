//! `ringback events find`: records by id, dedupe key or number, without SQL.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::{ArgGroup, Subcommand};
use uuid::Uuid;

use ringback::config::Config;
use ringback::store;
use ringback::store::calls::{Find, Found, OnKafka};

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Records of every kind by record id (the `ce_id` on Kafka), dedupe key or event id
    /// (Event Grid / CloudEvents `id`, Standard Webhooks `webhook-id`), or phone number; oldest
    /// first, each with what it belongs to (`ringback calls show` takes the call ones) and
    /// whether it is on Kafka yet.
    #[command(group(ArgGroup::new("what").required(true).args(["id", "key", "number"])))]
    Find {
        /// A record id.
        #[arg(long)]
        id: Option<Uuid>,
        /// A dedupe key or event id, at any configured source.
        #[arg(long)]
        key: Option<String>,
        /// A phone number as stored (E.164, e.g. +8613800000022), in status events, CDRs and
        /// SMS/phone events received in [--since, --until).
        #[arg(long)]
        number: Option<String>,
        /// With --number: from (RFC 3339; default a week ago).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// With --number: until (RFC 3339; default now).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Also print each record's JSON as it was received.
        #[arg(long)]
        raw: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Find {
        id,
        key,
        number,
        since,
        until,
        raw,
        json,
    } = command;
    let what = match (id, key, number) {
        (Some(id), _, _) => Find::Id(id),
        (_, Some(key), _) => Find::Key {
            key,
            sources: config.sources.keys().cloned().collect(),
        },
        (_, _, Some(number)) => {
            let until = until.unwrap_or_else(Utc::now);
            Find::Number {
                number,
                since: since.unwrap_or(until - Duration::days(7)),
                until,
            }
        }
        _ => unreachable!("clap requires one of --id, --key, --number"),
    };
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    let calls = store.calls().context("this store keeps no records")?;
    let result = calls.find(&what).await;
    store.close().await;
    let found = result?;
    if found.is_empty() {
        anyhow::bail!("no record found");
    }
    for f in &found {
        if json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            print!("{}", line(f, raw));
        }
    }
    Ok(())
}

fn line(f: &Found, raw: bool) -> String {
    let kafka = match f.kafka {
        OnKafka::Published => "on Kafka",
        OnKafka::Pending => "not on Kafka yet",
        OnKafka::Failed => "never on Kafka (failed)",
    };
    let mut out = format!(
        "{}  {:<13} {}  {}  of {}  key {}  [{kafka}]\n",
        f.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        f.kind,
        f.id,
        f.source,
        f.belongs_to.as_deref().unwrap_or("-"),
        f.dedupe_key,
    );
    if raw {
        let pretty = serde_json::to_string_pretty(&f.raw).unwrap_or_default();
        for l in pretty.lines() {
            out.push_str("    ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
