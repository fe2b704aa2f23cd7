//! `ringback dead-letters reprocess`: a kept body run again through the current parser of its
//! source, and what now parses committed through the normal batch path (dedupe, outbox, so
//! Kafka), each dead letter marked with what became of it.
//!
//! A letter is run through the steps a request takes after authentication: the content type,
//! then the parser. Authentication is not run again: the request passed it, or failed it, when
//! it arrived (the signature may have expired since, the nonce been used). Letters of auth
//! failures are not eligible at all: their body was never kept, since an unauthenticated body
//! is nobody's input (the same holds for bodies too large or too slow to read).
//!
//! A record-scope letter holds one record of a multi-record body (a `feeLst` CDR, an event of an
//! Event Grid batch); it is run as a body of that one record. The records keep the arrival time
//! of the request, so their ids (derived from their dedupe keys) are the ones they would have
//! had: reprocessing a letter twice, or a record the platform sent again meanwhile, is a
//! duplicate, never a second row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use chrono::Utc;

use super::hook::is_json_utf8;
use super::Source;
use crate::batch::Batcher;
use crate::domain::Code;
use crate::domain::{Outcome, Record, Row};
use crate::sources::Platform;
use crate::sources::{Delivery, Rejection};
use crate::store::dead_letters::{DeadLetters, Filter, Finished, Letter, Reprocessed};

/// Letters read per round trip.
const PAGE: u32 = 200;

/// What the current parser makes of a dead letter.
#[derive(Debug)]
pub struct Judgement {
    /// The records it now gives.
    pub records: Vec<Record>,
    /// Why it (or some of its records) is still refused, and how many records are.
    pub refusal: Option<(Rejection, usize)>,
}

/// Runs `letter` through the current parser of `source` (its own, by name).
pub fn judge(source: &Source, letter: &Letter) -> Judgement {
    let refused = |r: Rejection| Judgement {
        records: Vec::new(),
        refusal: Some((r, 1)),
    };
    if letter.auth.as_deref() == Some("none") && source.auth_mode != "none" {
        return refused(Rejection::new(
            Code::UnauthenticatedLetter,
            format!(
                "kept while the source took unauthenticated input; it now requires {}, which \
                 reprocessing cannot check",
                source.auth_mode
            ),
            None,
        ));
    }
    let Some(body) = &letter.body else {
        return refused(Rejection::new(
            Code::NoBody,
            "the body was not kept (an auth failure, or too large or slow to read)",
            None,
        ));
    };
    let headers = header_map(&letter.headers);
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_utf8(content_type) {
        return refused(Rejection::new(
            Code::UnsupportedMediaType,
            format!("content type {content_type:?} is not JSON in UTF-8"),
            None,
        ));
    }
    let body = if letter.scope == "record" {
        match one_record_body(source.kind, body) {
            Some(b) => b,
            None => {
                return refused(Rejection::new(
                    Code::InvalidJson,
                    "the kept record is not JSON",
                    None,
                ))
            }
        }
    } else {
        body.clone()
    };
    match source.parse(&body, &headers, letter.received_at) {
        Ok(Delivery::Records(parsed)) => Judgement {
            refusal: parsed
                .rejected
                .first()
                .map(|r| (r.rejection.clone(), parsed.rejected.len())),
            records: parsed.records,
        },
        Ok(Delivery::Validation { .. }) => refused(Rejection::new(
            Code::Handshake,
            "an Event Grid validation handshake: answered when it arrived, not a record",
            None,
        )),
        Err(r) => refused(r),
    }
}

/// A body of one record of `kind`'s multi-record bodies: `{"eventType":"fee","feeLst":[…]}` for
/// Huawei, `[…]` for Event Grid. `None` when the record is not JSON.
fn one_record_body(kind: Platform, record: &[u8]) -> Option<Vec<u8>> {
    let record: &serde_json::value::RawValue = serde_json::from_slice(record).ok()?;
    let body = match kind {
        Platform::HuaweiVoiceCall => {
            format!(r#"{{"eventType":"fee","feeLst":[{}]}}"#, record.get())
        }
        Platform::AzureCommunication | Platform::StandardWebhooks => {
            format!("[{}]", record.get())
        }
    };
    Some(body.into_bytes())
}

/// The kept headers (a JSON object of strings) as a header map; what no longer makes a header
/// is left out.
fn header_map(kept: &serde_json::Value) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(object) = kept.as_object() {
        for (name, value) in object {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            map.insert(name, value);
        }
    }
    map
}

