//! The one wiring path: `Application::build` → `port()` → `run_until_stopped(shutdown)`.
//! `main` and the integration tests both go through it, so tests drive the real thing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod check;
mod steps;

use crate::batch::{Batcher, Spooling};
use crate::config::Config;
use crate::ingest::AppState;
use crate::metrics::Metrics;
use crate::publish::kafka::EmbeddedBroker;
use crate::publish::{Publisher, PublisherHandle};
use crate::store::{self, Store};

/// The replica's identity, stable across its restarts and distinct between replicas: the host
/// name (a pod's name in a StatefulSet, a container's in compose) with the spool's absolute path
/// (two replicas on one host cannot share a spool). Its outbox entries carry it, so a restarted
/// replica publishes what its earlier life left at once and in commit order, while another
/// replica's young entries, in flight from that replica's memory, are left to it.
pub fn instance_id(spool: &std::path::Path) -> uuid::Uuid {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let path = std::path::absolute(spool).unwrap_or_else(|_| spool.to_owned());
    let name = format!("{host}\u{1f}{}", path.display());
    uuid::Uuid::new_v5(&INSTANCE_NAMESPACE, name.as_bytes())
}

/// Namespace of [`instance_id`]s.
const INSTANCE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x3c1d_92f4_7a0b_4e55_8f61_0d2e_b4a7_19c3);

/// Whether a failure to reach the database at start says it is away (connection refused or
/// timed out, the server not accepting connections now: SQLSTATE classes 08, 53, 57), rather
/// than misconfigured (a DNS name that does not resolve, TLS, credentials, a database that does
/// not exist): only an away database lets `serve` start on its spool. A misconfiguration
/// stops the start, named, as before: spooling behind it would only hide it.
fn database_away(e: &store::StoreError) -> bool {
    let store::StoreError::Unavailable(sql) = e else {
        return false;
    };
    match sql {
        sqlx::Error::PoolTimedOut | sqlx::Error::Database(_) => true,
        sqlx::Error::Io(_) => check::explain(sql).starts_with("TCP: "),
        _ => false,
    }
}

/// Whether the store's schema is this binary's when the application is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Connected, and migrated if configured.
    Ready,
    /// The database was away at start: the spool holds every batch until it is reached and
    /// migrated.
    Pending,
}

/// Tasks stopped together: a token that tells them to stop (a child of the application's),
/// and a tracker that owns them until they have.
struct Stage {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Stage {
    fn new(parent: &CancellationToken) -> Self {
        Self {
            stop: parent.child_token(),
            tasks: TaskTracker::new(),
        }
    }

    /// Tells the stage's tasks to stop and waits for them, at most `within`; whether they did.
    async fn stop_within(&self, within: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
    }
}

/// A built, listening, not yet running service. Every task it started is owned by one of its
/// stages and awaited on shutdown, in order: the batchers, then the publisher, then the
/// background tasks (health checks, JWKS refreshes).
pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: Server,
    /// Cancelling it stops every stage at once (each stage's token is a child of it).
    stop: CancellationToken,
    batcher: Stage,
    publisher: Stage,
    background: Stage,
    publisher_handle: PublisherHandle,
    embedded: Option<EmbeddedBroker>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    shutdown_timeout: Duration,
    publish_deadline: Duration,
    /// Read by `/readyz`; set when shutdown starts (see `run_until_stopped`).
    draining: Arc<AtomicBool>,
    drain_delay: Duration,
}

