-- `ringback dead-letters reprocess`: see the PostgreSQL migration 0012.
ALTER TABLE dead_letters ADD COLUMN reprocess_claimed_by TEXT;
ALTER TABLE dead_letters ADD COLUMN reprocess_claimed_until TEXT;
ALTER TABLE dead_letters ADD COLUMN reprocessed_at TEXT;
ALTER TABLE dead_letters ADD COLUMN reprocess_outcome TEXT
    CHECK (reprocess_outcome IN ('committed', 'duplicate', 'partial', 'refused'));
ALTER TABLE dead_letters ADD COLUMN reprocess_code TEXT;
ALTER TABLE dead_letters ADD COLUMN reprocess_detail TEXT;
ALTER TABLE dead_letters ADD COLUMN reprocess_records TEXT CHECK (json_valid(reprocess_records));
