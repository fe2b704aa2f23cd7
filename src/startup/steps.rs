//! The steps of `Application::build_with_store`, in the order it takes them.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use super::{Schema, Stage};
use crate::config::{BatchConfig, Brokers, Config, KafkaConfig};
use crate::error::error_chain;
use crate::ingest::{self, AppState, Health, Source};
use crate::metrics::Metrics;
use crate::publish::kafka::{self, EmbeddedBroker};
use crate::publish::{self, Producer, Regions};
use crate::spool::Spool;
use crate::store::Store;

/// Partitions of each topic of the embedded broker.
const EMBEDDED_PARTITIONS: i32 = 3;
/// How often the database is pinged for `ringback_store_up`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired X-AKSK nonces are deleted.
const NONCE_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Every configured source, ready to serve (secrets read, keys loaded, their JWKS refreshes on
/// `background`).
pub(super) async fn sources(
    config: &Config,
    background: &Stage,
) -> anyhow::Result<HashMap<String, Arc<Source>>> {
    let mut sources = HashMap::new();
    for (name, source) in &config.sources {
        let source = Arc::new(Source::from_config(name, source).await?);
        if let Some(refresh) = source.jwks_refresh(background.stop.clone()) {
            background.tasks.spawn(refresh);
        }
        sources.insert(name.clone(), source);
    }
    if sources.is_empty() {
        tracing::warn!("no sources configured: every POST /hooks/<name> will answer 404");
    }
    Ok(sources)
}

/// The embedded broker (when `kafka.brokers = "embedded"`) and the publisher's producer (none
/// in outbox-only mode); each topic's series.
pub(super) fn kafka(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<(Option<EmbeddedBroker>, Option<Producer>)> {
    let (embedded, producer) = match &config.kafka.brokers {
        Brokers::None => {
            tracing::warn!(
                "kafka.brokers is empty: OUTBOX-ONLY MODE. Records are committed and kept \
                 in the outbox but NOT published to Kafka until brokers are configured"
            );
            (None, None)
        }
        Brokers::Embedded => {
            let broker = EmbeddedBroker::start(&config.kafka, EMBEDDED_PARTITIONS)
                .context("starting the embedded Kafka broker")?;
            tracing::info!(
                bootstrap = broker.bootstrap_servers(),
                "embedded Kafka broker (in memory, for trying ringback out) listening at {}",
                broker.bootstrap_servers()
            );
            let producer = producer_of(broker.bootstrap_servers(), &config.kafka)?;
            (Some(broker), Some(producer))
        }
        Brokers::List(brokers) => (None, Some(producer_of(brokers, &config.kafka)?)),
    };
    for (kind, topic) in publish::topics(&config.kafka) {
        if producer.is_some() {
            tracing::info!(kind = kind.as_str(), topic, "publishing records to topic");
        }
        metrics.init_topic(&topic);
    }
    Ok((embedded, producer))
}

/// The publisher's producer for `brokers`, remade the same way whenever it must be replaced.
fn producer_of(brokers: &str, config: &KafkaConfig) -> anyhow::Result<Producer> {
    let (brokers, config) = (brokers.to_owned(), config.clone());
    Ok(Producer::new(Box::new(move || {
        kafka::producer(&brokers, &config)
    }))?)
}

/// The spool, on PostgreSQL when enabled; with it, the outbox leases of this replica's earlier
/// life taken back. With the schema pending (the database away), the spool holds every batch.
pub(super) async fn spool(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Arc<Metrics>,
    background: &Stage,
    schema: Schema,
) -> anyhow::Result<Option<Arc<Spool>>> {
    if !config.spool.enabled {
        return Ok(None);
    }
    if store.backend() != "postgres" {
        tracing::info!(
            "spool off: with SQLite as the store it would share its disk and its failures"
        );
        return Ok(None);
    }
    let spool = Spool::open(
        &config.spool,
        metrics.clone(),
        &background.tasks,
        background.stop.clone(),
    )
    .await
    .with_context(|| format!("opening the spool {}", config.spool.path.display()))?;
    tracing::info!(path = %config.spool.path.display(), "spool ready: batches the database cannot take in time are kept here");
    if schema == Schema::Pending {
        spool.hold().await;
        return Ok(Some(spool));
    }
    release_own_leases(store.as_ref()).await;
    Ok(Some(spool))
}

/// The spool's lock makes this process the only one of its name: leases its name holds were
/// taken by an earlier life (killed while publishing). Waiting them out would let newer entries
/// of the same calls reach Kafka before older ones.
async fn release_own_leases(store: &dyn Store) {
    match store.release_own_leases().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            entries = n,
            "took back the outbox leases of this replica's earlier life"
        ),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "could not take back this replica's earlier outbox leases; they are published when they expire")
        }
    }
}

