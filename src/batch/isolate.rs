//! A batch the database refused for good is taken apart so that its culprit fails alone.
//!
//! A permanent refusal (PostgreSQL SQLSTATE classes 22 and 23: a NUL character in an SMS text,
//! a value out of a column's range) is about one record, but it fails the whole transaction,
//! which holds other senders' records. So each submission (one request, or one spooled entry)
//! is committed alone; one the database still refuses is committed record by record, and each
//! record it refuses alone is replaced by a record-scope dead letter holding its JSON as sent
//! (code `unstorable_record`, the database's reason as detail) and answered
//! [`Outcome::Refused`]. Everything else commits as if the culprit had never been there. The
//! live path, the spool drain and `dead-letters reprocess` (which commits through the batcher)
//! all go through here, so a poisoned record is treated the same whichever way it arrives.
//!
//! Cost: nothing until a commit is refused; then one commit per submission of the batch, and
//! one per record of the refused submission. A flood of poisoned requests slows batches to
//! single commits; it cannot fail another sender's request.

use uuid::Uuid;

use super::worker::outbox_entries;
use super::Worker;
use crate::domain::{DeadLetter, DeadLetterScope, Outcome, Record, UNSTORABLE};
use crate::error::error_chain;
use crate::store::StoreError;

impl Worker {
    /// Commits one submission's `records` on their own, after their batch was refused for
    /// good: whole if the database takes them, else record by record with the refused ones
    /// kept as dead letters. Errors are transient ones (the database went away meanwhile), or
    /// a permanent one when not even a refused record's dead letter could be stored (the
    /// schema itself is broken): then nothing is answered as kept that is not.
    pub(super) async fn commit_alone(
        &self,
        records: &[Record],
    ) -> Result<Vec<Outcome>, StoreError> {
        let entries = outbox_entries(records);
        match self.store.commit(records, &entries).await {
            Ok(outcomes) => {
                self.hand_off(records, &outcomes, entries);
                Ok(outcomes)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), records = records.len(), "the database refused a submission; committing its records one by one");
                self.commit_each(records).await
            }
        }
    }

    /// Commits each record alone (a nonce first, so the records it guards are only stored
    /// when its claim holds), keeping each one the database refuses as a dead letter.
    async fn commit_each(&self, records: &[Record]) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut guarded_by_taken_nonce = 0u32;
        for record in records {
            if guarded_by_taken_nonce > 0 {
                guarded_by_taken_nonce -= 1;
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            if let Record::Nonce(n) = record {
                // Claimed on its own: it guards nothing in this commit.
                let alone = Record::Nonce(Box::new(crate::domain::Nonce {
                    guards: 0,
                    ..(**n).clone()
                }));
                let outcome = self.store.commit(&[alone], &[]).await?[0];
                if outcome == Outcome::Duplicate {
                    guarded_by_taken_nonce = n.guards;
                }
                outcomes.push(outcome);
                continue;
            }
            let one = std::slice::from_ref(record);
            let entries = outbox_entries(one);
            match self.store.commit(one, &entries).await {
                Ok(outcome) => {
                    self.hand_off(one, &outcome, entries);
                    outcomes.push(outcome[0]);
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    self.keep_refused(record, &e).await?;
                    outcomes.push(Outcome::Refused);
                }
            }
        }
        Ok(outcomes)
    }

    /// Keeps a record the database refused as a record-scope dead letter with its JSON as
    /// sent, and counts it.
    async fn keep_refused(&self, record: &Record, refusal: &StoreError) -> Result<(), StoreError> {
        let reason = error_chain(refusal);
        let source = record.source().clone();
        let kind = record.kind().map_or("other", |k| k.as_str());
        self.metrics.record_unstorable(&source, kind, &reason);
        if matches!(record, Record::DeadLetter(_) | Record::Handshake(_)) {
            // A dead letter the database refuses cannot be kept as another one.
            return Err(StoreError::Unstorable(format!(
                "a dead letter or handshake of source {source} was refused: {reason}"
            )));
        }
        let letter = Record::DeadLetter(Box::new(DeadLetter {
            id: Uuid::new_v4(),
            source,
            received_at: record.received_at().unwrap_or_else(chrono::Utc::now),
            request_id: None,
            scope: DeadLetterScope::Record,
            record_index: None,
            code: UNSTORABLE,
            detail: format!("the database refused the record: {reason}"),
            field: None,
            body: record.raw_bytes(),
            headers: serde_json::Value::Object(Default::default()),
            // The record was parsed from input its request authenticated.
            auth: None,
        }));
        self.store
            .commit(std::slice::from_ref(&letter), &[])
            .await?;
        self.metrics.dead_letter_kept(record.source(), UNSTORABLE);
        Ok(())
    }
}
