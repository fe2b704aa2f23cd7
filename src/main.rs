// One unsafe call, allowed where it is made: an allocator option (`tune_allocator`).
#![deny(unsafe_code)]

use std::path::PathBuf;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use ringback::config::{spelling, Config};
use ringback::domain::RecordKind;
use ringback::ingest::Source;
use ringback::publish::{kafka, replay, topics};
use ringback::startup::{check, Application};
use ringback::{simulate, store, telemetry};

mod cli;

/// mimalloc instead of glibc's allocator: a profile of the fee path (`perf record -e cpu-clock
/// -g` on the server during `ringback simulate --traffic fee`) put about 31 % of the server's
/// CPU in glibc's malloc and free (parsed records, message values, bound arrays, Kafka copies:
/// many short-lived allocations across threads). Measured in README, Performance.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns freed memory to the OS 10 ms after it is freed by default; meanwhile the
/// next stage of a request (parse, encode, bind, commit: each on another thread) takes fresh
/// pages. For the largest body a sender may send (1 MiB, 2 844 ACS events in one transaction)
/// that put the server's peak RSS at 171 MiB; purging at once, 71 MiB (glibc's allocator: 70),
/// at the same CPU per request (`HOSTILE_ONLY=max-valid HOSTILE_CONCURRENCY=1 bash
/// benches/hostile.sh`; README "What one sender can and cannot do to others"). An operator's
/// `MIMALLOC_PURGE_DELAY` still wins.
#[allow(unsafe_code)]
fn tune_allocator() {
    /// `mi_option_purge_delay` in mimalloc.h (v2 and v3); the sys crate names no constant.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// Durable ingest of telephony platform callbacks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Default: config/default.toml if it exists.
    #[arg(long, global = true, env = "RINGBACK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the hooks (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the JSON Schema (draft 2020-12) of the configuration file: every key, its type
    /// and its meaning (for editors and config linters).
    ConfigSchema,
    /// Print the OpenAPI 3.1 document of the hooks, health and metrics endpoints, every error
    /// code with its status (committed as schemas/openapi.json).
    Openapi,
    /// Load and validate the configuration (including secrets), print a summary, exit.
    CheckConfig {
        /// Also open one database connection and ask the brokers for the topics' metadata;
        /// say which step failed (DNS, TCP, TLS, authentication, missing topic).
        #[arg(long)]
        connect: bool,
    },
    /// Run the database's upkeep once, as `serve` does on timers (for operators who prefer
    /// cron): make monthly partitions ahead, drop expired ones (retention.*), fold new CDRs
    /// into the rollups; with --rebuild-rollups, recompute the rollups of a range of days.
    Maintain {
        /// Recompute the rollups of the days --since..--until from the raw rows (after a
        /// report.timezone change, or to check them).
        #[arg(long, requires = "since")]
        rebuild_rollups: bool,
        /// First day to rebuild (report.timezone's), e.g. 2026-11-01.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Day after the last one to rebuild (default: the day after tomorrow).
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
    },
    /// Refused input kept for inspection: list it, show it, run it again through the current
    /// parsers (README "Dead letters").
    #[command(subcommand)]
    DeadLetters(cli::dead_letters::DeadLettersCommand),
    /// Kafka topics of the record kinds.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Play platform traffic against a ringback (or any endpoint) and report throughput and
    /// latency percentiles.
    Simulate(SimulateArgs),
    /// Re-publish stored records received in a time range to their Kafka topic (for a new
    /// consumer or a lost topic). Messages are the ones first published: same id, key, value.
    Replay {
        /// Record kind: call-status or cdr.
        #[arg(long)]
        kind: String,
        /// Received at or after this instant (RFC 3339, e.g. 2026-11-21T08:00:00Z).
        #[arg(long)]
        since: DateTime<Utc>,
        /// Received before this instant (default: now).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every record kind's topic with `kafka.new_topics` (partitions, replication
    /// factor, retention); topics that exist are left as they are. Safe to run again.
    Create,
    /// List the topics ringback publishes to and whether the brokers have them.
    Check,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The hook URL, e.g. http://127.0.0.1:8080/hooks/huawei.
    #[arg(long)]
    target: String,
    /// calls (status flows + fee pushes), fee, status, or acs (Event Grid batches).
    #[arg(long, value_enum, default_value = "calls")]
    traffic: simulate::Traffic,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per second over all connections (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to run (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// How many requests to send.
    #[arg(long)]
    count: Option<u64>,
    /// Sign Huawei requests with this app key (X-AKSK)…
    #[arg(long)]
    app_key: Option<String>,
    /// …and the secret in this environment variable…
    #[arg(long, default_value = "RINGBACK_SIMULATE_SECRET")]
    secret_env: String,
    /// …for this URL (the source's public_url; default: --target).
    #[arg(long)]
    public_url: Option<String>,
    /// Seed of the generated ids (vary it between runs against one database).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Write the records of every request answered 2xx to this file (id, kind, key, event
    /// type; tab-separated): what a fault run checks was kept.
    #[arg(long)]
    acks: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, without a backtrace: these are user errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Some(Command::ConfigSchema)) {
        // Needs no configuration (the one at hand may be the broken one).
        println!("{}", serde_json::to_string_pretty(&Config::json_schema())?);
        return Ok(());
    }
    if matches!(cli.command, Some(Command::Openapi)) {
        let document = ringback::ingest::openapi::document();
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Maintain {
            rebuild_rollups,
            since,
            until,
        } => maintain(config, rebuild_rollups.then_some(since).flatten(), until).await,
        Command::Migrate => {
            let store = store::connect(&config.database).await?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Replay { kind, since, until } => {
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
        Command::Simulate(args) => {
            let signer = match &args.app_key {
                Some(app_key) => Some(simulate::Signer {
                    app_key: app_key.clone(),
                    secret: std::env::var(&args.secret_env)
                        .with_context(|| {
                            format!("--app-key needs the secret in {}", args.secret_env)
                        })?
                        .into_bytes(),
                    url: args
                        .public_url
                        .clone()
                        .unwrap_or_else(|| args.target.clone()),
                }),
                None => None,
            };
            let report = simulate::run(simulate::Plan {
                target: args.target,
                traffic: args.traffic,
                connections: args.connections,
                rate: args.rate,
                duration: args.duration,
                count: args.count,
                signer,
                seed: args.seed,
                acks: args.acks,
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.render());
            }
            Ok(())
        }
        Command::Topics(command) => topics_command(&config, command).await,
        Command::DeadLetters(command) => cli::dead_letters::run(config, command).await,
        // Answered before the configuration is read.
        Command::ConfigSchema | Command::Openapi => Ok(()),
        Command::CheckConfig { connect } => {
            for (name, source) in &config.sources {
                Source::from_config(name, source).await?;
            }
            for (key, var) in &config.kafka.client_env {
                if std::env::var_os(var).is_none() {
                    bail!("kafka.client_env.{key}: environment variable {var} is not set");
                }
            }
            println!("configuration is valid");
            println!("  http.addr     = {}", config.http.addr);
            println!("  database      = {}", redact_url(&config.database.url));
            println!(
                "  kafka.brokers = {:?}",
                String::from(config.kafka.brokers.clone())
            );
            for (name, source) in &config.sources {
                println!(
                    "  source {name:<12} kind={} auth={} -> POST /hooks/{name}",
                    spelling(&source.kind),
                    spelling(&source.auth.mode())
                );
            }
            if connect {
                let findings = check::connect(&config).await;
                let mut failed = 0;
                for f in &findings {
                    match &f.result {
                        Ok(text) => println!("  {:<13} ok: {text}", f.what),
                        Err(text) => {
                            failed += 1;
                            println!("  {:<13} FAILED: {text}", f.what);
                        }
                    }
                }
                if failed > 0 {
                    bail!("{failed} connection check(s) failed");
                }
            }
            Ok(())
        }
    }
}

/// `ringback topics create|check`.
async fn topics_command(config: &Config, command: TopicsCommand) -> anyhow::Result<()> {
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    app.run_until_stopped(shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Hides a password in a database URL.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `ringback maintain`.
async fn maintain(
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
