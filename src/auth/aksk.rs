//! Huawei's `X-AKSK` UsernameToken signature:
//!
//! ```text
//! X-AKSK: UsernameToken Username="<app_key>", PasswordDigest="<b64>", Nonce="<1-128 alnum>", Created="2018-02-12T15:30:20Z"
//! PasswordDigest = Base64(HMAC-SHA256(app_secret, url [+ "\n"] + nonce [+ "\n"] + created))
//! ```
//!
//! The docs disagree across versions on the `"\n"` separators and on whether `Created` is UTC or
//! Beijing time; the accepted variants are configured per source. A nonce is refused when seen
//! again while any reading of its `Created` is still fresh.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{constant_time_eq, Secret};
use crate::domain::Code;

/// How the three parts of the AKSK digest input are joined. Huawei's current docs put `"\n"`
/// between url, nonce and created; the 2022-05-07 version concatenates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DigestVariant {
    Newline,
    Concat,
}

/// How to read `Created`: the current docs call it Beijing time (UTC+8) although it carries a
/// `Z`; older pages say plain UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CreatedZone {
    Utc,
    Beijing,
}

type HmacSha256 = Hmac<Sha256>;

/// Most nonces remembered per source; beyond it the ones that expire soonest are forgotten
/// first (a bound on memory, paid for with a slightly shorter replay window under floods).
const MAX_REMEMBERED_NONCES: usize = 1_000_000;

/// Why a request failed authentication. Messages say what is wrong, never what a valid value
/// would have been.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the X-AKSK header is missing")]
    Missing,
    #[error("the X-AKSK header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the app key in X-AKSK Username is not known to this source")]
    UnknownAppKey,
    #[error("PasswordDigest does not match")]
    SignatureMismatch,
    #[error("Created is outside the accepted time window")]
    Stale,
    #[error("this Nonce was already used")]
    NonceReused,
}

impl AuthError {
    /// Stable machine-readable code.
    pub const fn code(&self) -> Code {
        match self {
            Self::Missing => Code::AuthMissing,
            Self::Malformed(_) => Code::AuthMalformed,
            Self::UnknownAppKey => Code::UnknownAppKey,
            Self::SignatureMismatch => Code::SignatureMismatch,
            Self::Stale => Code::StaleCreated,
            Self::NonceReused => Code::NonceReused,
        }
    }
}

/// The four parts of an `X-AKSK` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameToken<'a> {
    pub username: &'a str,
    pub password_digest: &'a str,
    pub nonce: &'a str,
    pub created: &'a str,
}

/// Parses `UsernameToken Username="…", PasswordDigest="…", Nonce="…", Created="…"` (any order,
/// any spacing around commas).
pub fn parse_header(value: &str) -> Result<UsernameToken<'_>, AuthError> {
    let rest = value.trim_start();
    let rest = rest
        .get(..13)
        .filter(|p| p.eq_ignore_ascii_case("UsernameToken"))
        .map(|_| &rest[13..])
        .ok_or(AuthError::Malformed("expected the UsernameToken scheme"))?;
    let (mut username, mut digest, mut nonce, mut created) = (None, None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, quoted) = part
            .split_once('=')
            .ok_or(AuthError::Malformed("expected Key=\"value\" pairs"))?;
        let value = quoted
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(AuthError::Malformed("values must be double-quoted"))?;
        let slot = match key.trim() {
            "Username" => &mut username,
            "PasswordDigest" => &mut digest,
            "Nonce" => &mut nonce,
            "Created" => &mut created,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("a parameter appears twice"));
        }
    }
    let token = UsernameToken {
        username: username.ok_or(AuthError::Malformed("Username is missing"))?,
        password_digest: digest.ok_or(AuthError::Malformed("PasswordDigest is missing"))?,
        nonce: nonce.ok_or(AuthError::Malformed("Nonce is missing"))?,
        created: created.ok_or(AuthError::Malformed("Created is missing"))?,
    };
    if token.nonce.is_empty()
        || token.nonce.len() > 128
        || !token.nonce.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(AuthError::Malformed(
            "Nonce must be 1-128 letters and digits",
        ));
    }
    Ok(token)
}

fn mac(secret: &[u8], url: &str, nonce: &str, created: &str, variant: DigestVariant) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    let sep: &[u8] = match variant {
        DigestVariant::Newline => b"\n",
        DigestVariant::Concat => b"",
    };
    for part in [
        url.as_bytes(),
        sep,
        nonce.as_bytes(),
        sep,
        created.as_bytes(),
    ] {
        mac.update(part);
    }
    mac
}

