-- Which process committed an outbox entry (see the PostgreSQL migration 0009).
ALTER TABLE outbox ADD COLUMN owner TEXT;
