//! Every refusal the HTTP layer gives, and its one mapping to a status and a JSON body:
//! `{"error": {"code", "message", "field"?}}`. Internals never leak into responses.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthFailure;
use crate::batch::SubmitError;
use crate::domain::Code;
use crate::sources::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no source is configured at this path")]
    UnknownSource,
    #[error("this origin may not deliver to this endpoint")]
    OriginNotAllowed,
    #[error(transparent)]
    Auth(AuthFailure),
    #[error("Content-Type must be application/json (UTF-8), got {0:?}")]
    UnsupportedMediaType(String),
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyRead,
    #[error("{}", .0.message)]
    Invalid(Rejection),
    #[error("ringback is overloaded; retry later")]
    Overloaded { retry_after: u32 },
    #[error("this source sends faster than its rate limit; retry later")]
    RateLimited { retry_after: u32 },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("too many request headers, or too large ones")]
    HeadersTooLarge,
    #[error("ringback is shutting down; retry later")]
    ShuttingDown { retry_after: u32 },
    #[error("the database is unavailable; retry later")]
    StoreUnavailable { retry_after: u32 },
    #[error("this endpoint's signing keys cannot be fetched yet; retry later")]
    KeysUnavailable { retry_after: u32 },
    #[error("the database is unavailable and the local spool cannot take more; retry later")]
    SpoolFull { retry_after: u32 },
    #[error("internal error")]
    Internal,
    #[error("this endpoint answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
}

impl IngestError {
    /// Stable machine-readable code.
    pub fn code(&self) -> Code {
        match self {
            Self::UnknownSource => Code::UnknownSource,
            Self::OriginNotAllowed => Code::OriginNotAllowed,
            Self::Auth(e) => e.code,
            Self::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            Self::PayloadTooLarge { .. } => Code::BodyTooLarge,
            Self::BodyRead => Code::BodyReadFailed,
            Self::Invalid(r) => r.code,
            Self::Overloaded { .. } => Code::QueueFull,
            Self::RateLimited { .. } => Code::RateLimited,
            Self::BodyTimeout => Code::BodyTimeout,
            Self::HeadersTooLarge => Code::HeadersTooLarge,
            Self::ShuttingDown { .. } => Code::ShuttingDown,
            Self::StoreUnavailable { .. } => Code::StoreUnavailable,
            Self::KeysUnavailable { .. } => crate::auth::jwt::KEYS_UNAVAILABLE,
            Self::SpoolFull { .. } => Code::SpoolFull,
            Self::Internal => Code::InternalError,
            Self::MethodNotAllowed { .. } => Code::MethodNotAllowed,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(r) => r.field.as_deref(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Overloaded { retry_after }
            | Self::RateLimited { retry_after }
            | Self::ShuttingDown { retry_after }
            | Self::StoreUnavailable { retry_after }
            | Self::KeysUnavailable { retry_after }
            | Self::SpoolFull { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The answer for a submission that was not committed.
    pub fn from_submit(e: SubmitError, retry_after: u32) -> Self {
        match e {
            SubmitError::QueueFull => Self::Overloaded { retry_after },
            SubmitError::Closed => Self::ShuttingDown { retry_after },
            SubmitError::Store { transient: true } => Self::StoreUnavailable { retry_after },
            SubmitError::Store { transient: false } => Self::Internal,
            SubmitError::SpoolFull(_) => Self::SpoolFull { retry_after },
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for IngestError {
    /// The code's status ([`Code::status`]): one table says both.
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).expect("every code's status is valid")
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let Self::Auth(AuthFailure {
            challenge: Some(challenge),
            ..
        }) = self
        {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().as_str(),
                message: self.to_string(),
                field: self.field(),
            },
        })
    }
}
