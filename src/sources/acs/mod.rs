//! Azure Communication Services: events delivered by Event Grid (Event Grid schema or
//! CloudEvents 1.0, single or batched) and Call Automation callbacks (arrays of CloudEvents).
//!
//! Each event of a delivery is judged on its own: a bad one is refused with its reason and path
//! (`[3].data.From`), the others are committed. `Microsoft.Communication.*` types ringback does
//! not model are kept generically, never refused: new types appear without notice.

mod data;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{join_path, Delivery, ParseContext, Parsed, RecordRejection, Rejection};
use crate::domain::Code;
use crate::domain::{
    AcsCallEvent, ChatEvent, Direction, EventHeader, EventSchema, PhoneEvent, PhoneNumber, Record,
    RecordKind, RecordMeta, Region, WebhookEvent,
};
use data::{count, identifier, identifier_phone, int, number, text};

/// Event Grid's subscription validation event type.
pub const VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
const COMMUNICATION: &str = "Microsoft.Communication.";

/// One event's envelope, in either schema (fields of both; which are present tells the schema).
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    id: Option<String>,
    // Event Grid schema
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    #[serde(rename = "eventTime")]
    event_time: Option<String>,
    subject: Option<String>,
    topic: Option<String>,
    // CloudEvents 1.0
    source: Option<String>,
    specversion: Option<String>,
    #[serde(rename = "type")]
    ce_type: Option<String>,
    time: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Most events in one delivery: Event Grid's own bound on a batch (5 000 events, 1 MB).
pub const MAX_EVENTS: usize = 5_000;

/// Reads a delivery: a JSON array of events, or a single event (CloudEvents structured mode).
pub fn parse_body(body: &[u8], ctx: &ParseContext) -> Result<Delivery, Rejection> {
    let text = super::utf8(body)?;
    let trimmed = text.trim_start();
    let (events, batched): (Vec<&RawValue>, bool) = if trimmed.starts_with('[') {
        (super::deserialize(text, "")?, true)
    } else if trimmed.starts_with('{') {
        (vec![super::deserialize::<&RawValue>(text, "")?], false)
    } else {
        super::deserialize::<&RawValue>(text, "")?;
        return Err(Rejection::new(
            Code::InvalidType,
            "expected an event object or an array of events",
            None,
        ));
    };
    if events.is_empty() {
        return Err(Rejection::new(
            Code::EmptyBatch,
            "the delivery holds no event",
            None,
        ));
    }
    if events.len() > MAX_EVENTS {
        // Refused before any event is read: what a delivery costs is bounded by this count,
        // not by how many empty objects fit in the body.
        return Err(Rejection::new(
            Code::TooManyEvents,
            format!(
                "the delivery holds {} events; Event Grid sends at most {MAX_EVENTS}",
                events.len()
            ),
            None,
        ));
    }
    let mut parsed = Parsed {
        records: Vec::with_capacity(events.len()),
        rejected: Vec::new(),
    };
    for (index, raw) in events.into_iter().enumerate() {
        let at = if batched {
            format!("[{index}]")
        } else {
            String::new()
        };
        match parse_event(raw, &at, ctx) {
            Ok(Parsed1::Record(record)) => parsed.records.push(record),
            Ok(Parsed1::Validation { code, url }) => return Ok(Delivery::Validation { code, url }),
            Err((kind, rejection)) if !batched => {
                let _ = kind;
                return Err(rejection);
            }
            Err((kind, rejection)) => parsed.rejected.push(RecordRejection {
                index,
                kind,
                rejection,
                raw: raw.get().to_owned(),
            }),
        }
    }
    Ok(Delivery::Records(parsed))
}

/// Rebuilds a stored event from its JSON (`raw`), for `ringback replay`.
pub fn parse_stored(raw: &str, ctx: &ParseContext) -> Result<Record, Rejection> {
    let raw: &RawValue = super::deserialize(raw, "")?;
    match parse_event(raw, "", ctx).map_err(|(_, r)| r)? {
        Parsed1::Record(r) => Ok(r),
        Parsed1::Validation { .. } => Err(Rejection::new(
            Code::InvalidValue,
            "a validation event is not a record",
            None,
        )),
    }
}

