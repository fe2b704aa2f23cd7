-- How the source authenticated when the input arrived: `dead-letters reprocess` does not
-- authenticate again, so it refuses input kept while a source was open (`none`) once the source
-- authenticates. NULL: kept before this column, or the batcher's own refusal.
ALTER TABLE dead_letters ADD COLUMN auth text;
