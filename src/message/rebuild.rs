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
) -> Result<OutboxEntry, String> {
    let ctx = ParseContext {
        source: stored.source.as_str().into(),
        received_at: stored.received_at,
        region,
    };
    let record = Platform::parse_stored(kind, stored, &ctx)
        .map_err(|r| format!("record {} no longer parses: {}", stored.id, r.message))?;
    let entry = encode(&record).ok_or_else(|| format!("record {} has no message", stored.id))?;
    if entry.id != stored.id {
        return Err(format!(
            "record {} rebuilds with id {}; refusing to publish it",
            stored.id, entry.id
        ));
    }
    Ok(entry)
}
