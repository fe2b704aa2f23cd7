//! `ringback simulate`.

use std::path::PathBuf;

use anyhow::Context;

use ringback::simulate;

#[derive(clap::Args)]
pub struct SimulateArgs {
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

/// Plays the traffic and prints the report.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let signer = match &args.app_key {
        Some(app_key) => Some(simulate::Signer {
            app_key: app_key.clone(),
            secret: std::env::var(&args.secret_env)
                .with_context(|| format!("--app-key needs the secret in {}", args.secret_env))?
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
