use serde::{Deserialize, Serialize};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AcsCallEvent, CallEvent, Cdr, ChatEvent, PhoneEvent, WebhookEvent};

/// The kinds of record ringback stores; each has its own table and its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    CallStatus,
    Cdr,
    PhoneEvent,
    AcsCallEvent,
    ChatEvent,
    WebhookEvent,
}

impl RecordKind {
    pub const ALL: [Self; 6] = [
        Self::CallStatus,
        Self::Cdr,
        Self::PhoneEvent,
        Self::AcsCallEvent,
        Self::ChatEvent,
        Self::WebhookEvent,
    ];

    /// The table its records are stored in.
    pub const fn table(self) -> &'static str {
        match self {
            Self::CallStatus => "call_events",
            Self::Cdr => "cdrs",
            Self::PhoneEvent => "phone_number_events",
            Self::AcsCallEvent => "acs_call_events",
            Self::ChatEvent => "chat_events",
            Self::WebhookEvent => "webhook_events",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CallStatus => "call-status",
            Self::Cdr => "cdr",
            Self::PhoneEvent => "phone-events",
            Self::AcsCallEvent => "call-events",
            Self::ChatEvent => "chat-events",
            Self::WebhookEvent => "webhook-events",
        }
    }
}

/// Namespace for deterministic record ids (UUIDv5). Never change it: ids are what consumers
/// dedupe on, and a replayed callback must produce the id it produced the first time.
const RECORD_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0b_5f0e_2f7c_4c1e_9d3a_52b1_7e4c_0a91);

/// What every stored record carries besides its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// Stable id: UUIDv5 of (source, kind, dedupe key). Same callback → same id.
    pub id: Uuid,
    /// Name of the configured source that received it.
    pub source: Arc<str>,
    /// Deterministic key derived from the payload; unique per source and kind.
    pub dedupe_key: String,
    /// When ringback received the request that carried it.
    pub received_at: DateTime<Utc>,
}

impl RecordMeta {
    pub fn new(
        source: Arc<str>,
        kind: RecordKind,
        dedupe_key: String,
        received_at: DateTime<Utc>,
    ) -> Self {
        let name = format!("{source}\u{1f}{}\u{1f}{dedupe_key}", kind.as_str());
        Self {
            id: Uuid::new_v5(&RECORD_ID_NAMESPACE, name.as_bytes()),
            source,
            dedupe_key,
            received_at,
        }
    }
}

/// Where a dead letter came from: a whole request, or one record of a multi-record body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterScope {
    Request,
    Record,
}

impl DeadLetterScope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Record => "record",
        }
    }
}

/// Input that could not be accepted, kept with the reason so it can be inspected and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub source: Arc<str>,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub scope: DeadLetterScope,
    /// Index of the record within its list (`feeLst[i]`), for record-scope letters.
    pub record_index: Option<i32>,
    /// Stable machine-readable reason, the same `code` the sender was answered with.
    pub code: super::Code,
    pub detail: String,
    /// JSON path of the offending field, when one is known.
    pub field: Option<String>,
    /// Raw bytes as received (the record's JSON for record-scope letters). `None` for
    /// authentication failures: attacker input is not stored unbounded.
    pub body: Option<Vec<u8>>,
    /// Request headers as a JSON object, secrets redacted.
    pub headers: serde_json::Value,
    /// How the source authenticated its sender when the input arrived (`none`, `aksk`,
    /// `shared-secret`, `jwt`, `standard-webhooks`): reprocessing does not authenticate again,
    /// so it refuses input that arrived unauthenticated at a source that now authenticates.
    /// `None` for letters of earlier versions and of the batcher's own refusals.
    #[serde(default)]
    pub auth: Option<String>,
}

/// A subscription handshake that was answered (Event Grid validation, CloudEvents OPTIONS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    pub id: Uuid,
    pub source: Arc<str>,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub kind: HandshakeKind,
    /// What was asked (validation url, origin, rate).
    pub detail: serde_json::Value,
}

/// Which handshake was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeKind {
    /// Event Grid schema: `Microsoft.EventGrid.SubscriptionValidationEvent`.
    #[serde(rename = "eventgrid-validation")]
    EventgridValidation,
    /// CloudEvents 1.0 webhook abuse protection: `OPTIONS` with `WebHook-Request-Origin`.
    #[serde(rename = "cloudevents-options")]
    CloudeventsOptions,
}

super::named!(HandshakeKind {
    EventgridValidation => "eventgrid-validation",
    CloudeventsOptions => "cloudevents-options",
});

/// A signed request's nonce (X-AKSK), claimed in the same transaction as the records it
/// guards: the `guards` records that follow it in the batch. Stored in `nonces` so every
/// replica sharing the database refuses a replay, even one sent to another replica with a
/// forged body (Huawei's digest covers the URL, nonce and Created, not the body). A nonce the
/// database already holds makes its records not inserted, and the request is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nonce {
    /// UUIDv5 of (source, nonce): the key a replay conflicts on.
    pub id: Uuid,
    /// UUIDv5 of (source, nonce, SHA-256 of the body): which request holds the nonce. A commit
    /// retried after its answer was lost finds the nonce taken by its own claim, which is no
    /// replay (see `store::reclaim`).
    pub claim: Uuid,
    pub source: Arc<str>,
    pub nonce: String,
    /// After this instant no reading of the request's Created is fresh any more: the row can
    /// be purged.
    pub expires_at: DateTime<Utc>,
    /// How many of the records after it in the batch it guards.
    pub guards: u32,
}

