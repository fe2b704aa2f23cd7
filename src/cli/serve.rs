//! `ringback serve` (the default).

use tokio_util::sync::CancellationToken;

use ringback::config::Config;
use ringback::startup::Application;

/// Serves until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
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
