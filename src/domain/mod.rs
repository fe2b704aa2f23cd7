//! Validated domain values. Nothing in here does I/O: once you hold a [`Cdr`] or a
//! [`CallEvent`], it has passed every structural rule, and its derived figures are computed.
//!
//! Records serialise with serde: that form is what the local spool keeps (`spool`, format
//! version 1), so a binary must read what an older one wrote. A new field needs
//! `#[serde(default)]`; renaming or retyping one needs a new spool format version.

mod acs;
mod call_event;
mod cdr;
mod outbox;
mod phone;
mod record;
mod time;

pub use acs::{AcsCallEvent, ChatEvent, EventHeader, PhoneEvent, WebhookEvent};
pub use call_event::{CallEvent, CallEventType};
pub use cdr::{Cdr, CdrFlag, CdrTimes};
pub use outbox::{Claimed, OutboxEntry, StoredRecord};
pub use phone::{PhoneNumber, Region};
pub use record::{
    DeadLetter, DeadLetterScope, Handshake, Nonce, Outcome, Record, RecordKind, RecordMeta,
    UNSTORABLE,
};
pub use time::{parse_platform_time, TimeError};

/// A `&'static str` field that is serialised (a code, a schema name): named by this alias
/// because serde's derive, seeing a `&'static` field, would only read the whole record from
/// `'static` input; [`interned`] reads it from any input.
pub type Name = &'static str;

/// Reads a `&'static str` field back (a code, a schema name, a direction): each distinct
/// value is allocated once for the life of the process, so reading the same codes again and
/// again allocates nothing more. Values come from ringback's own spool, whose fields hold a
/// small, fixed set of such names.
fn interned<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let value = <String as serde::Deserialize>::deserialize(d)?;
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(known) = seen.get(value.as_str()) {
        return Ok(known);
    }
    let leaked: &'static str = Box::leak(value.into_boxed_str());
    seen.insert(leaked);
    Ok(leaked)
}
