-- The time a CDR is stored under (its end, else its start, else 1970-01-01: see the PostgreSQL
-- migration 0010, where it is the partition column) and its post-dial delay. SQLite is not
-- partitioned: retention deletes by this time in batches.
ALTER TABLE cdrs ADD COLUMN occurred_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00+00:00';
UPDATE cdrs SET occurred_at = coalesce(ended_at, started_at, '1970-01-01T00:00:00+00:00');
ALTER TABLE cdrs ADD COLUMN pdd_seconds INTEGER;
CREATE INDEX cdrs_occurred_at_idx ON cdrs (occurred_at);
