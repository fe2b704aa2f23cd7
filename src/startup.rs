//! The one wiring path: `Application::build` → `port()` → `run_until_stopped(shutdown)`.
//! `main` and the integration tests both go through it, so tests drive the real thing.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::Batcher;
use crate::config::Config;
use crate::ingest::{self, AppState, Source};
use crate::store::{self, Store};

/// A built, listening, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    batcher: CancellationToken,
    batcher_task: JoinHandle<()>,
    store: Arc<dyn Store>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects the configured store, applies migrations if configured, binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = store::connect(&config.database)
            .await
            .context("connecting to the database")?;
        if config.database.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        Self::build_with_store(config, store).await
    }

    /// Like [`build`](Self::build) with a store of the caller's (tests use failing stores).
    pub async fn build_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let mut sources = HashMap::new();
        for (name, source) in &config.sources {
            sources.insert(name.clone(), Arc::new(Source::from_config(name, source)?));
        }
        if sources.is_empty() {
            tracing::warn!("no sources configured: every POST /hooks/<name> will answer 404");
        }
        let listener = TcpListener::bind(&config.http.addr)
            .with_context(|| format!("binding http.addr {}", config.http.addr))?;
        let addr = listener.local_addr()?;
        let batcher = CancellationToken::new();
        let (handle, batcher_task) =
            Batcher::spawn(store.clone(), config.batch.clone(), batcher.clone());
        let state = web::Data::new(AppState {
            sources,
            batcher: handle,
            max_body_bytes: config.http.max_body_bytes,
            retry_after_secs: config.batch.retry_after_secs,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(ingest::request_id))
                .configure(ingest::routes)
        })
        .disable_signals()
        .shutdown_timeout(config.http.shutdown_timeout.as_secs());
        if config.http.workers > 0 {
            server = server.workers(config.http.workers);
        }
        let server = server.listen(listener)?.run();
        tracing::info!(
            %addr,
            store = store.backend(),
            sources = ?config.sources.keys().collect::<Vec<_>>(),
            "ringback listening"
        );
        Ok(Self {
            port: addr.port(),
            server,
            batcher,
            batcher_task,
            store,
            shutdown_timeout: config.http.shutdown_timeout,
        })
    }

    /// The bound port (useful with `http.addr = "127.0.0.1:0"`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then drains: stop accepting connections, let
    /// in-flight requests finish (their batches commit), flush the queue, close the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let result = tokio::select! {
            r = &mut server => r.context("HTTP server task")?.context("HTTP server"),
            _ = shutdown.cancelled() => {
                tracing::info!("shutting down: draining in-flight requests");
                handle.stop(true).await;
                server.await.context("HTTP server task")?.context("HTTP server")
            }
        };
        self.batcher.cancel();
        if tokio::time::timeout(self.shutdown_timeout, self.batcher_task)
            .await
            .is_err()
        {
            tracing::error!("the batcher did not drain within the shutdown timeout");
        }
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}
