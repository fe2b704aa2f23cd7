//! Typed settings. Layers, later ones winning: built-in defaults → TOML file (`--config`,
//! default `config/default.toml`) → environment variables `RINGBACK__SECTION__KEY`.
//!
//! Secrets never live in the file: a source names the environment variable (or file) that
//! holds its secret (`auth::SecretRef`), and the value read is an `auth::Secret`, which cannot
//! be logged. Each source's settings are typed per auth mode ([`source`]).

mod batch;
mod http;
mod kafka;
mod log;
mod maintenance;
mod retention;
mod source;
mod spool;

pub use crate::store::DatabaseConfig;
pub use batch::BatchConfig;
pub use http::HttpConfig;
pub use kafka::{Brokers, KafkaConfig, NewTopics, EMBEDDED_BROKER};
pub use log::{LogConfig, LogFormat};
pub use maintenance::{MaintenanceConfig, ReportConfig};
pub use retention::{RetentionConfig, DEFAULT_REFUSED_RETENTION};
pub use source::{
    read_secret, AkskAuth, AuthConfig, AuthMode, JwtAuth, KindOptions, RateLimit, SharedSecretAuth,
    SourceConfig, SourceTable, StandardWebhooksAuth, MIN_SECRET_BYTES,
};
pub use spool::SpoolConfig;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// How long each table keeps its rows (docs/analytics.md); default: forever.
    pub retention: RetentionConfig,
    /// Partitions made ahead, and how often maintenance runs.
    pub maintenance: MaintenanceConfig,
    /// The rollups' time zone and refresh.
    pub report: ReportConfig,
    /// Named callback sources; each is served at `POST /hooks/<name>`.
    pub sources: BTreeMap<String, SourceConfig>,
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
        self.http.validate()?;
        self.database
            .validate()
            .map_err(|(key, message)| invalid(format!("database.{key}"), message))?;
        self.retention.validate()?;
        self.maintenance.validate()?;
        self.report.validate()?;
        self.batch.validate()?;
        for name in self.sources.keys() {
            if !valid_source_name(name) {
                return Err(invalid(
                    format!("sources.{name}"),
                    "source names are 1-64 of a-z, 0-9, '-' and '_'",
                ));
            }
        }
        self.spool.validate()?;
        self.kafka.validate()
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
    use std::time::Duration;

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