/// Bounds of the waits between attempts to reach a database that was away at start.
const REACH_MIN_BACKOFF: Duration = Duration::from_millis(500);
const REACH_MAX_BACKOFF: Duration = Duration::from_secs(15);

/// For a process that started while its database was away: tries to reach it and apply the
/// migrations (with `database.migrate_on_start`) until it can, then does what the start could
/// not (outbox leases, maintenance) and lets the spool drain. A schema newer than this binary's
/// (another version migrated it) or a migration that fails is logged at every attempt and the
/// spool keeps holding: what was acknowledged stays on disk, nothing is written into a schema
/// this binary does not know.
pub(super) fn reach_database(
    config: &Config,
    store: &Arc<dyn Store>,
    spool: &Arc<Spool>,
    metrics: &Arc<Metrics>,
    background: &Stage,
) {
    let (config, store, spool, metrics) = (
        config.clone(),
        store.clone(),
        spool.clone(),
        metrics.clone(),
    );
    let (stop, tasks) = (background.stop.clone(), background.tasks.clone());
    background.tasks.spawn(async move {
        let mut backoff = crate::retry::Backoff::new(REACH_MIN_BACKOFF, REACH_MAX_BACKOFF);
        let started = std::time::Instant::now();
        loop {
            let attempt = async {
                store.ping().await?;
                if config.database.migrate_on_start {
                    store.migrate().await?;
                }
                Ok::<_, crate::store::StoreError>(())
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    tracing::info!(error = %error_chain(&e), "the database is still away; pushes are kept on the spool");
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "the database is reached but its schema cannot be made this binary's (newer, or a migration failed); the spool keeps every push until it can");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_wait()) => {}
            }
        }
        tracing::warn!(
            after = ?started.elapsed(),
            "the database is reached and migrated: draining the spool"
        );
        release_own_leases(store.as_ref()).await;
        if let Some(maintainer) = store.maintainer() {
            let maintenance =
                crate::maintenance::Maintenance::new(maintainer, Arc::new(config), metrics);
            match maintenance.check().await {
                Ok(()) => {
                    tasks.spawn(maintenance.run(stop.clone()));
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(e.as_ref()), "maintenance cannot run; partitions ahead are not created");
                }
            }
        }
        spool.release();
    });
}

/// Each source's default region, by name: what rebuilt messages write their numbers in.
pub(super) fn regions(config: &Config) -> Regions {
    config
        .sources
        .iter()
        .filter_map(|(name, s)| s.default_region.map(|r| (name.clone(), r)))
        .collect()
}

/// Partitions ahead, retention and rollups on timers (docs/analytics.md), after a first
/// check that they can run.
pub(super) async fn maintenance(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: &Arc<Metrics>,
    background: &Stage,
) -> anyhow::Result<()> {
    if let Some(maintainer) = store.maintainer() {
        let maintenance = crate::maintenance::Maintenance::new(
            maintainer,
            Arc::new(config.clone()),
            metrics.clone(),
        );
        maintenance.check().await?;
        background
            .tasks
            .spawn(maintenance.run(background.stop.clone()));
    }
    Ok(())
}

