use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RecordKind;

/// A Kafka message waiting to be published, written in the same transaction as its record.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The record's id; the message's `ce_id`.
    pub id: Uuid,
    pub kind: RecordKind,
    /// Message key: the call's session id, so one call's records share a partition.
    pub key: String,
    /// Message value (JSON, schema `ringback.record.v1`).
    pub payload: String,
    pub source: Arc<str>,
    /// The record's event time; the message's `ce_time`.
    pub occurred_at: DateTime<Utc>,
}

/// A stored record as a catch-up and `ringback replay` read it back: enough to rebuild its
/// message (see `message::rebuild`).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub id: Uuid,
    pub source: String,
    pub received_at: DateTime<Utc>,
    /// `call_events.event_type`; `None` for CDRs.
    pub event_type: Option<String>,
    /// The record as sent.
    pub raw: String,
    /// A Standard Webhooks event's `webhook-id` and `webhook-timestamp` (its `occurred_at`),
    /// which travel in headers: kept in its row's `event_id` and `occurred_at`, they rebuild
    /// it. `None` for every other record.
    pub webhook: Option<(String, DateTime<Utc>)>,
}

/// Where the outbox keeps a committed record until it is published: a row of its own (its id is
/// the record's), or, for the hot path's records on PostgreSQL, one row per commit holding the
/// ids of all the records it inserted, in commit order (`store::pg_unnest`): one row inserted
/// and deleted per batch instead of one per record. That row's id is this function of the id
/// of its first record, so the publisher, handed the batch's entries, knows it without asking.
pub fn commit_row_id(first: Uuid) -> Uuid {
    const COMMIT_ROW_NAMESPACE: Uuid = Uuid::from_u128(0x1c6f_04d2_8a3e_4b7f_a5c0_3e9d_61b2_f408);
    Uuid::new_v5(&COMMIT_ROW_NAMESPACE, first.as_bytes())
}

/// An outbox entry as a catch-up claims it: its message, or the record's row its message is
/// rebuilt from (PostgreSQL keeps the hot path's entries without a value; see
/// `store::pg_unnest::stored_without_payload`). The store reads; the publisher rebuilds.
#[derive(Debug, Clone)]
pub enum Claimed {
    Ready(OutboxEntry),
    Stored {
        kind: RecordKind,
        record: StoredRecord,
        /// The outbox row holding it when that row is its commit's (see [`commit_row_id`]).
        commit: Option<Uuid>,
    },
}

impl Claimed {
    /// The record's id, which the entry bears.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Ready(entry) => entry.id,
            Self::Stored { record, .. } => record.id,
        }
    }

    /// The id of the outbox row holding it: its own, or its commit's.
    pub fn row(&self) -> Uuid {
        match self {
            Self::Stored {
                commit: Some(row), ..
            } => *row,
            _ => self.id(),
        }
    }
}
