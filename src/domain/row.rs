//! What a submission writes: its records, and beside them the rows that are not records (dead
//! letters, answered handshakes, nonce claims), committed in the same transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::{
    AcsCallEvent, CallEvent, Cdr, ChatEvent, DeadLetter, Handshake, Nonce, PhoneEvent, Record,
    RecordKind, WebhookEvent,
};

/// One row of a submission, in the order the store commits them.
///
/// Its serde form is the spool's format version 1, which predates this type: one externally
/// tagged enum of nine variants (`{"Cdr": …}`, `{"DeadLetter": …}`), so a record's form is the
/// [`Record`]'s own and a companion's is its variant name around its fields. [`Wire`] and
/// [`WireRef`] spell that form out.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Record(Record),
    /// Input that was refused, kept for inspection and reprocessing.
    DeadLetter(Box<DeadLetter>),
    /// A subscription handshake that was answered.
    Handshake(Box<Handshake>),
    /// A signed request's nonce, claimed with the rows it guards (the `guards` that follow).
    Nonce(Box<Nonce>),
}

impl From<Record> for Row {
    fn from(record: Record) -> Self {
        Self::Record(record)
    }
}

impl Row {
    /// Records as the rows of a submission.
    pub fn records(records: impl IntoIterator<Item = Record>) -> Vec<Self> {
        records.into_iter().map(Self::Record).collect()
    }

    /// The id of the stored row.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Record(r) => r.id(),
            Self::DeadLetter(d) => d.id,
            Self::Handshake(h) => h.id,
            Self::Nonce(n) => n.id,
        }
    }

    pub fn record(&self) -> Option<&Record> {
        match self {
            Self::Record(r) => Some(r),
            _ => None,
        }
    }

    /// The record's kind; `None` for the rows that are not records.
    pub fn kind(&self) -> Option<RecordKind> {
        self.record().map(Record::kind)
    }

    /// The source the row came from.
    pub fn source(&self) -> &Arc<str> {
        match self {
            Self::Record(r) => r.source(),
            Self::DeadLetter(d) => &d.source,
            Self::Handshake(h) => &h.source,
            Self::Nonce(n) => &n.source,
        }
    }

    /// The bytes a dead letter made of this row keeps: a record's JSON as received, a letter's
    /// body, a handshake's detail; `None` for nonces.
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Record(r) => Some(r.raw().as_bytes().to_vec()),
            Self::DeadLetter(d) => d.body.clone(),
            Self::Handshake(h) => Some(h.detail.to_string().into_bytes()),
            Self::Nonce(_) => None,
        }
    }

    /// When the request that carried it was received; `None` for nonces.
    pub fn received_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Record(r) => Some(r.received_at()),
            Self::DeadLetter(d) => Some(d.received_at),
            Self::Handshake(h) => Some(h.received_at),
            Self::Nonce(_) => None,
        }
    }

    /// What orders the row among the others of its call: a record's
    /// [`Record::ordering_key`]; `None` for the rows that are not records (never published).
    pub fn ordering_key(&self) -> Option<String> {
        self.record().map(Record::ordering_key)
    }
}

/// The serde form of a [`Row`] (spool format version 1), to read.
#[derive(Deserialize)]
enum Wire {
    CallEvent(Box<CallEvent>),
    Cdr(Box<Cdr>),
    Phone(Box<PhoneEvent>),
    AcsCall(Box<AcsCallEvent>),
    Chat(Box<ChatEvent>),
    Webhook(Box<WebhookEvent>),
    DeadLetter(Box<DeadLetter>),
    Handshake(Box<Handshake>),
    Nonce(Box<Nonce>),
}

/// The serde form of a [`Row`], to write without a copy.
#[derive(Serialize)]
enum WireRef<'a> {
    DeadLetter(&'a DeadLetter),
    Handshake(&'a Handshake),
    Nonce(&'a Nonce),
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Record(r) => r.serialize(serializer),
            Self::DeadLetter(d) => WireRef::DeadLetter(d).serialize(serializer),
            Self::Handshake(h) => WireRef::Handshake(h).serialize(serializer),
            Self::Nonce(n) => WireRef::Nonce(n).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Wire::deserialize(deserializer)? {
            Wire::CallEvent(e) => Record::CallEvent(e).into(),
            Wire::Cdr(c) => Record::Cdr(c).into(),
            Wire::Phone(e) => Record::Phone(e).into(),
            Wire::AcsCall(e) => Record::AcsCall(e).into(),
            Wire::Chat(e) => Record::Chat(e).into(),
            Wire::Webhook(e) => Record::Webhook(e).into(),
            Wire::DeadLetter(d) => Self::DeadLetter(d),
            Wire::Handshake(h) => Self::Handshake(h),
            Wire::Nonce(n) => Self::Nonce(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spool's format version 1: a row's serde form is the nine-variant enum's that came
    /// before `Row`, written by older binaries and read by this one.
    #[test]
    fn serde_form_is_spool_format_1() {
        let at: DateTime<Utc> = "2026-12-05T04:00:00Z".parse().unwrap();
        let nonce = Row::Nonce(Box::new(Nonce::new("hw".into(), "n1".into(), at, 2, b"d")));
        let json = serde_json::to_value(&nonce).unwrap();
        assert_eq!(json["Nonce"]["nonce"], "n1");
        assert_eq!(json.as_object().unwrap().len(), 1);
        let back: Row = serde_json::from_value(json).unwrap();
        assert_eq!(back, nonce);

        let body = r#"{"eventType":"disconnect","statusInfo":{"sessionId":"s-1","timestamp":"2026-12-05 04:00:00"}}"#;
        let ctx = crate::sources::ParseContext {
            source: "hw".into(),
            received_at: at,
            region: None,
        };
        let parsed = crate::sources::huawei::parse_body(body.as_bytes(), &ctx).unwrap();
        let record = parsed.records.into_iter().next().expect("one record");
        let row = Row::from(record.clone());
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json, serde_json::to_value(&record).unwrap());
        assert!(json.get("CallEvent").is_some(), "{json}");
        assert_eq!(serde_json::from_value::<Row>(json).unwrap(), row);
    }
}
