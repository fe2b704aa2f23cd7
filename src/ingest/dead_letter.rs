//! Refused input is kept: a request's dead letters (raw bytes, the reason, its headers with
//! secrets redacted) and the handshakes it answered, committed like any record.

use actix_web::http::header::HeaderMap;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AppState, IngestError, Source};
use crate::domain::{DeadLetter, DeadLetterScope, Handshake, HandshakeKind, Row};
use crate::sources::Rejection;

/// Everything about a request that its dead letters record.
pub(super) struct Request<'a> {
    pub state: &'a AppState,
    pub source: &'a Source,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub headers: &'a HeaderMap,
}

impl Request<'_> {
    pub fn dead_letter(
        &self,
        scope: DeadLetterScope,
        index: Option<usize>,
        rejection: &Rejection,
        body: Option<Vec<u8>>,
    ) -> Row {
        Row::DeadLetter(Box::new(DeadLetter {
            id: Uuid::new_v4(),
            source: self.source.name.clone(),
            received_at: self.received_at,
            request_id: self.request_id.clone(),
            scope,
            record_index: index.and_then(|i| i32::try_from(i).ok()),
            code: rejection.code,
            detail: rejection.message.clone(),
            field: rejection.field.clone(),
            body,
            headers: redacted_headers(self.headers),
            auth: Some(self.source.auth_mode.to_owned()),
        }))
    }

    /// Records an answered handshake (committed before the answer, like every record).
    pub async fn handshake(
        &self,
        kind: HandshakeKind,
        detail: serde_json::Value,
    ) -> Result<(), IngestError> {
        let row = Row::Handshake(Box::new(Handshake {
            id: Uuid::new_v4(),
            source: self.source.name.clone(),
            received_at: self.received_at,
            request_id: self.request_id.clone(),
            kind,
            detail,
        }));
        self.state
            .batcher
            .submit(vec![row])
            .await
            .map(|_| ())
            .map_err(|e| IngestError::from_submit(e, self.state.retry_after_secs))
    }

    /// A failed authentication leaves counters (`ringback_auth_failures_total`), and a dead
    /// letter (headers only, never the body) and a log line for at most
    /// `AUTH_FAILURE_LETTERS_PER_MINUTE` of them per source: forged traffic cannot write a
    /// row per request. The letter is committed directly, never spooled, and its failure is
    /// only logged: the answer is the 401 either way.
    async fn keep_auth_failure(&self, rejection: &Rejection) {
        if !self.source.keep_auth_failure() {
            return;
        }
        tracing::info!(
            source = %self.source.name,
            code = %rejection.code,
            request_id = self.request_id.as_deref(),
            "authentication failed (logged and kept for the first few per minute)"
        );
        let letter = self.dead_letter(DeadLetterScope::Request, None, rejection, None);
        match self
            .state
            .store
            .commit(std::slice::from_ref(&letter), &[])
            .await
        {
            Ok(_) => self
                .state
                .metrics
                .dead_letter_kept(&self.source.name, rejection.code),
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "could not keep the dead letter of an auth failure")
            }
        }
    }

    /// Keeps a refused request, then returns the refusal. If it cannot be kept, the sender is
    /// told to retry (503) rather than having its input silently lost, except for auth
    /// failures, whose input is not ours to keep.
    pub async fn refuse(&self, error: IngestError, body: Option<Vec<u8>>) -> IngestError {
        let rejection = match &error {
            IngestError::Invalid(r) => r.clone(),
            other => Rejection::new(other.code(), other.to_string(), None),
        };
        let metrics = &self.state.metrics;
        let auth = matches!(error, IngestError::Auth(_));
        metrics.rejected(
            &self.source.name,
            rejection.code,
            rejection.field.as_deref(),
            auth,
        );
        if auth {
            self.keep_auth_failure(&rejection).await;
            return error;
        }
        let letter = self.dead_letter(DeadLetterScope::Request, None, &rejection, body);
        match self.state.batcher.submit(vec![letter]).await {
            Ok(_) => {
                metrics.dead_letter_kept(&self.source.name, rejection.code);
                error
            }
            Err(e) => {
                tracing::error!(error = %e, code = %rejection.code, "could not keep a refused body; asking the sender to retry");
                IngestError::from_submit(e, self.state.retry_after_secs)
            }
        }
    }
}

