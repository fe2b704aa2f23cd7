//! `ringback emulate huawei | verify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use ringback::auth::aksk::DigestVariant;
use ringback::config::Config;
use ringback::emulate::{event_grid, huawei, ledger, standard_webhooks, verify};

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
    /// A Svix-like Standard Webhooks sender: each attempt signed with its own timestamp (two
    /// signatures during a secret rotation), Svix's retry schedule (time-scaled), retries after
    /// lost acknowledgements. Every attempt goes to the ledger.
    StandardWebhooks(StandardWebhooksArgs),
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

/// What every emulator takes.
#[derive(clap::Args)]
pub struct RunArgs {
    /// How long traffic keeps coming; then what is in flight ends and the retries run out.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The same seed plays the same traffic (vary it between runs against one database).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platform seconds per real second: retry waits (and Huawei's calls) shrink by it.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Then check the ledger against the target (as `emulate verify`).
    #[arg(long)]
    verify: bool,
}

#[derive(clap::Args)]
pub struct HuaweiArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Where status events go (the app's status URL), e.g. http://127.0.0.1:8080/hooks/hw.
    #[arg(long)]
    status_url: String,
    /// Where CDRs go (default: the status URL).
    #[arg(long)]
    fee_url: Option<String>,
    /// The app_key the pushes are signed with (ringback's source has the same).
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
    /// Calls the platform starts by itself per second (0: only those the API asks for).
    #[arg(long, default_value_t = 5.0)]
    calls_per_second: f64,
    /// Serve the app-facing API (POST /rest/httpsessions/callVerify/v1.0) here.
    #[arg(long)]
    listen: Option<String>,
    /// Share of status pushes sent malformed (ringback must keep them as dead letters).
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// Where every attempt is written (JSON lines), for `emulate verify`.
    #[arg(long, default_value = "emulate-huawei.jsonl")]
    ledger: PathBuf,
}

#[derive(clap::Args)]
pub struct EventGridArgs {
    #[command(flatten)]
    run: RunArgs,
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
    /// Send an Entra-style JWT (ES256) with this audience on every request…
    #[arg(long)]
    jwt_audience: Option<String>,
    /// …and this issuer…
    #[arg(
        long,
        default_value = "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"
    )]
    jwt_issuer: String,
    /// …signed by the key kept here (made on first use)…
    #[arg(long, default_value = "emulate-jwt-key.der")]
    jwt_key: PathBuf,
    /// …whose JWKS is written here (the receiver's jwks_file).
    #[arg(long, default_value = "emulate-jwks.json")]
    jwks_file: PathBuf,
    #[arg(long, default_value = "ringback-emulated")]
    subscription: String,
    #[arg(long, default_value_t = 20.0)]
    events_per_second: f64,
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
    /// Answer incoming calls with this callbackUri: their Call Automation callbacks (connected,
    /// play, recognize, transfer, recording, disconnected) are posted there, with the same
    /// credentials as the events, e.g. https://hooks.example.com/hooks/acs?code=SECRET.
    #[arg(long)]
    call_automation: Option<String>,
    /// Where every attempt is written (JSON lines), for `emulate verify`.
    #[arg(long, default_value = "emulate-event-grid.jsonl")]
    ledger: PathBuf,
}

#[derive(clap::Args)]
pub struct StandardWebhooksArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The endpoint, e.g. http://127.0.0.1:8080/hooks/sw.
    #[arg(long)]
    endpoint: String,
    /// The environment variable with the signing secret(s) (`whsec_…`; two, space-separated,
    /// during a rotation: every attempt is signed with both).
    #[arg(long, default_value = "RINGBACK_EMULATE_WEBHOOK_SECRETS")]
    secrets_env: String,
    #[arg(long, default_value_t = 20.0)]
    messages_per_second: f64,
    /// Share of messages whose 2xx the sender "loses", so it retries a stored message.
    #[arg(long, default_value_t = 0.0)]
    lost_acks: f64,
    /// Where every attempt is written (JSON lines), for `emulate verify`.
    #[arg(long, default_value = "emulate-standard-webhooks.jsonl")]
    ledger: PathBuf,
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
                duration: args.run.duration,
                seed: args.run.seed,
                time_scale: args.run.time_scale,
                listen: args.listen,
                malformed: args.malformed,
                ledger: args.ledger,
            };
            let summary = huawei::run(options, interrupted()).await?;
            report(&config, &summary, args.run.verify.then_some(&ledger_path)).await
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
                jwt: args.jwt_audience.map(|audience| event_grid::Jwt {
                    audience,
                    issuer: args.jwt_issuer,
                    key_file: args.jwt_key,
                    jwks_file: args.jwks_file,
                }),
                subscription: args.subscription,
                events_per_second: args.events_per_second,
                duration: args.run.duration,
                seed: args.run.seed,
                time_scale: args.run.time_scale,
                max_events: args.max_events,
                batch_bytes: args.batch_bytes,
                redeliver: args.redeliver,
                dead_letter_dir: args.dead_letter_dir,
                call_automation: args.call_automation,
                ledger: args.ledger,
            };
            let summary = event_grid::run(options, interrupted()).await?;
            report(&config, &summary, args.run.verify.then_some(&ledger_path)).await
        }
        EmulateCommand::StandardWebhooks(args) => {
            let secrets = std::env::var(&args.secrets_env)
                .with_context(|| format!("the signing secrets, in {}", args.secrets_env))?;
            let ledger_path = args.ledger.clone();
            let options = standard_webhooks::Options {
                endpoint: args.endpoint,
                secrets: secrets.split_whitespace().map(str::to_owned).collect(),
                messages_per_second: args.messages_per_second,
                duration: args.run.duration,
                seed: args.run.seed,
                time_scale: args.run.time_scale,
                lost_acks: args.lost_acks,
                ledger: args.ledger,
            };
            let summary = standard_webhooks::run(options, interrupted()).await?;
            report(&config, &summary, args.run.verify.then_some(&ledger_path)).await
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
