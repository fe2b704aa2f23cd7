-- CDRs and call events no longer write their message value into the outbox: it is a function
-- of the JSON kept in their own row (`raw`), rebuilt from it when the publisher catches up
-- from the outbox (the fast path publishes the value it holds in memory). NULL = rebuild.
-- Entries of the other kinds, and entries written before this migration, keep theirs.
ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL;
COMMENT ON COLUMN outbox.payload IS
    'message value (JSON, ringback.record.v1); NULL for cdr and call-status entries, whose value is rebuilt from the record''s raw JSON';
