-- Every record in the outbox with its state, one line each, as PostgreSQL's view of the same
-- name gives it (where a commit's CDRs and call events share one row): here every record has
-- a row of its own.
CREATE VIEW outbox_records AS
SELECT seq, 0 AS ord, id, kind, key, source, created_at, attempts, leased_until, published_at,
       failed_at, last_error, id AS row_id
  FROM outbox;
