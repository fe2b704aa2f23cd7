//! Typed settings. Layers, later ones winning: built-in defaults → TOML file (`--config`,
//! default `config/default.toml`) → environment variables `RINGBACK__SECTION__KEY`.
//!
//! Secrets never live in the file: a source names the environment variable (or file) that
//! holds its secret (`auth::SecretRef`), and the value read is an `auth::Secret`, which cannot
//! be logged. Each source's settings are typed per auth mode ([`source`]).

mod source;

pub use source::{
    read_secret, AkskAuth, AuthConfig, AuthMode, JwtAuth, KindOptions, RateLimit, SharedSecretAuth,
    SourceConfig, SourceKind, SourceTable, StandardWebhooksAuth,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Everything ringback can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub batch: BatchConfig,
    pub kafka: KafkaConfig,
    pub spool: SpoolConfig,
    pub log: LogConfig,
    /// How long each table keeps its rows (README "Analytics"); default: forever.
    pub retention: RetentionConfig,
    /// Partitions made ahead, and how often maintenance runs.
    pub maintenance: MaintenanceConfig,
    /// The rollups' time zone and refresh.
    pub report: ReportConfig,
    /// Named callback sources; each is served at `POST /hooks/<name>`.
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address. Loopback by default; set `0.0.0.0:8080` to serve other hosts.
    pub addr: String,
    /// The admin listener: `/metrics`, `/readyz` with its detail and `/healthz`, apart from the
    /// hooks (which it does not serve). Unset: `addr` serves everything. With it set, `addr`
    /// serves the hooks, `/healthz` and `/readyz` as a status word only, and no `/metrics`.
    pub admin_addr: Option<String>,
    /// Largest request body accepted, in bytes (413 beyond). A 50-CDR fee body is ~60 KiB.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_timeout: Duration,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, before the
    /// listener closes: the time a load balancer or Kubernetes takes to stop sending new
    /// requests here (README, Deploy). 0 closes at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain_delay: Duration,
    /// A client must send the request head within this time (slow senders are cut off: 408).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub client_request_timeout: Duration,
    /// …and the whole body within this time (408 `body_timeout`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub body_timeout: Duration,
    /// Most concurrent connections per worker; beyond it new connections wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Most request headers a hook request may carry (431 beyond).
    pub max_headers: usize,
    /// Most bytes of header names and values together (431 beyond).
    pub max_header_bytes: usize,
}

const fn default_max_body_bytes() -> usize {
    1024 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            admin_addr: None,
            max_body_bytes: default_max_body_bytes(),
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            client_request_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` or `sqlite://PATH?mode=rwc` (the embedded default).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before a request fails with 503.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub acquire_timeout: Duration,
    /// Apply pending migrations when `serve` starts (they are also run by `ringback migrate`).
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/ringback.db?mode=rwc".into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records committed in one transaction.
    pub max_records: usize,
    /// How long an open batch may wait for more records before it commits. Zero (the
    /// default): it never waits; a batch commits at once when no commit of its worker is in
    /// flight, and else gathers what arrives until that commit ends (group commit). Set it to
    /// trade latency for bigger batches.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub linger: Duration,
    /// Requests waiting for the batchers (all of them together); when full, ingest answers
    /// 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Batchers committing concurrently (PostgreSQL). One call's records always go through
    /// the same one, so they stay in order. SQLite has one writer: it always uses 1.
    pub workers: usize,
    /// Retries of a commit that failed for a transient reason (connection lost, pool
    /// timeout) before the waiting requests are answered 503.
    pub commit_retries: u32,
    /// Pause before the first retry; doubled for each further one.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_backoff: Duration,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 50,
            linger: Duration::ZERO,
            queue_capacity: 1024,
            workers: 4,
            commit_retries: 2,
            retry_backoff: Duration::from_millis(100),
            retry_after_secs: 5,
        }
    }
}

