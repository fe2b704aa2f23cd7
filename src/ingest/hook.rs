//! `POST /hooks/{source}`, step by step: admit the request (headers within bounds, the
//! source's rate), authenticate it from its headers, read the body, check a signature that
//! covers the body, parse, commit, and only then answer. Each refusal is kept as a dead letter
//! (see [`Request::refuse`]) before it is answered.

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{SubsecRound, Utc};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::dead_letter::Request;
use super::middleware::RequestId;
use super::response::{Accepted, RejectedRecord};
use super::{AppState, IngestError, Source};
use crate::auth::aksk::{AuthError, NonceClaim};
use crate::domain::{Code, DeadLetterScope, HandshakeKind, Nonce, Outcome, Row};
use crate::metrics::Fact;
use crate::sources::{Delivery, Parsed};

pub(super) async fn hook(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, IngestError> {
    // Microseconds: what PostgreSQL keeps, so a record read back (replay) is the one published.
    let received_at = Utc::now().trunc_subsecs(6);
    if state.admin_port.is_some() && super::health::on_admin(&req, &state) {
        // The admin listener serves no hook.
        return Err(IngestError::UnknownSource);
    }
    let source = state
        .sources
        .get(path.as_str())
        .ok_or(IngestError::UnknownSource)?;
    admit_headers(&req, &state, source)?;
    let request = Request {
        state: &state,
        source,
        received_at,
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        headers: req.headers(),
    };
    let nonce = authenticate(&req, &request).await?;
    // Event Grid numbers its attempts at a batch from 0: a retry says that earlier attempts
    // failed or went unanswered (from a sender that authenticated, so forgers cannot move it).
    let attempt = req
        .headers()
        .get("aeg-delivery-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    if attempt.is_some_and(|n| n > 0) {
        state.metrics.sender_retried(&source.name);
    }
    let body = read(&req, payload, &request).await?;
    if let Err(e) = source.verify_body(req.headers(), &body, received_at) {
        return Err(request.refuse(IngestError::Auth(e), None).await);
    }
    admit_rate(&state, source)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_utf8(content_type) {
        let e = IngestError::UnsupportedMediaType(content_type.to_owned());
        return Err(request.refuse(e, Some(body)).await);
    }
    match source.parse(&body, req.headers(), received_at) {
        Ok(Delivery::Records(parsed)) => {
            // The nonce's claim names this body: see `domain::Nonce::claim`.
            let claim = nonce
                .filter(|_| state.shared_nonces)
                .map(|n| (n, Sha256::digest(&body)));
            commit(&request, parsed, &body, claim).await
        }
        Ok(Delivery::Validation { code, url }) => {
            let detail = serde_json::json!({"validation_url": url});
            request
                .handshake(HandshakeKind::EventgridValidation, detail)
                .await?;
            tracing::info!(source = %source.name, "Event Grid subscription validated");
            Ok(HttpResponse::Ok().json(serde_json::json!({"validationResponse": code})))
        }
        Err(rejection) => Err(request
            .refuse(IngestError::Invalid(rejection), Some(body))
            .await),
    }
}

/// Refuses headers beyond their bounds before any work (no auth, no body read, no dead letter).
pub(super) fn admit_headers(
    req: &HttpRequest,
    state: &AppState,
    source: &Source,
) -> Result<(), IngestError> {
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > state.max_headers || header_bytes > state.max_header_bytes {
        state
            .metrics
            .rejected(&source.name, Code::HeadersTooLarge, None, false);
        return Err(IngestError::HeadersTooLarge);
    }
    Ok(())
}

/// Refuses a source beyond its rate, once its request authenticated (a Standard Webhooks
/// signature covers the body, so after the body is read): a forger cannot spend the
/// platform's budget.
pub(super) fn admit_rate(state: &AppState, source: &Source) -> Result<(), IngestError> {
    if let Err(retry_after) = source.admit() {
        state
            .metrics
            .rejected(&source.name, Code::RateLimited, None, false);
        return Err(IngestError::RateLimited { retry_after });
    }
    Ok(())
}

/// Checks the credentials in the headers and the URL before a byte of the body is read. The
/// URL as seen is only built when a signature covers it. An X-AKSK request's nonce comes back,
/// to be claimed in the database with its records.
async fn authenticate(
    req: &HttpRequest,
    request: &Request<'_>,
) -> Result<Option<NonceClaim>, IngestError> {
    let seen_url = || {
        let info = req.connection_info();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{}://{}{}", info.scheme(), info.host(), path)
    };
    match request
        .source
        .authenticate(
            req.headers(),
            req.query_string(),
            seen_url,
            request.received_at,
        )
        .await
    {
        Ok(nonce) => Ok(nonce),
        // Nothing is wrong with the request: the source cannot check it yet.
        Err(e) if e.code == crate::auth::jwt::KEYS_UNAVAILABLE => {
            request
                .state
                .metrics
                .rejected(&request.source.name, e.code, None, false);
            Err(IngestError::KeysUnavailable {
                retry_after: request.state.retry_after_secs,
            })
        }
        Err(e) => Err(request.refuse(IngestError::Auth(e), None).await),
    }
}

/// Reads the whole body within `http.max_body_bytes` and `http.body_timeout`.
async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    request: &Request<'_>,
) -> Result<Vec<u8>, IngestError> {
    let state = request.state;
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
    match read {
        Ok(body) => {
            state.metrics.body_read(&request.source.name, body.len());
            Ok(body)
        }
        Err(e @ (IngestError::PayloadTooLarge { .. } | IngestError::BodyTimeout)) => {
            Err(request.refuse(e, None).await)
        }
        Err(e) => Err(e),
    }
}

