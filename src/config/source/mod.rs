//! A source's settings: its platform, and how its sender authenticates, as one typed variant per
//! auth mode holding exactly that mode's settings. A [`SourceConfig`] is complete: whoever holds
//! one needs no further checks.
//!
//! The TOML stays flat (`auth = "aksk"` beside `app_key = …`): a table is read as a
//! [`SourceTable`], every key optional, and checked into a [`SourceConfig`]. A key that belongs
//! to another auth mode or another kind of source is refused, naming it, rather than ignored.

use std::num::NonZeroU32;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod table;

use table::webhook_secrets;
pub(super) use table::KeyError;
pub use table::SourceTable;

use super::{invalid, ConfigError};
use crate::auth::aksk::{CreatedZone, DigestVariant};
use crate::auth::jwt::JwksOrigin;
use crate::auth::{Secret, SecretRef};
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
