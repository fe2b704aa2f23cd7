// One unsafe call, allowed where it is made: an allocator option (`tune_allocator`).
#![deny(unsafe_code)]

//! The `ringback` binary: argument parsing, and each subcommand handed to `cli/`.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use ringback::config::Config;
use ringback::telemetry;

mod cli;

/// mimalloc instead of glibc's allocator: a profile of the fee path (`perf record -e cpu-clock
/// -g` on the server during `ringback simulate --traffic fee`) put about 31 % of the server's
/// CPU in glibc's malloc and free (parsed records, message values, bound arrays, Kafka copies:
/// many short-lived allocations across threads). Measured in docs/development/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns freed memory to the OS 10 ms after it is freed by default; meanwhile the
/// next stage of a request (parse, encode, bind, commit: each on another thread) takes fresh
/// pages. For the largest body a sender may send (1 MiB, 2 844 ACS events in one transaction)
/// that put the server's peak RSS at 171 MiB; purging at once, 71 MiB (glibc's allocator: 70),
/// at the same CPU per request (`HOSTILE_ONLY=max-valid HOSTILE_CONCURRENCY=1 bash
/// benches/hostile.sh`; docs/reference/endpoints.md, "What one sender can and cannot do to others"). An operator's
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
    /// One call's timeline without SQL: events, CDR, dead letters, Kafka state.
    #[command(subcommand)]
    Calls(cli::calls::CallsCommand),
    /// Records by id, dedupe key or phone number, without SQL.
    #[command(subcommand)]
    Events(cli::events::EventsCommand),
    /// Refused input kept for inspection: list it, show it, run it again through the current
    /// parsers (docs/operations/dead-letters.md).
    #[command(subcommand)]
    DeadLetters(cli::dead_letters::DeadLettersCommand),
    /// Kafka topics of the record kinds.
    #[command(subcommand)]
    Topics(cli::topics::TopicsCommand),
    /// Play platform traffic against a ringback (or any endpoint) and report throughput and
    /// latency percentiles.
    Simulate(cli::simulate::SimulateArgs),
    /// Fakes of the platforms with their delivery rules (retries, merging, signing), writing a
    /// ledger of what was sent and answered; `emulate verify` checks a ledger against the target.
    #[command(subcommand)]
    Emulate(cli::emulate::EmulateCommand),
    /// Re-publish stored records received in a time range to their Kafka topic (for a new
    /// consumer or a lost topic). Messages are the ones first published: same id, key, value.
    Replay {
        /// Record kind: call-status, cdr, phone-events, call-events, chat-events or
        /// webhook-events.
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
        Command::Serve => cli::serve::run(config).await,
        Command::Maintain {
            rebuild_rollups,
            since,
            until,
        } => cli::maintain::run(config, rebuild_rollups.then_some(since).flatten(), until).await,
        Command::Migrate => cli::maintain::migrate(&config).await,
        Command::Replay { kind, since, until } => {
            cli::replay::run(config, kind, since, until).await
        }
        Command::Simulate(args) => cli::simulate::run(args).await,
        Command::Emulate(command) => cli::emulate::run(config, command).await,
        Command::Topics(command) => cli::topics::run(&config, command).await,
        Command::DeadLetters(command) => cli::dead_letters::run(config, command).await,
        Command::Calls(command) => cli::calls::run(config, command).await,
        Command::Events(command) => cli::events::run(config, command).await,
        // Answered before the configuration is read.
        Command::ConfigSchema | Command::Openapi => Ok(()),
        Command::CheckConfig { connect } => cli::check_config::run(&config, connect).await,
    }
}
