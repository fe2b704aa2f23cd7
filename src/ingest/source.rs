//! A configured source, ready to serve: its name, how it authenticates, how it parses.

use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::auth::aksk::{AkskVerifier, NonceClaim};
use crate::auth::jwt::JwtVerifier;
use crate::auth::shared_secret::SharedSecret;
use crate::auth::standard_webhooks::{self as signatures, WebhookHeaders};
use crate::auth::{AuthFailure, Secret};
use crate::config::{read_secret, AuthConfig, KindOptions, SourceConfig};
use crate::sources::{Delivery, ParseContext, Platform, Rejection};

#[derive(Debug)]
pub enum SourceAuth {
    None,
    Aksk(AkskVerifier),
    SharedSecret(SharedSecret),
    /// Keys re-read every `refresh` (zero: never) by [`Source::jwks_refresh`].
    Jwt {
        verifier: Arc<JwtVerifier>,
        refresh: std::time::Duration,
    },
    /// Standard Webhooks: the signature covers the body, so it is checked once the body is read.
    StandardWebhooks {
        secrets: Vec<Secret>,
        tolerance: chrono::Duration,
    },
}

#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub kind: Platform,
    pub auth: SourceAuth,
    /// What its kind alone needs (the CloudEvents handshake's origins, the event type's
    /// pointer).
    pub options: KindOptions,
    /// Requests per second the source may send, if limited.
    pub rate_limiter: Option<governor::DefaultDirectRateLimiter>,
    /// The country of its national numbers (stored in E.164).
    pub default_region: Option<crate::domain::Region>,
    /// Its configured auth mode's name (`sources.<name>.auth`), also when `auth` is not built
    /// (a parser-only source).
    pub auth_mode: &'static str,
    /// Failed authentications kept as dead letters (and logged), at most
    /// [`AUTH_FAILURE_LETTERS_PER_MINUTE`]: the rest are only counted, so forged traffic
    /// leaves counters and a bounded number of rows, never a row per request.
    pub auth_failure_letters: governor::DefaultDirectRateLimiter,
    /// When each origin's CloudEvents handshake was last kept (see
    /// [`Source::first_handshake_of`]).
    handshakes_kept: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long an origin's kept handshake stands for its repeats.
