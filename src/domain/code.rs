//! Every refusal ringback answers, as one type: its stable machine-readable `code` (in error
//! answers, dead letters and the `ringback_rejections_total{code}` label), the HTTP status it is
//! answered with, and when it is given. The OpenAPI document's catalogue is derived from
//! [`Code::ANSWERED`].

use serde::{Deserialize, Serialize};

/// Why input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// not JSON, truncated, or trailing data (`field`: where reading stopped)
    InvalidJson,
    /// the body is not UTF-8
    InvalidUtf8,
    /// a value of the wrong JSON type
    InvalidType,
    /// a value out of range
    InvalidValue,
    /// a key twice in one object
    DuplicateField,
    /// a required field is absent (`field` names it); `OPTIONS` without `WebHook-Request-Origin`
    MissingField,
    /// a Huawei `eventType` other than callout, alerting, answer, collectInfo, disconnect, fee
    UnknownEventType,
    /// `feeLst` with no record
    FeeListEmpty,
    /// `feeLst` with more than 50 records
    FeeListTooLong,
    /// a time that is not `yyyy-MM-dd HH:mm:ss` (or ISO 8601)
    InvalidTime,
    /// an ACS delivery with no event
    EmptyBatch,
    /// an ACS delivery of more than 5 000 events (Event Grid's own bound)
    TooManyEvents,
    /// the database refused every record of the body (a NUL character, a value out of range); each is kept as a dead letter. Within a body with other records, the refused one is listed in `rejected` and the rest committed
    UnstorableRecord,
    /// an event outside `Microsoft.Communication.*`
    UnsupportedEventType,
    /// the request body could not be read
    BodyReadFailed,
    /// X-AKSK: no `Authorization`/`X-AKSK` header
    AuthMissing,
    /// X-AKSK: the header does not parse
    AuthMalformed,
    /// X-AKSK: an app key not configured
    UnknownAppKey,
    /// X-AKSK or Standard Webhooks: the signature does not match
    SignatureMismatch,
    /// X-AKSK: `Created` outside the allowed clock skew
    StaleCreated,
    /// X-AKSK: the nonce was used already
    NonceReused,
    /// shared secret: not sent
    SecretMissing,
    /// shared secret: wrong
    SecretMismatch,
    /// Standard Webhooks: `webhook-id`, `-timestamp` or `-signature` missing
    SignatureHeadersMissing,
    /// Standard Webhooks: an unusable `webhook-id`
    InvalidWebhookId,
    /// Standard Webhooks: `webhook-timestamp` is not a UNIX time
    InvalidTimestamp,
    /// Standard Webhooks: `webhook-timestamp` too far from now
    TimestampOutOfTolerance,
    /// Standard Webhooks: no `v1,<base64>` signature
    SignatureMalformed,
    /// JWT: no bearer token
    TokenMissing,
    /// JWT: the token cannot be read
    TokenMalformed,
    /// JWT: an algorithm not allowed
    TokenBadAlgorithm,
    /// JWT: the signing key is not known
    TokenUnknownKey,
    /// JWT: the signature does not match
    TokenBadSignature,
    /// JWT: expired
    TokenExpired,
    /// JWT: not valid yet (`nbf`)
    TokenNotYetValid,
    /// JWT: another audience
    TokenWrongAudience,
    /// JWT: another issuer
    TokenWrongIssuer,
    /// `OPTIONS` from an origin outside `allowed_origins`
    OriginNotAllowed,
    /// no source of that name
    UnknownSource,
    /// a method the endpoint does not answer (with `Allow`)
    MethodNotAllowed,
    /// the body did not arrive within `http.body_timeout`
    BodyTimeout,
    /// over `http.max_body_bytes`
    BodyTooLarge,
    /// not `application/json` (UTF-8)
    UnsupportedMediaType,
    /// over the source's `rate_limit` (with `Retry-After`)
    RateLimited,
    /// over `http.max_headers` or `http.max_header_bytes`
    HeadersTooLarge,
    /// the database refused the request's records and could not keep them as dead letters either; nothing was stored
    InternalError,
    /// the batch queues are full (with `Retry-After`); nothing was stored
    QueueFull,
    /// the database is unavailable (with `Retry-After`); nothing was stored
    StoreUnavailable,
    /// a JWT source whose signing keys (JWKS) cannot be fetched yet (with `Retry-After`); the other sources serve
    KeysUnavailable,
    /// ringback is draining (with `Retry-After`); nothing was stored
    ShuttingDown,
    /// the database is unavailable and the spool full (with `Retry-After`)
    SpoolFull,
    /// `ringback dead-letters reprocess`: a letter kept while its source took unauthenticated
    /// input, which now authenticates (reprocessing cannot check a credential).
    UnauthenticatedLetter,
    /// `ringback dead-letters reprocess`: a letter kept without its body (authentication
    /// failures keep none).
    NoBody,
    /// `ringback dead-letters reprocess`: a kept Event Grid validation handshake, answered when
    /// it arrived, not a record.
    Handshake,
}

