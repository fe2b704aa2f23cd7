//! What a hook answers on success (refusals are `IngestError`s).

use serde::Serialize;

use crate::domain::Code;

/// What a hook answers on success.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub status: &'static str,
    /// Records committed as new rows.
    pub accepted: usize,
    /// Records already stored before (platform retries); no new row.
    pub duplicates: usize,
    /// Records of a multi-record body that were refused (kept as dead letters).
    pub rejected: Vec<RejectedRecord>,
    /// Present (`true`) when the batch was kept in the local spool, fsync'd, because the
    /// database could not take it in time: it reaches the database (and Kafka) once the
    /// database is back. Its records all count as accepted; retries among them are
    /// recognised then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub spooled: bool,
}

#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
