//! The platforms ringback ingests from: the one catalogue the other layers read (which kinds of
//! record a platform produces, which parser reads its bodies and its stored rows). A new platform
//! is a folder beside this file, a variant here, its config keys and its tables.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{acs, huawei, standard_webhooks, Delivery, ParseContext, Rejection};
use crate::auth::standard_webhooks::WebhookHeaders;
use crate::domain::{Record, RecordKind, StoredRecord};

/// A platform, as `sources.<name>.kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Platform {
    /// Huawei Cloud VoiceCall: call status and fee (CDR) pushes signed with `X-AKSK`.
    #[serde(rename = "huawei-voicecall")]
    HuaweiVoiceCall,
    /// Azure Communication Services: Event Grid (both schemas) and Call Automation callbacks.
    #[serde(rename = "azure-communication")]
    AzureCommunication,
    /// Any sender signing per the Standard Webhooks specification.
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

impl Platform {
    pub const ALL: [Self; 3] = [
        Self::HuaweiVoiceCall,
        Self::AzureCommunication,
        Self::StandardWebhooks,
    ];

    /// The kinds of record a source of this platform produces: the one place that says so
    /// (metrics create their series from it, a rebuild picks its parser by it, replay checks by
    /// it).
    pub const fn record_kinds(self) -> &'static [RecordKind] {
        match self {
            Self::HuaweiVoiceCall => &[RecordKind::CallStatus, RecordKind::Cdr],
            Self::AzureCommunication => &[
                RecordKind::PhoneEvent,
                RecordKind::AcsCallEvent,
                RecordKind::ChatEvent,
                RecordKind::WebhookEvent,
            ],
            Self::StandardWebhooks => &[RecordKind::WebhookEvent],
        }
    }

    /// The platform whose parser reads stored records of `kind` back: the first that produces
    /// them (webhook events: ACS's; a Standard Webhooks event's id and timestamp travel in
    /// headers, kept in its row, see [`StoredRecord::webhook`]).
    pub fn producing(kind: RecordKind) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.record_kinds().contains(&kind))
            .expect("every record kind has a platform")
    }

    /// Parses a body this platform sent. `webhook` is the request's Standard Webhooks headers
    /// with the JSON pointer of the event type (the other platforms ignore it).
    pub fn parse_body(
        self,
        body: &[u8],
        webhook: (Option<&WebhookHeaders<'_>>, &str),
        ctx: &ParseContext,
    ) -> Result<Delivery, Rejection> {
        match self {
            Self::HuaweiVoiceCall => huawei::parse_body(body, ctx).map(Delivery::Records),
            Self::AzureCommunication => acs::parse_body(body, ctx),
            Self::StandardWebhooks => {
                let (headers, type_pointer) = webhook;
                standard_webhooks::parse_body(body, headers, type_pointer, ctx)
                    .map(Delivery::Records)
            }
        }
    }

    /// Reads a stored record of `kind` back from its row: the record first parsed (same id,
    /// same fields), by the parser of the platform that produces the kind.
    pub fn parse_stored(
        kind: RecordKind,
        stored: &StoredRecord,
        ctx: &ParseContext,
    ) -> Result<Record, Rejection> {
        if let Some((id, at)) = &stored.webhook {
            let event_type = stored.event_type.as_deref().unwrap_or("unknown");
            return standard_webhooks::parse_stored(&stored.raw, id, *at, event_type, ctx);
        }
        match Self::producing(kind) {
            Self::HuaweiVoiceCall => {
                huawei::parse_stored(kind, stored.event_type.as_deref(), &stored.raw, ctx)
            }
            Self::AzureCommunication | Self::StandardWebhooks => {
                acs::parse_stored(&stored.raw, ctx)
            }
        }
    }
}
