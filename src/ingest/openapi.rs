//! The hook contract: an OpenAPI 3.1 document of `/hooks/{source}`, `/healthz`, `/readyz` and
//! `/metrics`, generated from [`REFUSALS`] (every error code and its status) and the answer
//! types. `ringback openapi` prints it; `schemas/openapi.json` is the committed copy, which
//! `tests/contracts.rs` keeps equal to it, and the unit tests below keep [`REFUSALS`] equal to
//! the codes the code gives. CI runs schemathesis against a live ringback with it.

use serde_json::{json, Map, Value};

/// A refusal: its HTTP status, its `code`, and when it is given.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub when: &'static str,
}

const fn r(status: u16, code: &'static str, when: &'static str) -> Refusal {
    Refusal { status, code, when }
}

/// Every refusal a hook (or its `OPTIONS` handshake) answers, by status.
pub const REFUSALS: &[Refusal] = &[
    r(
        400,
        "invalid_json",
        "not JSON, truncated, or trailing data (`field`: where reading stopped)",
    ),
    r(400, "invalid_utf8", "the body is not UTF-8"),
    r(400, "invalid_type", "a value of the wrong JSON type"),
    r(400, "invalid_value", "a value out of range"),
    r(400, "duplicate_field", "a key twice in one object"),
    r(
        400,
        "missing_field",
        "a required field is absent (`field` names it); `OPTIONS` without `WebHook-Request-Origin`",
    ),
    r(
        400,
        "unknown_event_type",
        "a Huawei `eventType` other than callout, alerting, answer, collectInfo, disconnect, fee",
    ),
    r(400, "fee_list_empty", "`feeLst` with no record"),
    r(
        400,
        "fee_list_too_long",
        "`feeLst` with more than 50 records",
    ),
    r(
        400,
        "invalid_time",
        "a time that is not `yyyy-MM-dd HH:mm:ss` (or ISO 8601)",
    ),
    r(400, "empty_batch", "an ACS delivery with no event"),
    r(
        400,
        "too_many_events",
        "an ACS delivery of more than 5 000 events (Event Grid's own bound)",
    ),
    r(
        400,
        "unstorable_record",
        "the database refused every record of the body (a NUL character, a value out of range); each is kept as a dead letter. Within a body with other records, the refused one is listed in `rejected` and the rest committed",
    ),
    r(
        400,
        "unsupported_event_type",
        "an event outside `Microsoft.Communication.*`",
    ),
    r(
        400,
        "body_read_failed",
        "the request body could not be read",
    ),
    r(
        401,
        "auth_missing",
        "X-AKSK: no `Authorization`/`X-AKSK` header",
    ),
    r(401, "auth_malformed", "X-AKSK: the header does not parse"),
    r(401, "unknown_app_key", "X-AKSK: an app key not configured"),
    r(
        401,
        "signature_mismatch",
        "X-AKSK or Standard Webhooks: the signature does not match",
    ),
    r(
        401,
        "stale_created",
        "X-AKSK: `Created` outside the allowed clock skew",
    ),
    r(401, "nonce_reused", "X-AKSK: the nonce was used already"),
    r(401, "secret_missing", "shared secret: not sent"),
    r(401, "secret_mismatch", "shared secret: wrong"),
    r(
        401,
        "signature_headers_missing",
        "Standard Webhooks: `webhook-id`, `-timestamp` or `-signature` missing",
    ),
    r(
        401,
        "invalid_webhook_id",
        "Standard Webhooks: an unusable `webhook-id`",
    ),
    r(
        401,
        "invalid_timestamp",
        "Standard Webhooks: `webhook-timestamp` is not a UNIX time",
    ),
    r(
        401,
        "timestamp_out_of_tolerance",
        "Standard Webhooks: `webhook-timestamp` too far from now",
    ),
    r(
        401,
        "signature_malformed",
        "Standard Webhooks: no `v1,<base64>` signature",
    ),
    r(401, "token_missing", "JWT: no bearer token"),
    r(401, "token_malformed", "JWT: the token cannot be read"),
    r(401, "token_bad_algorithm", "JWT: an algorithm not allowed"),
    r(
        401,
        "token_unknown_key",
        "JWT: the signing key is not known",
    ),
    r(
        401,
        "token_bad_signature",
        "JWT: the signature does not match",
    ),
    r(401, "token_expired", "JWT: expired"),
    r(401, "token_not_yet_valid", "JWT: not valid yet (`nbf`)"),
    r(401, "token_wrong_audience", "JWT: another audience"),
    r(401, "token_wrong_issuer", "JWT: another issuer"),
    r(
        403,
        "origin_not_allowed",
        "`OPTIONS` from an origin outside `allowed_origins`",
    ),
    r(404, "unknown_source", "no source of that name"),
    r(
        405,
        "method_not_allowed",
        "a method the endpoint does not answer (with `Allow`)",
    ),
    r(
        408,
        "body_timeout",
        "the body did not arrive within `http.body_timeout`",
    ),
    r(413, "body_too_large", "over `http.max_body_bytes`"),
    r(
        415,
        "unsupported_media_type",
        "not `application/json` (UTF-8)",
    ),
    r(
        429,
        "rate_limited",
        "over the source's `rate_limit` (with `Retry-After`)",
    ),
    r(
        431,
        "headers_too_large",
        "over `http.max_headers` or `http.max_header_bytes`",
    ),
    r(
        500,
        "internal_error",
        "the database refused the request's records and could not keep them as dead letters either; nothing was stored",
    ),
    r(
        503,
        "queue_full",
        "the batch queues are full (with `Retry-After`); nothing was stored",
    ),
    r(
        503,
        "store_unavailable",
        "the database is unavailable (with `Retry-After`); nothing was stored",
    ),
    r(
        503,
        "keys_unavailable",
        "a JWT source whose signing keys (JWKS) cannot be fetched yet (with `Retry-After`); the other sources serve",
    ),
    r(
        503,
        "shutting_down",
        "ringback is draining (with `Retry-After`); nothing was stored",
    ),
    r(
        503,
        "spool_full",
        "the database is unavailable and the spool full (with `Retry-After`)",
    ),
];