/// Commits the parsed records with the dead letters of the refused ones, in one submission,
/// then answers what became of each. An X-AKSK request's nonce leads the submission and guards
/// the rest: when another replica (or an earlier life of this one) claimed it already, nothing
/// of the request is stored and it is refused as `nonce_reused`.
async fn commit(
    request: &Request<'_>,
    parsed: Parsed,
    body: &[u8],
    nonce: Option<(NonceClaim, sha2::digest::Output<Sha256>)>,
) -> Result<HttpResponse, IngestError> {
    let (state, source) = (request.state, request.source);
    let Parsed {
        records: parsed_records,
        rejected,
    } = parsed;
    let accepted_count = parsed_records.len();
    let facts: Vec<Fact> = parsed_records.iter().map(Fact::of).collect();
    let lead = usize::from(nonce.is_some());
    // One letter per refused record, up to a bound; beyond it one letter of the whole body
    // instead, so what a request can write is bounded whatever it holds.
    let whole_body = rejected.len() > MAX_RECORD_LETTERS;
    let letter_count = if whole_body { 1 } else { rejected.len() };
    let mut rows = Vec::with_capacity(lead + accepted_count + letter_count);
    if let Some((claim, digest)) = &nonce {
        let guards = u32::try_from(accepted_count + letter_count).unwrap_or(u32::MAX);
        rows.push(Row::Nonce(Box::new(Nonce::new(
            source.name.clone(),
            claim.nonce.clone(),
            claim.expires_at,
            guards,
            digest,
        ))));
    }
    rows.extend(parsed_records.into_iter().map(Row::Record));
    let mut rejected_out = Vec::with_capacity(rejected.len());
    let mut letters: Vec<Code> = Vec::new();
    if let (true, Some(first)) = (whole_body, rejected.first()) {
        let rejection = crate::sources::Rejection::new(
            first.rejection.code,
            format!(
                "{} of {} records refused; the first, at index {}: {}",
                rejected.len(),
                accepted_count + rejected.len(),
                first.index,
                first.rejection.message
            ),
            first.rejection.field.clone(),
        );
        rows.push(request.dead_letter(
            DeadLetterScope::Request,
            None,
            &rejection,
            Some(body.to_vec()),
        ));
        letters.push(rejection.code);
    }
    for r in rejected {
        let (code, field) = (r.rejection.code, r.rejection.field.as_deref());
        state
            .metrics
            .record_rejected(&source.name, r.kind, code, field);
        if !whole_body {
            rows.push(request.dead_letter(
                DeadLetterScope::Record,
                Some(r.index),
                &r.rejection,
                Some(r.raw.into_bytes()),
            ));
            letters.push(code);
        }
        rejected_out.push(RejectedRecord {
            index: r.index,
            code: r.rejection.code,
            message: r.rejection.message,
            field: r.rejection.field,
        });
    }
    let submitted = state
        .batcher
        .submit(rows)
        .await
        .map_err(|e| IngestError::from_submit(e, state.retry_after_secs))?;
    let outcomes = &submitted.outcomes[lead..];
    if lead == 1 && submitted.outcomes[0] == Outcome::Duplicate {
        // Spooled submissions are always answered as inserted: the spool cannot ask the
        // database, and a replay during an outage is caught when the spool drains (its
        // records are left out then).
        let e = IngestError::Auth(AuthError::NonceReused.into());
        return Err(request.refuse(e, None).await);
    }
    let inserted = outcomes[..accepted_count]
        .iter()
        .filter(|o| **o == Outcome::Inserted)
        .count();
    let refused = refused_records(&outcomes[..accepted_count], &rejected_out);
    if submitted.spooled {
        state.metrics.records_spooled(&source.name, &facts);
    } else {
        state
            .metrics
            .records_committed(&source.name, &facts, outcomes);
    }
    for code in letters {
        state.metrics.dead_letter_kept(&source.name, code);
    }
    if !refused.is_empty() && refused.len() == accepted_count && rejected_out.is_empty() {
        // Nothing of the request could be stored: refused as a whole (its records are kept as
        // dead letters by the batcher, see `batch::isolate`).
        return Err(IngestError::Invalid(crate::sources::Rejection::new(
            crate::domain::UNSTORABLE,
            UNSTORABLE_MESSAGE,
            None,
        )));
    }
    let refused_count = refused.len();
    rejected_out.extend(refused);
    rejected_out.sort_by_key(|r| r.index);
    Ok(HttpResponse::Ok().json(Accepted {
        status: "ok",
        accepted: inserted,
        duplicates: accepted_count - inserted - refused_count,
        rejected: rejected_out,
        spooled: submitted.spooled,
    }))
}