/// The request headers a dead letter keeps as sent: what one needs to tell who sent it, what,
/// and which delivery it was, and nothing that can hold a credential. Every other header is
/// kept by name with the value `[redacted]`: an allow-list, because a deny-list misses the
/// secret header an operator configured (`x-ringback-secret`) or one a proxy adds.
const KEPT_HEADERS: [&str; 21] = [
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "traceparent",
    "webhook-id",
    "webhook-timestamp",
    "svix-id",
    "svix-timestamp",
    "aeg-event-type",
    "aeg-delivery-count",
    "aeg-subscription-name",
    "aeg-data-version",
    "aeg-metadata-version",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Whether a header's value is kept as sent (see [`KEPT_HEADERS`]); CloudEvents' binary-mode
/// attributes (`ce-*`) are too.
fn kept(name: &str) -> bool {
    KEPT_HEADERS.contains(&name) || name.starts_with("ce-") || name == "x-real-ip"
}

/// Request headers as a JSON object with every value outside [`KEPT_HEADERS`] redacted;
/// X-AKSK keeps Username, Nonce and Created (what one needs to debug a signature) but not
/// PasswordDigest.
pub fn redacted_headers(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = if kept(name) {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        } else if name == "x-aksk" {
            redact_digest(&String::from_utf8_lossy(value.as_bytes()))
        } else {
            REDACTED.to_owned()
        };
        match map.get_mut(name) {
            Some(serde_json::Value::String(prev)) => {
                if value != REDACTED {
                    prev.push_str(", ");
                    prev.push_str(&value);
                }
            }
            _ => {
                map.insert(name.to_owned(), value.into());
            }
        }
    }
    serde_json::Value::Object(map)
}

const REDACTED: &str = "[redacted]";

/// Keeps the parts of an X-AKSK header one needs to debug a signature (Username, Nonce,
/// Created), never PasswordDigest; a header that does not parse is dropped whole, since what
/// it holds is unknown.
fn redact_digest(x_aksk: &str) -> String {
    match crate::auth::aksk::parse_header(x_aksk) {
        Ok(t) => format!(
            "UsernameToken Username=\"{}\", PasswordDigest=\"[redacted]\", Nonce=\"{}\", Created=\"{}\"",
            t.username, t.nonce, t.created
        ),
        Err(_) => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{self, HeaderValue};

    #[test]
    fn secrets_are_redacted_from_kept_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AKSK realm=\"SDP\""),
        );
        h.insert(
            header::HeaderName::from_static("x-aksk"),
            HeaderValue::from_static("UsernameToken Username=\"k\", PasswordDigest=\"c2VjcmV0\", Nonce=\"n1\", Created=\"2026-11-21T08:00:00Z\""),
        );
        let v = redacted_headers(&h);
        assert_eq!(v["authorization"], "[redacted]");
        let aksk = v["x-aksk"].as_str().unwrap();
        assert!(!aksk.contains("c2VjcmV0"), "{aksk}");
        assert!(aksk.contains("Username=\"k\"") && aksk.contains("Nonce=\"n1\""));
    }

    #[test]
    fn only_allowed_headers_keep_their_values() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x-ringback-secret", "s3cr3t-value-0123456"),
            ("x-custom-token", "tok_live_abc"),
            ("webhook-signature", "v1,abc"),
            ("content-type", "application/json"),
            ("user-agent", "Svix-Webhooks/1.0"),
            ("webhook-id", "msg_1"),
            ("ce-id", "e1"),
            ("aeg-delivery-count", "2"),
            ("x-forwarded-for", "203.0.113.9"),
        ] {
            h.insert(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let v = redacted_headers(&h);
        for secret in ["x-ringback-secret", "x-custom-token", "webhook-signature"] {
            assert_eq!(v[secret], "[redacted]", "{secret}: {v}");
        }
        assert_eq!(v["content-type"], "application/json");
        assert_eq!(v["user-agent"], "Svix-Webhooks/1.0");
        assert_eq!(v["webhook-id"], "msg_1");
        assert_eq!(v["ce-id"], "e1");
        assert_eq!(v["aeg-delivery-count"], "2");
        assert_eq!(v["x-forwarded-for"], "203.0.113.9");
        assert!(!v.to_string().contains("s3cr3t") && !v.to_string().contains("tok_live"));
    }
}
