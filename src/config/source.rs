//! A source's settings: its platform, and how its sender authenticates, as one typed variant per
//! auth mode holding exactly that mode's settings. A [`SourceConfig`] is complete: whoever holds
//! one needs no further checks.
//!
//! The TOML stays flat (`auth = "aksk"` beside `app_key = …`): a table is read as a
//! [`SourceTable`], every key optional, and checked into a [`SourceConfig`]. A key that belongs
//! to another auth mode or another kind of source is refused, naming it, rather than ignored.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::auth::aksk::{CreatedZone, DigestVariant};
use crate::auth::jwt::JwksOrigin;
use crate::auth::{standard_webhooks, Secret, SecretRef};
use crate::sources::Platform;

/// The auth modes a source of `platform` may use.
const fn auth_modes(platform: Platform) -> &'static [AuthMode] {
    match platform {
        Platform::HuaweiVoiceCall => &[AuthMode::Aksk, AuthMode::None],
        Platform::AzureCommunication => &[AuthMode::SharedSecret, AuthMode::Jwt, AuthMode::None],
        Platform::StandardWebhooks => &[AuthMode::StandardWebhooks, AuthMode::None],
    }
}

/// The `auth` key: which variant of [`AuthConfig`] a table describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

impl AuthMode {
    /// The name, as `auth` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Aksk => "aksk",
            Self::SharedSecret => "shared-secret",
            Self::Jwt => "jwt",
            Self::StandardWebhooks => "standard-webhooks",
            Self::None => "none",
        }
    }
}

/// A configured source, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SourceTable", into = "SourceTable")]
pub struct SourceConfig {
    /// The platform.
    pub kind: Platform,
    /// How its sender authenticates.
    pub auth: AuthConfig,
    /// Requests per second this source may send (per replica); beyond it: 429.
    pub rate_limit: Option<RateLimit>,
    /// What the platform kind alone needs.
    pub options: KindOptions,
    /// The country of the numbers this platform sends without a country code (ISO 3166-1,
    /// e.g. `CN`): they are stored and published in E.164 (`075512345678` → `+8675512345678`),
    /// so that they match the same line's numbers from other platforms. Unset: national
    /// numbers are kept as sent (compacted). The raw record keeps the original either way.
    pub default_region: Option<crate::domain::Region>,
}

/// Settings of one kind of source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindOptions {
    Huawei,
    /// The CloudEvents `OPTIONS` handshake: origins allowed to deliver (empty: any; Event
    /// Grid's is `eventgrid.azure.net`) and the most requests per minute granted.
    Acs {
        allowed_origins: Vec<String>,
        allowed_rate: Option<u32>,
    },
    /// The JSON pointer of the event type in the body.
    StandardWebhooks {
        type_pointer: String,
    },
}

/// A token bucket: `per_second` on average, `burst` above it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// How a source's sender authenticates, with that mode's settings.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    None,
    Aksk(AkskAuth),
    SharedSecret(SharedSecretAuth),
    Jwt(JwtAuth),
    StandardWebhooks(StandardWebhooksAuth),
}

