//! Standard Webhooks signatures (standardwebhooks.com): HMAC-SHA256 over
//! `id.timestamp.body` with a `whsec_` base64 secret, sent in `webhook-signature` as
//! space-separated `v1,<base64>` entries; several secrets may be valid at once (rotation).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The three headers, in either spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

impl<'a> WebhookHeaders<'a> {
    /// Reads them with `header(name)`; `webhook-*` first, then `svix-*`.
    pub fn read(header: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let get = |name: &str| {
            header(&format!("webhook-{name}")).or_else(|| header(&format!("svix-{name}")))
        };
        Some(Self {
            id: get("id")?,
            timestamp: get("timestamp")?,
            signature: get("signature")?,
        })
    }
}

/// A refused signature, with its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureError {
    pub code: &'static str,
    pub message: &'static str,
}

fn refuse(code: &'static str, message: &'static str) -> SignatureError {
    SignatureError { code, message }
}

/// Decodes a `whsec_…` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    BASE64
        .decode(
            secret
                .trim()
                .strip_prefix("whsec_")
                .unwrap_or(secret.trim()),
        )
        .ok()
}

/// A secret as `whsec_…`, the way [`decode_secret`] reads it.
pub fn encode_secret(secret: &[u8]) -> String {
    format!("whsec_{}", BASE64.encode(secret))
}

fn mac(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    mac
}

/// The `v1,<base64>` signature of a message, as a sender computes it.
pub fn sign(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1,{}",
        BASE64.encode(mac(secret, id, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a message: fresh timestamp, and one `v1` signature made by one of `secrets`
/// (compared in constant time).
pub fn verify(
    secrets: &[Vec<u8>],
    headers: Option<&WebhookHeaders<'_>>,
    body: &[u8],
    tolerance: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let h = headers.ok_or_else(|| {
        refuse(
            "signature_headers_missing",
            "webhook-id, webhook-timestamp and webhook-signature are required",
        )
    })?;
    if h.id.is_empty() || h.id.len() > 256 {
        return Err(refuse(
            "invalid_webhook_id",
            "webhook-id must be 1-256 characters",
        ));
    }
    let ts: i64 = h.timestamp.trim().parse().map_err(|_| {
        refuse(
            "invalid_timestamp",
            "webhook-timestamp must be integer seconds",
        )
    })?;
    let sent = DateTime::from_timestamp(ts, 0)
        .ok_or_else(|| refuse("invalid_timestamp", "webhook-timestamp is out of range"))?;
    if (now - sent).abs() > tolerance {
        return Err(refuse(
            "timestamp_out_of_tolerance",
            "webhook-timestamp is too far from now",
        ));
    }
    let provided: Vec<Vec<u8>> = h
        .signature
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .collect();
    if provided.is_empty() {
        return Err(refuse(
            "signature_malformed",
            "webhook-signature holds no v1 signature",
        ));
    }
    // Every secret against every provided signature, each compared in constant time.
    let mut ok = false;
    for secret in secrets {
        for candidate in &provided {
            ok |= mac(secret, h.id, h.timestamp, body)
                .verify_slice(candidate)
                .is_ok();
        }
    }
    if ok {
        Ok(())
    } else {
        Err(refuse(
            "signature_mismatch",
            "webhook-signature does not match",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    fn headers<'a>(signature: &'a str, timestamp: &'a str) -> WebhookHeaders<'a> {
        WebhookHeaders {
            id: ID,
            timestamp,
            signature,
        }
    }

    #[test]
    fn the_specification_vector_verifies() {
        let secret = decode_secret(SECRET).unwrap();
        assert_eq!(sign(&secret, ID, TS, BODY), SIG);
        let tol = chrono::Duration::minutes(5);
        verify(
            &[secret],
            Some(&headers(SIG, TS)),
            BODY,
            tol,
            at(1614265330),
        )
        .unwrap();
    }

    #[test]
    fn rotation_tampering_and_time() {
        let old = decode_secret(SECRET).unwrap();
        let new = decode_secret("whsec_c2VjcmV0LW51bWJlci10d28=").unwrap();
        let tol = chrono::Duration::minutes(5);
        let now = at(1614265330);
        let both = format!("v1,AAAA {SIG}");
        let keys = [new.clone(), old];
        verify(&keys, Some(&headers(&both, TS)), BODY, tol, now).unwrap();
        let (only_new, only_old) = (&keys[..1], &keys[1..]);
        let code = |r: Result<(), SignatureError>| r.unwrap_err().code;
        let check = |h: Option<&WebhookHeaders>, body: &[u8], at: DateTime<Utc>| {
            verify(only_old, h, body, tol, at)
        };
        assert_eq!(
            code(verify(only_new, Some(&headers(SIG, TS)), BODY, tol, now)),
            "signature_mismatch"
        );
        let tampered = b"{\"test\": 2432232315}";
        assert_eq!(
            code(check(Some(&headers(SIG, TS)), tampered, now)),
            "signature_mismatch"
        );
        let late = at(1614265330 + 301);
        assert_eq!(
            code(check(Some(&headers(SIG, TS)), BODY, late)),
            "timestamp_out_of_tolerance"
        );
        assert_eq!(
            code(check(Some(&headers(SIG, "soon")), BODY, now)),
            "invalid_timestamp"
        );
        assert_eq!(
            code(check(Some(&headers("v2,abc", TS)), BODY, now)),
            "signature_malformed"
        );
        assert_eq!(code(check(None, BODY, now)), "signature_headers_missing");
    }
}
