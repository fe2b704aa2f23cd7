//! Typed settings. Layers, later ones winning: built-in defaults → TOML file (`--config`,
//! default `config/default.toml`) → environment variables `RINGBACK__SECTION__KEY`.
//!
//! Secrets never live in the file: a source names the environment variable (or file) that
//! holds its secret, and the resolved value is wrapped in [`Secret`] so it cannot be logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Everything ringback can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub batch: BatchConfig,
    pub kafka: KafkaConfig,
    pub log: LogConfig,
    /// Named callback sources; each is served at `POST /hooks/<name>`.
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address. Loopback by default; set `0.0.0.0:8080` to serve other hosts.
    pub addr: String,
    /// Largest request body accepted, in bytes (413 beyond). A 50-CDR fee body is ~60 KiB.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A client must send the request head within this time (slow senders are cut off: 408).
    #[serde(with = "humantime_serde")]
    pub client_request_timeout: Duration,
    /// …and the whole body within this time (408 `body_timeout`).
    #[serde(with = "humantime_serde")]
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
            max_body_bytes: default_max_body_bytes(),
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            client_request_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` or `sqlite://PATH?mode=rwc` (the embedded default).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long to wait for a connection before a request fails with 503.
    #[serde(with = "humantime_serde")]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records committed in one transaction.
    pub max_records: usize,
    /// How long an open batch waits for more records before it commits.
    #[serde(with = "humantime_serde")]
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
    pub retry_backoff: Duration,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 50,
            linger: Duration::from_millis(2),
            queue_capacity: 1024,
            workers: 4,
            commit_retries: 2,
            retry_backoff: Duration::from_millis(100),
            retry_after_secs: 5,
        }
    }
}

/// Where committed records are republished.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// How long librdkafka may try to deliver one message before the publisher falls back
    /// to re-sending from the outbox.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// How often the sweeper looks for entries left unpublished (crashes, other replicas).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Entries younger than this are left to the fast path of the replica that committed them.
    #[serde(with = "humantime_serde")]
    pub sweep_grace: Duration,
    /// Entries one sweep claims at most.
    pub sweep_batch: u32,
    /// Longest pause between attempts while the brokers are unreachable.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long published entries stay in the outbox before they are pruned.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// On shutdown, how long to keep publishing; what is left stays in the outbox.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    #[serde(rename = "huawei-voicecall")]
    HuaweiVoiceCall,
    /// Azure Communication Services: Event Grid (both schemas) and Call Automation callbacks.
    #[serde(rename = "azure-communication")]
    AzureCommunication,
    /// Any sender signing per the Standard Webhooks specification.
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Huawei's `X-AKSK` UsernameToken signature.
    Aksk,
    /// A shared secret in a query parameter or a header (Event Grid webhook delivery with the
    /// secret in the URL).
    #[serde(rename = "shared-secret")]
    SharedSecret,
    /// `Authorization: Bearer <JWT>` checked against JWKS keys (Entra ID for Event Grid, the
    /// ACS resource's keys for Call Automation).
    Jwt,
    /// Standard Webhooks signatures (`webhook-signature`, HMAC-SHA256 with `whsec_` secrets).
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
    /// No authentication. Must be chosen explicitly; logged as a warning at startup.
    None,
}

/// How the three parts of the AKSK digest input are joined. Huawei's current docs put `"\n"`
/// between url, nonce and created; the 2022-05-07 version concatenates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestVariant {
    Newline,
    Concat,
}

