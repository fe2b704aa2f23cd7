//! HTTP: the hook endpoint every source is served at, health, and the request-id middleware.

mod error;
mod source;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

pub use error::IngestError;
pub use source::{Source, SourceAuth};

use crate::batch::Batcher;
use crate::config::KindOptions;
use crate::domain::{DeadLetter, DeadLetterScope, Handshake, Outcome, Record, RecordKind};
use crate::metrics::Metrics;
use crate::publish::PublisherHandle;
use crate::sources::{Delivery, Parsed, Rejection};
use crate::store::Store;

/// Shared by every HTTP worker.
pub struct AppState {
    pub sources: HashMap<String, Arc<Source>>,
    pub batcher: Batcher,
    pub store: Arc<dyn Store>,
    pub publisher: PublisherHandle,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub retry_after_secs: u32,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::resource("/hooks/{source}")
                .route(web::post().to(hook))
                .route(web::method(actix_web::http::Method::OPTIONS).to(webhook_options)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// How long a health check waits for the database.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pings the store, records the result in `ringback_store_up`, and says why when it failed.
pub async fn check_store(store: &dyn Store, metrics: &Metrics) -> Result<(), String> {
    let result = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(crate::error::error_chain(&e)),
        Err(_) => Err(format!(
            "the database did not answer within {}s",
            PING_TIMEOUT.as_secs()
        )),
    };
    metrics.store_up.set(i64::from(result.is_ok()));
    result
}

/// Ready when the store answers. The publisher's state is reported, not required: while the
/// brokers are away the database is the buffer, and ingest goes on.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let backend = state.store.backend();
    let store = match check_store(state.store.as_ref(), &state.metrics).await {
        Ok(()) => serde_json::json!({"ok": true, "backend": backend}),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            serde_json::json!({"ok": false, "backend": backend, "error": error})
        }
    };
    let ready = store["ok"] == true;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store,
        "publisher": state.publisher.status(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// What the metrics need to know of a record once its outcome is known.
enum Fact {
    Call(&'static str),
    Cdr {
        answered: bool,
        talk_seconds: u64,
        billable_minutes: u64,
    },
    SmsReport(&'static str),
    Other(RecordKind),
    NotARecord,
}

/// SMS delivery statuses as ACS documents them; anything else is counted as `other`, so a
/// sender cannot grow the label set.
const SMS_STATUSES: [&str; 5] = ["Delivered", "Failed", "Expired", "Sent", "Queued"];

impl Fact {
    fn of(record: &Record) -> Self {
        match record {
            Record::CallEvent(e) => Self::Call(e.event_type.as_str()),
            Record::Cdr(c) => Self::Cdr {
                answered: c.derived.answered,
                talk_seconds: c.derived.talk_seconds.unwrap_or(0).max(0) as u64,
                billable_minutes: c.derived.billable_minutes.unwrap_or(0).max(0) as u64,
            },
            Record::Phone(e) if e.direction == "outbound" => {
                let status = e.delivery_status.as_deref().unwrap_or("");
                Self::SmsReport(
                    SMS_STATUSES
                        .into_iter()
                        .find(|s| s.eq_ignore_ascii_case(status))
                        .unwrap_or("other"),
                )
            }
            other => other.kind().map_or(Self::NotARecord, Self::Other),
        }
    }

    fn kind(&self) -> Option<RecordKind> {
        match self {
            Self::Call(_) => Some(RecordKind::CallStatus),
            Self::Cdr { .. } => Some(RecordKind::Cdr),
            Self::SmsReport(_) => Some(RecordKind::PhoneEvent),
            Self::Other(kind) => Some(*kind),
            Self::NotARecord => None,
        }
    }
}

/// Counts committed records: by outcome, and the domain figures of the new ones.
fn observe_outcomes(metrics: &Metrics, source: &str, facts: &[Fact], outcomes: &[Outcome]) {
    for (fact, outcome) in facts.iter().zip(outcomes) {
        let outcome = match outcome {
            Outcome::Inserted => "accepted",
            Outcome::Duplicate => "duplicate",
        };
        let Some(kind) = fact.kind() else { continue };
        metrics
            .records
            .with_label_values(&[source, kind.as_str(), outcome])
            .inc();
        if outcome != "accepted" {
            continue;
        }
        match *fact {
            Fact::Call(event_type) => {
                metrics
                    .call_events
                    .with_label_values(&[source, event_type])
                    .inc();
            }
            Fact::Cdr {
                answered,
                talk_seconds,
                billable_minutes,
            } => {
                let answered = if answered { "true" } else { "false" };
                metrics.cdrs.with_label_values(&[source, answered]).inc();
                metrics
                    .talk_seconds
                    .with_label_values(&[source])
                    .inc_by(talk_seconds);
                metrics
                    .billable_seconds
                    .with_label_values(&[source])
                    .inc_by(billable_minutes * 60);
            }
            Fact::SmsReport(status) => {
                metrics
                    .sms_delivery_reports
                    .with_label_values(&[source, status])
                    .inc();
            }
            Fact::Other(_) | Fact::NotARecord => {}
        }
    }
}

/// The request id: taken from `X-Request-Id` when it is sane, else generated.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (echoed back and on every log line of the request), and counts
/// and times it by route, source and status.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let Some(s) = &state {
        s.metrics.http_in_flight.inc();
    }
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let result = next.call(req).instrument(span).await;
    if let Some(s) = &state {
        s.metrics.http_in_flight.dec();
    }
    let mut res = result?;
    if let Some(s) = &state {
        let (route, source) = labels(&res, s);
        let status = res.status();
        s.metrics
            .http_requests
            .with_label_values(&[route, source, status.as_str()])
            .inc();
        s.metrics
            .http_duration
            .with_label_values(&[route, source])
            .observe(started.elapsed().as_secs_f64());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID), v);
    }
    Ok(res)
}