enum Parsed1 {
    Record(Record),
    Validation { code: String, url: Option<String> },
}

/// The kind an event of `event_type` becomes.
pub fn kind_of(event_type: &str) -> Option<RecordKind> {
    let name = event_type.strip_prefix(COMMUNICATION)?;
    Some(match name {
        "SMSReceived" | "SMSDeliveryReportReceived" | "IncomingCall" => RecordKind::PhoneEvent,
        "CallStarted"
        | "CallEnded"
        | "CallParticipantAdded"
        | "CallParticipantRemoved"
        | "RecordingFileStatusUpdated"
        | "CallConnected"
        | "CallDisconnected"
        | "CallTransferAccepted"
        | "CallTransferFailed"
        | "ParticipantsUpdated"
        | "PlayStarted"
        | "PlayCompleted"
        | "PlayFailed"
        | "PlayCanceled"
        | "RecognizeCompleted"
        | "RecognizeFailed"
        | "RecognizeCanceled"
        | "RecordingStateChanged"
        | "AddParticipantSucceeded"
        | "AddParticipantFailed"
        | "RemoveParticipantSucceeded"
        | "RemoveParticipantFailed"
        | "CreateCallFailed"
        | "AnswerFailed" => RecordKind::AcsCallEvent,
        chat if chat.starts_with("Chat") => RecordKind::ChatEvent,
        _ => RecordKind::WebhookEvent,
    })
}

type EventError = (RecordKind, Rejection);

fn parse_event(raw: &RawValue, at: &str, ctx: &ParseContext) -> Result<Parsed1, EventError> {
    // Until the type is known, a refusal is counted as a generic event.
    let generic = |r: Rejection| (RecordKind::WebhookEvent, r);
    let env: Envelope = super::object(raw.get(), at).map_err(generic)?;
    let cloudevents = env.specversion.is_some();
    let type_field = if cloudevents { "type" } else { "eventType" };
    let event_type = (if cloudevents {
        env.ce_type
    } else {
        env.event_type
    })
    .filter(|t| !t.is_empty())
    .ok_or_else(|| generic(missing(at, type_field)))?;
    if event_type == VALIDATION_EVENT {
        let data: Value = data_value(env.data, at).map_err(generic)?;
        let code = text(&data, &["/validationCode"])
            .ok_or_else(|| generic(missing(&join_path(at, "data"), "validationCode")))?;
        let url = text(&data, &["/validationUrl"]);
        return Ok(Parsed1::Validation { code, url });
    }
    let Some(kind) = kind_of(&event_type) else {
        return Err(generic(Rejection::new(
            Code::UnsupportedEventType,
            format!("{event_type:?} is not a Microsoft.Communication event"),
            Some(join_path(at, type_field)),
        )));
    };
    let fail = |r: Rejection| (kind, r);
    let event_id = env
        .id
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| fail(missing(at, "id")))?;
    let (time_field, time) = if cloudevents {
        ("time", env.time)
    } else {
        ("eventTime", env.event_time)
    };
    let occurred_at = match time {
        Some(t) => parse_time(&t).ok_or_else(|| {
            fail(Rejection::new(
                Code::InvalidTime,
                format!("expected an RFC 3339 time, got {t:?}"),
                Some(join_path(at, time_field)),
            ))
        })?,
        // CloudEvents `time` is optional. The time a record is stored under must be its own
        // (a redelivery, received later, must land beside its first copy): none, 1970-01-01,
        // the default partition (docs/analytics.md).
        None if cloudevents => DateTime::UNIX_EPOCH,
        None => return Err(fail(missing(at, time_field))),
    };
    let data = data_value(env.data, at).map_err(fail)?;
    let scope = if cloudevents { env.source } else { env.topic }.filter(|s| !s.is_empty());
    let header = EventHeader {
        meta: RecordMeta::new(
            ctx.source.clone(),
            kind,
            EventHeader::dedupe_key(scope.as_deref(), &event_id),
            ctx.received_at,
        ),
        event_id,
        event_type,
        schema: if cloudevents {
            EventSchema::Cloudevents
        } else {
            EventSchema::Eventgrid
        },
        subject: env.subject,
        occurred_at,
        raw: raw.get().to_owned(),
    };
    let data_at = join_path(at, "data");
    let record = match kind {
        RecordKind::PhoneEvent => Record::Phone(Box::new(
            phone(header, &data, &data_at, ctx.region).map_err(fail)?,
        )),
        RecordKind::AcsCallEvent => Record::AcsCall(Box::new(call(header, &data, ctx.region))),
        RecordKind::ChatEvent => {
            Record::Chat(Box::new(chat(header, &data, &data_at).map_err(fail)?))
        }
        _ => Record::Webhook(Box::new(WebhookEvent {
            header,
            data: data.to_string(),
        })),
    };
    Ok(Parsed1::Record(record))
}