/// Computes PasswordDigest as the platform does.
pub fn digest(
    secret: &[u8],
    url: &str,
    nonce: &str,
    created: &str,
    variant: DigestVariant,
) -> String {
    BASE64.encode(
        mac(secret, url, nonce, created, variant)
            .finalize()
            .into_bytes(),
    )
}

/// Builds a complete `X-AKSK` header value, as the platform would send it.
pub fn header_value(
    app_key: &str,
    secret: &[u8],
    url: &str,
    nonce: &str,
    created: &str,
    variant: DigestVariant,
) -> String {
    let digest = digest(secret, url, nonce, created, variant);
    format!(
        "UsernameToken Username=\"{app_key}\", PasswordDigest=\"{digest}\", Nonce=\"{nonce}\", Created=\"{created}\""
    )
}

/// The `X-AKSK` an app sends to the platform's REST API (a call request), as Huawei's API
/// reference and its samples compute it: `PasswordDigest = Base64(HMAC-SHA256(app_secret,
/// Nonce + Created))`, no URL. (`ringback emulate huawei` checks it.)
pub fn app_header_value(app_key: &str, secret: &[u8], nonce: &str, created: &str) -> String {
    header_value(app_key, secret, "", nonce, created, DigestVariant::Concat)
}

/// The `Created` format.
pub const CREATED_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The nonce of a request whose X-AKSK checked out, and until when it must be remembered: for
/// the database to claim with the request's records (`domain::Nonce`), so replicas sharing it
/// refuse a replay that this process's memory has not seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceClaim {
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

/// How a source checks `X-AKSK`.
#[derive(Debug)]
pub struct AkskVerifier {
    app_key: String,
    secret: Secret,
    public_url: Option<String>,
    variants: Vec<DigestVariant>,
    zones: Vec<CreatedZone>,
    max_skew: Duration,
    nonces: Mutex<NonceCache>,
}

impl AkskVerifier {
    pub fn new(
        app_key: String,
        secret: Secret,
        public_url: Option<String>,
        variants: Vec<DigestVariant>,
        zones: Vec<CreatedZone>,
        max_skew: std::time::Duration,
    ) -> Self {
        Self {
            app_key,
            secret,
            public_url,
            variants,
            zones,
            max_skew: Duration::from_std(max_skew).unwrap_or(Duration::minutes(5)),
            nonces: Mutex::new(NonceCache::default()),
        }
    }

    /// Whether the signed URL is configured (so the URL the server saw is not needed).
    pub fn has_public_url(&self) -> bool {
        self.public_url.is_some()
    }

    /// The URL that was signed: the configured public URL, else the one the server saw.
    pub fn signed_url<'a>(&'a self, seen_url: &'a str) -> &'a str {
        self.public_url.as_deref().unwrap_or(seen_url)
    }

    /// Checks a request's `X-AKSK` header value. Order matters: nothing is remembered (no nonce
    /// is burnt) until the signature has proven the sender holds the secret.
    pub fn verify(
        &self,
        header: Option<&str>,
        seen_url: &str,
        now: DateTime<Utc>,
    ) -> Result<NonceClaim, AuthError> {
        let token = parse_header(header.ok_or(AuthError::Missing)?)?;
        // Constant-time even for the app key, so its value cannot be probed byte by byte.
        let key_ok = constant_time_eq(token.username.as_bytes(), self.app_key.as_bytes());
        if !key_ok {
            return Err(AuthError::UnknownAppKey);
        }
        let provided = BASE64
            .decode(token.password_digest)
            .map_err(|_| AuthError::Malformed("PasswordDigest is not Base64"))?;
        let url = self.signed_url(seen_url);
        let signed = self.variants.iter().any(|&variant| {
            mac(
                self.secret.expose(),
                url,
                token.nonce,
                token.created,
                variant,
            )
            .verify_slice(&provided)
            .is_ok()
        });
        if !signed {
            return Err(AuthError::SignatureMismatch);
        }
        let created = parse_created(token.created).ok_or(AuthError::Malformed(
            "Created must look like 2018-02-12T15:30:20Z",
        ))?;
        let readings: Vec<DateTime<Utc>> = self
            .zones
            .iter()
            .filter_map(|zone| match zone {
                CreatedZone::Utc => Some(created),
                CreatedZone::Beijing => created.checked_sub_signed(Duration::hours(8)),
            })
            .collect();
        // Checked arithmetic throughout: Created is the sender's, and any instant chrono can
        // hold must be refused, not panic.
        let fresh = |t: DateTime<Utc>| {
            let off = now.signed_duration_since(t);
            off <= self.max_skew && off >= -self.max_skew
        };
        if !readings.iter().copied().any(fresh) {
            return Err(AuthError::Stale);
        }
        // Remember the nonce until no reading of Created could be fresh any more.
        let latest = readings.iter().max().copied().unwrap_or(created);
        let forget_after = latest
            .checked_add_signed(self.max_skew)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if !nonces.insert(token.nonce, forget_after, now) {
            return Err(AuthError::NonceReused);
        }
        Ok(NonceClaim {
            nonce: token.nonce.to_owned(),
            expires_at: forget_after,
        })
    }
}

