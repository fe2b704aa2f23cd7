//! What an emulator sent and what was answered: one JSON line per delivery attempt, written as
//! it happens (flushed on every line: a run that is killed keeps what it did). The oracle
//! ([`super::verify`]) reads it back.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A record a push carried, as ringback will store it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    /// The record's id (ringback derives it from the source and the record's dedupe key).
    pub id: Uuid,
    /// Its kind (`call-status`, `cdr`, …): the table and topic.
    pub kind: String,
    /// Its call or conversation (the Kafka key).
    pub key: String,
}

/// One delivery attempt of one push.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// `huawei`, `event-grid`, `standard-webhooks`.
    pub platform: String,
    /// What kind of push (`status`, `fee`, `events`, `handshake`, …).
    pub push: String,
    /// The push, the same for each of its attempts.
    pub push_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub url: String,
    /// The `X-Request-Id` sent: ringback keeps it with any dead letter the push makes.
    pub request_id: String,
    /// The HTTP status, `None` when no answer came (refused connection, timeout).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Whether the platform tries this push again (its retry rules, after this attempt).
    pub will_retry: bool,
    /// What the receiver's 2xx answer counted as duplicates (ringback's `"duplicates"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    /// The push was made malformed on purpose (`--malformed`): ringback must refuse it.
    #[serde(default)]
    pub malformed: bool,
    pub records: Vec<Carried>,
}

impl Attempt {
    pub fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// Refused for its content (4xx other than 408/429): not worth trying again as it is.
    pub fn refused(&self) -> bool {
        self.status
            .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
    }
}

/// The answer to one attempt.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: Option<u16>,
    /// Why no answer came.
    pub error: Option<String>,
    /// What the receiver's 2xx answer counted as duplicates (ringback's `"duplicates": N`).
    pub duplicates: Option<u64>,
}

/// A push, as each of its attempts is written to the ledger.
#[derive(Debug, Clone)]
pub struct Push {
    pub platform: &'static str,
    pub kind: &'static str,
    pub id: String,
    pub url: String,
    pub malformed: bool,
    pub records: Vec<Carried>,
}

impl Push {
    /// The ledger line of attempt `attempt`, answered `answer`.
    pub fn attempt(
        &self,
        attempt: u32,
        request_id: String,
        answer: &Answer,
        will_retry: bool,
    ) -> Attempt {
        Attempt {
            at: Utc::now(),
            platform: self.platform.into(),
            push: self.kind.into(),
            push_id: self.id.clone(),
            attempt,
            url: self.url.clone(),
            request_id,
            status: answer.status,
            error: answer.error.clone(),
            duplicates: answer.duplicates,
            will_retry,
            malformed: self.malformed,
            records: self.records.clone(),
        }
    }
}

impl Carried {
    /// The records as the ledger names them.
    pub fn of(records: &[crate::domain::Record]) -> Vec<Self> {
        records
            .iter()
            .map(|r| Self {
                id: r.id(),
                kind: r.kind().as_str().to_owned(),
                key: r.ordering_key().to_owned(),
            })
            .collect()
    }
}

/// The ledger file being written.
pub struct Ledger(Mutex<std::io::BufWriter<std::fs::File>>);

impl Ledger {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the ledger {}", path.display()))?;
        Ok(Self(Mutex::new(std::io::BufWriter::new(file))))
    }

    pub fn write(&self, attempt: &Attempt) {
        let line = serde_json::to_string(attempt).expect("an attempt serialises");
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            tracing::error!("writing the ledger failed");
        }
    }
}

/// Every attempt a ledger holds, in the order written.
pub fn read(path: &Path) -> anyhow::Result<Vec<Attempt>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}
