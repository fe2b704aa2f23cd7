//! `ringback emulate huawei | verify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use ringback::auth::aksk::DigestVariant;
use ringback::config::Config;
use ringback::emulate::{event_grid, huawei, ledger, verify};

#[derive(Subcommand)]
pub enum EmulateCommand {
    /// A fake Huawei Cloud VoiceCall: calls played with realistic outcomes, status pushes sent
    /// once, CDRs merged (≤ 50) and retried up to 6 times an hour apart, X-AKSK signed; the
    /// app-facing callVerify API with --listen. Every attempt goes to the ledger.
    Huawei(HuaweiArgs),
    /// A fake Event Grid subscription to ACS events: the validation handshake (either schema),
    /// batches with the aeg-* headers, the documented retry schedule (time-scaled), dead-lettering
    /// to a folder, redeliveries of acknowledged batches. Every attempt goes to the ledger.
    EventGrid(EventGridArgs),
    /// Check a ledger against the target (the --config's database and Kafka): every
    /// acknowledged record stored once and published, every malformed push a dead letter,
    /// nothing lost. Exits 1 unless the verdict is clean.
    Verify {
        #[arg(long)]
        ledger: PathBuf,
        /// How long to wait for the publisher to catch up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct HuaweiArgs {
    /// Where status events go (the app's status URL), e.g. http://127.0.0.1:8080/hooks/hw.
    #[arg(long)]
    status_url: String,
    /// Where CDRs go (default: the status URL).
    #[arg(long)]
    fee_url: Option<String>,
    #[arg(long)]
    app_key: String,
    /// The environment variable holding the app secret.
    #[arg(long, default_value = "RINGBACK_EMULATE_SECRET")]
    app_secret_env: String,
    /// PasswordDigest over url, nonce and created joined by newlines (the current docs) or
    /// run together (the 2022 docs).
    #[arg(long, value_enum, default_value = "newline")]
    digest: Digest,
    /// Created in Beijing time (UTC+8, as the current docs say), not UTC.
    #[arg(long)]
    beijing: bool,
    #[arg(long, default_value_t = 5.0)]
    calls_per_second: f64,
    /// How long calls keep coming; then the calls in flight end and fee retries run out.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The same seed plays the same calls (vary it between runs against one database).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platform seconds per real second (3600: a fee retry every second).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Serve the app-facing API (POST /rest/httpsessions/callVerify/v1.0) here.
    #[arg(long)]
    listen: Option<String>,
    /// Share of status pushes sent malformed (ringback must keep them as dead letters).
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    #[arg(long, default_value = "emulate-huawei.jsonl")]
    ledger: PathBuf,
    /// Then check the ledger against the target (as `emulate verify`).
    #[arg(long)]
    verify: bool,
}

#[derive(clap::Args)]
pub struct EventGridArgs {
    /// The subscription's webhook endpoint, e.g. https://hooks.example.com/hooks/acs?code=SECRET.
    #[arg(long)]
    endpoint: String,
    #[arg(long, value_enum, default_value = "event-grid")]
    schema: event_grid::Schema,
    /// A delivery-property header carrying a secret: NAME, its value in --header-secret-env.
    #[arg(long)]
    header: Option<String>,
    #[arg(long, default_value = "RINGBACK_EMULATE_HEADER_SECRET")]
    header_secret_env: String,
    #[arg(long, default_value = "ringback-emulated")]
    subscription: String,
    #[arg(long, default_value_t = 20.0)]
    events_per_second: f64,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platform seconds per real second (60: the 10 s first retry comes after 1/6 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Max events per batch (1..5000).
    #[arg(long, default_value_t = 10)]
    max_events: usize,
    /// Preferred batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Share of acknowledged batches delivered again (the same events).
    #[arg(long, default_value_t = 0.0)]
    redeliver: f64,
    #[arg(long, default_value = "emulate-dead-letters")]
    dead_letter_dir: PathBuf,
    #[arg(long, default_value = "emulate-event-grid.jsonl")]
    ledger: PathBuf,
    /// Then check the ledger against the target (as `emulate verify`).
    #[arg(long)]
    verify: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Digest {
    Newline,
    Concat,
}

pub async fn run(config: Config, command: EmulateCommand) -> anyhow::Result<()> {
    match command {
        EmulateCommand::Huawei(args) => {
            let secret = std::env::var(&args.app_secret_env)
                .with_context(|| format!("the app secret, in {}", args.app_secret_env))?;
            let ledger_path = args.ledger.clone();
            let options = huawei::Options {
                fee_url: args.fee_url.unwrap_or_else(|| args.status_url.clone()),
                status_url: args.status_url,
                app_key: args.app_key,
                app_secret: secret.into_bytes(),
                digest: match args.digest {
                    Digest::Newline => DigestVariant::Newline,
                    Digest::Concat => DigestVariant::Concat,
                },
                beijing_created: args.beijing,
                calls_per_second: args.calls_per_second,
                duration: args.duration,
                seed: args.seed,
                time_scale: args.time_scale,
                listen: args.listen,
                malformed: args.malformed,
                ledger: args.ledger,
            };
            let summary = huawei::run(options, interrupted()).await?;
            report(&config, &summary, args.verify.then_some(&ledger_path)).await
        }
        EmulateCommand::EventGrid(args) => {
            let header = match &args.header {
                Some(name) => Some((
                    name.clone(),
                    std::env::var(&args.header_secret_env).with_context(|| {
                        format!("--header needs its value in {}", args.header_secret_env)
                    })?,
                )),
                None => None,
            };
            let ledger_path = args.ledger.clone();
            let options = event_grid::Options {
                endpoint: args.endpoint,
                schema: args.schema,
                header,
                subscription: args.subscription,
                events_per_second: args.events_per_second,
                duration: args.duration,
                seed: args.seed,
                time_scale: args.time_scale,
                max_events: args.max_events,
                batch_bytes: args.batch_bytes,
                redeliver: args.redeliver,
                dead_letter_dir: args.dead_letter_dir,
                ledger: args.ledger,
            };
            let summary = event_grid::run(options, interrupted()).await?;
            report(&config, &summary, args.verify.then_some(&ledger_path)).await
        }
        EmulateCommand::Verify { ledger, wait, json } => check(&config, &ledger, wait, json).await,
    }
}

/// Prints a run's summary (one JSON line), then, with `--verify`, the verdict on its ledger.
async fn report(
    config: &Config,
    summary: &impl serde::Serialize,
    verify: Option<&PathBuf>,
) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(summary)?);
    match verify {
        Some(ledger) => check(config, ledger, Duration::from_secs(30), false).await,
        None => Ok(()),
    }
}

/// Cancelled on Ctrl-C: the run stops sending and gives up its retries.
fn interrupted() -> CancellationToken {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    stop
}

async fn check(
    config: &Config,
    path: &std::path::Path,
    wait: Duration,
    json: bool,
) -> anyhow::Result<()> {
    let attempts = ledger::read(path)?;
    let verdict = verify::verify(&attempts, config, wait).await?;
    if json {
        println!("{}", serde_json::to_string(&verdict)?);
    } else {
        println!("{}", verdict.render());
    }
    anyhow::ensure!(verdict.clean, "the verdict is not clean");
    Ok(())
}