fn missing(at: &str, name: &str) -> Rejection {
    Rejection::new(
        Code::MissingField,
        format!("{name} is required"),
        Some(join_path(at, name)),
    )
}

fn data_value(data: Option<&RawValue>, at: &str) -> Result<Value, Rejection> {
    let value: Value = match data {
        Some(raw) => super::deserialize(raw.get(), &join_path(at, "data"))?,
        None => Value::Null,
    };
    match value {
        Value::Object(_) | Value::Null => Ok(value),
        _ => Err(Rejection::new(
            Code::InvalidType,
            "data must be an object",
            Some(join_path(at, "data")),
        )),
    }
}

/// Event Grid times carry up to 7 fractional digits and `Z` or `+00:00`.
fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A number as sent, in E.164 when it is a national number of the source's region.
fn phone_number(raw: Option<String>, region: Option<Region>) -> Option<PhoneNumber> {
    raw.and_then(|s| PhoneNumber::parse_in(&s, region))
}

fn phone(
    header: EventHeader,
    d: &Value,
    at: &str,
    region: Option<Region>,
) -> Result<PhoneEvent, Rejection> {
    let name = header
        .event_type
        .trim_start_matches(COMMUNICATION)
        .to_owned();
    let required = |paths: &[&str], field: &str| text(d, paths).ok_or_else(|| missing(at, field));
    let event = match name.as_str() {
        "SMSReceived" => {
            let to = required(&["/To", "/to"], "To")?;
            PhoneEvent {
                phone_number: phone_number(Some(to.clone()), region),
                direction: Direction::Inbound,
                from: phone_number(Some(required(&["/From", "/from"], "From")?), region),
                to: phone_number(Some(to), region),
                message_id: text(d, &["/MessageId", "/messageId"]),
                message: text(d, &["/Message", "/message"]),
                delivery_status: None,
                delivery_status_details: None,
                delivery_attempts: None,
                tag: text(d, &["/Tag", "/tag"]),
                server_call_id: None,
                correlation_id: None,
                caller_display_name: None,
                header,
            }
        }
        "SMSDeliveryReportReceived" => {
            let from = required(&["/From", "/from"], "From")?;
            PhoneEvent {
                phone_number: phone_number(Some(from.clone()), region),
                direction: Direction::Outbound,
                from: phone_number(Some(from), region),
                to: phone_number(Some(required(&["/To", "/to"], "To")?), region),
                message_id: text(d, &["/MessageId", "/messageId"]),
                message: None,
                delivery_status: text(d, &["/DeliveryStatus", "/deliveryStatus"]),
                delivery_status_details: text(
                    d,
                    &["/DeliveryStatusDetails", "/deliveryStatusDetails"],
                ),
                delivery_attempts: count(d, "/DeliveryAttempts")
                    .or_else(|| count(d, "/deliveryAttempts")),
                tag: text(d, &["/Tag", "/tag"]),
                server_call_id: None,
                correlation_id: None,
                caller_display_name: None,
                header,
            }
        }
        // IncomingCall
        _ => {
            let to = identifier_phone(d, "/to").or_else(|| identifier(d, "/to"));
            let to = to.ok_or_else(|| missing(at, "to"))?;
            PhoneEvent {
                phone_number: phone_number(Some(to.clone()), region),
                direction: Direction::Inbound,
                from: phone_number(
                    identifier_phone(d, "/from").or_else(|| identifier(d, "/from")),
                    region,
                ),
                to: phone_number(Some(to), region),
                message_id: None,
                message: None,
                delivery_status: None,
                delivery_status_details: None,
                delivery_attempts: None,
                tag: None,
                server_call_id: text(d, &["/serverCallId"]),
                correlation_id: text(d, &["/correlationId"]),
                caller_display_name: text(d, &["/callerDisplayName"]),
                header,
            }
        }
    };
    Ok(event)
}

