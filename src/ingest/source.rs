//! A configured source, ready to serve: its name, how it authenticates, how it parses.

use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use chrono::{DateTime, Utc};

use super::auth::{AuthFailure, JwksOrigin, JwtVerifier, SharedSecret};
use crate::config::{AuthMode, SourceConfig, SourceKind};
use crate::sources::huawei::aksk::AkskVerifier;
use crate::sources::{acs, huawei, standard_webhooks, Delivery, ParseContext, Rejection};

#[derive(Debug)]
pub enum SourceAuth {
    None,
    Aksk(AkskVerifier),
    SharedSecret(SharedSecret),
    Jwt(Arc<JwtVerifier>),
    /// Standard Webhooks: the signature covers the body, so it is checked once the body is read.
    StandardWebhooks {
        secrets: Vec<crate::config::Secret>,
        tolerance: chrono::Duration,
    },
}

#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub kind: SourceKind,
    pub auth: SourceAuth,
    /// CloudEvents OPTIONS handshake: allowed origins (empty: any) and rate.
    pub allowed_origins: Vec<String>,
    pub allowed_rate: Option<u32>,
    /// Standard Webhooks: JSON pointer of the event type.
    pub type_pointer: String,
    /// Requests per second the source may send, if limited.
    pub rate_limiter: Option<governor::DefaultDirectRateLimiter>,
}

impl Source {
    /// Resolves a source's configuration (reading its secret, loading its keys) into a servable
    /// source.
    pub async fn from_config(name: &str, config: &SourceConfig) -> anyhow::Result<Self> {
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
            AuthMode::SharedSecret => SourceAuth::SharedSecret(SharedSecret {
                secret: config
                    .resolve_secret(name)?
                    .expect("validated: shared-secret sources name a secret"),
                query: config.secret_query.clone(),
                header: config.secret_header.to_ascii_lowercase(),
            }),
            AuthMode::Jwt => {
                let origin = match (&config.jwks_file, &config.jwks_url) {
                    (Some(path), _) => JwksOrigin::File(path.clone()),
                    (None, Some(url)) => JwksOrigin::Url(url.clone()),
                    (None, None) => unreachable!("validated: jwt sources name their keys"),
                };
                let verifier = JwtVerifier::new(
                    origin,
                    config.jwt_issuers.clone(),
                    config.jwt_audiences.clone(),
                    config.jwt_leeway,
                )
                .await
                .map_err(|e| anyhow::anyhow!("sources.{name}: {e}"))?;
                let verifier = Arc::new(verifier);
                spawn_refresh(name, Arc::downgrade(&verifier), config.jwks_refresh);
                SourceAuth::Jwt(verifier)
            }
            AuthMode::StandardWebhooks => SourceAuth::StandardWebhooks {
                secrets: config.resolve_webhook_secrets(name)?,
                tolerance: chrono::Duration::from_std(config.tolerance)
                    .unwrap_or(chrono::Duration::minutes(5)),
            },
        };
        Ok(Self {
            name: Arc::from(name),
            kind: config.kind,
            auth,
            allowed_origins: config.allowed_origins.clone(),
            allowed_rate: config.allowed_rate,
            type_pointer: config.type_pointer.clone(),
            rate_limiter: config.rate_limit.and_then(|rate| {
                let rate = std::num::NonZeroU32::new(rate)?;
                let burst = config
                    .rate_burst
                    .and_then(std::num::NonZeroU32::new)
                    .unwrap_or(rate);
                Some(governor::RateLimiter::direct(
                    governor::Quota::per_second(rate).allow_burst(burst),
                ))
            }),
        })
    }

    /// Takes one request from the source's rate limit; `Err(seconds to wait)` when exhausted.
    pub fn admit(&self) -> Result<(), u32> {
        use governor::clock::{Clock, DefaultClock};
        match &self.rate_limiter {
            None => Ok(()),
            Some(limiter) => limiter.check().map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs_f64().ceil().max(1.0) as u32
            }),
        }
    }

    /// Checks the request's credentials.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &str,
        seen_url: impl FnOnce() -> String,
        now: DateTime<Utc>,
    ) -> Result<(), AuthFailure> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match &self.auth {
            SourceAuth::None => Ok(()),
            SourceAuth::Aksk(v) => {
                let seen = if v.has_public_url() {
                    String::new()
                } else {
                    seen_url()
                };
                Ok(v.verify(header("x-aksk"), &seen, now)?)
            }
            SourceAuth::SharedSecret(s) => s.verify(query, header(&s.header)),
            SourceAuth::Jwt(v) => v.verify(header("authorization")).await,
            SourceAuth::StandardWebhooks { .. } => Ok(()),
        }
    }

    /// Checks a signature that covers the body (Standard Webhooks), once the body is read.
    pub fn verify_body(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AuthFailure> {
        let SourceAuth::StandardWebhooks { secrets, tolerance } = &self.auth else {
            return Ok(());
        };
        let keys: Vec<Vec<u8>> = secrets.iter().map(|s| s.expose().to_vec()).collect();
        let found = webhook_headers(headers);
        standard_webhooks::verify(&keys, found.as_ref(), body, *tolerance, now).map_err(|e| {
            AuthFailure {
                code: e.code,
                message: e.message.to_owned(),
                challenge: None,
            }
        })
    }

    /// Parses a body of this source's platform.
    pub fn parse(
        &self,
        body: &[u8],
        headers: &HeaderMap,
        received_at: DateTime<Utc>,
    ) -> Result<Delivery, Rejection> {
        let ctx = ParseContext {
            source: self.name.clone(),
            received_at,
        };
        match self.kind {
            SourceKind::HuaweiVoiceCall => huawei::parse_body(body, &ctx).map(Delivery::Records),
            SourceKind::AzureCommunication => acs::parse_body(body, &ctx),
            SourceKind::StandardWebhooks => standard_webhooks::parse_body(
                body,
                webhook_headers(headers).as_ref(),
                &self.type_pointer,
                &ctx,
            )
            .map(Delivery::Records),
        }
    }
}

fn webhook_headers(headers: &HeaderMap) -> Option<standard_webhooks::WebhookHeaders<'_>> {
    standard_webhooks::WebhookHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

/// Reloads a JWKS every `every` while its source lives.
fn spawn_refresh(name: &str, verifier: std::sync::Weak<JwtVerifier>, every: std::time::Duration) {
    if every.is_zero() {
        return;
    }
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(verifier) = verifier.upgrade() else {
                break;
            };
            match verifier.reload().await {
                Ok(keys) => tracing::debug!(source = %name, keys, "JWKS refreshed"),
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "JWKS refresh failed; keeping the keys held")
                }
            }
        }
    });
}
