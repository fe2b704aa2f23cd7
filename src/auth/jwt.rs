//! `Authorization: Bearer <JWT>` checked against JWKS keys (Entra ID for Event Grid, the ACS
//! resource's keys for Call Automation).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::AuthFailure;
use crate::domain::Code;
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
///
/// The keys are fetched by one request at a time (single flight: concurrent tokens naming an
/// unknown key wait for the one reload, and find what it found), at most every
/// [`RELOAD_AT_MOST_EVERY`] after the last attempt, which doubles while fetches fail (up to
/// [`RELOAD_BACKOFF_MAX`]): a flood of forged tokens naming made-up keys causes at most one
/// fetch per interval. A set without a usable key never replaces working keys. Keys that
/// cannot be fetched at start leave the source answering 503 `keys_unavailable` (alone: the
/// other sources serve) until a reload succeeds.
pub struct JwtVerifier {
    origin: JwksOrigin,
    keys: RwLock<Arc<Keys>>,
    /// When a reload was last attempted, and how many in a row failed.
    attempts: std::sync::Mutex<(Instant, u32)>,
    /// Held while a reload runs.
    reloading: tokio::sync::Mutex<()>,
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
/// The longest wait between reloads while they fail.
const RELOAD_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The largest JWKS document read (Entra ID's is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The code of a request refused because the source's keys could not be fetched (503).
pub const KEYS_UNAVAILABLE: Code = Code::KeysUnavailable;

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
    /// Loads the keys once. When they cannot be fetched the verifier starts without any (its
    /// source answers 503 until a reload succeeds); only a client that cannot be built fails.
    pub async fn new(
        origin: JwksOrigin,
        issuers: Vec<String>,
        audiences: Vec<String>,
        leeway: Duration,
    ) -> anyhow::Result<Self> {
        // No redirects: the configured URL is the key server, not wherever it points to.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let verifier = Self {
            origin,
            keys: RwLock::new(Arc::new(Keys::default())),
            attempts: std::sync::Mutex::new((Instant::now(), 0)),
            reloading: tokio::sync::Mutex::new(()),
            issuers,
            audiences,
            leeway,
            client,
        };
        if let Err(e) = verifier.reload().await {
            tracing::error!(origin = ?verifier.origin, error = %e, "the JWKS cannot be loaded: this source answers 503 keys_unavailable until it can");
        }
        Ok(verifier)
    }

    /// Reads the JWKS again (a refresh, or a token naming a key not seen yet); one at a time.
    pub async fn reload(&self) -> anyhow::Result<usize> {
        let _only_one = self.reloading.lock().await;
        self.reload_holding_the_lock().await
    }

    /// [`reload`](Self::reload), for a caller that holds `reloading`.
    async fn reload_holding_the_lock(&self) -> anyhow::Result<usize> {
        let result = self.load().await;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        *attempts = match result {
            Ok(_) => (Instant::now(), 0),
            Err(_) => (Instant::now(), attempts.1.saturating_add(1)),
        };
        result
    }