/// How to read `Created`: the current docs call it Beijing time (UTC+8) although it carries a
/// `Z`; older pages say plain UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreatedZone {
    Utc,
    Beijing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The platform: `huawei-voicecall`.
    pub kind: SourceKind,
    /// `aksk` or an explicit `none`.
    pub auth: AuthMode,
    /// The app_key the platform sends as `Username` in `X-AKSK`.
    #[serde(default)]
    pub app_key: Option<String>,
    /// Name of the environment variable holding the app secret.
    #[serde(default)]
    pub app_secret_env: Option<String>,
    /// Path of a file holding the app secret (alternative to `app_secret_env`; trailing
    /// newline ignored).
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// The push URL exactly as configured at the platform (it is part of the signed string).
    /// Behind a proxy it differs from what ringback sees; when unset, the URL ringback sees
    /// (`http://<Host><path>`) is used.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Accepted digest input layouts.
    #[serde(default = "default_digest_variants")]
    pub digest_variants: Vec<DigestVariant>,
    /// Accepted readings of `Created`.
    #[serde(default = "default_created_zones")]
    pub created_zones: Vec<CreatedZone>,
    /// How far `Created` may be from now (after the zone offset) in either direction. Nonces
    /// are remembered for this long to refuse replays.
    #[serde(default = "default_max_clock_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// `shared-secret`: the environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `shared-secret`: a file holding the secret (alternative to `secret_env`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `shared-secret`: the query parameter that carries it (`?code=…` in the subscription URL).
    #[serde(default = "default_secret_query")]
    pub secret_query: String,
    /// `shared-secret`: the header that may carry it instead.
    #[serde(default = "default_secret_header")]
    pub secret_header: String,
    /// `jwt`: a JWKS file (JSON `{"keys": […]}`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// `jwt`: a JWKS URL (fetched at startup, refreshed every `jwks_refresh` and when a token
    /// names an unknown key).
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// `jwt`: accepted `iss` values (empty: any issuer).
    #[serde(default)]
    pub jwt_issuers: Vec<String>,
    /// `jwt`: accepted `aud` values; for Call Automation, the ACS resource id.
    #[serde(default)]
    pub jwt_audiences: Vec<String>,
    /// `jwt`: clock tolerance for `exp` and `nbf`.
    #[serde(default = "default_jwt_leeway", with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// CloudEvents `OPTIONS` handshake: origins allowed to deliver (empty: any origin;
    /// Event Grid's is `eventgrid.azure.net`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// CloudEvents `OPTIONS` handshake: the most requests per minute granted.
    #[serde(default)]
    pub allowed_rate: Option<u32>,
    /// `standard-webhooks`: the `whsec_…` secrets accepted at once (rotation). Prefer
    /// `secrets_env`; secrets in the file are never logged either way.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// `standard-webhooks`: an environment variable holding secrets, separated by spaces or
    /// commas.
    #[serde(default)]
    pub secrets_env: Option<String>,
    /// `standard-webhooks`: how far `webhook-timestamp` may be from now.
    #[serde(default = "default_max_clock_skew", with = "humantime_serde")]
    pub tolerance: Duration,
    /// `standard-webhooks`: JSON pointer of the event type in the body.
    #[serde(default = "default_type_pointer")]
    pub type_pointer: String,
    /// Requests per second this source may send (per replica); beyond it: 429 with
    /// `Retry-After`. Unset: no limit.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Requests allowed in a burst above `rate_limit` (default: one second's worth).
    #[serde(default)]
    pub rate_burst: Option<u32>,
}

fn default_type_pointer() -> String {
    "/type".into()
}

fn default_secret_query() -> String {
    "code".into()
}

fn default_secret_header() -> String {
    "x-ringback-secret".into()
}

const fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}

const fn default_jwt_leeway() -> Duration {
    Duration::from_secs(60)
}

fn default_digest_variants() -> Vec<DigestVariant> {
    vec![DigestVariant::Newline, DigestVariant::Concat]
}

fn default_created_zones() -> Vec<CreatedZone> {
    vec![CreatedZone::Utc, CreatedZone::Beijing]
}