/// The local spool: where a batch goes when PostgreSQL cannot take it in time, so that pushes
/// the platform never resends are kept through a database outage (README, Durability).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Spool batches the database cannot take. Only with PostgreSQL: with SQLite as the store
    /// the spool would share its disk and its failures, so it is off.
    pub enabled: bool,
    /// The spool file (SQLite, WAL, `synchronous=FULL`), on a local disk.
    pub path: PathBuf,
    /// How long a push waits for its commit before its batch is spooled instead: a bound well
    /// under any sender's timeout. A transient database error spools at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub fallback_after: Duration,
    /// Most bytes the spool may hold; beyond it pushes get 503 `spool_full` with
    /// `Retry-After`. Size it as push rate × longest outage × bytes per push (README).
    pub max_bytes: u64,
    /// Free space the spool leaves on its disk: appends beyond it are refused (503
    /// `spool_full`). SQLite needs room to move its WAL into the file and to delete what
    /// was drained; a spool that filled its disk to the last byte could do neither.
    pub min_free_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("data/spool.db"),
            fallback_after: Duration::from_secs(2),
            max_bytes: 1 << 30,
            min_free_bytes: 64 << 20,
        }
    }
}

/// Where committed records are republished.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,host:port`); `"embedded"` runs an in-process
    /// Kafka-protocol broker (librdkafka's mock cluster, for trying ringback out); `""` means
    /// outbox-only mode: records wait in the outbox until brokers are configured.
    pub brokers: String,
    /// Topics are `<topic_prefix>.<kind>` (`ringback.call-status`, `ringback.cdr`).
    pub topic_prefix: String,
    /// Per-kind topic names overriding the prefix rule, e.g. `{ cdr = "billing.cdrs" }`.
    pub topics: BTreeMap<String, String>,
    /// Extra librdkafka settings (`"linger.ms" = "5"`, `"security.protocol" = "SASL_SSL"`).
    /// `enable.idempotence` and `acks` are fixed to `true` and `all`.
    pub client: BTreeMap<String, String>,
    /// librdkafka settings whose values are secrets, read from the named environment
    /// variables: `{ "sasl.password" = "RINGBACK_KAFKA_PASSWORD" }`.
    pub client_env: BTreeMap<String, String>,
    /// What `ringback topics create` creates.
    pub new_topics: NewTopics,
    /// How long librdkafka may try to deliver one message before the publisher falls back
    /// to re-sending from the outbox.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub message_timeout: Duration,
    /// How often the sweeper looks for entries left unpublished (crashes, other replicas).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_interval: Duration,
    /// Entries younger than this are left to the fast path of the replica that committed them.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_grace: Duration,
    /// Entries one sweep claims at most.
    pub sweep_batch: u32,
    /// Longest pause between attempts while the brokers are unreachable.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_backoff: Duration,
    /// How long published entries stay in the outbox before they are pruned.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: Duration,
    /// On shutdown, how long to keep publishing; what is left stays in the outbox.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_deadline: Duration,
}

/// The topics `ringback topics create` makes, one per record kind (`kafka.topic`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewTopics {
    /// Partitions per topic: the most consumers of one group that can share a topic.
    pub partitions: i32,
    /// Copies of each partition (3 for a production cluster; 1 for a single broker).
    pub replication_factor: i32,
    /// `retention.ms` of the topics; absent: the cluster's default.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub retention: Option<Duration>,
    /// Further topic settings (`"min.insync.replicas" = "2"`, `"compression.type" = "lz4"`).
    pub config: BTreeMap<String, String>,
}

impl Default for NewTopics {
    fn default() -> Self {
        Self {
            partitions: 6,
            replication_factor: 3,
            retention: None,
            config: BTreeMap::new(),
        }
    }
}

/// The embedded broker's name in `kafka.brokers`.
pub const EMBEDDED_BROKER: &str = "embedded";

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: EMBEDDED_BROKER.into(),
            topic_prefix: "ringback".into(),
            topics: BTreeMap::new(),
            client: BTreeMap::new(),
            client_env: BTreeMap::new(),
            new_topics: NewTopics::default(),
            message_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            sweep_grace: Duration::from_secs(2),
            sweep_batch: 500,
            max_backoff: Duration::from_secs(30),
            retention: Duration::ZERO,
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