impl Code {
    /// Every code a hook (or its `OPTIONS` handshake) answers, by status: the OpenAPI
    /// document's catalogue.
    pub const ANSWERED: [Self; 51] = [
        Self::InvalidJson,
        Self::InvalidUtf8,
        Self::InvalidType,
        Self::InvalidValue,
        Self::DuplicateField,
        Self::MissingField,
        Self::UnknownEventType,
        Self::FeeListEmpty,
        Self::FeeListTooLong,
        Self::InvalidTime,
        Self::EmptyBatch,
        Self::TooManyEvents,
        Self::UnstorableRecord,
        Self::UnsupportedEventType,
        Self::BodyReadFailed,
        Self::AuthMissing,
        Self::AuthMalformed,
        Self::UnknownAppKey,
        Self::SignatureMismatch,
        Self::StaleCreated,
        Self::NonceReused,
        Self::SecretMissing,
        Self::SecretMismatch,
        Self::SignatureHeadersMissing,
        Self::InvalidWebhookId,
        Self::InvalidTimestamp,
        Self::TimestampOutOfTolerance,
        Self::SignatureMalformed,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenBadAlgorithm,
        Self::TokenUnknownKey,
        Self::TokenBadSignature,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenWrongAudience,
        Self::TokenWrongIssuer,
        Self::OriginNotAllowed,
        Self::UnknownSource,
        Self::MethodNotAllowed,
        Self::BodyTimeout,
        Self::BodyTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::HeadersTooLarge,
        Self::InternalError,
        Self::QueueFull,
        Self::StoreUnavailable,
        Self::KeysUnavailable,
        Self::ShuttingDown,
        Self::SpoolFull,
    ];

    /// The codes only `ringback dead-letters reprocess` gives (never an HTTP answer).
    pub const REPROCESS: [Self; 3] = [Self::UnauthenticatedLetter, Self::NoBody, Self::Handshake];