fn parse_created(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(raw.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

/// Nonces seen recently, each with the instant after which it can be forgotten.
#[derive(Debug, Default)]
struct NonceCache {
    seen: HashMap<String, DateTime<Utc>>,
    prune_at_len: usize,
}

impl NonceCache {
    /// Records `nonce`; false if it is already remembered.
    fn insert(&mut self, nonce: &str, forget_after: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if let Some(&until) = self.seen.get(nonce) {
            if until >= now {
                return false;
            }
        }
        self.seen.insert(nonce.to_owned(), forget_after);
        if self.seen.len() > self.prune_at_len {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() > MAX_REMEMBERED_NONCES {
                let mut expiries: Vec<_> = self.seen.values().copied().collect();
                let cut = expiries.len() - MAX_REMEMBERED_NONCES / 2;
                let (_, &mut threshold, _) = expiries.select_nth_unstable(cut);
                tracing::warn!(
                    remembered = self.seen.len(),
                    "nonce cache full; forgetting the nonces that expire soonest"
                );
                self.seen.retain(|_, until| *until > threshold);
            }
            self.prune_at_len = (self.seen.len() * 2).max(1024);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://cb.example.com/hooks/hw";
    const SECRET: &[u8] = b"app-secret";

    fn now() -> DateTime<Utc> {
        "2026-11-21T08:00:00Z".parse().unwrap()
    }

    fn verifier(variants: Vec<DigestVariant>, zones: Vec<CreatedZone>) -> AkskVerifier {
        AkskVerifier::new(
            "app".into(),
            Secret::new(SECRET),
            Some(URL.into()),
            variants,
            zones,
            std::time::Duration::from_secs(300),
        )
    }

    fn all() -> AkskVerifier {
        verifier(
            vec![DigestVariant::Newline, DigestVariant::Concat],
            vec![CreatedZone::Utc, CreatedZone::Beijing],
        )
    }

    fn header(nonce: &str, created: DateTime<Utc>, variant: DigestVariant) -> String {
        header_value(
            "app",
            SECRET,
            URL,
            nonce,
            &created.format(CREATED_FORMAT).to_string(),
            variant,
        )
    }

    #[test]
    fn known_digest_vector() {
        // Independently computed: printf 'https://cb.example.com/hooks/hw\nabc123\n2026-11-21T08:00:00Z'
        //   | openssl dgst -sha256 -hmac app-secret -binary | base64
        let want = "gcCBdyr0k9f7XHvLWB1mBTYFTkOCloAYLMB57LAYyuM=";
        let got = digest(
            SECRET,
            URL,
            "abc123",
            "2026-11-21T08:00:00Z",
            DigestVariant::Newline,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn both_layouts_and_both_zones_verify() {
        let v = all();
        v.verify(
            Some(&header("n1", now(), DigestVariant::Newline)),
            "",
            now(),
        )
        .unwrap();
        v.verify(Some(&header("n2", now(), DigestVariant::Concat)), "", now())
            .unwrap();
        let beijing = now() + Duration::hours(8);
        v.verify(
            Some(&header("n3", beijing, DigestVariant::Newline)),
            "",
            now(),
        )
        .unwrap();
    }

    #[test]
    fn restricted_variants_refuse_the_others() {
        let v = verifier(vec![DigestVariant::Newline], vec![CreatedZone::Utc]);
        let concat = header("n1", now(), DigestVariant::Concat);
        assert_eq!(
            v.verify(Some(&concat), "", now()),
            Err(AuthError::SignatureMismatch)
        );
        let beijing = header("n2", now() + Duration::hours(8), DigestVariant::Newline);
        assert_eq!(v.verify(Some(&beijing), "", now()), Err(AuthError::Stale));
    }

    #[test]
    fn distinct_failures_have_distinct_codes() {
        let v = all();
        assert_eq!(
            v.verify(None, "", now()).unwrap_err().code(),
            "auth_missing"
        );
        assert_eq!(
            v.verify(Some("Basic abc"), "", now()).unwrap_err().code(),
            "auth_malformed"
        );
        let other_key = header_value(
            "other",
            SECRET,
            URL,
            "n",
            "2026-11-21T08:00:00Z",
            DigestVariant::Newline,
        );
        assert_eq!(
            v.verify(Some(&other_key), "", now()).unwrap_err().code(),
            "unknown_app_key"
        );
        let wrong = header_value(
            "app",
            b"nope",
            URL,
            "n",
            "2026-11-21T08:00:00Z",
            DigestVariant::Newline,
        );
        assert_eq!(
            v.verify(Some(&wrong), "", now()).unwrap_err().code(),
            "signature_mismatch"
        );
        let stale = header("n", now() - Duration::minutes(6), DigestVariant::Newline);
        assert_eq!(
            v.verify(Some(&stale), "", now()).unwrap_err().code(),
            "stale_created"
        );
        let h = header("again", now(), DigestVariant::Newline);
        v.verify(Some(&h), "", now()).unwrap();
        assert_eq!(
            v.verify(Some(&h), "", now()).unwrap_err().code(),
            "nonce_reused"
        );
    }

    #[test]
    fn created_at_the_ends_of_time_is_stale_not_a_panic() {
        let v = all();
        for created in [
            "-262143-01-01T00:00:00Z",
            "+262143-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
        ] {
            let h = header_value("app", SECRET, URL, created, created, DigestVariant::Newline);
            let at_the_end = [now(), DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC];
            for at in at_the_end {
                let r = v.verify(Some(&h), "", at);
                assert!(
                    matches!(r, Err(AuthError::Stale | AuthError::Malformed(_)) | Ok(_)),
                    "{created} at {at}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn a_nonce_is_remembered_while_any_zone_reading_is_fresh() {
        let v = all();
        // Created read as Beijing time is fresh now; read as UTC it becomes fresh in 8 hours.
        let h = header("n", now() + Duration::hours(8), DigestVariant::Newline);
        v.verify(Some(&h), "", now()).unwrap();
        let later = now() + Duration::hours(8);
        assert_eq!(v.verify(Some(&h), "", later), Err(AuthError::NonceReused));
    }

    #[test]
    fn the_seen_url_is_signed_when_no_public_url_is_set() {
        let v = AkskVerifier::new(
            "app".into(),
            Secret::new(SECRET),
            None,
            vec![DigestVariant::Newline],
            vec![CreatedZone::Utc],
            std::time::Duration::from_secs(300),
        );
        let created = now().format(CREATED_FORMAT).to_string();
        let seen = "http://127.0.0.1:8080/hooks/hw";
        let h = header_value("app", SECRET, seen, "n", &created, DigestVariant::Newline);
        v.verify(Some(&h), seen, now()).unwrap();
        let h = header_value("app", SECRET, URL, "m", &created, DigestVariant::Newline);
        assert_eq!(
            v.verify(Some(&h), seen, now()),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn header_parsing_is_tolerant_of_order_and_spacing_but_not_of_garbage() {
        let t = parse_header(r#"UsernameToken Nonce="abc",Created="2026-11-21T08:00:00Z" ,  Username="k", PasswordDigest="ZA==""#).unwrap();
        assert_eq!(
            (t.username, t.nonce, t.password_digest),
            ("k", "abc", "ZA==")
        );
        for bad in [
            r#"UsernameToken Username=k, PasswordDigest="x", Nonce="n", Created="c""#,
            r#"UsernameToken Username="k", Nonce="n", Created="c""#,
            r#"UsernameToken Username="k", Username="j", PasswordDigest="x", Nonce="n", Created="c""#,
            r#"UsernameToken Username="k", PasswordDigest="x", Nonce="n-1", Created="c""#,
            "",
        ] {
            assert!(
                matches!(parse_header(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
