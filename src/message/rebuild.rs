//! A stored record's message, rebuilt from the JSON it was received as.

use super::encode;
use crate::domain::{OutboxEntry, RecordKind, Region, StoredRecord};
use crate::sources::{ParseContext, Platform};

/// The message of a stored record, rebuilt from the JSON it was received as: the one first
/// published (same id, key and value), as catch-up and `ringback replay` send it, read by the
/// parser of the platform that produces its kind ([`Platform::parse_stored`]). Fails, with the
/// reason, when the JSON no longer parses or no longer gives the record's id.
/// `region` is its source's default region, which the live message's numbers were written in.
pub fn rebuild(
    kind: RecordKind,
    stored: &StoredRecord,
    region: Option<Region>,
) -> Result<OutboxEntry, RebuildError> {
    let ctx = ParseContext {
        source: stored.source.as_str().into(),
        received_at: stored.received_at,
        region,
    };
    let id = stored.id;
    let record = Platform::parse_stored(kind, stored, &ctx)
        .map_err(|source| RebuildError::NoLongerParses { id, source })?;
    let entry = encode(&record);
    if entry.id != id {
        return Err(RebuildError::OtherId { id, got: entry.id });
    }
    Ok(entry)
}

/// Why a stored record's message cannot be rebuilt: it is never publishable then.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("record {id} no longer parses")]
    NoLongerParses {
        id: uuid::Uuid,
        #[source]
        source: crate::sources::Rejection,
    },
    #[error("record {id} rebuilds with id {got}; refusing to publish it")]
    OtherId { id: uuid::Uuid, got: uuid::Uuid },
}
