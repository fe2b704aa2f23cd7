//! The outbox rows that hold several records: PostgreSQL keeps a commit's CDRs and call events
//! in one row (see [`crate::store::Store::commit_rows`]). Which row each record in flight
//! belongs to, and how many of each row's records are still unsettled: a row is marked
//! published once the last of them is, and given back when one of them must be sent again,
//! trimmed of those already delivered (so a catch-up sends only the others again).

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::{commit_row_id, OutboxEntry};
use crate::store::stored_without_payload;

#[derive(Debug, Default)]
pub(super) struct Commits {
    /// Each tracked record's row.
    row_of: HashMap<Uuid, Uuid>,
    /// Each tracked row's records not settled yet.
    open: HashMap<Uuid, usize>,
    /// Each tracked row's records delivered so far.
    delivered: HashMap<Uuid, Vec<Uuid>>,
    /// Rows given back with some of their records delivered: to trim before they are claimed
    /// again ([`crate::store::Store::trim_commit_row`]).
    trims: Vec<(Uuid, Vec<Uuid>)>,
}

impl Commits {
    /// Tracks the records of a commit's row.
    pub fn track(&mut self, row: Uuid, records: impl IntoIterator<Item = Uuid>) {
        for record in records {
            if self.row_of.insert(record, row).is_none() {
                *self.open.entry(row).or_default() += 1;
            }
        }
    }

    /// Tracks the commit's row of a hand-off's entries: its hot-path records, named after the
    /// first of them (they are exactly the records the commit inserted, in commit order).
    pub fn track_hand_off(&mut self, entries: &[OutboxEntry]) {
        let mut hot = entries
            .iter()
            .filter(|e| stored_without_payload(e.kind))
            .map(|e| e.id)
            .peekable();
        if let Some(first) = hot.peek().copied() {
            self.track(commit_row_id(first), hot);
        }
    }

    /// The outbox row holding `record`: its commit's while tracked, else its own.
    pub fn row(&self, record: Uuid) -> Uuid {
        self.row_of.get(&record).copied().unwrap_or(record)
    }

    /// Whether `row` is a commit's row with records still in flight.
    pub fn is_open(&self, row: Uuid) -> bool {
        self.open.contains_key(&row)
    }

    /// `record` is settled, `delivered` or failed for good: returns the commit's row when it
    /// was the last of that row's records, `None` while others are unsettled, and `record`
    /// itself when it has a row of its own.
    pub fn settled(&mut self, record: Uuid, delivered: bool) -> Option<Uuid> {
        let Some(row) = self.row_of.remove(&record) else {
            return Some(record);
        };
        let open = self.open.get_mut(&row).expect("a tracked row is open");
        *open -= 1;
        if *open > 0 {
            if delivered {
                self.delivered.entry(row).or_default().push(record);
            }
            return None;
        }
        self.open.remove(&row);
        self.delivered.remove(&row);
        Some(row)
    }

    /// `record` must be sent again: returns its row, which is given back (trimmed of its
    /// records delivered so far, see [`Self::take_trims`]); its other records are no longer
    /// tracked (their reports, if they come, settle nothing).
    pub fn abandon(&mut self, record: Uuid) -> Uuid {
        let row = self.row(record);
        if self.open.remove(&row).is_some() {
            self.row_of.retain(|_, r| *r != row);
            if let Some(delivered) = self.delivered.remove(&row) {
                self.trims.push((row, delivered));
            }
        }
        row
    }

    /// The rows given back with some of their records delivered, and those records.
    pub fn take_trims(&mut self) -> Vec<(Uuid, Vec<Uuid>)> {
        std::mem::take(&mut self.trims)
    }

    /// Puts back trims that could not be made (tried again at the next flush).
    pub fn keep_trims(&mut self, trims: Vec<(Uuid, Vec<Uuid>)>) {
        self.trims.extend(trims);
    }

    /// Records tracked (a bound on what is in flight; for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.row_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn a_commit_s_row_is_settled_by_its_last_record() {
        let mut commits = Commits::default();
        let row = Uuid::from_u128(100);
        commits.track(row, ids(3));
        assert_eq!(commits.row(Uuid::from_u128(2)), row);
        assert!(commits.is_open(row));
        assert_eq!(commits.settled(Uuid::from_u128(3), true), None);
        assert_eq!(commits.settled(Uuid::from_u128(1), false), None);
        assert_eq!(commits.settled(Uuid::from_u128(2), true), Some(row));
        assert!(!commits.is_open(row));
        assert_eq!(commits.len(), 0);
        // A record of its own row settles that row.
        let own = Uuid::from_u128(7);
        assert_eq!(commits.row(own), own);
        assert_eq!(commits.settled(own, true), Some(own));
        assert!(commits.take_trims().is_empty());
    }

    #[test]
    fn an_abandoned_row_forgets_its_records() {
        let mut commits = Commits::default();
        let (a, b) = (Uuid::from_u128(100), Uuid::from_u128(200));
        commits.track(a, ids(3));
        commits.track(b, (4..=5).map(Uuid::from_u128));
        assert_eq!(commits.settled(Uuid::from_u128(1), true), None);
        assert_eq!(commits.abandon(Uuid::from_u128(2)), a);
        assert!(!commits.is_open(a));
        // Given back trimmed of the record delivered before.
        assert_eq!(commits.take_trims(), [(a, vec![Uuid::from_u128(1)])]);
        // The abandoned row's last report marks nothing of it: only its record's id, which
        // names no row.
        assert_eq!(
            commits.settled(Uuid::from_u128(3), true),
            Some(Uuid::from_u128(3))
        );
        // The other row is untouched.
        assert_eq!(commits.settled(Uuid::from_u128(4), true), None);
        assert_eq!(commits.settled(Uuid::from_u128(5), true), Some(b));
        assert_eq!(commits.len(), 0);
        assert!(commits.take_trims().is_empty());
    }
}
