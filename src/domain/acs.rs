//! Azure Communication Services events, one record type per table. Every event keeps its
//! Event Grid / CloudEvents identity (`event_id`, the dedupe key: Event Grid redelivers) and
//! its JSON as sent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PhoneNumber, RecordMeta};

/// What every ACS event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventHeader {
    pub meta: RecordMeta,
    /// The event's `id` as sent.
    pub event_id: String,
    /// `eventType` (Event Grid) or `type` (CloudEvents), e.g. `Microsoft.Communication.SMSReceived`.
    pub event_type: String,
    pub schema: EventSchema,
    pub subject: Option<String>,
    /// `eventTime` / `time`.
    pub occurred_at: DateTime<Utc>,
    /// The whole event (envelope and data) exactly as sent.
    pub raw: String,
}

impl EventHeader {
    /// Dedupe key: the event's identity as its specification defines it, the id within its
    /// `scope`: CloudEvents' `source`, Event Grid's `topic` (both keep it across
    /// redeliveries). Two events of one id from different scopes are two events. Without a
    /// scope (Standard Webhooks, whose id is unique per endpoint) the id alone.
    pub fn dedupe_key(scope: Option<&str>, event_id: &str) -> String {
        match scope {
            // `|` ends the scope: escaped within it (and `%`, so that the escape is one).
            Some(scope) => format!(
                "event:{}|{event_id}",
                scope.replace('%', "%25").replace('|', "%7C")
            ),
            None => format!("event:{event_id}"),
        }
    }
}

/// SMS and incoming-call events of a phone number (`phone_number_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneEvent {
    pub header: EventHeader,
    /// The resource's own number the event is about (E.164 when it is a number).
    pub phone_number: Option<PhoneNumber>,
    pub direction: Direction,
    pub from: Option<PhoneNumber>,
    pub to: Option<PhoneNumber>,
    pub message_id: Option<String>,
    pub message: Option<String>,
    pub delivery_status: Option<String>,
    pub delivery_status_details: Option<String>,
    pub delivery_attempts: Option<i32>,
    pub tag: Option<String>,
    pub server_call_id: Option<String>,
    pub correlation_id: Option<String>,
    pub caller_display_name: Option<String>,
}

/// Call, participant, recording and Call Automation events (`acs_call_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcsCallEvent {
    pub header: EventHeader,
    pub server_call_id: Option<String>,
    pub call_connection_id: Option<String>,
    pub correlation_id: Option<String>,
    pub group_id: Option<String>,
    pub room_id: Option<String>,
    pub operation_context: Option<String>,
    pub result_code: Option<i32>,
    pub result_sub_code: Option<i32>,
    pub result_message: Option<String>,
    /// The participant added/removed, or who started/ended the call (raw id).
    pub participant_id: Option<String>,
    pub participant_phone: Option<PhoneNumber>,
    pub participant_count: Option<i32>,
    pub duration_seconds: Option<f64>,
    pub end_reason_code: Option<i32>,
    pub end_reason_sub_code: Option<i32>,
    pub recording_id: Option<String>,
    pub recording_state: Option<String>,
    pub recording_content_location: Option<String>,
    pub recording_metadata_location: Option<String>,
    pub recording_duration_ms: Option<i64>,
    pub transfer_target: Option<String>,
    pub transferee: Option<String>,
}

/// Chat message and thread events (`chat_events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEvent {
    pub header: EventHeader,
    pub thread_id: String,
    pub message_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_display_name: Option<String>,
    pub recipient_id: Option<String>,
    pub message_type: Option<String>,
    pub message_body: Option<String>,
    pub version: Option<i64>,
    pub participant_id: Option<String>,
    pub actor_id: Option<String>,
    pub topic: Option<String>,
}

/// Any other event, kept generically (`webhook_events`): new ACS event types appear without
/// notice and are never refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub header: EventHeader,
    /// The event's `data` as sent (JSON).
    pub data: String,
}

/// The envelope an event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventSchema {
    /// Event Grid's own schema.
    #[serde(rename = "eventgrid")]
    Eventgrid,
    /// CloudEvents 1.0.
    #[serde(rename = "cloudevents")]
    Cloudevents,
    /// A Standard Webhooks message (id and timestamp in headers).
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

super::named!(EventSchema {
    Eventgrid => "eventgrid",
    Cloudevents => "cloudevents",
    StandardWebhooks => "standard-webhooks",
});

/// Which way a phone-number event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// An SMS received, an incoming call.
    Inbound,
    /// A delivery report.
    Outbound,
}

super::named!(Direction {
    Inbound => "inbound",
    Outbound => "outbound",
});
