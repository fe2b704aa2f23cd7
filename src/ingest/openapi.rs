//! The hook contract: an OpenAPI 3.1 document of `/hooks/{source}`, `/healthz`, `/readyz` and
//! `/metrics`, generated from [`REFUSALS`] (every error code a hook answers, with its status:
//! [`Code`]) and the answer types. `ringback openapi` prints it; `schemas/openapi.json` is the
//! committed copy, which `tests/it/contracts.rs` keeps equal to it. CI runs schemathesis against
//! a live ringback with it.

use crate::domain::Code;
use serde_json::{json, Map, Value};

/// Every refusal a hook (or its `OPTIONS` handshake) answers, by status.
pub const REFUSALS: &[Code] = &Code::ANSWERED;

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
        .filter(|r| r.status() == status)
        .map(|r| r.as_str())
        .collect();
    let when: Vec<String> = REFUSALS
        .iter()
        .filter(|r| r.status() == status)
        .map(|r| format!("- `{r}`: {}", r.when()))
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
    let mut s: Vec<u16> = REFUSALS.iter().map(|r| r.status()).collect();
    s.dedup();
    s
}

/// An admin API operation (`crate::admin`): on the admin listener, with the token;
/// 404 anywhere else or when the API is off.
fn admin_op(id: &str, summary: &str, parameters: Value, ok: Value) -> Value {
    let error = |what: &str| json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminToken": []}],
        "parameters": parameters,
        "responses": {
            "200": {"description": "Found", "content": {"application/json": {"schema": ok}}},
            "400": error("`invalid_query`"),
            "401": error("`unauthorized`: no token, or not the admin token"),
            "404": error("`not_found`: nothing found; or not the admin listener, or the admin API is off"),
            "429": {
                "description": "`too_many_attempts`: more than 10 wrong tokens from this address in a minute",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the minute ends"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            },
            "503": error("`store_unavailable`: the database did not answer")
        }
    });
    if id == "adminReprocess" {
        op["responses"]["409"] = error(
            "`not_reprocessable`: it has an outcome other than `refused`, kept no body, its source is gone, or another reprocessor holds it",
        );
        op["responses"]["200"]["description"] = json!("Reprocessed (or, with `dry_run`, judged)");
    }
    op
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
            }},
            "/admin/api/calls/{id}": {"get": admin_op(
                "adminCall",
                "A call's timeline (`ringback calls show --json`)",
                json!([{"name": "id", "in": "path", "required": true, "description": "Huawei session id or icid; ACS call connection, server call or correlation id", "schema": {"type": "string"}}]),
                json!({"$ref": "#/components/schemas/Timeline"}),
            )},
            "/admin/api/events": {"get": admin_op(
                "adminEvents",
                "Records by id, dedupe key or event id, or phone number (`ringback events find --json`)",
                json!([
                    {"name": "id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "key", "in": "query", "schema": {"type": "string"}},
                    {"name": "number", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}}
                ]),
                json!({"type": "object", "required": ["records"], "properties": {"records": {"type": "array", "items": {"type": "object"}}}}),
            )},
            "/admin/api/dead-letters": {"get": admin_op(
                "adminDeadLetters",
                "A page of dead letters, oldest first (`ringback dead-letters list --json`)",
                json!([
                    {"name": "source", "in": "query", "schema": {"type": "string"}},
                    {"name": "code", "in": "query", "schema": {"type": "string"}},
                    {"name": "request_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "after", "in": "query", "description": "The `next` cursor of the previous page", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
                ]),
                json!({"type": "object", "required": ["dead_letters", "next"], "properties": {
                    "dead_letters": {"type": "array", "items": {"type": "object"}},
                    "next": {"type": ["string", "null"]}
                }}),
            )},
            "/admin/api/dead-letters/{id}": {"get": admin_op(
                "adminDeadLetter",
                "One dead letter whole: reason, headers (redacted), body, reprocess outcome",
                json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]),
                json!({"type": "object", "required": ["id", "code", "detail"]}),
            )},
            "/admin/api/dead-letters/{id}/reprocess": {"post": admin_op(
                "adminReprocess",
                "Runs the letter again through its source's current parser, commits what now parses and records the outcome (`ringback dead-letters reprocess --id ID --again`)",
                json!([
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}},
                    {"name": "dry_run", "in": "query", "description": "Judge only: commit and record nothing", "schema": {"type": "boolean"}}
                ]),
                json!({"type": "object", "required": ["id", "dry_run", "outcome", "records"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "dry_run": {"type": "boolean"},
                    "outcome": {"enum": ["committed", "duplicate", "partial", "refused"]},
                    "code": {"type": ["string", "null"]},
                    "detail": {"type": ["string", "null"]},
                    "records": {"type": "array", "items": {"type": "string", "format": "uuid"}}
                }}),
            )}
        },
        "components": {
        "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer", "description": "`http.admin_token_env` / `http.admin_token_file`"}},
        "schemas": {
            "Timeline": {
                "type": "object", "required": ["id", "events", "cdrs", "dead_letters"],
                "properties": {
                    "id": {"type": "string"},
                    "session_id": {"type": ["string", "null"]},
                    "events": {"type": "array", "items": {"type": "object"}},
                    "cdrs": {"type": "array", "items": {"type": "object"}},
                    "dead_letters": {"type": "array", "items": {"type": "object"}}
                }
            },
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
                "type": "object", "required": ["status"],
                "properties": {
                    "status": {"enum": ["ready", "spooling", "not_ready", "draining"]},
                    "version": {"type": "string", "description": "ringback's version (`ringback --version`)"},
                    "store": {"type": "object"},
                    "publisher": {"type": ["object", "null"]},
                    "spool": {"type": "object"}
                }
            }
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_codes_in_the_document() {
        let doc = document();
        let hook = &doc["paths"]["/hooks/{source}"]["post"]["responses"];
        for r in REFUSALS.iter().filter(|r| !matches!(r.status(), 403 | 405)) {
            let codes = &hook[r.status().to_string()]["content"]["application/json"]["schema"]
                ["properties"]["error"]["properties"]["code"]["enum"];
            assert!(
                codes
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == r.as_str())),
                "{} {}",
                r.status(),
                r
            );
        }
        assert!(hook["503"]["headers"]["Retry-After"]["required"] == true);
    }
}
