//! A source table as written in the TOML (flat: `auth = "aksk"` beside `app_key = …`), and its
//! conversion into the typed [`SourceConfig`], one small function per auth mode and per kind.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    auth_modes, AkskAuth, AuthConfig, AuthMode, JwtAuth, KindOptions, RateLimit, SharedSecretAuth,
    SourceConfig, StandardWebhooksAuth, MIN_SECRET_BYTES,
};
use crate::auth::aksk::{CreatedZone, DigestVariant};
use crate::auth::jwt::JwksOrigin;
use crate::auth::{standard_webhooks, Secret, SecretRef};
use crate::domain::Region;
use crate::sources::Platform;

/// A source table as written: every key the TOML may hold, each optional. Only read and
/// written through [`SourceConfig`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    kind: Option<Platform>,
    auth: Option<AuthMode>,
    app_key: Option<String>,
    app_secret_env: Option<String>,
    app_secret_file: Option<PathBuf>,
    public_url: Option<String>,
    digest_variants: Option<Vec<DigestVariant>>,
    created_zones: Option<Vec<CreatedZone>>,
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    max_clock_skew: Option<Duration>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    secret_query: Option<String>,
    secret_header: Option<String>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    jwks_refresh: Option<Duration>,
    jwt_issuers: Option<Vec<String>>,
    jwt_audiences: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    jwt_leeway: Option<Duration>,
    allowed_origins: Option<Vec<String>>,
    allowed_rate: Option<u32>,
    /// Kept as written: secrets in the file are never logged either way.
    secrets: Option<Vec<String>>,
    secrets_env: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    tolerance: Option<Duration>,
    type_pointer: Option<String>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    default_region: Option<String>,
}

const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
const DEFAULT_SECRET_QUERY: &str = "code";
const DEFAULT_SECRET_HEADER: &str = "x-ringback-secret";
const DEFAULT_TYPE_POINTER: &str = "/type";

/// The problem of one key of a source table, found while the table is read. Serde carries it
/// as text, `key: message`; `ConfigError`'s `From<figment::Error>` puts the table's path in front of the
/// key, so that every error names the full key (`sources.hw.app_key: …`).
#[derive(Debug)]
pub struct KeyError {
    key: String,
    message: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl KeyError {
    /// Splits a [`KeyError`]'s text back into key and message; `None` for other text.
    pub(in crate::config) fn split(text: &str) -> Option<(&str, &str)> {
        let (key, message) = text.split_once(": ")?;
        let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        plain.then_some((key, message))
    }
}

fn key_error(key: &str, message: impl Into<String>) -> KeyError {
    KeyError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Exactly one of two keys naming where a secret is: `<field>_env` or `<field>_file`.
fn secret_ref(
    env: Option<String>,
    file: Option<PathBuf>,
    keys: [&'static str; 2],
    mode: &str,
) -> Result<SecretRef, KeyError> {
    match (env, file) {
        (Some(var), None) => Ok(SecretRef::Env(var)),
        (None, Some(path)) => Ok(SecretRef::File(path)),
        _ => Err(key_error(
            keys[0],
            format!(
                "set exactly one of {} and {} when auth = \"{mode}\"",
                keys[0], keys[1]
            ),
        )),
    }
}

/// Whether a JWKS URL may be fetched: `https`, or plain `http` to this host (a sidecar, a test).
fn https_or_loopback(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u) if u.scheme() == "http" => match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Each `whsec_…` secret decoded.
pub(super) fn webhook_secrets<'a>(
    written: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Secret>, &'static str> {
    written
        .into_iter()
        .map(|s| {
            let secret = standard_webhooks::decode_secret(s)
                .ok_or("each secret must be whsec_ followed by base64")?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err("each secret must decode to at least 16 bytes");
            }
            Ok(Secret::new(secret))
        })
        .collect()
}

/// A source is written as its table (`config-schema`).
impl JsonSchema for SourceConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        SourceTable::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        SourceTable::json_schema(generator)
    }
}

impl TryFrom<SourceTable> for SourceConfig {
    type Error = KeyError;

