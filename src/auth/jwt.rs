//! `Authorization: Bearer <JWT>` checked against JWKS keys (Entra ID for Event Grid, the ACS
//! resource's keys for Call Automation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::AuthFailure;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const BEARER: &str = "Bearer error=\"invalid_token\"";

/// Where the JWKS keys come from.
#[derive(Debug, Clone)]
pub enum JwksOrigin {
    File(PathBuf),
    Url(String),
}

/// Keys by `kid`, with the algorithms each may verify.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// Keys without a `kid`: used when the token names none.
    anonymous: Vec<DecodingKey>,
}

/// Checks `Authorization: Bearer <JWT>`: signature by a JWKS key, `exp`, `nbf`, `aud`, `iss`.
pub struct JwtVerifier {
    origin: JwksOrigin,
    keys: RwLock<Arc<Keys>>,
    last_load: std::sync::Mutex<Instant>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("origin", &self.origin)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// A token naming an unknown key reloads the keys, at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Only asymmetric algorithms: a JWKS holds public keys, and accepting HS* would let a public
/// key be used as an HMAC secret.
const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl JwtVerifier {
    /// Loads the keys once; fails when they cannot be read.
    pub async fn new(
        origin: JwksOrigin,
        issuers: Vec<String>,
        audiences: Vec<String>,
        leeway: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let verifier = Self {
            origin,
            keys: RwLock::new(Arc::new(Keys::default())),
            last_load: std::sync::Mutex::new(Instant::now()),
            issuers,
            audiences,
            leeway,
            client,
        };
        verifier.reload().await?;
        Ok(verifier)
    }

    /// Reads the JWKS again (a refresh, or a token naming a key not seen yet).
    pub async fn reload(&self) -> anyhow::Result<usize> {
        let text = match &self.origin {
            JwksOrigin::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| anyhow::anyhow!("reading JWKS {}: {e}", path.display()))?,
            JwksOrigin::Url(url) => {
                self.client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| anyhow::anyhow!("fetching JWKS {url}: {e}"))?
                    .text()
                    .await?
            }
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the JWKS is not a JSON Web Key Set: {e}"))?;
        let mut keys = Keys::default();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWKS key ringback cannot use");
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        let count = keys.by_kid.len() + keys.anonymous.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        *self.last_load.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(count)
    }

    fn find(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => match (keys.anonymous.as_slice(), keys.by_kid.len()) {
                ([only], 0) => Some(only.clone()),
                ([], 1) => keys.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }

    /// Checks the `Authorization` header's bearer token.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), AuthFailure> {
        let fail = |code, message: &str| AuthFailure::new(code, message, Some(BEARER));
        let token = authorization
            .ok_or_else(|| fail("token_missing", "the Authorization header is missing"))?;
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("token_malformed", "expected Authorization: Bearer <token>"))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| fail("token_malformed", "the token is not a JWT"))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(fail(
                "token_bad_algorithm",
                "the token's algorithm is not an accepted asymmetric one",
            ));
        }
        let mut key = self.find(header.kid.as_deref());
        if key.is_none() && self.may_reload() {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "reloading the JWKS failed");
            }
            key = self.find(header.kid.as_deref());
        }
        let key =
            key.ok_or_else(|| fail("token_unknown_key", "the token's signing key is not known"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&self.audiences);
        if !self.issuers.is_empty() {
            validation.set_issuer(&self.issuers);
        }
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "aud"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map(|_| ())
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => fail(
                    "token_bad_signature",
                    "the token's signature does not verify",
                ),
                ErrorKind::ExpiredSignature => fail("token_expired", "the token has expired"),
                ErrorKind::ImmatureSignature => {
                    fail("token_not_yet_valid", "the token is not valid yet (nbf)")
                }
                ErrorKind::InvalidAudience => fail(
                    "token_wrong_audience",
                    "the token is not meant for this endpoint (aud)",
                ),
                ErrorKind::InvalidIssuer => fail(
                    "token_wrong_issuer",
                    "the token's issuer is not accepted (iss)",
                ),
                ErrorKind::MissingRequiredClaim(_) => {
                    fail("token_malformed", "the token lacks exp or aud")
                }
                ErrorKind::InvalidAlgorithm => fail(
                    "token_bad_algorithm",
                    "the token's algorithm does not match its key",
                ),
                _ => fail("token_malformed", "the token cannot be read"),
            })
    }

    fn may_reload(&self) -> bool {
        self.last_load
            .lock()
            .map(|t| t.elapsed() >= RELOAD_AT_MOST_EVERY)
            .unwrap_or(false)
    }
}
