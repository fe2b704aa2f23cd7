use chrono::{DateTime, Utc};

use super::{PhoneNumber, RecordMeta};
use serde::{Deserialize, Serialize};

/// The call-status events Huawei VoiceCall pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallEventType {
    Callout,
    Alerting,
    Answer,
    CollectInfo,
    Disconnect,
}

impl CallEventType {
    pub const ALL: [Self; 5] = [
        Self::Callout,
        Self::Alerting,
        Self::Answer,
        Self::CollectInfo,
        Self::Disconnect,
    ];

    /// The wire name, which is also what the `event_type` column holds.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Callout => "callout",
            Self::Alerting => "alerting",
            Self::Answer => "answer",
            Self::CollectInfo => "collectInfo",
            Self::Disconnect => "disconnect",
        }
    }

    /// Case-sensitive, as the platform's field values are.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One call-status event (`call_events` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub meta: RecordMeta,
    pub event_type: CallEventType,
    pub session_id: String,
    pub occurred_at: DateTime<Utc>,
    pub caller: Option<PhoneNumber>,
    pub called: Option<PhoneNumber>,
    pub user_data: Option<String>,
    pub digit_info: Option<String>,
    pub party_type: Option<String>,
    pub state_code: Option<i32>,
    pub state_desc: Option<String>,
    /// The `statusInfo` object exactly as sent.
    pub raw: String,
}

impl CallEvent {
    /// Dedupe key: the same event of the same call at the same instant is the same event.
    pub fn dedupe_key(
        session_id: &str,
        event_type: CallEventType,
        occurred_at: DateTime<Utc>,
    ) -> String {
        format!(
            "{session_id}|{}|{}",
            event_type.as_str(),
            occurred_at.timestamp_millis()
        )
    }
}
