//! Standard Webhooks signatures (standardwebhooks.com): HMAC-SHA256 over
//! `id.timestamp.body` with a `whsec_` base64 secret, sent in `webhook-signature` as
//! space-separated `v1,<base64>` entries; several secrets may be valid at once (rotation).

use crate::domain::Code;
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
    pub code: Code,
    pub message: &'static str,
}

fn refuse(code: Code, message: &'static str) -> SignatureError {
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
    #[cfg(test)]
    MACS.with(|m| m.set(m.get() + 1));
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

/// Most `v1,` entries of `webhook-signature` read: a sender signs with one secret, two while
/// it rotates; the rest of a longer header is ignored, so the work a request can cause is
/// bounded whatever it sends.
pub const MAX_SIGNATURES: usize = 8;

/// Checks what the headers alone can tell, before a byte of the body is read: the three
/// headers present, the id, a fresh timestamp, at least one well-formed `v1` signature.
/// Returns the signatures (at most [`MAX_SIGNATURES`]) for [`verify_body`].
pub fn verify_headers(
    headers: Option<&WebhookHeaders<'_>>,
    tolerance: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<[u8; 32]>, SignatureError> {
    let h = headers.ok_or_else(|| {
        refuse(
            Code::SignatureHeadersMissing,
            "webhook-id, webhook-timestamp and webhook-signature are required",
        )
    })?;
    if h.id.is_empty() || h.id.len() > 256 {
        return Err(refuse(
            Code::InvalidWebhookId,
            "webhook-id must be 1-256 characters",
        ));
    }
    let ts: i64 = h.timestamp.trim().parse().map_err(|_| {
        refuse(
            Code::InvalidTimestamp,
            "webhook-timestamp must be integer seconds",
        )
    })?;
    let sent = DateTime::from_timestamp(ts, 0)
        .ok_or_else(|| refuse(Code::InvalidTimestamp, "webhook-timestamp is out of range"))?;
    let off = now.signed_duration_since(sent);
    if off > tolerance || off < -tolerance {
        return Err(refuse(
            Code::TimestampOutOfTolerance,
            "webhook-timestamp is too far from now",
        ));
    }
    // A SHA-256 MAC is 32 bytes: anything else cannot match and is not kept.
    let provided: Vec<[u8; 32]> = h
        .signature
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .take(MAX_SIGNATURES)
        .filter_map(|b64| BASE64.decode(b64).ok()?.try_into().ok())
        .collect();
    if provided.is_empty() {
        return Err(refuse(
            Code::SignatureMalformed,
            "webhook-signature holds no v1 signature",
        ));
    }
    Ok(provided)
}

/// Checks the body against the signatures [`verify_headers`] returned: ONE MAC per secret
/// (the body is hashed once per secret, never once per signature entry), compared with each
/// signature in constant time.
pub fn verify_body(
    secrets: &[Vec<u8>],
    headers: &WebhookHeaders<'_>,
    provided: &[[u8; 32]],
    body: &[u8],
) -> Result<(), SignatureError> {
    use hmac::digest::CtOutput;
    let mut ok = false;
    for secret in secrets {
        let tag = mac(secret, headers.id, headers.timestamp, body).finalize();
        for candidate in provided {
            ok |= tag == CtOutput::new((*candidate).into());
        }
    }
    if ok {
        Ok(())
    } else {
        Err(refuse(
            Code::SignatureMismatch,
            "webhook-signature does not match",
        ))
    }
}

/// Checks a message: fresh timestamp, and one `v1` signature made by one of `secrets`
/// ([`verify_headers`] then [`verify_body`]).
pub fn verify(
    secrets: &[Vec<u8>],
    headers: Option<&WebhookHeaders<'_>>,
    body: &[u8],
    tolerance: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let provided = verify_headers(headers, tolerance, now)?;
    let headers = headers.expect("checked by verify_headers");
    verify_body(secrets, headers, &provided, body)
}

#[cfg(test)]
thread_local! {
    /// How many HMACs this thread computed, for the test that it is one per secret.
    static MACS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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

    #[test]
    fn one_mac_per_secret_whatever_the_number_of_signatures() {
        let secrets = [
            decode_secret(SECRET).unwrap(),
            decode_secret("whsec_c2VjcmV0LW51bWJlci10d28=").unwrap(),
        ];
        let bogus = vec!["v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="; 300].join(" ");
        let tol = chrono::Duration::minutes(5);
        let h = headers(&bogus, TS);
        let provided = verify_headers(Some(&h), tol, at(1614265330)).unwrap();
        assert_eq!(
            provided.len(),
            MAX_SIGNATURES,
            "entries beyond the cap are not read"
        );
        let before = MACS.with(|m| m.get());
        let err = verify_body(&secrets, &h, &provided, &vec![b'x'; 1 << 20]).unwrap_err();
        let macs = MACS.with(|m| m.get()) - before;
        assert_eq!(err.code, "signature_mismatch");
        assert_eq!(macs, 2, "one MAC per secret, not one per signature entry");
    }

    #[test]
    fn the_timestamp_is_checked_without_overflow() {
        let tol = chrono::Duration::minutes(5);
        for ts in [
            i64::MAX.to_string(),
            i64::MIN.to_string(),
            "-8334632851200".into(),
        ] {
            let h = headers(SIG, &ts);
            let code = verify_headers(Some(&h), tol, at(1614265330))
                .unwrap_err()
                .code;
            assert!(
                code == "invalid_timestamp" || code == "timestamp_out_of_tolerance",
                "{ts}: {code}"
            );
        }
    }
}