impl Application {
    /// Connects the configured store, applies migrations if configured, binds the listener.
    ///
    /// A PostgreSQL store that is away (refused, timed out, not accepting connections yet:
    /// [`database_away`]) does not stop the start when the spool is on: the replica serves, every
    /// acknowledged push is on the spool's disk, and a background task keeps trying to reach the
    /// database and apply the migrations; then the spool drains ([`steps::reach_database`]).
    /// Kubernetes rescheduling pods during a database outage so keeps replicas that can take
    /// Huawei's status pushes, which are never retried. Any other failure stops the start.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        match Self::connect(&config).await {
            Ok(store) => Self::assemble(config, store, Schema::Ready).await,
            Err(e) if database_away(&e) && config.spool.enabled => {
                let Some(store) = store::connect_lazy(&config.database) else {
                    return Err(Self::explain(e));
                };
                tracing::warn!(
                    error = %Self::explain(e),
                    "the database cannot be reached: starting anyway, every push is kept on the \
                     spool, and committed once the database is reached and migrated"
                );
                Self::assemble(config, store?, Schema::Pending).await
            }
            Err(e) => Err(Self::explain(e)),
        }
    }

    async fn connect(config: &Config) -> Result<Arc<dyn Store>, store::StoreError> {
        let store = store::connect(&config.database).await?;
        if config.database.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Why the start failed: for a connection, the step that failed (DNS, TCP, TLS,
    /// authentication), as `check-config --connect` names it.
    fn explain(e: store::StoreError) -> anyhow::Error {
        match &e {
            store::StoreError::Unavailable(sql) | store::StoreError::Rejected(sql) => {
                anyhow::anyhow!("connecting to the database: {}", check::explain(sql))
            }
            store::StoreError::Migrate(_) => anyhow::Error::new(e).context("applying migrations"),
            _ => anyhow::Error::new(e).context("connecting to the database"),
        }
    }

    /// Like [`build`](Self::build) with a store of the caller's (tests use failing stores).
    pub async fn build_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        Self::assemble(config, store, Schema::Ready).await
    }

    async fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        schema: Schema,
    ) -> anyhow::Result<Self> {
        let instance = instance_id(&config.spool.path);
        if !store.set_owner(instance) {
            tracing::warn!("the store was named before; outbox entries keep that name");
        }
        let stop = CancellationToken::new();
        let (batcher_stage, publisher_stage, background) =
            (Stage::new(&stop), Stage::new(&stop), Stage::new(&stop));
        let sources = steps::sources(&config, &background).await?;
        let metrics = Arc::new(Metrics::new());
        for (name, source) in &sources {
            metrics.init_source(name, source.kind);
        }
        let (embedded, producer) = steps::kafka(&config, &metrics)?;
        let spool = steps::spool(&config, &store, &metrics, &background, schema).await?;
        let (publisher, publisher_handle) = Publisher::new(
            store.clone(),
            producer,
            config.kafka.clone(),
            metrics.clone(),
            steps::regions(&config),
        );
        publisher_stage
            .tasks
            .spawn(publisher.run(publisher_stage.stop.clone()));
        match (schema, &spool) {
            (Schema::Pending, Some(spool)) => {
                steps::reach_database(&config, &store, spool, &metrics, &background);
            }
            _ => steps::maintenance(&config, &store, &metrics, &background).await?,
        }
        let health = steps::health_checks(&store, &metrics, &background);
        let listeners = steps::Listeners::bind(&config)?;
        let handle = Batcher::spawn(
            store.clone(),
            steps::batch_config(&config, store.as_ref()),
            batcher_stage.stop.clone(),
            &batcher_stage.tasks,
            Some(publisher_handle.clone()),
            metrics.clone(),
            spool.clone().map(|spool| Spooling {
                spool,
                fallback_after: config.spool.fallback_after,
            }),
        );
        let draining = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            sources,
            batcher: handle,
            store: store.clone(),
            publisher: publisher_handle.clone(),
            spool,
            metrics: metrics.clone(),
            max_body_bytes: config.http.max_body_bytes,
            body_timeout: config.http.body_timeout,
            max_headers: config.http.max_headers,
            max_header_bytes: config.http.max_header_bytes,
            retry_after_secs: config.batch.retry_after_secs,
            draining: draining.clone(),
            shared_nonces: store.backend() == "postgres",
            health,
            admin_port: listeners.admin_port,
        });
        let (addr, admin_port) = (listeners.addr, listeners.admin_port);
        let admin = steps::admin(&config, listeners.admin_port)?;
        let server = steps::http_server(&config, state, admin, listeners)?;
        tracing::info!(
            %addr,
            admin_port = ?admin_port,
            %instance,
            store = store.backend(),
            sources = ?config.sources.keys().collect::<Vec<_>>(),
            "ringback listening"
        );
        Ok(Self {
            port: addr.port(),
            admin_port,
            server,
            stop,
            batcher: batcher_stage,
            publisher: publisher_stage,
            background,
            publisher_handle,
            embedded,
            store,
            metrics,
            shutdown_timeout: config.http.shutdown_timeout,
            publish_deadline: config.kafka.shutdown_deadline,
            draining,
            drain_delay: config.http.drain_delay,
        })
    }

    /// The bound port (useful with `http.addr = "127.0.0.1:0"`).
    /// The admin listener's port, when `http.admin_addr` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The embedded broker's bootstrap address, when `kafka.brokers = "embedded"`.
    pub fn embedded_bootstrap(&self) -> Option<&str> {
        self.embedded
            .as_ref()
            .map(EmbeddedBroker::bootstrap_servers)
    }

    /// The application's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The publisher's state.
    pub fn publisher(&self) -> PublisherHandle {
        self.publisher_handle.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains in order: answer `/readyz` 503 while
    /// still serving for `http.drain_delay` (the load balancer takes this replica out), stop
    /// accepting and let in-flight requests finish, commit what the batcher holds, publish what can be published
    /// within `kafka.shutdown_deadline` (the rest stays in the outbox), close the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let result = tokio::select! {
            r = &mut server => r.context("HTTP server task")?.context("HTTP server"),
            _ = shutdown.cancelled() => {
                self.draining.store(true, Ordering::Relaxed);
                if !self.drain_delay.is_zero() {
                    tracing::info!(
                        delay = ?self.drain_delay,
                        "shutting down: unready, still serving while the load balancer notices"
                    );
                    // The server keeps running (it is polled by its own task).
                    tokio::time::sleep(self.drain_delay).await;
                }
                tracing::info!("shutting down: draining in-flight requests");
                handle.stop(true).await;
                server.await.context("HTTP server task")?.context("HTTP server")
            }
        };
        if !self.batcher.stop_within(self.shutdown_timeout).await {
            tracing::error!("the batcher did not drain within the shutdown timeout");
        }
        let margin = Duration::from_secs(5);
        if !self
            .publisher
            .stop_within(self.publish_deadline + margin)
            .await
        {
            tracing::warn!("the publisher did not stop in time; unsent entries stay in the outbox");
        }
        if !self.background.stop_within(margin).await {
            tracing::warn!("background tasks did not stop in time");
        }
        self.stop.cancel();
        drop(self.embedded);
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}