    fn try_from(mut t: SourceTable) -> Result<Self, KeyError> {
        let kind = t.kind.take().ok_or_else(|| key_error("kind", "required"))?;
        let mode = t.auth.take().ok_or_else(|| {
            key_error(
                "auth",
                "required: aksk, shared-secret, jwt, standard-webhooks, or an explicit none",
            )
        })?;
        if !auth_modes(kind).contains(&mode) {
            return Err(key_error(
                "auth",
                format!(
                    "this source kind takes auth = one of {:?} (lowercase, kebab-case)",
                    auth_modes(kind)
                ),
            ));
        }
        let mode_name = crate::config::spelling(&mode);
        let auth = match mode {
            AuthMode::None => AuthConfig::None,
            AuthMode::Aksk => AuthConfig::Aksk(t.aksk(&mode_name)?),
            AuthMode::SharedSecret => AuthConfig::SharedSecret(t.shared_secret(&mode_name)?),
            AuthMode::Jwt => AuthConfig::Jwt(t.jwt()?),
            AuthMode::StandardWebhooks => AuthConfig::StandardWebhooks(t.standard_webhooks()?),
        };
        let options = t.options(kind)?;
        let rate_limit = t.rate_limit()?;
        let default_region = t.default_region()?;
        // Whatever is left was written for another auth mode or another kind of source.
        if let Some(key) = t.first_key() {
            return Err(KeyError {
                key,
                message: format!(
                    "is not a setting of a {} source with auth = \"{mode_name}\"",
                    crate::config::spelling(&kind)
                ),
            });
        }
        Ok(Self {
            kind,
            auth,
            rate_limit,
            options,
            default_region,
        })
    }
}

/// Each takes the keys of its part of the table; what is left over is refused.
impl SourceTable {
    fn aksk(&mut self, mode_name: &str) -> Result<AkskAuth, KeyError> {
        let t = self;
        let app_key = t
            .app_key
            .take()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| key_error("app_key", "required when auth = \"aksk\""))?;
        let app_secret = secret_ref(
            t.app_secret_env.take(),
            t.app_secret_file.take(),
            ["app_secret_env", "app_secret_file"],
            mode_name,
        )?;
        let digest_variants = t
            .digest_variants
            .take()
            .unwrap_or_else(|| vec![DigestVariant::Newline, DigestVariant::Concat]);
        if digest_variants.is_empty() {
            return Err(key_error("digest_variants", "must not be empty"));
        }
        let created_zones = t
            .created_zones
            .take()
            .unwrap_or_else(|| vec![CreatedZone::Utc, CreatedZone::Beijing]);
        if created_zones.is_empty() {
            return Err(key_error("created_zones", "must not be empty"));
        }
        let public_url = t.public_url.take();
        if public_url
            .as_deref()
            .is_some_and(|u| url::Url::parse(u).is_err())
        {
            return Err(key_error("public_url", "not an absolute URL"));
        }
        Ok(AkskAuth {
            app_key,
            app_secret,
            public_url,
            digest_variants,
            created_zones,
            max_clock_skew: t.max_clock_skew.take().unwrap_or(DEFAULT_MAX_CLOCK_SKEW),
        })
    }

    fn shared_secret(&mut self, mode_name: &str) -> Result<SharedSecretAuth, KeyError> {
        let t = self;
        Ok(SharedSecretAuth {
            secret: secret_ref(
                t.secret_env.take(),
                t.secret_file.take(),
                ["secret_env", "secret_file"],
                mode_name,
            )?,
            query: t
                .secret_query
                .take()
                .unwrap_or_else(|| DEFAULT_SECRET_QUERY.into()),
            header: t
                .secret_header
                .take()
                .unwrap_or_else(|| DEFAULT_SECRET_HEADER.into())
                .to_ascii_lowercase(),
        })
    }

    fn jwt(&mut self) -> Result<JwtAuth, KeyError> {
        let t = self;
        let keys = match (t.jwks_file.take(), t.jwks_url.take()) {
            (Some(path), None) => JwksOrigin::File(path),
            (None, Some(url)) if https_or_loopback(&url) => JwksOrigin::Url(url),
            (None, Some(_)) => {
                return Err(key_error(
                    "jwks_url",
                    "must be https:// (plain http only to a loopback address): the keys decide who may write",
                ))
            }
            _ => {
                return Err(key_error(
                    "jwks_file",
                    "set exactly one of jwks_file and jwks_url when auth = \"jwt\"",
                ))
            }
        };
        let audiences = t.jwt_audiences.take().unwrap_or_default();
        if audiences.is_empty() {
            return Err(key_error(
                "jwt_audiences",
                "required when auth = \"jwt\" (for Call Automation: the ACS resource id)",
            ));
        }
        Ok(JwtAuth {
            keys,
            refresh: t.jwks_refresh.take().unwrap_or(DEFAULT_JWKS_REFRESH),
            issuers: t.jwt_issuers.take().unwrap_or_default(),
            audiences,
            leeway: t.jwt_leeway.take().unwrap_or(DEFAULT_JWT_LEEWAY),
        })
    }

    fn standard_webhooks(&mut self) -> Result<StandardWebhooksAuth, KeyError> {
        let t = self;
        let written = t.secrets.take().unwrap_or_default();
        let secrets_env = t.secrets_env.take();
        if written.is_empty() && secrets_env.is_none() {
            return Err(key_error(
                "secrets",
                "set secrets or secrets_env when auth = \"standard-webhooks\"",
            ));
        }
        Ok(StandardWebhooksAuth {
            secrets: webhook_secrets(written.iter().map(String::as_str))
                .map_err(|m| key_error("secrets", m))?,
            secrets_env,
            tolerance: t.tolerance.take().unwrap_or(DEFAULT_MAX_CLOCK_SKEW),
        })
    }

    /// What the source's kind alone takes.
    fn options(&mut self, kind: Platform) -> Result<KindOptions, KeyError> {
        let t = self;
        Ok(match kind {
            Platform::HuaweiVoiceCall => KindOptions::Huawei,
            Platform::AzureCommunication => KindOptions::Acs {
                allowed_origins: t.allowed_origins.take().unwrap_or_default(),
                allowed_rate: t.allowed_rate.take(),
            },
            Platform::StandardWebhooks => {
                let type_pointer = t
                    .type_pointer
                    .take()
                    .unwrap_or_else(|| DEFAULT_TYPE_POINTER.into());
                if !type_pointer.is_empty() && !type_pointer.starts_with('/') {
                    return Err(key_error("type_pointer", "a JSON pointer starts with /"));
                }
                KindOptions::StandardWebhooks { type_pointer }
            }
        })
    }

    fn rate_limit(&mut self) -> Result<Option<RateLimit>, KeyError> {
        Ok(match (self.rate_limit.take(), self.rate_burst.take()) {
            (None, None) => None,
            (None, Some(_)) => return Err(key_error("rate_burst", "needs rate_limit")),
            (Some(rate), burst) => {
                let nonzero = |n: u32| {
                    NonZeroU32::new(n).ok_or_else(|| {
                        key_error(
                            "rate_limit",
                            "must be at least 1 (leave unset for no limit)",
                        )
                    })
                };
                let per_second = nonzero(rate)?;
                Some(RateLimit {
                    per_second,
                    burst: burst.map(nonzero).transpose()?.unwrap_or(per_second),
                })
            }
        })
    }

    fn default_region(&mut self) -> Result<Option<Region>, KeyError> {
        Ok(match self.default_region.take() {
            None => None,
            Some(code) => Some(code.parse::<Region>().map_err(|_| {
                key_error(
                    "default_region",
                    format!("{code:?} is not an ISO 3166-1 country code (e.g. CN, US, GB)"),
                )
            })?),
        })
    }

    /// A key still set (the first in alphabetical order).
    fn first_key(&self) -> Option<String> {
        let table = serde_json::to_value(self).expect("plain data serialises");
        let set = table.as_object()?;
        set.iter()
            .find(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone())
    }
}

