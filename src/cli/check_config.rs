//! `ringback check-config`.

use anyhow::bail;

use ringback::config::{spelling, Config};
use ringback::ingest::Source;
use ringback::startup::check;

/// Validates the configuration with its secrets (and, with `connect`, the connections).
pub async fn run(config: &Config, connect: bool) -> anyhow::Result<()> {
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
        let findings = check::connect(config).await;
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
