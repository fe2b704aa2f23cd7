//! Around every request: its id, and its count and duration by route, source and status.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use tracing::Instrument;
use uuid::Uuid;

use super::AppState;

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
        s.metrics.request_started();
    }
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let result = next.call(req).instrument(span).await;
    if let Some(s) = &state {
        let answered = result.as_ref().ok().map(|res| {
            let (route, source) = labels(res, s);
            (route, source, res.status())
        });
        s.metrics.request_ended(
            answered
                .as_ref()
                .map(|(route, source, status)| (*route, *source, status.as_str())),
            started.elapsed(),
        );
    }
    let mut res = result?;
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