impl From<SourceConfig> for SourceTable {
    /// The table that reads back as `c` (secrets written in the file come back encoded).
    fn from(c: SourceConfig) -> Self {
        let mut t = SourceTable {
            kind: Some(c.kind),
            auth: Some(c.auth.mode()),
            ..Self::default()
        };
        match c.auth {
            AuthConfig::None => {}
            AuthConfig::Aksk(a) => {
                t.app_key = Some(a.app_key);
                match a.app_secret {
                    SecretRef::Env(var) => t.app_secret_env = Some(var),
                    SecretRef::File(path) => t.app_secret_file = Some(path),
                }
                t.public_url = a.public_url;
                t.digest_variants = Some(a.digest_variants);
                t.created_zones = Some(a.created_zones);
                t.max_clock_skew = Some(a.max_clock_skew);
            }
            AuthConfig::SharedSecret(s) => {
                match s.secret {
                    SecretRef::Env(var) => t.secret_env = Some(var),
                    SecretRef::File(path) => t.secret_file = Some(path),
                }
                t.secret_query = Some(s.query);
                t.secret_header = Some(s.header);
            }
            AuthConfig::Jwt(j) => {
                match j.keys {
                    JwksOrigin::File(path) => t.jwks_file = Some(path),
                    JwksOrigin::Url(url) => t.jwks_url = Some(url),
                }
                t.jwks_refresh = Some(j.refresh);
                t.jwt_issuers = Some(j.issuers);
                t.jwt_audiences = Some(j.audiences);
                t.jwt_leeway = Some(j.leeway);
            }
            AuthConfig::StandardWebhooks(w) => {
                t.secrets = Some(
                    w.secrets
                        .iter()
                        .map(|s| standard_webhooks::encode_secret(s.expose()))
                        .collect(),
                );
                t.secrets_env = w.secrets_env;
                t.tolerance = Some(w.tolerance);
            }
        }
        match c.options {
            KindOptions::Huawei => {}
            KindOptions::Acs {
                allowed_origins,
                allowed_rate,
            } => {
                t.allowed_origins = Some(allowed_origins);
                t.allowed_rate = allowed_rate;
            }
            KindOptions::StandardWebhooks { type_pointer } => t.type_pointer = Some(type_pointer),
        }
        t.default_region = c.default_region.map(|r| r.as_ref().to_owned());
        if let Some(r) = c.rate_limit {
            t.rate_limit = Some(r.per_second.get());
            t.rate_burst = Some(r.burst.get());
        }
        t
    }
}