    /// The code as answers and dead letters spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidType => "invalid_type",
            Self::InvalidValue => "invalid_value",
            Self::DuplicateField => "duplicate_field",
            Self::MissingField => "missing_field",
            Self::UnknownEventType => "unknown_event_type",
            Self::FeeListEmpty => "fee_list_empty",
            Self::FeeListTooLong => "fee_list_too_long",
            Self::InvalidTime => "invalid_time",
            Self::EmptyBatch => "empty_batch",
            Self::TooManyEvents => "too_many_events",
            Self::UnstorableRecord => "unstorable_record",
            Self::UnsupportedEventType => "unsupported_event_type",
            Self::BodyReadFailed => "body_read_failed",
            Self::AuthMissing => "auth_missing",
            Self::AuthMalformed => "auth_malformed",
            Self::UnknownAppKey => "unknown_app_key",
            Self::SignatureMismatch => "signature_mismatch",
            Self::StaleCreated => "stale_created",
            Self::NonceReused => "nonce_reused",
            Self::SecretMissing => "secret_missing",
            Self::SecretMismatch => "secret_mismatch",
            Self::SignatureHeadersMissing => "signature_headers_missing",
            Self::InvalidWebhookId => "invalid_webhook_id",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Self::SignatureMalformed => "signature_malformed",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenBadAlgorithm => "token_bad_algorithm",
            Self::TokenUnknownKey => "token_unknown_key",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenWrongAudience => "token_wrong_audience",
            Self::TokenWrongIssuer => "token_wrong_issuer",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::UnknownSource => "unknown_source",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTimeout => "body_timeout",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::HeadersTooLarge => "headers_too_large",
            Self::InternalError => "internal_error",
            Self::QueueFull => "queue_full",
            Self::StoreUnavailable => "store_unavailable",
            Self::KeysUnavailable => "keys_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::SpoolFull => "spool_full",
            Self::UnauthenticatedLetter => "unauthenticated_letter",
            Self::NoBody => "no_body",
            Self::Handshake => "handshake",
        }
    }

    /// The HTTP status it is answered with (the reprocess-only codes: 400, the input being
    /// at fault, though no one is answered).
    pub const fn status(self) -> u16 {
        match self {
            Self::UnauthenticatedLetter | Self::NoBody | Self::Handshake => 400,
            Self::InvalidJson
            | Self::InvalidUtf8
            | Self::InvalidType
            | Self::InvalidValue
            | Self::DuplicateField
            | Self::MissingField
            | Self::UnknownEventType
            | Self::FeeListEmpty
            | Self::FeeListTooLong
            | Self::InvalidTime
            | Self::EmptyBatch
            | Self::TooManyEvents
            | Self::UnstorableRecord
            | Self::UnsupportedEventType
            | Self::BodyReadFailed => 400,
            Self::AuthMissing
            | Self::AuthMalformed
            | Self::UnknownAppKey
            | Self::SignatureMismatch
            | Self::StaleCreated
            | Self::NonceReused
            | Self::SecretMissing
            | Self::SecretMismatch
            | Self::SignatureHeadersMissing
            | Self::InvalidWebhookId
            | Self::InvalidTimestamp
            | Self::TimestampOutOfTolerance
            | Self::SignatureMalformed
            | Self::TokenMissing
            | Self::TokenMalformed
            | Self::TokenBadAlgorithm
            | Self::TokenUnknownKey
            | Self::TokenBadSignature
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenWrongAudience
            | Self::TokenWrongIssuer => 401,
            Self::OriginNotAllowed => 403,
            Self::UnknownSource => 404,
            Self::MethodNotAllowed => 405,
            Self::BodyTimeout => 408,
            Self::BodyTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::HeadersTooLarge => 431,
            Self::InternalError => 500,
            Self::QueueFull
            | Self::StoreUnavailable
            | Self::KeysUnavailable
            | Self::ShuttingDown
            | Self::SpoolFull => 503,
        }
    }

    /// When it is given (the OpenAPI document's words).
    pub const fn when(self) -> &'static str {
        match self {
            Self::InvalidJson => "not JSON, truncated, or trailing data (`field`: where reading stopped)",
            Self::InvalidUtf8 => "the body is not UTF-8",
            Self::InvalidType => "a value of the wrong JSON type",
            Self::InvalidValue => "a value out of range",
            Self::DuplicateField => "a key twice in one object",
            Self::MissingField => "a required field is absent (`field` names it); `OPTIONS` without `WebHook-Request-Origin`",
            Self::UnknownEventType => "a Huawei `eventType` other than callout, alerting, answer, collectInfo, disconnect, fee",
            Self::FeeListEmpty => "`feeLst` with no record",
            Self::FeeListTooLong => "`feeLst` with more than 50 records",
            Self::InvalidTime => "a time that is not `yyyy-MM-dd HH:mm:ss` (or ISO 8601)",
            Self::EmptyBatch => "an ACS delivery with no event",
            Self::TooManyEvents => "an ACS delivery of more than 5 000 events (Event Grid's own bound)",
            Self::UnstorableRecord => "the database refused every record of the body (a NUL character, a value out of range); each is kept as a dead letter. Within a body with other records, the refused one is listed in `rejected` and the rest committed",
            Self::UnsupportedEventType => "an event outside `Microsoft.Communication.*`",
            Self::BodyReadFailed => "the request body could not be read",
            Self::AuthMissing => "X-AKSK: no `Authorization`/`X-AKSK` header",
            Self::AuthMalformed => "X-AKSK: the header does not parse",
            Self::UnknownAppKey => "X-AKSK: an app key not configured",
            Self::SignatureMismatch => "X-AKSK or Standard Webhooks: the signature does not match",
            Self::StaleCreated => "X-AKSK: `Created` outside the allowed clock skew",
            Self::NonceReused => "X-AKSK: the nonce was used already",
            Self::SecretMissing => "shared secret: not sent",
            Self::SecretMismatch => "shared secret: wrong",
            Self::SignatureHeadersMissing => "Standard Webhooks: `webhook-id`, `-timestamp` or `-signature` missing",
            Self::InvalidWebhookId => "Standard Webhooks: an unusable `webhook-id`",
            Self::InvalidTimestamp => "Standard Webhooks: `webhook-timestamp` is not a UNIX time",
            Self::TimestampOutOfTolerance => "Standard Webhooks: `webhook-timestamp` too far from now",
            Self::SignatureMalformed => "Standard Webhooks: no `v1,<base64>` signature",
            Self::TokenMissing => "JWT: no bearer token",
            Self::TokenMalformed => "JWT: the token cannot be read",
            Self::TokenBadAlgorithm => "JWT: an algorithm not allowed",
            Self::TokenUnknownKey => "JWT: the signing key is not known",
            Self::TokenBadSignature => "JWT: the signature does not match",
            Self::TokenExpired => "JWT: expired",
            Self::TokenNotYetValid => "JWT: not valid yet (`nbf`)",
            Self::TokenWrongAudience => "JWT: another audience",
            Self::TokenWrongIssuer => "JWT: another issuer",
            Self::OriginNotAllowed => "`OPTIONS` from an origin outside `allowed_origins`",
            Self::UnknownSource => "no source of that name",
            Self::MethodNotAllowed => "a method the endpoint does not answer (with `Allow`)",
            Self::BodyTimeout => "the body did not arrive within `http.body_timeout`",
            Self::BodyTooLarge => "over `http.max_body_bytes`",
            Self::UnsupportedMediaType => "not `application/json` (UTF-8)",
            Self::RateLimited => "over the source's `rate_limit` (with `Retry-After`)",
            Self::HeadersTooLarge => "over `http.max_headers` or `http.max_header_bytes`",
            Self::InternalError => "the database refused the request's records and could not keep them as dead letters either; nothing was stored",
            Self::QueueFull => "the batch queues are full (with `Retry-After`); nothing was stored",
            Self::StoreUnavailable => "the database is unavailable (with `Retry-After`); nothing was stored",
            Self::KeysUnavailable => "a JWT source whose signing keys (JWKS) cannot be fetched yet (with `Retry-After`); the other sources serve",
            Self::ShuttingDown => "ringback is draining (with `Retry-After`); nothing was stored",
            Self::SpoolFull => "the database is unavailable and the spool full (with `Retry-After`)",
            Self::UnauthenticatedLetter => "reprocess: a letter of unauthenticated input at a source that now authenticates",
            Self::NoBody => "reprocess: a letter kept without its body",
            Self::Handshake => "reprocess: a kept validation handshake, not a record",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_spelled_as_serde_writes_it_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ANSWERED.into_iter().chain(Code::REPROCESS) {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            assert!(seen.insert(code.as_str()), "{code} listed twice");
        }
    }
}