/// Most record-scope dead letters one request writes; a body with more refused records is kept
/// as one request-scope letter instead (its bytes once, its headers once).
pub const MAX_RECORD_LETTERS: usize = 100;

/// What the sender is told of a record the database refused.
const UNSTORABLE_MESSAGE: &str =
    "the database refused this record (a NUL character, or a value out of range); it is kept as a dead letter";

/// The records the database refused, as rejected records at their index in the body. The
/// accepted records are the body's records in order, less the ones refused while parsing
/// (`rejected`): each source turns one body element into one record or one rejection.
fn refused_records(outcomes: &[Outcome], rejected: &[RejectedRecord]) -> Vec<RejectedRecord> {
    let parse_refused: std::collections::HashSet<usize> =
        rejected.iter().map(|r| r.index).collect();
    let body_indexes = (0..).filter(|i| !parse_refused.contains(i));
    outcomes
        .iter()
        .zip(body_indexes)
        .filter(|(o, _)| **o == Outcome::Refused)
        .map(|(_, index)| RejectedRecord {
            index,
            code: crate::domain::UNSTORABLE,
            message: UNSTORABLE_MESSAGE.to_owned(),
            field: None,
        })
        .collect()
}

pub(super) fn is_json_utf8(content_type: &str) -> bool {
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
}