impl KafkaConfig {
    /// The topic records of `kind` go to.
    pub fn topic(&self, kind: &str) -> String {
        self.topics
            .get(kind)
            .cloned()
            .unwrap_or_else(|| format!("{}.{kind}", self.topic_prefix))
    }

    /// Outbox-only mode: no brokers configured.
    pub fn outbox_only(&self) -> bool {
        self.brokers.trim().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `ringback=debug,sqlx=warn`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info,sqlx=warn".into(),
        }
    }
}

/// How long rows are kept, per table, by the time they are stored under (a record's own time;
/// dead letters' and handshakes' reception). Unset keeps them forever. On PostgreSQL whole
/// monthly partitions are dropped once their last day is older than this; on SQLite rows are
/// deleted in batches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub cdrs: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub call_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub phone_number_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub acs_call_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub chat_events: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub webhook_events: Option<Duration>,
    /// Refused input, 30 days by default: what anyone who can reach the hooks can make
    /// ringback write must not be kept for ever.
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub dead_letters: Option<Duration>,
    /// Answered subscription handshakes, 30 days by default.
    #[serde(with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub handshakes: Option<Duration>,
}

/// The default retention of dead letters and handshakes.
pub const DEFAULT_REFUSED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            cdrs: None,
            call_events: None,
            phone_number_events: None,
            acs_call_events: None,
            chat_events: None,
            webhook_events: None,
            dead_letters: Some(DEFAULT_REFUSED_RETENTION),
            handshakes: Some(DEFAULT_REFUSED_RETENTION),
        }
    }
}