/// Bounded labels for a request: the route's name, and the source when it is a configured one.
fn labels<'a, B>(res: &'a ServiceResponse<B>, state: &'a AppState) -> (&'static str, &'a str) {
    let req = res.request();
    match req.match_pattern().as_deref() {
        Some("/hooks/{source}") => {
            let source = req.match_info().get("source").unwrap_or("");
            match state.sources.get_key_value(source) {
                Some((name, _)) => ("hooks", name.as_str()),
                None => ("hooks", "unknown"),
            }
        }
        Some("/healthz") => ("healthz", ""),
        Some("/readyz") => ("readyz", ""),
        Some("/metrics") => ("metrics", ""),
        _ => ("unmatched", ""),
    }
}

/// What a hook answers on success.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub status: &'static str,
    /// Records committed as new rows.
    pub accepted: usize,
    /// Records already stored before (platform retries); no new row.
    pub duplicates: usize,
    /// Records of a multi-record body that were refused (kept as dead letters).
    pub rejected: Vec<RejectedRecord>,
}

#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Everything about a request that its dead letters record.
struct Request<'a> {
    state: &'a AppState,
    source: &'a Source,
    received_at: DateTime<Utc>,
    request_id: Option<String>,
    headers: &'a HeaderMap,
}

impl Request<'_> {
    fn dead_letter(
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
    async fn handshake(
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
    async fn refuse(&self, error: IngestError, body: Option<Vec<u8>>) -> IngestError {
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
                metrics
                    .dead_letters
                    .with_label_values(&[&self.source.name, rejection.code])
                    .inc();
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

fn is_json_utf8(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json" || essence.ends_with("+json");
    json && parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    declared: Option<usize>,
) -> Result<Vec<u8>, IngestError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| IngestError::BodyRead)?;
        if body.len() + chunk.len() > limit {
            return Err(IngestError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `OPTIONS /hooks/{source}`: the CloudEvents webhook abuse-protection handshake. The sender
/// asks with `WebHook-Request-Origin` (and maybe `WebHook-Request-Rate`); the answer grants the
/// origin (if allowed) and a rate, and says that only POST is served.
async fn webhook_options(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, IngestError> {
    let source = state
        .sources
        .get(path.as_str())
        .ok_or(IngestError::UnknownSource)?;
    let KindOptions::Acs {
        allowed_origins,
        allowed_rate,
    } = &source.options
    else {
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .finish());
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin = header("webhook-request-origin")
        .map(str::trim)
        .unwrap_or("");
    if origin.is_empty() {
        return Err(IngestError::Invalid(Rejection::new(
            "missing_field",
            "the WebHook-Request-Origin header is required",
            Some("WebHook-Request-Origin".into()),
        )));
    }
    let allowed = allowed_origins.is_empty()
        || allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if !allowed {
        return Err(IngestError::OriginNotAllowed);
    }
    let requested_rate = header("webhook-request-rate").and_then(|r| r.trim().parse::<u32>().ok());
    let granted_rate = match (requested_rate, *allowed_rate) {
        (Some(r), Some(max)) => Some(r.min(max).to_string()),
        (Some(r), None) => Some(r.to_string()),
        (None, _) => None,
    };
    let request = Request {
        state: &state,
        source,
        received_at: Utc::now().trunc_subsecs(6),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        headers: req.headers(),
    };
    let detail = serde_json::json!({
        "origin": origin,
        "requested_rate": requested_rate,
        "granted_rate": granted_rate,
        "callback": header("webhook-request-callback"),
    });
    request.handshake("cloudevents-options", detail).await?;
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("WebHook-Allowed-Origin", origin))
        .insert_header((header::ALLOW, "POST"));
    if let Some(rate) = granted_rate {
        response.insert_header(("WebHook-Allowed-Rate", rate));
    }
    Ok(response.finish())
}

/// `POST /hooks/{source}`: authenticate, read, parse, commit, and only then answer.
async fn hook(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, IngestError> {
    // Microseconds: what PostgreSQL keeps, so a record read back (replay) is the one published.
    let received_at = Utc::now().trunc_subsecs(6);
    let source = state
        .sources
        .get(path.as_str())
        .ok_or(IngestError::UnknownSource)?;
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > state.max_headers || header_bytes > state.max_header_bytes {
        state
            .metrics
            .rejected(&source.name, "headers_too_large", None, false);
        return Err(IngestError::HeadersTooLarge);
    }
    // A flood is refused before any work (no auth, no body read, no dead letter).
    if let Err(retry_after) = source.admit() {
        state
            .metrics
            .rejected(&source.name, "rate_limited", None, false);
        return Err(IngestError::RateLimited { retry_after });
    }
    let request = Request {
        state: &state,
        source,
        received_at,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        headers: req.headers(),
    };

    // Credentials are in the headers and the URL, not the body: check them before reading a
    // byte of the body. The URL as seen is only built when a signature covers it.
    let seen_url = || {
        let info = req.connection_info();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{}://{}{}", info.scheme(), info.host(), path)
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = source
        .authenticate(req.headers(), req.query_string(), seen_url, received_at)
        .await
    {
        return Err(request.refuse(IngestError::Auth(e), None).await);
    }

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let read = read_body(payload, state.max_body_bytes, declared);
    let read = match tokio::time::timeout(state.body_timeout, read).await {
        Ok(read) => read,
        Err(_) => Err(IngestError::BodyTimeout),
    };
    let body = match read {
        Ok(body) => {
            state
                .metrics
                .http_body_bytes
                .with_label_values(&[&source.name])
                .observe(body.len() as f64);
            body
        }
        Err(e @ (IngestError::PayloadTooLarge { .. } | IngestError::BodyTimeout)) => {
            return Err(request.refuse(e, None).await)
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = source.verify_body(req.headers(), &body, received_at) {
        return Err(request.refuse(IngestError::Auth(e), None).await);
    }
    let content_type = header(header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !is_json_utf8(content_type) {
        let e = IngestError::UnsupportedMediaType(content_type.to_owned());
        return Err(request.refuse(e, Some(body)).await);
    }

    let Parsed {
        mut records,
        rejected,
    } = match source.parse(&body, req.headers(), received_at) {
        Ok(Delivery::Records(parsed)) => parsed,
        Ok(Delivery::Validation { code, url }) => {
            let detail = serde_json::json!({"validation_url": url});
            request.handshake("eventgrid-validation", detail).await?;
            tracing::info!(source = %source.name, "Event Grid subscription validated");
            return Ok(HttpResponse::Ok().json(serde_json::json!({"validationResponse": code})));
        }
        Err(rejection) => {
            return Err(request
                .refuse(IngestError::Invalid(rejection), Some(body))
                .await)
        }
    };
    let accepted_count = records.len();
    let facts: Vec<Fact> = records.iter().map(Fact::of).collect();
    let mut rejected_out = Vec::with_capacity(rejected.len());
    for r in rejected {
        let (code, field) = (r.rejection.code, r.rejection.field.as_deref());
        state.metrics.rejected(&source.name, code, field, false);
        state
            .metrics
            .records
            .with_label_values(&[&source.name, r.kind.as_str(), "rejected"])
            .inc();
        records.push(request.dead_letter(
            DeadLetterScope::Record,
            Some(r.index),
            &r.rejection,
            Some(r.raw.into_bytes()),
        ));
        rejected_out.push(RejectedRecord {
            index: r.index,
            code: r.rejection.code,
            message: r.rejection.message,
            field: r.rejection.field,
        });
    }
    let outcomes = state
        .batcher
        .submit(records)
        .await
        .map_err(|e| IngestError::from_submit(e, state.retry_after_secs))?;
    let inserted = outcomes[..accepted_count]
        .iter()
        .filter(|o| **o == Outcome::Inserted)
        .count();
    observe_outcomes(&state.metrics, &source.name, &facts, &outcomes);
    for r in &rejected_out {
        state
            .metrics
            .dead_letters
            .with_label_values(&[&source.name, r.code])
            .inc();
    }
    Ok(HttpResponse::Ok().json(Accepted {
        status: "ok",
        accepted: inserted,
        duplicates: accepted_count - inserted,
        rejected: rejected_out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_json_utf8("application/json;charset=UTF-8"));
        assert!(is_json_utf8("application/json"));
        assert!(is_json_utf8("Application/JSON; charset=\"utf-8\""));
        assert!(is_json_utf8("application/cloudevents+json"));
        assert!(!is_json_utf8("application/json; charset=GBK"));
        assert!(!is_json_utf8("text/plain"));
        assert!(!is_json_utf8(""));
    }

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
