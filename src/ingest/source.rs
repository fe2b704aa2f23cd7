//! A configured source, ready to serve: its name, how it authenticates, how it parses.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{AuthMode, ConfigError, SourceConfig, SourceKind};
use crate::sources::huawei::aksk::{AkskVerifier, AuthError};
use crate::sources::{huawei, ParseContext, Parsed, Rejection};

#[derive(Debug)]
pub enum SourceAuth {
    None,
    Aksk(AkskVerifier),
}

#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub kind: SourceKind,
    pub auth: SourceAuth,
}

impl Source {
    /// Resolves a source's configuration (reading its secret) into a servable source.
    pub fn from_config(name: &str, config: &SourceConfig) -> Result<Self, ConfigError> {
        let auth = match config.auth {
            AuthMode::None => {
                tracing::warn!(
                    source = name,
                    "source has auth = \"none\": anyone who can reach it can write records"
                );
                SourceAuth::None
            }
            AuthMode::Aksk => {
                let secret = config
                    .resolve_secret(name)?
                    .expect("validated: aksk sources name a secret");
                if config.public_url.is_none() {
                    tracing::warn!(
                        source = name,
                        "no public_url: signatures are checked against the URL ringback sees, \
                         which differs behind a proxy"
                    );
                }
                SourceAuth::Aksk(AkskVerifier::new(
                    config.app_key.clone().unwrap_or_default(),
                    secret,
                    config.public_url.clone(),
                    config.digest_variants.clone(),
                    config.created_zones.clone(),
                    config.max_clock_skew,
                ))
            }
        };
        Ok(Self {
            name: Arc::from(name),
            kind: config.kind,
            auth,
        })
    }

    /// Checks the request's credentials. `header` looks a header up by name.
    pub fn authenticate<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        seen_url: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        match &self.auth {
            SourceAuth::None => Ok(()),
            SourceAuth::Aksk(v) => v.verify(header("x-aksk"), seen_url, now),
        }
    }

    /// Parses a body of this source's platform.
    pub fn parse(&self, body: &[u8], received_at: DateTime<Utc>) -> Result<Parsed, Rejection> {
        let ctx = ParseContext {
            source: self.name.clone(),
            received_at,
        };
        match self.kind {
            SourceKind::HuaweiVoiceCall => huawei::parse_body(body, &ctx),
        }
    }
}