fn int32(d: &Value, paths: &[&str]) -> Option<i32> {
    int(d, paths).and_then(|v| i32::try_from(v).ok())
}

fn call(header: EventHeader, d: &Value, region: Option<Region>) -> AcsCallEvent {
    let participant_path = ["/user", "/participant", "/startedBy", "/endedBy", "/target"]
        .into_iter()
        .find(|p| d.pointer(p).is_some_and(|v| !v.is_null()));
    AcsCallEvent {
        server_call_id: text(d, &["/serverCallId"]),
        call_connection_id: text(d, &["/callConnectionId"]),
        correlation_id: text(d, &["/correlationId"]),
        group_id: text(d, &["/group/id", "/groupId"]),
        room_id: text(d, &["/room/id", "/roomId"]),
        operation_context: text(d, &["/operationContext"]),
        result_code: int32(d, &["/resultInformation/code"]),
        result_sub_code: int32(d, &["/resultInformation/subCode"]),
        result_message: text(d, &["/resultInformation/message"]),
        participant_id: participant_path.and_then(|p| identifier(d, p)),
        participant_phone: participant_path
            .and_then(|p| identifier_phone(d, p))
            .and_then(|s| PhoneNumber::parse_in(&s, region)),
        participant_count: count(d, "/participants"),
        duration_seconds: number(d, &["/callDurationInSeconds", "/durationOfCall"]),
        end_reason_code: int32(d, &["/reason/code"]),
        end_reason_sub_code: int32(d, &["/reason/subCode"]),
        recording_id: text(d, &["/recordingId"]),
        recording_state: text(d, &["/state", "/recordingState"]),
        recording_content_location: text(
            d,
            &["/recordingStorageInfo/recordingChunks/0/contentLocation"],
        ),
        recording_metadata_location: text(
            d,
            &["/recordingStorageInfo/recordingChunks/0/metadataLocation"],
        ),
        recording_duration_ms: int(d, &["/recordingDurationMs"]),
        transfer_target: identifier(d, "/transferTarget"),
        transferee: identifier(d, "/transferee"),
        header,
    }
}

fn chat(header: EventHeader, d: &Value, at: &str) -> Result<ChatEvent, Rejection> {
    let thread_id = text(d, &["/threadId"]).ok_or_else(|| missing(at, "threadId"))?;
    let participant = ["/participantAdded", "/participantRemoved"]
        .into_iter()
        .find_map(|p| identifier(d, p));
    let actor = [
        "/addedByCommunicationIdentifier",
        "/removedByCommunicationIdentifier",
        "/createdByCommunicationIdentifier",
        "/deletedByCommunicationIdentifier",
        "/editedByCommunicationIdentifier",
    ]
    .into_iter()
    .find_map(|p| identifier(d, p));
    Ok(ChatEvent {
        thread_id,
        message_id: text(d, &["/messageId"]),
        sender_id: identifier(d, "/senderCommunicationIdentifier"),
        sender_display_name: text(d, &["/senderDisplayName"]),
        recipient_id: identifier(d, "/recipientCommunicationIdentifier"),
        message_type: text(d, &["/type"]),
        message_body: text(d, &["/messageBody"]),
        version: int(d, &["/version"]),
        participant_id: participant,
        actor_id: actor,
        topic: text(d, &["/properties/topic", "/topic"]),
        header,
    })
}

#[cfg(test)]
mod tests;