pub const HANDSHAKE_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Origins remembered per source; past it the memory starts afresh (a flood of made-up origins
/// costs a row per origin at worst, within the source's rate).
const HANDSHAKE_ORIGINS: usize = 1024;

/// Failed authentications of one source kept as dead letters per minute (a burst of as many).
pub const AUTH_FAILURE_LETTERS_PER_MINUTE: u32 = 10;

fn auth_failure_letters() -> governor::DefaultDirectRateLimiter {
    let per_minute = std::num::NonZeroU32::new(AUTH_FAILURE_LETTERS_PER_MINUTE).expect("non-zero");
    governor::RateLimiter::direct(governor::Quota::per_minute(per_minute))
}

impl Source {
    /// Resolves a source's configuration (reading its secret, loading its keys) into a servable
    /// source.
    pub async fn from_config(name: &str, config: &SourceConfig) -> anyhow::Result<Self> {
        let auth = match &config.auth {
            AuthConfig::None => {
                tracing::warn!(
                    source = name,
                    "source has auth = \"none\": anyone who can reach it can write records"
                );
                SourceAuth::None
            }
            AuthConfig::Aksk(aksk) => {
                if aksk.public_url.is_none() {
                    tracing::warn!(
                        source = name,
                        "no public_url: signatures are checked against the URL ringback sees, \
                         which differs behind a proxy"
                    );
                }
                SourceAuth::Aksk(AkskVerifier::new(
                    aksk.app_key.clone(),
                    read_secret(name, "app_secret", &aksk.app_secret)?,
                    aksk.public_url.clone(),
                    aksk.digest_variants.clone(),
                    aksk.created_zones.clone(),
                    aksk.max_clock_skew,
                ))
            }
            AuthConfig::SharedSecret(shared) => SourceAuth::SharedSecret(SharedSecret {
                secret: read_secret(name, "secret", &shared.secret)?,
                query: shared.query.clone(),
                header: shared.header.clone(),
            }),
            AuthConfig::Jwt(jwt) => {
                let verifier = JwtVerifier::new(
                    jwt.keys.clone(),
                    jwt.issuers.clone(),
                    jwt.audiences.clone(),
                    jwt.leeway,
                )
                .await
                .map_err(|e| anyhow::anyhow!("sources.{name}: {e}"))?;
                SourceAuth::Jwt {
                    verifier: Arc::new(verifier),
                    refresh: jwt.refresh,
                }
            }
            AuthConfig::StandardWebhooks(webhooks) => SourceAuth::StandardWebhooks {
                secrets: webhooks.resolve(name)?,
                tolerance: chrono::Duration::from_std(webhooks.tolerance)
                    .unwrap_or(chrono::Duration::minutes(5)),
            },
        };
        Ok(Self {
            name: Arc::from(name),
            kind: config.kind,
            auth,
            options: config.options.clone(),
            default_region: config.default_region,
            rate_limiter: config.rate_limit.map(|limit| {
                governor::RateLimiter::direct(
                    governor::Quota::per_second(limit.per_second).allow_burst(limit.burst),
                )
            }),
            auth_failure_letters: auth_failure_letters(),
            handshakes_kept: Default::default(),
            auth_mode: config.auth.mode().as_str(),
        })
    }

    /// The source as far as parsing goes (no credentials read, no keys fetched, no rate
    /// limit): what `ringback dead-letters reprocess` runs kept bodies through.
    pub fn parser_only(name: &str, config: &SourceConfig) -> Self {
        Self {
            name: Arc::from(name),
            kind: config.kind,
            auth: SourceAuth::None,
            options: config.options.clone(),
            default_region: config.default_region,
            rate_limiter: None,
            auth_failure_letters: auth_failure_letters(),
            handshakes_kept: Default::default(),
            auth_mode: config.auth.mode().as_str(),
        }
    }

    /// Whether `origin`'s handshake is to be kept: the first in [`HANDSHAKE_KEPT_FOR`].
    pub fn first_handshake_of(&self, origin: &str) -> bool {
        let (now, origin) = (std::time::Instant::now(), origin.to_ascii_lowercase());
        let mut kept = self
            .handshakes_kept
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(at) = kept.get(&origin) {
            if now.duration_since(*at) < HANDSHAKE_KEPT_FOR {
                return false;
            }
        }
        if kept.len() >= HANDSHAKE_ORIGINS {
            kept.clear();
        }
        kept.insert(origin, now);
        true
    }

    /// Whether a failed authentication may still be kept as a dead letter this minute.
    pub fn keep_auth_failure(&self) -> bool {
        self.auth_failure_letters.check().is_ok()
    }

    /// Takes one request from the source's rate limit; `Err(seconds to wait)` when exhausted.
    /// Taken once the request authenticated: forged requests do not spend the platform's
    /// budget.
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

    /// Checks the request's credentials; for X-AKSK, the nonce the database must claim with
    /// the request's records.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &str,
        seen_url: impl FnOnce() -> String,
        now: DateTime<Utc>,
    ) -> Result<Option<NonceClaim>, AuthFailure> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match &self.auth {
            SourceAuth::None => Ok(None),
            SourceAuth::Aksk(v) => {
                let seen = if v.has_public_url() {
                    String::new()
                } else {
                    seen_url()
                };
                Ok(Some(v.verify(header("x-aksk"), &seen, now)?))
            }
            SourceAuth::SharedSecret(s) => s.verify(query, header(&s.header)).map(|()| None),
            SourceAuth::Jwt { verifier, .. } => verifier
                .verify(header("authorization"))
                .await
                .map(|()| None),
            // What the headers alone tell (id, fresh timestamp, a well-formed signature) is
            // checked before the body is read; the MAC once it is.
            SourceAuth::StandardWebhooks { tolerance, .. } => {
                signatures::verify_headers(webhook_headers(headers).as_ref(), *tolerance, now)
                    .map(|_| None)
                    .map_err(signature_failure)
            }
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
        signatures::verify(&keys, found.as_ref(), body, *tolerance, now).map_err(signature_failure)
    }

    /// Parses a body of this source's platform, its national numbers in E.164 where the
    /// source has a default region.
    pub fn parse(
        &self,
        body: &[u8],
        headers: &HeaderMap,
        received_at: DateTime<Utc>,
    ) -> Result<Delivery, Rejection> {
        let ctx = ParseContext {
            source: self.name.clone(),
            received_at,
            region: self.default_region,
        };
        let type_pointer = match &self.options {
            KindOptions::StandardWebhooks { type_pointer } => type_pointer.as_str(),
            KindOptions::Huawei | KindOptions::Acs { .. } => "",
        };
        self.kind.parse_body(
            body,
            (webhook_headers(headers).as_ref(), type_pointer),
            &ctx,
        )
    }
}

fn signature_failure(e: signatures::SignatureError) -> AuthFailure {
    AuthFailure {
        code: e.code,
        message: e.message.to_owned(),
        challenge: None,
    }
}

fn webhook_headers(headers: &HeaderMap) -> Option<WebhookHeaders<'_>> {
    WebhookHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

impl Source {
    /// The task that re-reads the source's JWKS every `jwks_refresh` until `stop`; `None` when
    /// the source has no keys to refresh. The caller owns it (`startup` tracks it).
    pub fn jwks_refresh(
        &self,
        stop: CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let SourceAuth::Jwt { verifier, refresh } = &self.auth else {
            return None;
        };
        if refresh.is_zero() {
            return None;
        }
        let (name, verifier, every) = (self.name.clone(), verifier.clone(), *refresh);
        Some(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match verifier.reload().await {
                    Ok(keys) => tracing::debug!(source = %name, keys, "JWKS refreshed"),
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "JWKS refresh failed; keeping the keys held")
                    }
                }
            }
        })
    }
}