impl Nonce {
    pub fn new(
        source: Arc<str>,
        nonce: String,
        expires_at: DateTime<Utc>,
        guards: u32,
        body_digest: &[u8],
    ) -> Self {
        let name = format!("nonce\u{1f}{source}\u{1f}{nonce}");
        let id = Uuid::new_v5(&RECORD_ID_NAMESPACE, name.as_bytes());
        Self {
            id,
            claim: Uuid::new_v5(&id, body_digest),
            source,
            nonce,
            expires_at,
            guards,
        }
    }
}

/// A record of one of the six kinds: a row of its kind's table and a message on its topic.
/// What else a submission writes (dead letters, handshakes, nonce claims) is a [`super::Row`]
/// beside the records, not a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    CallEvent(Box<CallEvent>),
    Cdr(Box<Cdr>),
    Phone(Box<PhoneEvent>),
    AcsCall(Box<AcsCallEvent>),
    Chat(Box<ChatEvent>),
    Webhook(Box<WebhookEvent>),
}

impl Record {
    /// What every record carries besides its payload.
    pub fn meta(&self) -> &RecordMeta {
        match self {
            Self::CallEvent(e) => &e.meta,
            Self::Cdr(c) => &c.meta,
            Self::Phone(e) => &e.header.meta,
            Self::AcsCall(e) => &e.header.meta,
            Self::Chat(e) => &e.header.meta,
            Self::Webhook(e) => &e.header.meta,
        }
    }

    /// The id that identifies the stored row.
    pub fn id(&self) -> Uuid {
        self.meta().id
    }

    /// The record's kind.
    pub const fn kind(&self) -> RecordKind {
        match self {
            Self::CallEvent(_) => RecordKind::CallStatus,
            Self::Cdr(_) => RecordKind::Cdr,
            Self::Phone(_) => RecordKind::PhoneEvent,
            Self::AcsCall(_) => RecordKind::AcsCallEvent,
            Self::Chat(_) => RecordKind::ChatEvent,
            Self::Webhook(_) => RecordKind::WebhookEvent,
        }
    }

    /// The record's JSON as it was received.
    pub fn raw(&self) -> &str {
        match self {
            Self::CallEvent(e) => &e.raw,
            Self::Cdr(c) => &c.raw,
            Self::Phone(e) => &e.header.raw,
            Self::AcsCall(e) => &e.header.raw,
            Self::Chat(e) => &e.header.raw,
            Self::Webhook(e) => &e.header.raw,
        }
    }

    /// The source the record came from.
    pub fn source(&self) -> &Arc<str> {
        &self.meta().source
    }

    /// When the request that carried it was received.
    pub fn received_at(&self) -> DateTime<Utc> {
        self.meta().received_at
    }

    /// What orders the record among the others of its call or conversation: the Kafka key,
    /// and what picks the batch worker, so one call's records stay in arrival order. Huawei
    /// records go by session id; an ACS event by its number, call connection, thread or
    /// subject, else its own event id.
    pub fn ordering_key(&self) -> String {
        match self {
            Self::CallEvent(e) => e.session_id.clone(),
            Self::Cdr(c) => c.session_id.clone(),
            Self::Phone(e) => e
                .phone_number
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| e.header.event_id.clone()),
            Self::AcsCall(e) => e
                .call_connection_id
                .clone()
                .or_else(|| e.server_call_id.clone())
                .or_else(|| e.correlation_id.clone())
                .unwrap_or_else(|| e.header.event_id.clone()),
            Self::Chat(e) => e.thread_id.clone(),
            Self::Webhook(e) => e
                .header
                .subject
                .clone()
                .unwrap_or_else(|| e.header.event_id.clone()),
        }
    }
}

/// The code of a record the database refused (`dead_letters.code`, the answer's
/// `rejected[].code`): see [`Outcome::Refused`].
pub const UNSTORABLE: super::Code = super::Code::UnstorableRecord;

/// What the store did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new row was committed.
    Inserted,
    /// A row with the same dedupe key already existed (or came earlier in the same batch).
    Duplicate,
    /// The database refused the record itself (a NUL character in a text, a value out of
    /// range): it is kept as a dead letter instead, and the rest of its batch is committed.
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_scoped() {
        let at = Utc::now();
        let a = RecordMeta::new("hw".into(), RecordKind::Cdr, "icid:1".into(), at);
        let b = RecordMeta::new("hw".into(), RecordKind::Cdr, "icid:1".into(), Utc::now());
        let other_source = RecordMeta::new("hw2".into(), RecordKind::Cdr, "icid:1".into(), at);
        let other_kind = RecordMeta::new("hw".into(), RecordKind::CallStatus, "icid:1".into(), at);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, other_source.id);
        assert_ne!(a.id, other_kind.id);
        assert_eq!(a.id.get_version_num(), 5);
    }
}
