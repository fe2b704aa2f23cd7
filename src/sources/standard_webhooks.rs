//! Standard Webhooks (standardwebhooks.com): any sender that signs with `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (or the `svix-` spelling). The signature is
//! HMAC-SHA256 over `id.timestamp.body` with a `whsec_` base64 secret, sent as space-separated
//! `v1,<base64>` entries; several secrets may be valid at once (rotation). The event is kept
//! generically (`webhook_events`), its type read at a configured JSON pointer, and `webhook-id`
//! is the dedupe key. The signature itself is checked in `auth::standard_webhooks`.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::{deserialize, ParseContext, Parsed, Rejection};
use crate::auth::standard_webhooks::WebhookHeaders;
use crate::domain::Code;
use crate::domain::{EventHeader, EventSchema, Record, RecordKind, RecordMeta, WebhookEvent};

/// Reads a verified message into a generic event record.
pub fn parse_body(
    body: &[u8],
    headers: Option<&WebhookHeaders<'_>>,
    type_pointer: &str,
    ctx: &ParseContext,
) -> Result<Parsed, Rejection> {
    let text = super::utf8(body)?;
    let raw: &RawValue = deserialize(text, "")?;
    let value: serde_json::Value = deserialize(text, "")?;
    let h = headers.ok_or_else(|| {
        Rejection::new(
            Code::MissingField,
            "webhook-id is required",
            Some("webhook-id".into()),
        )
    })?;
    let occurred_at = h
        .timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(ctx.received_at);
    let event_type = value
        .pointer(type_pointer)
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .to_owned();
    Ok(Parsed {
        records: vec![record(raw.get(), h.id, occurred_at, event_type, ctx)],
        rejected: Vec::new(),
    })
}

/// Rebuilds a stored event from its JSON and the headers kept in its row (`event_id`, the
/// `occurred_at` its timestamp gave, the `event_type` its type pointer read), for `ringback
/// replay`.
pub fn parse_stored(
    raw: &str,
    webhook_id: &str,
    occurred_at: DateTime<Utc>,
    event_type: &str,
    ctx: &ParseContext,
) -> Result<Record, Rejection> {
    let raw: &RawValue = deserialize(raw, "")?;
    Ok(record(
        raw.get(),
        webhook_id,
        occurred_at,
        event_type.to_owned(),
        ctx,
    ))
}

fn record(
    raw: &str,
    webhook_id: &str,
    occurred_at: DateTime<Utc>,
    event_type: String,
    ctx: &ParseContext,
) -> Record {
    let header = EventHeader {
        meta: RecordMeta::new(
            ctx.source.clone(),
            RecordKind::WebhookEvent,
            EventHeader::dedupe_key(None, webhook_id),
            ctx.received_at,
        ),
        event_id: webhook_id.to_owned(),
        event_type,
        schema: EventSchema::StandardWebhooks,
        subject: None,
        occurred_at,
        raw: raw.to_owned(),
    };
    Record::Webhook(Box::new(WebhookEvent {
        header,
        data: raw.to_owned(),
    }))
}
