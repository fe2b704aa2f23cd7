//! Validated domain values. Nothing in here does I/O: once you hold a [`Cdr`] or a
//! [`CallEvent`], it has passed every structural rule, and its derived figures are computed.
//!
//! Rows ([`Row`]: records and their companions) serialise with serde: that form is what the
//! local spool keeps (`spool`, format version 1), so a binary must read what an older one
//! wrote. A new field needs `#[serde(default)]`; renaming or retyping one needs a new spool
//! format version.

mod acs;
mod call_event;
mod cdr;
mod code;
mod outbox;
mod phone;
mod record;
mod row;
mod time;

pub use acs::{
    AcsCallEvent, ChatEvent, Direction, EventHeader, EventSchema, PhoneEvent, WebhookEvent,
};
pub use call_event::{CallEvent, CallEventType};
pub use cdr::{Cdr, CdrFlag, CdrTimes};
pub use code::Code;
pub use outbox::{commit_row_id, Claimed, OutboxEntry, StoredRecord};
pub use phone::{PhoneNumber, Region};
pub use record::{
    DeadLetter, DeadLetterScope, Handshake, HandshakeKind, Nonce, Outcome, Record, RecordKind,
    RecordMeta, UNSTORABLE,
};
pub use row::Row;
pub use time::{parse_platform_time, TimeError};

/// Implements `as_str` from the serde names of a unit-only enum's variants.
macro_rules! named {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s),+
                }
            }
        }
    };
}
pub(crate) use named;