impl AuthConfig {
    pub const fn mode(&self) -> AuthMode {
        match self {
            Self::None => AuthMode::None,
            Self::Aksk(_) => AuthMode::Aksk,
            Self::SharedSecret(_) => AuthMode::SharedSecret,
            Self::Jwt(_) => AuthMode::Jwt,
            Self::StandardWebhooks(_) => AuthMode::StandardWebhooks,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AkskAuth {
    /// The app_key the platform sends as `Username` in `X-AKSK`.
    pub app_key: String,
    /// `app_secret_env` or `app_secret_file`.
    pub app_secret: SecretRef,
    /// The push URL exactly as configured at the platform (it is part of the signed string).
    /// Behind a proxy it differs from what ringback sees; when unset, the URL ringback sees
    /// (`http://<Host><path>`) is used.
    pub public_url: Option<String>,
    /// Accepted digest input layouts.
    pub digest_variants: Vec<DigestVariant>,
    /// Accepted readings of `Created`.
    pub created_zones: Vec<CreatedZone>,
    /// How far `Created` may be from now (after the zone offset) in either direction. Nonces
    /// are remembered for this long to refuse replays.
    pub max_clock_skew: Duration,
}

#[derive(Debug, Clone)]
pub struct SharedSecretAuth {
    /// `secret_env` or `secret_file`.
    pub secret: SecretRef,
    /// The query parameter that carries it (`?code=…` in the subscription URL).
    pub query: String,
    /// The header that may carry it instead (lowercase).
    pub header: String,
}

#[derive(Debug, Clone)]
pub struct JwtAuth {
    /// `jwks_file` or `jwks_url` (fetched at startup, refreshed every `refresh` and when a
    /// token names an unknown key).
    pub keys: JwksOrigin,
    pub refresh: Duration,
    /// Accepted `iss` values (empty: any issuer).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one); for Call Automation, the ACS resource id.
    pub audiences: Vec<String>,
    /// Clock tolerance for `exp` and `nbf`.
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub struct StandardWebhooksAuth {
    /// `whsec_…` secrets written in the file, decoded.
    pub secrets: Vec<Secret>,
    /// An environment variable holding more, separated by spaces or commas.
    pub secrets_env: Option<String>,
    /// How far `webhook-timestamp` may be from now.
    pub tolerance: Duration,
}

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
/// as text, `key: message`; [`ConfigError::from_figment`] puts the table's path in front of the
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
    pub(super) fn split(text: &str) -> Option<(&str, &str)> {
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
fn webhook_secrets<'a>(
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
        let mode_name = super::spelling(&mode);
        let auth = match mode {
            AuthMode::None => AuthConfig::None,
            AuthMode::Aksk => {
                let app_key = t
                    .app_key
                    .take()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| key_error("app_key", "required when auth = \"aksk\""))?;
                let app_secret = secret_ref(
                    t.app_secret_env.take(),
                    t.app_secret_file.take(),
                    ["app_secret_env", "app_secret_file"],
                    &mode_name,
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
                AuthConfig::Aksk(AkskAuth {
                    app_key,
                    app_secret,
                    public_url,
                    digest_variants,
                    created_zones,
                    max_clock_skew: t.max_clock_skew.take().unwrap_or(DEFAULT_MAX_CLOCK_SKEW),
                })
            }
            AuthMode::SharedSecret => AuthConfig::SharedSecret(SharedSecretAuth {
                secret: secret_ref(
                    t.secret_env.take(),
                    t.secret_file.take(),
                    ["secret_env", "secret_file"],
                    &mode_name,
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
            }),
            AuthMode::Jwt => {
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
                AuthConfig::Jwt(JwtAuth {
                    keys,
                    refresh: t.jwks_refresh.take().unwrap_or(DEFAULT_JWKS_REFRESH),
                    issuers: t.jwt_issuers.take().unwrap_or_default(),
                    audiences,
                    leeway: t.jwt_leeway.take().unwrap_or(DEFAULT_JWT_LEEWAY),
                })
            }
            AuthMode::StandardWebhooks => {
                let written = t.secrets.take().unwrap_or_default();
                let secrets_env = t.secrets_env.take();
                if written.is_empty() && secrets_env.is_none() {
                    return Err(key_error(
                        "secrets",
                        "set secrets or secrets_env when auth = \"standard-webhooks\"",
                    ));
                }
                AuthConfig::StandardWebhooks(StandardWebhooksAuth {
                    secrets: webhook_secrets(written.iter().map(String::as_str))
                        .map_err(|m| key_error("secrets", m))?,
                    secrets_env,
                    tolerance: t.tolerance.take().unwrap_or(DEFAULT_MAX_CLOCK_SKEW),
                })
            }
        };
        let options = match kind {
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
        };
        let rate_limit = match (t.rate_limit.take(), t.rate_burst.take()) {
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
        };
        let default_region = match t.default_region.take() {
            None => None,
            Some(code) => Some(code.parse::<crate::domain::Region>().map_err(|_| {
                key_error(
                    "default_region",
                    format!("{code:?} is not an ISO 3166-1 country code (e.g. CN, US, GB)"),
                )
            })?),
        };
        // Whatever is left was written for another auth mode or another kind of source.
        if let Some(key) = t.first_key() {
            return Err(KeyError {
                key,
                message: format!(
                    "is not a setting of a {} source with auth = \"{mode_name}\"",
                    super::spelling(&kind)
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

impl SourceTable {
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

/// Reads a secret from where the config says it is; an error names the key that says where.
pub fn read_secret(name: &str, field: &str, at: &SecretRef) -> Result<Secret, ConfigError> {
    let suffix = match at {
        SecretRef::Env(_) => "env",
        SecretRef::File(_) => "file",
    };
    let key = || format!("sources.{name}.{field}_{suffix}");
    let secret = at.read().map_err(|e| invalid(key(), e.to_string()))?;
    if secret.expose().len() < MIN_SECRET_BYTES {
        return Err(invalid(key(), too_short()));
    }
    Ok(secret)
}

/// The shortest secret any auth mode takes: a shorter one (an empty `whsec_`, a test value
/// left in production) can be guessed or brute-forced offline from one signed request.
pub const MIN_SECRET_BYTES: usize = 16;

fn too_short() -> String {
    format!("a secret must be at least {MIN_SECRET_BYTES} bytes")
}

impl StandardWebhooksAuth {
    /// The secrets written in the file and those in `secrets_env`, decoded.
    pub fn resolve(&self, name: &str) -> Result<Vec<Secret>, ConfigError> {
        let mut all = self.secrets.clone();
        if let Some(var) = &self.secrets_env {
            let value = std::env::var(var).map_err(|_| {
                invalid(
                    format!("sources.{name}.secrets_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            let more = webhook_secrets(value.split([' ', ',']).filter(|s| !s.is_empty()))
                .map_err(|m| invalid(format!("sources.{name}.secrets"), m))?;
            all.extend(more);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shorter_than_16_bytes_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (short, long) = (dir.path().join("short"), dir.path().join("long"));
        std::fs::write(&short, "fifteen-bytes!!\n").unwrap();
        std::fs::write(&long, "sixteen-bytes!!!\n").unwrap();
        let e = read_secret("hw", "app_secret", &SecretRef::File(short)).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("sources.hw.app_secret_file") && e.contains("16 bytes"),
            "{e}"
        );
        read_secret("hw", "app_secret", &SecretRef::File(long)).unwrap();
    }
}