impl RetentionConfig {
    /// Each partitioned table with its retention, in `store::maintain::TABLES` order.
    pub fn by_table(&self) -> [(&'static str, Option<Duration>); 8] {
        [
            ("cdrs", self.cdrs),
            ("call_events", self.call_events),
            ("phone_number_events", self.phone_number_events),
            ("acs_call_events", self.acs_call_events),
            ("chat_events", self.chat_events),
            ("webhook_events", self.webhook_events),
            ("dead_letters", self.dead_letters),
            ("handshakes", self.handshakes),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// How often partitions are made ahead and expired ones dropped (every replica runs it;
    /// they take turns under an advisory lock). 0 turns it off (`ringback maintain` from cron).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Months of partitions kept ready beyond the current one (PostgreSQL).
    pub months_ahead: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            months_ahead: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// The time zone of the rollups' hours and days (an IANA name, e.g. Asia/Shanghai).
    /// Changing it changes the rollups' buckets: rebuild them (`ringback maintain
    /// --rebuild-rollups --since …`).
    pub timezone: String,
    /// How often new CDRs and disconnects are folded into the rollups (PostgreSQL). 0 turns
    /// it off (`ringback maintain` folds them too).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub rollup_interval: Duration,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            rollup_interval: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The JSON Schema (draft 2020-12) of the configuration file (`ringback config-schema`).
    pub fn json_schema() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let mut schema = generator.into_root_schema_for::<Self>().to_value();
        schema["title"] = "ringback configuration".into();
        schema
    }
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl From<figment::Error> for ConfigError {
    /// A problem a table found in one of its keys while it was read (a source's settings, see
    /// `source::KeyError`) is named by its full key; anything else keeps figment's words.
    fn from(e: figment::Error) -> Self {
        if let figment::error::Kind::Message(text) = &e.kind {
            if let Some((key, message)) = source::KeyError::split(text) {
                let mut path = e.path.clone();
                path.push(key.to_owned());
                return invalid(path.join("."), message);
            }
        }
        Self::Load(Box::new(e))
    }
}

/// How a config value (an enum) is spelled in the TOML.
pub fn spelling(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Config {
    /// Loads the layers. An explicit `path` must exist; the default path is optional, so the
    /// binary runs with built-in defaults from any directory.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_owned())),
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Config = figment
            .merge(Env::prefixed("RINGBACK__").split("__"))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML string on top of the defaults (no environment): for tests and tools.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.addr",
                "expected host:port, e.g. 127.0.0.1:8080",
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        let url = &self.database.url;
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(invalid(
                "database.url",
                "expected postgres://… or sqlite://PATH?mode=rwc",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        for (table, keep) in self.retention.by_table() {
            // A platform retries for hours: a shorter retention would take a retry's first
            // copy away and store the retry as new.
            if keep.is_some_and(|d| d < Duration::from_secs(86_400)) {
                return Err(invalid(
                    format!("retention.{table}"),
                    "must be at least 1d (or unset: keep forever)",
                ));
            }
        }
        if !(1..=36).contains(&self.maintenance.months_ahead) {
            return Err(invalid(
                "maintenance.months_ahead",
                "must be between 1 and 36",
            ));
        }
        if self.report.timezone.trim().is_empty() {
            return Err(invalid(
                "report.timezone",
                "expected an IANA time zone, e.g. UTC or Asia/Shanghai",
            ));
        }
        if !(1..=10_000).contains(&self.batch.max_records) {
            return Err(invalid("batch.max_records", "must be between 1 and 10000"));
        }
        if self.batch.linger > Duration::from_secs(1) {
            return Err(invalid("batch.linger", "must be at most 1s"));
        }
        if self.batch.queue_capacity == 0 {
            return Err(invalid("batch.queue_capacity", "must be at least 1"));
        }
        if !(1..=64).contains(&self.batch.workers) {
            return Err(invalid("batch.workers", "must be between 1 and 64"));
        }
        for name in self.sources.keys() {
            if !valid_source_name(name) {
                return Err(invalid(
                    format!("sources.{name}"),
                    "source names are 1-64 of a-z, 0-9, '-' and '_'",
                ));
            }
        }
        if self.spool.fallback_after < Duration::from_millis(10) {
            return Err(invalid("spool.fallback_after", "must be at least 10ms"));
        }
        if self.spool.max_bytes < 1 << 20 {
            return Err(invalid("spool.max_bytes", "must be at least 1 MiB"));
        }
        let kafka = &self.kafka;
        for key in ["enable.idempotence", "acks", "bootstrap.servers"] {
            if kafka.client.contains_key(key) {
                return Err(invalid(
                    format!("kafka.client.{key}"),
                    "is set by ringback (idempotent producer, acks=all, kafka.brokers)",
                ));
            }
        }
        for key in kafka.client_env.keys() {
            if kafka.client.contains_key(key) {
                return Err(invalid(
                    format!("kafka.client_env.{key}"),
                    "is also set in kafka.client: set it in one place",
                ));
            }
        }
        if kafka.new_topics.partitions < 1 {
            return Err(invalid("kafka.new_topics.partitions", "must be at least 1"));
        }
        if kafka.new_topics.replication_factor < 1 {
            return Err(invalid(
                "kafka.new_topics.replication_factor",
                "must be at least 1",
            ));
        }
        for kind in kafka.topics.keys() {
            if !crate::domain::RecordKind::ALL
                .iter()
                .any(|k| k.as_str() == kind)
            {
                return Err(invalid(format!("kafka.topics.{kind}"), "not a record kind"));
            }
        }
        if kafka.message_timeout < Duration::from_secs(1) {
            return Err(invalid("kafka.message_timeout", "must be at least 1s"));
        }
        if kafka.sweep_batch == 0 {
            return Err(invalid("kafka.sweep_batch", "must be at least 1"));
        }
        Ok(())
    }
}

/// Source names become URL path segments and label values: keep them plain.
fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::from_toml("").unwrap();
        assert!(c.database.url.starts_with("sqlite:"));
        assert!(c.http.addr.starts_with("127.0.0.1:"));
        assert_eq!(c.batch.max_records, 50);
    }

    #[test]
    fn source_tables_parse() {
        let c = Config::from_toml(
            r#"
            [sources.hw]
            kind = "huawei-voicecall"
            auth = "aksk"
            app_key = "k"
            app_secret_env = "HW_SECRET"
            public_url = "https://cb.example.com/hooks/hw"
            digest_variants = ["newline"]
            max_clock_skew = "2m"
            "#,
        )
        .unwrap();
        let AuthConfig::Aksk(s) = &c.sources["hw"].auth else {
            panic!("an aksk source reads as AuthConfig::Aksk");
        };
        use crate::auth::aksk::{CreatedZone, DigestVariant};
        assert_eq!(s.digest_variants, vec![DigestVariant::Newline]);
        assert_eq!(
            s.created_zones,
            vec![CreatedZone::Utc, CreatedZone::Beijing]
        );
        assert_eq!(s.max_clock_skew, Duration::from_secs(120));
    }

    #[test]
    fn a_key_of_another_auth_mode_or_kind_is_refused_by_name() {
        let e = err("[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"none\"\njwks_url = \"x\"");
        assert!(
            e.starts_with("sources.hw.jwks_url: is not a setting"),
            "{e}"
        );
        let e = err(
            "[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"none\"\ntype_pointer = \"/t\"",
        );
        assert!(e.starts_with("sources.hw.type_pointer:"), "{e}");
        let e = err("[sources.a]\nkind = \"azure-communication\"\nauth = \"jwt\"\njwks_url = \"https://login.example.com/keys\"");
        assert!(e.starts_with("sources.a.jwt_audiences:"), "{e}");
        for url in ["http://login.example.com/keys", "u", "ftp://127.0.0.1/keys"] {
            let e = err(&format!("[sources.a]\nkind = \"azure-communication\"\nauth = \"jwt\"\njwks_url = \"{url}\"\njwt_audiences = [\"a\"]"));
            assert!(
                e.starts_with("sources.a.jwks_url:") && e.contains("https"),
                "{url}: {e}"
            );
        }
        let e = err("[sources.w]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\nsecrets = [\"whsec_!\"]");
        assert!(e.starts_with("sources.w.secrets:"), "{e}");
        // An empty or short secret would let anyone sign.
        for short in ["whsec_", "whsec_c2hvcnQ="] {
            let e = err(&format!("[sources.w]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\nsecrets = [\"{short}\"]"));
            assert!(
                e.starts_with("sources.w.secrets:") && e.contains("16 bytes"),
                "{e}"
            );
        }
        let e = err("[sources.w]\nkind = \"standard-webhooks\"\nauth = \"aksk\"");
        assert!(e.starts_with("sources.w.auth:"), "{e}");
        let e = err("[sources.w]\nkind = \"standard-webhooks\"\nauth = \"none\"\nrate_limit = 0");
        assert!(e.starts_with("sources.w.rate_limit:"), "{e}");
    }

    #[test]
    fn a_source_table_reads_back_as_written() {
        let c = Config::from_toml(
            r#"
            [sources.a]
            kind = "azure-communication"
            auth = "shared-secret"
            secret_file = "/run/secrets/eg"
            secret_header = "X-Code"
            allowed_origins = ["eventgrid.azure.net"]
            rate_limit = 5
            [sources.w]
            kind = "standard-webhooks"
            auth = "standard-webhooks"
            secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
            "#,
        )
        .unwrap();
        for (name, source) in &c.sources {
            let table = SourceTable::from(source.clone());
            let again = SourceConfig::try_from(table.clone()).unwrap();
            assert_eq!(
                serde_json::to_value(&table).unwrap(),
                serde_json::to_value(SourceTable::from(again)).unwrap(),
                "{name}"
            );
        }
        let AuthConfig::SharedSecret(s) = &c.sources["a"].auth else {
            panic!("shared-secret");
        };
        assert_eq!((s.query.as_str(), s.header.as_str()), ("code", "x-code"));
        let limit = c.sources["a"].rate_limit.unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (5, 5));
    }

    fn err(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("[batch]\nmax_records = 0").starts_with("batch.max_records:"));
        assert!(err("[database]\nurl = \"mysql://x\"").starts_with("database.url:"));
        assert!(
            err("[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"")
                .starts_with("sources.hw.app_key:")
        );
        assert!(
            err("[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\napp_key = \"k\"")
                .starts_with("sources.hw.app_secret_env:")
        );
        assert!(
            err("[sources.Bad]\nkind = \"huawei-voicecall\"\nauth = \"none\"")
                .starts_with("sources.Bad:")
        );
        assert!(err("[http]\nadr = \"x\"").contains("adr"));
    }
}