/// The outcome a judgement leads to, given how many of its records were new.
fn outcome(judgement: &Judgement, new: usize) -> Finished {
    let (code, detail) = match &judgement.refusal {
        Some((r, n)) => {
            let at = r
                .field
                .as_deref()
                .map(|f| format!(" at {f}"))
                .unwrap_or_default();
            let more = if *n > 1 {
                format!(" ({n} records refused; the first's reason)")
            } else {
                String::new()
            };
            (
                Some(r.code.as_str().to_owned()),
                Some(format!("{}{at}{more}", r.message)),
            )
        }
        None => (None, None),
    };
    let outcome = match (judgement.records.is_empty(), code.is_some(), new) {
        (true, _, _) => Reprocessed::Refused,
        (false, true, _) => Reprocessed::Partial,
        (false, false, 0) => Reprocessed::Duplicate,
        (false, false, _) => Reprocessed::Committed,
    };
    Finished {
        outcome,
        code,
        detail,
        records: judgement.records.iter().map(Record::id).collect(),
    }
}

/// How a run went.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Letters looked at (eligible under the filter).
    pub examined: u64,
    pub committed: u64,
    pub duplicate: u64,
    pub partial: u64,
    pub refused: u64,
    /// Letters another reprocessor held (or finished) first.
    pub held_elsewhere: u64,
    /// Letters of a source no longer configured.
    pub unknown_source: u64,
    /// Records newly stored, and records that were stored already.
    pub records_new: u64,
    pub records_duplicate: u64,
}

impl Report {
    fn count(&mut self, outcome: Reprocessed) {
        match outcome {
            Reprocessed::Committed => self.committed += 1,
            Reprocessed::Duplicate => self.duplicate += 1,
            Reprocessed::Partial => self.partial += 1,
            Reprocessed::Refused => self.refused += 1,
        }
    }
}

/// A reprocessor's name in the leases: host, pid and a random part, after `by` (who runs it).
pub fn claimant(by: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "?".to_owned(), |h| h.trim().to_owned());
    format!("{by}{host}:{}:{}", std::process::id(), uuid::Uuid::new_v4())
}

/// A reprocessing run.
pub struct Reprocess<'a> {
    pub letters: &'a DeadLetters,
    pub sources: &'a HashMap<String, Arc<Source>>,
    /// Where records are committed; `None` for a dry run (nothing is committed or marked).
    pub batcher: Option<&'a Batcher>,
    /// This run's name in the leases (host, pid, a random part).
    pub claimant: String,
    /// How long a letter stays leased to this run if it dies holding it.
    pub lease: Duration,
    /// Try letters that were still refused last time again.
    pub again: bool,
}

