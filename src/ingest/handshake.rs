//! The CloudEvents webhook abuse-protection handshake (`OPTIONS /hooks/{source}`); Event Grid's
//! own validation handshake arrives as a POST and is answered by the hook.

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{SubsecRound, Utc};

use super::dead_letter::Request;
use super::middleware::RequestId;
use super::{AppState, IngestError};
use crate::config::KindOptions;
use crate::domain::{Code, HandshakeKind};
use crate::sources::Rejection;

/// `OPTIONS /hooks/{source}`: the CloudEvents webhook abuse-protection handshake. The sender
/// asks with `WebHook-Request-Origin` (and maybe `WebHook-Request-Rate`); the answer grants the
/// origin (if allowed) and a rate, and says that only POST is served.
pub(super) async fn webhook_options(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, IngestError> {
    let source = state
        .sources
        .get(path.as_str())
        .ok_or(IngestError::UnknownSource)?;
    super::hook::admit_headers(&req, &state, source)?;
    super::hook::admit_rate(&state, source)?;
    let KindOptions::Acs {
        allowed_origins,
        allowed_rate,
    } = &source.options
    else {
        return Err(IngestError::MethodNotAllowed { allow: "POST" });
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin = header("webhook-request-origin")
        .map(str::trim)
        .unwrap_or("");
    if origin.is_empty() {
        return Err(IngestError::Invalid(Rejection::new(
            Code::MissingField,
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
    // Kept once per origin per interval: a sender repeating its handshake (or a flood of
    // them) does not write a row each time.
    if source.first_handshake_of(origin) {
        request
            .handshake(HandshakeKind::CloudeventsOptions, detail)
            .await?;
    }
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("WebHook-Allowed-Origin", origin))
        .insert_header((header::ALLOW, "POST"));
    if let Some(rate) = granted_rate {
        response.insert_header(("WebHook-Allowed-Rate", rate));
    }
    Ok(response.finish())
}