/// The statuses `OPTIONS /hooks/{source}` answers besides 200 (405: a source that is not an
/// ACS one; 500 and 503: the handshake could not be recorded).
const HANDSHAKE_STATUSES: [u16; 6] = [400, 403, 404, 405, 500, 503];

fn reason(status: u16) -> &'static str {
    actix_web::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

/// An error answer of `status`: its codes as an enum, `Retry-After` where it is sent.
fn error_response(status: u16) -> Value {
    let codes: Vec<&str> = REFUSALS
        .iter()
        .filter(|r| r.status == status)
        .map(|r| r.code)
        .collect();
    let when: Vec<String> = REFUSALS
        .iter()
        .filter(|r| r.status == status)
        .map(|r| format!("- `{}`: {}", r.code, r.when))
        .collect();
    let mut response = json!({
        "description": format!("{}\n\n{}", reason(status), when.join("\n")),
        "content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Error"}],
            "properties": {"error": {"properties": {"code": {"enum": codes}}}}
        }}}
    });
    let mut headers = Map::new();
    if matches!(status, 429 | 503) {
        headers.insert(
            "Retry-After".into(),
            json!({"description": "seconds to wait before sending again", "schema": {"type": "integer", "minimum": 0}, "required": true}),
        );
    }
    if status == 401 {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({"description": "JWT sources: `Bearer error=\"invalid_token\"`", "schema": {"type": "string"}}),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

fn statuses() -> Vec<u16> {
    let mut s: Vec<u16> = REFUSALS.iter().map(|r| r.status).collect();
    s.dedup();
    s
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut hook_responses = Map::new();
    hook_responses.insert(
        "200".into(),
        json!({
            "description": "Committed (or spooled, fsync'd); or an Event Grid validation handshake answered",
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Accepted"},
                {"$ref": "#/components/schemas/ValidationResponse"}
            ]}}}
        }),
    );
    for status in statuses() {
        // 403 is the handshake's; 405 answers the methods the document does not list.
        if !matches!(status, 403 | 405) {
            hook_responses.insert(status.to_string(), error_response(status));
        }
    }
    let mut handshake_responses = Map::new();
    handshake_responses.insert(
        "200".into(),
        json!({
            "description": "The CloudEvents webhook handshake accepted",
            "headers": {
                "WebHook-Allowed-Origin": {"schema": {"type": "string"}, "required": true},
                "WebHook-Allowed-Rate": {"schema": {"type": "string"}},
                "Allow": {"schema": {"type": "string"}}
            }
        }),
    );
    for status in HANDSHAKE_STATUSES {
        handshake_responses.insert(status.to_string(), error_response(status));
    }
    let source = json!({
        "name": "source", "in": "path", "required": true,
        "description": "The source's name in the configuration (`[sources.<name>]`)",
        "schema": {"type": "string"}
    });
    let any_json = json!({"description": "The platform's callback, as it sends it"});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ringback hooks",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Callbacks of telephony platforms (Huawei Cloud VoiceCall, Azure Communication Services, Standard Webhooks senders), answered 2xx only once committed. Every refusal is `{\"error\":{\"code\",\"message\",\"field\"?}}` and is kept as a dead letter. Generated by `ringback openapi`.",
            "license": {"name": "proprietary", "identifier": "LicenseRef-ringback"}
        },
        "paths": {
            "/hooks/{source}": {
                "post": {
                    "operationId": "deliver",
                    "parameters": [source],
                    "summary": "Deliver callbacks of a source",
                    "description": "Authenticated as the source is configured (X-AKSK, a shared secret, a JWT, a Standard Webhooks signature, or none), parsed, committed, then answered.",
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": any_json},
                        "application/cloudevents+json": {"schema": any_json},
                        "application/cloudevents-batch+json": {"schema": any_json}
                    }},
                    "responses": hook_responses
                },
                "options": {
                    "operationId": "handshake",
                    "summary": "CloudEvents webhook abuse protection handshake (ACS sources)",
                    "parameters": [
                        source,
                        {"name": "WebHook-Request-Origin", "in": "header", "required": true, "schema": {"type": "string"}},
                        {"name": "WebHook-Request-Rate", "in": "header", "schema": {"type": "string"}}
                    ],
                    "responses": handshake_responses
                }
            },
            "/healthz": {"get": {
                "operationId": "healthz", "summary": "Liveness",
                "responses": {"200": {"description": "The process serves", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}
                }}}}}
            }},
            "/readyz": {"get": {
                "operationId": "readyz", "summary": "Readiness: the database answers",
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
                    "503": {"description": "Not ready (the body says why)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}}
                }
            }},
            "/metrics": {"get": {
                "operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Prometheus text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }}
        },
        "components": {"schemas": {
            "Error": {
                "type": "object", "required": ["error"], "additionalProperties": false,
                "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "additionalProperties": false,
                    "properties": {
                        "code": {"type": "string", "description": "Stable machine-readable code"},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "JSON path of the offending value, e.g. feeLst[3].direction"}
                    }
                }}
            },
            "Accepted": {
                "type": "object", "required": ["status", "accepted", "duplicates", "rejected"], "additionalProperties": false,
                "properties": {
                    "status": {"const": "ok"},
                    "accepted": {"type": "integer", "minimum": 0, "description": "Records committed as new rows"},
                    "duplicates": {"type": "integer", "minimum": 0, "description": "Records stored before (platform retries)"},
                    "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/RejectedRecord"}},
                    "spooled": {"const": true, "description": "Kept in the local spool (fsync'd) while the database was unavailable"}
                }
            },
            "RejectedRecord": {
                "type": "object", "required": ["index", "code", "message"], "additionalProperties": false,
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"}
                }
            },
            "ValidationResponse": {
                "type": "object", "required": ["validationResponse"], "additionalProperties": false,
                "properties": {"validationResponse": {"type": "string"}}
            },
            "Ready": {
                "type": "object", "required": ["status", "store"],
                "properties": {
                    "status": {"enum": ["ready", "not ready", "draining"]},
                    "store": {"type": "object"},
                    "publisher": {"type": ["object", "null"]}
                }
            }
        }}
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::ResponseError;

    use super::*;
    use crate::ingest::IngestError;

    /// One of every variant but those whose code comes from elsewhere (auth, parsing); the
    /// match makes a new variant a compile error here until it is listed.
    fn every_own_error() -> Vec<IngestError> {
        use IngestError as E;
        let all = vec![
            E::UnknownSource,
            E::OriginNotAllowed,
            E::UnsupportedMediaType(String::new()),
            E::PayloadTooLarge { limit: 1 },
            E::BodyRead,
            E::Overloaded { retry_after: 1 },
            E::RateLimited { retry_after: 1 },
            E::BodyTimeout,
            E::HeadersTooLarge,
            E::ShuttingDown { retry_after: 1 },
            E::StoreUnavailable { retry_after: 1 },
            E::KeysUnavailable { retry_after: 1 },
            E::SpoolFull { retry_after: 1 },
            E::Internal,
            E::MethodNotAllowed { allow: "GET" },
        ];
        for e in &all {
            match e {
                E::UnknownSource
                | E::OriginNotAllowed
                | E::UnsupportedMediaType(_)
                | E::PayloadTooLarge { .. }
                | E::BodyRead
                | E::Overloaded { .. }
                | E::RateLimited { .. }
                | E::BodyTimeout
                | E::HeadersTooLarge
                | E::ShuttingDown { .. }
                | E::StoreUnavailable { .. }
                | E::KeysUnavailable { .. }
                | E::SpoolFull { .. }
                | E::Internal
                | E::MethodNotAllowed { .. } => {}
                E::Auth(_) | E::Invalid(_) => unreachable!(),
            }
        }
        all
    }

    /// The code literals the parsers and authenticators give (401 for auth, 400 for parsing):
    /// string literals in `snake_case` opening a `Rejection::new(`, `AuthFailure::new(`,
    /// `fail(` or `refuse(`, after `=>` in an error's `code()`, or alone in a block (a branch's
    /// value), outside tests.
    fn codes_in(source: &str) -> BTreeSet<String> {
        let source = source
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap_or("");
        let mut codes = BTreeSet::new();
        for opener in [
            "Rejection::new(",
            "AuthFailure::new(",
            "fail(",
            "refuse(",
            "=> \"",
            "{",
        ] {
            for (at, _) in source.match_indices(opener) {
                let rest = source[at + opener.len()..].trim_start();
                let rest =
                    rest.strip_prefix('"')
                        .unwrap_or(if opener.ends_with('"') { rest } else { "" });
                let Some(end) = rest.find('"') else { continue };
                let literal = &rest[..end];
                let snake = literal.contains('_')
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if snake {
                    codes.insert(literal.to_owned());
                }
            }
        }
        codes
    }

    #[test]
    fn every_code_the_code_gives_is_documented_with_its_status() {
        let documented: BTreeSet<(u16, &str)> =
            REFUSALS.iter().map(|r| (r.status, r.code)).collect();
        assert_eq!(documented.len(), REFUSALS.len(), "a refusal listed twice");
        let mut given = BTreeSet::new();
        for e in every_own_error() {
            given.insert((e.status_code().as_u16(), e.code().to_owned()));
        }
        let parsing = [
            include_str!("../sources/mod.rs"),
            include_str!("../sources/huawei/mod.rs"),
            include_str!("../sources/acs/mod.rs"),
            include_str!("../sources/acs/data.rs"),
            include_str!("../sources/standard_webhooks.rs"),
            include_str!("handshake.rs"),
        ];
        for source in parsing {
            given.extend(codes_in(source).into_iter().map(|c| (400, c)));
        }
        let auth = [
            include_str!("../auth/aksk.rs"),
            include_str!("../auth/jwt.rs"),
            include_str!("../auth/shared_secret.rs"),
            include_str!("../auth/standard_webhooks.rs"),
        ];
        for source in auth {
            given.extend(codes_in(source).into_iter().map(|c| (401, c)));
        }
        // Given by the hook when the batcher kept every record of a body as a dead letter.
        given.insert((400, crate::domain::UNSTORABLE.to_owned()));
        let given: BTreeSet<(u16, &str)> = given.iter().map(|(s, c)| (*s, c.as_str())).collect();
        let undocumented: Vec<_> = given.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&given).collect();
        assert!(
            undocumented.is_empty(),
            "given but not in REFUSALS: {undocumented:?}"
        );
        assert!(stale.is_empty(), "in REFUSALS but given nowhere: {stale:?}");
    }

    #[test]
    fn every_status_has_its_codes_in_the_document() {
        let doc = document();
        let hook = &doc["paths"]["/hooks/{source}"]["post"]["responses"];
        for r in REFUSALS.iter().filter(|r| !matches!(r.status, 403 | 405)) {
            let codes = &hook[r.status.to_string()]["content"]["application/json"]["schema"]
                ["properties"]["error"]["properties"]["code"]["enum"];
            assert!(
                codes
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == r.code)),
                "{} {}",
                r.status,
                r.code
            );
        }
        assert!(hook["503"]["headers"]["Retry-After"]["required"] == true);
    }
}
