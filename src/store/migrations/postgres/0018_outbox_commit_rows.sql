-- One outbox row per commit for the hot path's records (CDRs and call events): the ids of the
-- records the commit inserted, in commit order, instead of a row per record (inserted, then
-- deleted once published, with three index entries each). Its id is a function of its first
-- record's id (`domain::commit_row_id`), kind 'commit', and no key, source or time of its own:
-- the records hold those. The other kinds keep a row each, and so does a record of a commit
-- that can never be published (a failed row of its own, with the reason). Rows written before
-- this migration are published as before.
ALTER TABLE outbox ADD COLUMN ids uuid[];
ALTER TABLE outbox ALTER COLUMN key DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN source DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN occurred_at DROP NOT NULL;
ALTER TABLE outbox ADD CONSTRAINT outbox_commit_or_record CHECK (
    (ids IS NOT NULL AND kind = 'commit')
    OR (ids IS NULL AND kind <> 'commit' AND key IS NOT NULL AND source IS NOT NULL
        AND occurred_at IS NOT NULL)
);
COMMENT ON COLUMN outbox.ids IS
    'a commit''s row (kind ''commit''): the ids of its CDRs and call events, in commit order; NULL for a record''s own row';

-- Every unpublished record with its outbox state, one line per record whatever row holds it:
-- for operators and tests (`SELECT * FROM outbox_records WHERE published_at IS NULL`).
CREATE VIEW outbox_records AS
SELECT o.seq, 0::bigint AS ord, o.id, o.kind, o.key, o.source, o.created_at, o.attempts,
       o.leased_until, o.published_at, o.failed_at, o.last_error, o.id AS row_id
  FROM outbox o WHERE o.ids IS NULL
UNION ALL
SELECT o.seq, m.ord, m.id, r.kind, r.key, r.source, o.created_at, o.attempts,
       o.leased_until, o.published_at, o.failed_at, o.last_error, o.id
  FROM outbox o
 CROSS JOIN LATERAL unnest(o.ids) WITH ORDINALITY AS m(id, ord)
  LEFT JOIN LATERAL (
        SELECT 'cdr' AS kind, c.session_id AS key, c.source FROM cdrs c WHERE c.id = m.id
        UNION ALL
        SELECT 'call-status', e.session_id, e.source FROM call_events e WHERE e.id = m.id
        LIMIT 1) r ON true
 WHERE o.ids IS NOT NULL;
COMMENT ON VIEW outbox_records IS
    'one line per record waiting in the outbox (or kept after publishing), whether in a row of its own or in its commit''s (row_id)';
