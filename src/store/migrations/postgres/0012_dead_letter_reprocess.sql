-- `ringback dead-letters reprocess`: what became of a dead letter run again through a later
-- parser, and the lease that keeps two reprocessors (two machines) off the same letter.
ALTER TABLE dead_letters
    ADD COLUMN reprocess_claimed_by    text,        -- the reprocessor holding it (host:pid:uuid)
    ADD COLUMN reprocess_claimed_until timestamptz, -- until when; a crashed run's lease lapses
    ADD COLUMN reprocessed_at          timestamptz, -- NULL: never reprocessed to an end
    ADD COLUMN reprocess_outcome       text
        CHECK (reprocess_outcome IN ('committed', 'duplicate', 'partial', 'refused')),
    ADD COLUMN reprocess_code          text,        -- why it is still (partly) refused
    ADD COLUMN reprocess_detail        text,
    ADD COLUMN reprocess_records       jsonb;       -- ids of the records it became, in order

COMMENT ON COLUMN dead_letters.reprocess_outcome IS
    'committed: now parses, records stored; duplicate: now parses, every record was stored already; '
    'partial: some records stored, the others still refused (reprocess_code); refused: still refused';
