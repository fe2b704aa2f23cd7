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
use crate::domain::{DeadLetter, DeadLetterScope, Nonce, Outcome, Row, UNSTORABLE};
use crate::error::error_chain;
use crate::store::StoreError;

impl Worker {
    /// Commits one submission's `rows` on their own, after their batch was refused for good:
    /// whole if the database takes them, else row by row with the refused records kept as
    /// dead letters. Errors are transient ones (the database went away meanwhile), or
    /// a permanent one when not even a refused record's dead letter could be stored (the
    /// schema itself is broken): then nothing is answered as kept that is not.
    pub(super) async fn commit_alone(&self, rows: &[Row]) -> Result<Vec<Outcome>, StoreError> {
        let entries = outbox_entries(rows);
        match self.store.commit(rows, &entries).await {
            Ok(outcomes) => {
                self.hand_off(rows, &outcomes, entries);
                Ok(outcomes)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), rows = rows.len(), "the database refused a submission; committing its rows one by one");
                self.commit_each(rows).await
            }
        }
    }

    /// Commits each row alone (a nonce first, so the rows it guards are only stored when its
    /// claim holds), keeping each record the database refuses as a dead letter.
    async fn commit_each(&self, rows: &[Row]) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut guarded_by_taken_nonce = 0u32;
        for row in rows {
            if guarded_by_taken_nonce > 0 {
                guarded_by_taken_nonce -= 1;
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            if let Row::Nonce(n) = row {
                // Claimed on its own: it guards nothing in this commit.
                let alone = Row::Nonce(Box::new(Nonce {
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
            let one = std::slice::from_ref(row);
            let entries = outbox_entries(one);
            match self.store.commit(one, &entries).await {
                Ok(outcome) => {
                    self.hand_off(one, &outcome, entries);
                    outcomes.push(outcome[0]);
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    self.keep_refused(row, &e).await?;
                    outcomes.push(Outcome::Refused);
                }
            }
        }
        Ok(outcomes)
    }

    /// Keeps a record the database refused as a record-scope dead letter with its JSON as
    /// sent, and counts it.
    async fn keep_refused(&self, row: &Row, refusal: &StoreError) -> Result<(), StoreError> {
        let reason = error_chain(refusal);
        let source = row.source().clone();
        let kind = row.kind().map_or("other", |k| k.as_str());
        self.metrics.record_unstorable(&source, kind, &reason);
        let Row::Record(record) = row else {
            // A dead letter the database refuses cannot be kept as another one.
            return Err(StoreError::Unstorable(format!(
                "a dead letter or handshake of source {source} was refused: {reason}"
            )));
        };
        let letter = Row::DeadLetter(Box::new(DeadLetter {
            id: Uuid::new_v4(),
            source,
            received_at: record.received_at(),
            request_id: None,
            scope: DeadLetterScope::Record,
            record_index: None,
            code: UNSTORABLE,
            detail: format!("the database refused the record: {reason}"),
            field: None,
            body: Some(record.raw().as_bytes().to_vec()),
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