    /// Whether any key is held.
    pub fn has_keys(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        !keys.by_kid.is_empty() || !keys.anonymous.is_empty()
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<String> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| anyhow::anyhow!("fetching JWKS {url}: {e}"))?;
        if response.status().is_redirection() {
            anyhow::bail!(
                "fetching JWKS {url}: redirected ({}), not followed",
                response.status()
            );
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("fetching JWKS {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                anyhow::bail!("fetching JWKS {url}: larger than {MAX_JWKS_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|e| anyhow::anyhow!("the JWKS is not UTF-8: {e}"))
    }

    async fn load(&self) -> anyhow::Result<usize> {
        let text = match &self.origin {
            JwksOrigin::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| anyhow::anyhow!("reading JWKS {}: {e}", path.display()))?,
            JwksOrigin::Url(url) => self.fetch(url).await?,
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
        if count == 0 {
            // An emptied or broken key server must not lock every sender out.
            anyhow::bail!("the JWKS holds no usable key; the keys held are kept");
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
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
            .ok_or_else(|| fail(Code::TokenMissing, "the Authorization header is missing"))?;
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                fail(
                    Code::TokenMalformed,
                    "expected Authorization: Bearer <token>",
                )
            })?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| fail(Code::TokenMalformed, "the token is not a JWT"))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(fail(
                Code::TokenBadAlgorithm,
                "the token's algorithm is not an accepted asymmetric one",
            ));
        }
        let mut key = self.find(header.kid.as_deref());
        if key.is_none() && self.may_reload() {
            // Single flight: whoever gets the lock reloads; the others wait for it and find
            // what it found.
            match self.reloading.try_lock() {
                Ok(_held) => {
                    if let Err(e) = self.reload_holding_the_lock().await {
                        tracing::warn!(error = %e, "reloading the JWKS failed");
                    }
                }
                Err(_) => drop(self.reloading.lock().await),
            }
            key = self.find(header.kid.as_deref());
        }
        if key.is_none() && !self.has_keys() {
            return Err(AuthFailure::new(
                KEYS_UNAVAILABLE,
                "this endpoint's signing keys cannot be fetched yet; retry later",
                None,
            ));
        }
        let key = key.ok_or_else(|| {
            fail(
                Code::TokenUnknownKey,
                "the token's signing key is not known",
            )
        })?;
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
                    Code::TokenBadSignature,
                    "the token's signature does not verify",
                ),
                ErrorKind::ExpiredSignature => fail(Code::TokenExpired, "the token has expired"),
                ErrorKind::ImmatureSignature => {
                    fail(Code::TokenNotYetValid, "the token is not valid yet (nbf)")
                }
                ErrorKind::InvalidAudience => fail(
                    Code::TokenWrongAudience,
                    "the token is not meant for this endpoint (aud)",
                ),
                ErrorKind::InvalidIssuer => fail(
                    Code::TokenWrongIssuer,
                    "the token's issuer is not accepted (iss)",
                ),
                ErrorKind::MissingRequiredClaim(_) => {
                    fail(Code::TokenMalformed, "the token lacks exp or aud")
                }
                ErrorKind::InvalidAlgorithm => fail(
                    Code::TokenBadAlgorithm,
                    "the token's algorithm does not match its key",
                ),
                _ => fail(Code::TokenMalformed, "the token cannot be read"),
            })
    }

    /// Whether the last attempt is long enough ago: [`RELOAD_AT_MOST_EVERY`], doubled for
    /// each failure in a row up to [`RELOAD_BACKOFF_MAX`].
    fn may_reload(&self) -> bool {
        let (at, failures) = *self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let wait = RELOAD_AT_MOST_EVERY
            .saturating_mul(1 << failures.min(10))
            .min(RELOAD_BACKOFF_MAX);
        at.elapsed() >= wait
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// RFC 7517's example EC public key.
    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"1"}]}"#;

    /// A token whose header names `kid` (its signature is never reached).
    fn token(kid: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
        format!("Bearer {header}.e30.c2ln")
    }

    /// An HTTP server answering every request with `status` and `body` after `delay`; counts
    /// the requests.
    async fn server(
        status: &'static str,
        body: String,
        delay: Duration,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (body, seen) = (body.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nlocation: http://127.0.0.1:1/\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body.as_bytes()).await;
                });
            }
        });
        (url, count)
    }

    async fn verifier(origin: JwksOrigin) -> JwtVerifier {
        JwtVerifier::new(origin, vec![], vec!["aud".into()], Duration::from_secs(60))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn unreachable_keys_make_the_source_answer_unavailable_not_fail_to_start() {
        let (url, fetched) =
            server("500 Internal Server Error", String::new(), Duration::ZERO).await;
        let v = verifier(JwksOrigin::Url(url)).await;
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        let e = v.verify(Some(&token("1"))).await.unwrap_err();
        assert_eq!(e.code, KEYS_UNAVAILABLE);
        // Backing off: the failed fetch is not retried by every request.
        for _ in 0..20 {
            v.verify(Some(&token("any"))).await.unwrap_err();
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_unknown_keys_cause_one_fetch() {
        let (url, fetched) = server("200 OK", JWKS.into(), Duration::from_millis(200)).await;
        let v = Arc::new(verifier(JwksOrigin::Url(url)).await);
        assert!(v.has_keys());
        // As if the last fetch were long ago.
        *v.attempts.lock().unwrap() = (Instant::now() - Duration::from_secs(3600), 0);
        let tries = (0..50).map(|i| {
            let v = v.clone();
            async move { v.verify(Some(&token(&format!("forged-{i}")))).await }
        });
        for r in futures_util::future::join_all(tries).await {
            assert_eq!(r.unwrap_err().code, "token_unknown_key");
        }
        assert_eq!(
            fetched.load(Ordering::SeqCst),
            2,
            "one at start, one for all 50"
        );
        for _ in 0..20 {
            v.verify(Some(&token("forged-again"))).await.unwrap_err();
        }
        assert_eq!(
            fetched.load(Ordering::SeqCst),
            2,
            "at most one fetch per interval"
        );
    }

    #[tokio::test]
    async fn an_empty_set_never_replaces_working_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, JWKS).unwrap();
        let v = verifier(JwksOrigin::File(path.clone())).await;
        assert!(v.find(Some("1")).is_some());
        std::fs::write(&path, r#"{"keys":[]}"#).unwrap();
        assert!(v.reload().await.is_err());
        assert!(v.find(Some("1")).is_some(), "the working key is kept");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_large_sets_refused() {
        let (url, _) = server("302 Found", String::new(), Duration::ZERO).await;
        let v = verifier(JwksOrigin::Url(url)).await;
        let e = v.reload().await.unwrap_err().to_string();
        assert!(e.contains("redirect"), "{e}");
        let (url, _) = server("200 OK", " ".repeat(MAX_JWKS_BYTES + 1), Duration::ZERO).await;
        let v = verifier(JwksOrigin::Url(url)).await;
        let e = v.reload().await.unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}
