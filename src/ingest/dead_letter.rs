//! Refused input is kept: a request's dead letters (raw bytes, the reason, its headers with
//! secrets redacted) and the handshakes it answered, committed like any record.

use actix_web::http::header::HeaderMap;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AppState, IngestError, Source};
use crate::domain::{DeadLetter, DeadLetterScope, Handshake, Record};
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
    ) -> Record {
        Record::DeadLetter(Box::new(DeadLetter {
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
        }))
    }

    /// Records an answered handshake (committed before the answer, like every record).
    pub async fn handshake(
        &self,
        kind: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), IngestError> {
        let record = Record::Handshake(Box::new(Handshake {
            id: Uuid::new_v4(),
            source: self.source.name.clone(),
            received_at: self.received_at,
            request_id: self.request_id.clone(),
            kind,
            detail,
        }));
        self.state
            .batcher
            .submit(vec![record])
            .await
            .map(|_| ())
            .map_err(|e| IngestError::from_submit(e, self.state.retry_after_secs))
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
        let letter = self.dead_letter(DeadLetterScope::Request, None, &rejection, body);
        match self.state.batcher.submit(vec![letter]).await {
            Ok(_) => {
                metrics.dead_letter_kept(&self.source.name, rejection.code);
                error
            }
            Err(e) if matches!(error, IngestError::Auth(_)) => {
                tracing::warn!(error = %e, "could not keep the dead letter of an auth failure");
                error
            }
            Err(e) => {
                tracing::error!(error = %e, code = rejection.code, "could not keep a refused body; asking the sender to retry");
                IngestError::from_submit(e, self.state.retry_after_secs)
            }
        }
    }
}

/// Header names whose values are secrets.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// Request headers as a JSON object, with secrets redacted: X-AKSK keeps Username, Nonce and
/// Created (what one needs to debug a signature) but not PasswordDigest.
pub fn redacted_headers(headers: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = String::from_utf8_lossy(value.as_bytes());
        let value = if SECRET_HEADERS.contains(&name) {
            "[redacted]".to_owned()
        } else if name == "x-aksk" {
            redact_digest(&value)
        } else {
            value.into_owned()
        };
        match map.get_mut(name) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                map.insert(name.to_owned(), value.into());
            }
        }
    }
    serde_json::Value::Object(map)
}

/// Keeps the parts of an X-AKSK header one needs to debug a signature (Username, Nonce,
/// Created), never PasswordDigest; a header that does not parse is dropped whole, since what
/// it holds is unknown.
fn redact_digest(x_aksk: &str) -> String {
    match crate::auth::aksk::parse_header(x_aksk) {
        Ok(t) => format!(
            "UsernameToken Username=\"{}\", PasswordDigest=\"[redacted]\", Nonce=\"{}\", Created=\"{}\"",
            t.username, t.nonce, t.created
        ),
        Err(_) => "[redacted]".to_owned(),
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
}