/// Keeps `ringback_store_up` and `/readyz` current from a background check; purges expired
/// X-AKSK nonces now and then (any replica may: the delete is idempotent).
pub(super) fn health_checks(
    store: &Arc<dyn Store>,
    metrics: &Arc<Metrics>,
    background: &Stage,
) -> Arc<Health> {
    let health = Arc::new(Health::default());
    let (store, metrics, stop) = (store.clone(), metrics.clone(), background.stop.clone());
    let checked = health.clone();
    background.tasks.spawn(async move {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        let mut purge = tokio::time::interval(NONCE_PURGE_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    checked.record(&ingest::check_store(store.as_ref(), &metrics).await);
                    metrics.store_failovers(store.failovers());
                }
                _ = purge.tick() => match store.purge_nonces(chrono::Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "purged expired nonces"),
                    Err(e) => tracing::debug!(error = %error_chain(&e), "could not purge nonces"),
                },
            }
        }
    });
    health
}

/// The batch settings the store can use: SQLite has one writer at a time, so one worker
/// (concurrent transactions would only wait on each other).
pub(super) fn batch_config(config: &Config, store: &dyn Store) -> BatchConfig {
    let mut batch = config.batch.clone();
    if store.backend() == "sqlite" && batch.workers > 1 {
        batch.workers = 1;
    }
    batch
}

/// The hooks' listener and, when `http.admin_addr` is set, the admin one.
pub(super) struct Listeners {
    hooks: TcpListener,
    pub(super) addr: SocketAddr,
    admin: Option<TcpListener>,
    pub(super) admin_port: Option<u16>,
}

impl Listeners {
    pub(super) fn bind(config: &Config) -> anyhow::Result<Self> {
        let hooks = TcpListener::bind(&config.http.addr)
            .with_context(|| format!("binding http.addr {}", config.http.addr))?;
        let addr = hooks.local_addr()?;
        let admin = match &config.http.admin_addr {
            Some(admin) => Some(
                TcpListener::bind(admin)
                    .with_context(|| format!("binding http.admin_addr {admin}"))?,
            ),
            None => None,
        };
        let admin_port = match &admin {
            Some(l) => Some(l.local_addr()?.port()),
            None => None,
        };
        Ok(Self {
            hooks,
            addr,
            admin,
            admin_port,
        })
    }
}

/// The admin API (`crate::admin`), when the admin listener and its token are configured.
pub(super) fn admin(
    config: &Config,
    admin_port: Option<u16>,
) -> anyhow::Result<crate::admin::AdminData> {
    let (Some(port), Some(at)) = (admin_port, config.http.admin_token()) else {
        if admin_port.is_some() {
            tracing::info!("admin API off: set http.admin_token_env or http.admin_token_file");
        }
        return Ok(web::Data::new(None));
    };
    let token = at
        .read()
        .map_err(|e| anyhow::anyhow!("http.admin_token: {e}"))?;
    anyhow::ensure!(
        token.expose().len() >= crate::config::MIN_SECRET_BYTES,
        "http.admin_token: at least {} bytes",
        crate::config::MIN_SECRET_BYTES
    );
    let (calls, letters) = crate::store::connect_admin(&config.database)?;
    tracing::info!(port, "admin API at /admin/api on the admin listener");
    Ok(web::Data::new(Some(crate::admin::Admin {
        calls,
        letters,
        token,
        port,
        sources: config.sources.keys().cloned().collect(),
        sessions: Default::default(),
        attempts: Default::default(),
        overview: Default::default(),
    })))
}

/// The HTTP server on the listeners, started (it serves once polled).
pub(super) fn http_server(
    config: &Config,
    state: web::Data<AppState>,
    admin: crate::admin::AdminData,
    listeners: Listeners,
) -> anyhow::Result<Server> {
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(admin.clone())
            .wrap(from_fn(ingest::observe))
            .configure(ingest::routes)
            .configure(crate::admin::routes)
    })
    .disable_signals()
    .client_request_timeout(config.http.client_request_timeout)
    .max_connections(config.http.max_connections)
    .shutdown_timeout(config.http.shutdown_timeout.as_secs());
    if config.http.workers > 0 {
        server = server.workers(config.http.workers);
    }
    server = server.listen(listeners.hooks)?;
    if let Some(admin) = listeners.admin {
        server = server.listen(admin)?;
    }
    Ok(server.run())
}