impl Reprocess<'_> {
    /// Reprocesses every eligible letter of `filter`, in arrival order (so one call's records
    /// are committed in the order they came); `each` hears what became of each letter.
    pub async fn run(
        &self,
        filter: &Filter,
        mut each: impl FnMut(&Letter, &Finished),
    ) -> anyhow::Result<Report> {
        let filter = Filter {
            pending: true,
            again: self.again,
            ..filter.clone()
        };
        let mut report = Report::default();
        let mut after = None;
        loop {
            let page = self.letters.page(&filter, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.received_at, last.id));
            for letter in &page {
                report.examined += 1;
                let Some(source) = self.sources.get(&letter.source) else {
                    report.unknown_source += 1;
                    continue;
                };
                match self.one(source, letter).await? {
                    Some(finished) => {
                        report.count(finished.outcome);
                        each(letter, &finished);
                    }
                    None => report.held_elsewhere += 1,
                }
            }
        }
        Ok(report)
    }

    /// Reprocesses one letter; `None` when another reprocessor has it.
    async fn one(&self, source: &Source, letter: &Letter) -> anyhow::Result<Option<Finished>> {
        let Some(batcher) = self.batcher else {
            // A dry run cannot ask which records are new without committing them: all count
            // as new.
            let judgement = judge(source, letter);
            let new = judgement.records.len();
            return Ok(Some(outcome(&judgement, new)));
        };
        let now = Utc::now();
        let until =
            now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(5));
        if !self
            .letters
            .claim(letter, &self.claimant, now, until, self.again)
            .await?
        {
            return Ok(None);
        }
        let judgement = judge(source, letter);
        let mut new = 0;
        if !judgement.records.is_empty() {
            let submitted = batcher
                .submit(judgement.records.iter().cloned().map(Row::Record).collect())
                .await
                .map_err(|e| {
                    anyhow::anyhow!("committing the records of dead letter {}: {e}", letter.id)
                })?;
            new = submitted
                .outcomes
                .iter()
                .filter(|o| **o == Outcome::Inserted)
                .count();
        }
        let finished = outcome(&judgement, new);
        if !self
            .letters
            .finish(letter, &self.claimant, Utc::now(), &finished)
            .await?
        {
            // The lease lapsed and another run took the letter: its records are committed
            // (once: they are deduplicated), and that run records the outcome.
            return Ok(None);
        }
        Ok(Some(finished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_bodies_are_the_platforms_envelopes() {
        let fee = one_record_body(Platform::HuaweiVoiceCall, br#" {"sessionId":"s"} "#).unwrap();
        assert_eq!(fee, br#"{"eventType":"fee","feeLst":[{"sessionId":"s"}]}"#);
        let event = one_record_body(Platform::AzureCommunication, br#"{"id":"1"}"#).unwrap();
        assert_eq!(event, br#"[{"id":"1"}]"#);
        assert!(one_record_body(Platform::AzureCommunication, b"{oops").is_none());
    }

    #[test]
    fn kept_headers_become_a_header_map() {
        let kept = serde_json::json!({
            "content-type": "application/json", "webhook-id": "msg_1", "bad name": "x", "n": 1
        });
        let map = header_map(&kept);
        assert_eq!(map.get("webhook-id").unwrap(), "msg_1");
        assert_eq!(map.get(CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn input_kept_while_the_source_was_open_is_not_reprocessed_once_it_authenticates() {
        let config = crate::config::Config::from_toml(
            "[sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\napp_key = \"k\"\n\
             app_secret_env = \"UNUSED\"\n[sources.open]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n",
        )
        .unwrap();
        let status = br#"{"eventType":"answer","statusInfo":{"sessionId":"s","timestamp":"2026-11-24 03:04:31"}}"#;
        let letter = |auth: Option<&str>| Letter {
            id: uuid::Uuid::new_v4(),
            source: "hw".into(),
            received_at: Utc::now(),
            request_id: None,
            scope: "request".into(),
            record_index: None,
            code: "invalid_json".into(),
            detail: String::new(),
            field: None,
            body: Some(status.to_vec()),
            body_bytes: None,
            headers: serde_json::json!({"content-type": "application/json"}),
            reprocessed_at: None,
            reprocess_outcome: None,
            reprocess_code: None,
            reprocess_detail: None,
            reprocess_records: None,
            auth: auth.map(str::to_owned),
        };
        let signed = Source::parser_only("hw", &config.sources["hw"]);
        let open = Source::parser_only("open", &config.sources["open"]);
        let refused = judge(&signed, &letter(Some("none")));
        assert_eq!(refused.refusal.unwrap().0.code, "unauthenticated_letter");
        for (source, auth) in [
            (&signed, Some("aksk")),
            (&signed, None),
            (&open, Some("none")),
        ] {
            let j = judge(source, &letter(auth));
            assert!(j.refusal.is_none(), "{auth:?}: {:?}", j.refusal);
            assert_eq!(j.records.len(), 1);
        }
    }
}