const fn default_max_clock_skew() -> Duration {
    Duration::from_secs(300)
}

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Compares with `candidate` in constant time (over the content; lengths are hidden by
    /// comparing MACs of both sides).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.0, candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Equality in constant time over the content: both sides are MACed under a fixed key and the
/// fixed-size tags compared with `verify` (constant time), so neither content nor length leaks.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let tag = |v: &[u8]| {
        let mut m = HmacSha256::new_from_slice(b"ringback-compare").expect("any key length");
        m.update(v);
        m
    };
    tag(a).verify(&tag(b).finalize().into_bytes()).is_ok()
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Load(#[from] Box<figment::Error>),
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
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML string on top of the defaults (no environment): for tests and tools.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(Box::new)?;
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
        for (name, source) in &self.sources {
            source.validate(name)?;
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

impl SourceConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("sources.{name}.{field}");
        if !valid_source_name(name) {
            return Err(invalid(
                format!("sources.{name}"),
                "source names are 1-64 of a-z, 0-9, '-' and '_'",
            ));
        }
        let allowed: &[AuthMode] = match self.kind {
            SourceKind::HuaweiVoiceCall => &[AuthMode::Aksk, AuthMode::None],
            SourceKind::AzureCommunication => {
                &[AuthMode::SharedSecret, AuthMode::Jwt, AuthMode::None]
            }
            SourceKind::StandardWebhooks => &[AuthMode::StandardWebhooks, AuthMode::None],
        };
        if !allowed.contains(&self.auth) {
            return Err(invalid(
                key("auth"),
                format!("this source kind takes auth = one of {allowed:?} (lowercase, kebab-case)"),
            ));
        }
        match self.auth {
            AuthMode::Aksk => {
                if self.app_key.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(key("app_key"), "required when auth = \"aksk\""));
                }
                if self.app_secret_env.is_some() == self.app_secret_file.is_some() {
                    return Err(invalid(
                        key("app_secret_env"),
                        "set exactly one of app_secret_env and app_secret_file when auth = \"aksk\"",
                    ));
                }
                if self.digest_variants.is_empty() {
                    return Err(invalid(key("digest_variants"), "must not be empty"));
                }
                if self.created_zones.is_empty() {
                    return Err(invalid(key("created_zones"), "must not be empty"));
                }
            }
            AuthMode::SharedSecret => {
                if self.secret_env.is_some() == self.secret_file.is_some() {
                    return Err(invalid(
                        key("secret_env"),
                        "set exactly one of secret_env and secret_file when auth = \"shared-secret\"",
                    ));
                }
            }
            AuthMode::Jwt => {
                if self.jwks_file.is_some() == self.jwks_url.is_some() {
                    return Err(invalid(
                        key("jwks_file"),
                        "set exactly one of jwks_file and jwks_url when auth = \"jwt\"",
                    ));
                }
                if self.jwt_audiences.is_empty() {
                    return Err(invalid(
                        key("jwt_audiences"),
                        "required when auth = \"jwt\" (for Call Automation: the ACS resource id)",
                    ));
                }
            }
            AuthMode::StandardWebhooks => {
                if self.secrets.is_empty() && self.secrets_env.is_none() {
                    return Err(invalid(
                        key("secrets"),
                        "set secrets or secrets_env when auth = \"standard-webhooks\"",
                    ));
                }
                if self
                    .secrets
                    .iter()
                    .any(|s| crate::sources::standard_webhooks::decode_secret(s).is_none())
                {
                    return Err(invalid(
                        key("secrets"),
                        "each secret must be whsec_ followed by base64",
                    ));
                }
                if !self.type_pointer.is_empty() && !self.type_pointer.starts_with('/') {
                    return Err(invalid(key("type_pointer"), "a JSON pointer starts with /"));
                }
            }
            AuthMode::None => {}
        }
        if self.rate_limit == Some(0) || self.rate_burst == Some(0) {
            return Err(invalid(
                key("rate_limit"),
                "must be at least 1 (leave unset for no limit)",
            ));
        }
        if let Some(url) = &self.public_url {
            if url::Url::parse(url).is_err() {
                return Err(invalid(key("public_url"), "not an absolute URL"));
            }
        }
        Ok(())
    }

    /// The Standard Webhooks secrets: those in the file and those in `secrets_env`, decoded.
    pub fn resolve_webhook_secrets(&self, name: &str) -> Result<Vec<Secret>, ConfigError> {
        let mut raw: Vec<String> = self.secrets.clone();
        if let Some(var) = &self.secrets_env {
            let value = std::env::var(var).map_err(|_| {
                invalid(
                    format!("sources.{name}.secrets_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            raw.extend(
                value
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        raw.iter()
            .map(|s| {
                crate::sources::standard_webhooks::decode_secret(s)
                    .map(Secret::new)
                    .ok_or_else(|| {
                        invalid(
                            format!("sources.{name}.secrets"),
                            "each secret must be whsec_ followed by base64",
                        )
                    })
            })
            .collect()
    }

    /// Reads the secret the source's auth mode needs from where the config says it is.
    pub fn resolve_secret(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        let (env, file, env_key, file_key) = match self.auth {
            AuthMode::Aksk => (
                &self.app_secret_env,
                &self.app_secret_file,
                "app_secret_env",
                "app_secret_file",
            ),
            AuthMode::SharedSecret => (
                &self.secret_env,
                &self.secret_file,
                "secret_env",
                "secret_file",
            ),
            AuthMode::Jwt | AuthMode::StandardWebhooks | AuthMode::None => return Ok(None),
        };
        let key = |field: &str| format!("sources.{name}.{field}");
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                _ => Err(invalid(
                    key(env_key),
                    format!("environment variable {var} is not set or empty"),
                )),
            };
        }
        if let Some(path) = file {
            return match std::fs::read_to_string(path) {
                Ok(v) if !v.trim_end_matches(['\r', '\n']).is_empty() => Ok(Some(Secret::new(
                    v.trim_end_matches(['\r', '\n']).to_owned(),
                ))),
                Ok(_) => Err(invalid(key(file_key), "file is empty")),
                Err(e) => Err(invalid(
                    key(file_key),
                    format!("cannot read {}: {e}", path.display()),
                )),
            };
        }
        Ok(None)
    }
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
        let s = &c.sources["hw"];
        assert_eq!(s.digest_variants, vec![DigestVariant::Newline]);
        assert_eq!(s.created_zones, default_created_zones());
        assert_eq!(s.max_clock_skew, Duration::from_secs(120));
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

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
