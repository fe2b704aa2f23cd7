//! One module per platform: wire structs that mirror the platform's JSON exactly, and the
//! conversion into domain records, where the rules live.

pub mod acs;
pub mod huawei;
mod lenient;
mod platform;
pub mod standard_webhooks;

pub use platform::Platform;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{Code, Record, Region};

/// Why input was refused: a stable machine-readable `code`, a human message, and the JSON path
/// of the offending field when there is one. The same value is sent to the platform and kept
/// in the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (at {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>, field: Option<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field,
        }
    }

    /// Classifies a serde_json error met while reading `field_prefix` (a JSON path).
    pub fn from_json(err: serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> Self {
        let inner = err.inner();
        let code = match inner.classify() {
            // serde_json counts a number too large for any type as a syntax error; for the
            // sender it is a value out of range.
            serde_json::error::Category::Syntax
                if inner.to_string().starts_with("number out of range") =>
            {
                Code::InvalidValue
            }
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Code::InvalidJson
            }
            serde_json::error::Category::Io => Code::InvalidJson,
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                if msg.starts_with("invalid type") {
                    Code::InvalidType
                } else if msg.starts_with("duplicate field") {
                    Code::DuplicateField
                } else {
                    Code::InvalidValue
                }
            }
        };
        let path = err.path().to_string();
        let field = join_path(
            prefix,
            if path == "." || path == "?" {
                ""
            } else {
                &path
            },
        );
        // serde_json appends the position; inside a record it is relative to the record, which
        // would mislead, so it is only kept for syntax errors of the whole body.
        let mut message = inner.to_string();
        if code != Code::InvalidJson || !prefix.is_empty() {
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
        }
        Self::new(code, message, Some(field).filter(|f| !f.is_empty()))
    }
}

/// The body as text: every platform sends UTF-8 JSON.
pub(crate) fn utf8(body: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(body).map_err(|e| {
        Rejection::new(
            Code::InvalidUtf8,
            format!("body is not valid UTF-8: {e}"),
            None,
        )
    })
}

/// Deserialises `text` strictly (no trailing data), reporting errors under the JSON path `at`.
pub(crate) fn deserialize<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
    at: &str,
) -> Result<T, Rejection> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value =
        serde_path_to_error::deserialize(&mut de).map_err(|e| Rejection::from_json(e, at))?;
    de.end().map_err(|e| {
        Rejection::new(
            Code::InvalidJson,
            format!("trailing data after the JSON value: {e}"),
            None,
        )
    })?;
    Ok(value)
}

/// Like [`deserialize`] for a JSON object: serde would also read a struct from an array
/// (`["callout", {…}]`), which the platforms never send, so anything else is refused.
pub(crate) fn object<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
    at: &str,
) -> Result<T, Rejection> {
    if text.trim_start().starts_with('{') {
        return deserialize(text, at);
    }
    // Not an object: report a syntax error as such, anything else as the wrong type.
    deserialize::<&serde_json::value::RawValue>(text, at)?;
    Err(Rejection::new(
        Code::InvalidType,
        "expected a JSON object",
        Some(at.to_owned()).filter(|a| !a.is_empty()),
    ))
}

/// Joins JSON path segments: `join_path("feeLst[2]", "direction")` → `feeLst[2].direction`.
pub fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// A record of a multi-record body that was refused while the others were accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRejection {
    /// Position in the body's list (`feeLst[index]`).
    pub index: usize,
    /// The kind of record it would have been.
    pub kind: crate::domain::RecordKind,
    pub rejection: Rejection,
    /// The record's JSON exactly as sent.
    pub raw: String,
}

/// What a body turned into.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    pub rejected: Vec<RecordRejection>,
}

/// What a delivery turned out to be.
#[derive(Debug)]
pub enum Delivery {
    /// Records (and the records refused among them).
    Records(Parsed),
    /// Event Grid's subscription validation handshake: answer with the code.
    Validation { code: String, url: Option<String> },
}

/// What parsing needs to know about the request.
#[derive(Debug, Clone)]
pub struct ParseContext {
    pub source: Arc<str>,
    pub received_at: DateTime<Utc>,
    /// The country of the source's national numbers (`sources.<name>.default_region`): the
    /// records hold them in E.164, their raw JSON as sent.
    pub region: Option<Region>,
}
