//! Validated domain values. Nothing in here does I/O: once you hold a [`Cdr`] or a
//! [`CallEvent`], it has passed every structural rule, and its derived figures are computed.

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
pub use outbox::{OutboxEntry, StoredRecord};
pub use phone::PhoneNumber;
pub use record::{DeadLetter, DeadLetterScope, Handshake, Outcome, Record, RecordKind, RecordMeta};
pub use time::{parse_platform_time, TimeError};
