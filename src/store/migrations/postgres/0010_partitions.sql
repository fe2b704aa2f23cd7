-- Monthly partitions (README "Analytics"). Every record table is partitioned by a time taken from
-- the record itself, so that a platform's retry (same body, same time) lands in the partition
-- of its first copy and is still a duplicate there; dead letters and handshakes, which are never
-- deduplicated, by when they were received. The partition column joins the primary key, as
-- PostgreSQL requires. The old UNIQUE (source, dedupe_key) is gone: the id is the UUIDv5 of the
-- source, the kind and the dedupe key, so (id, time) is the same constraint, with one index
-- less to write per row. Rows whose time falls in no monthly partition go to <table>_default
-- (ringback_partition_default_rows shows how many).
--
-- Partitions are monthly, in UTC, named <table>_pYYYY_MM; ringback creates them ahead
-- (ringback_create_partitions, at start and hourly) and drops expired ones (retention.*).

DROP VIEW cdr_daily;
DROP VIEW cdrs_explained;
DROP VIEW call_events_explained;

-- A CDR's time: its end, else its start, else none (1970-01-01, the default partition, flagged
-- no_time). Kafka's ce_time still falls back to when it was received.
ALTER TABLE cdrs ADD COLUMN occurred_at timestamptz;
UPDATE cdrs SET occurred_at = coalesce(ended_at, started_at, timestamptz '1970-01-01 00:00:00+00');
ALTER TABLE cdrs ALTER COLUMN occurred_at SET NOT NULL;
-- Post-dial delay of the billed leg: its alerting time less its start (for the rollups).
ALTER TABLE cdrs ADD COLUMN pdd_seconds integer;
UPDATE cdrs SET pdd_seconds = CASE
    WHEN service_type = '002' OR fwd_start_time IS NOT NULL OR fwd_alerting_time IS NOT NULL
         OR fwd_answer_time IS NOT NULL
    THEN CASE WHEN fwd_alerting_time >= fwd_start_time
              THEN extract(epoch FROM fwd_alerting_time - fwd_start_time)::integer END
    ELSE CASE WHEN call_out_alerting_time >= call_out_start_time
              THEN extract(epoch FROM call_out_alerting_time - call_out_start_time)::integer END
    END;

-- Creates the monthly partitions of `parent` from the month of `first_at` to the month of
-- `last_at` that do not exist yet; returns how many it created. Safe to run from several
-- replicas at once (one at a time, under an advisory lock). Fails, creating nothing, if the
-- default partition holds rows of a month to create (they would have to be moved first).
CREATE FUNCTION ringback_create_partitions(parent text, first_at timestamptz, last_at timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m       timestamp := date_trunc('month', first_at AT TIME ZONE 'UTC');
    made    integer := 0;
    name    text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ringback.partitions'));
    WHILE m <= (last_at AT TIME ZONE 'UTC') LOOP
        name := format('%s_p%s', parent, to_char(m, 'YYYY_MM'));
        IF to_regclass(quote_ident(name)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                name, parent,
                (m AT TIME ZONE 'UTC'),
                ((m + interval '1 month') AT TIME ZONE 'UTC'));
            made := made + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN made;
END
$$;

-- Turns `tbl` into a table partitioned by `col`, with the partitions its rows need (times from
-- 2000 to a year ahead; others go to the default partition) and its rows copied over.
CREATE FUNCTION pg_temp.partition_table(tbl text, col text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old text := tbl || '_unpartitioned';
    lo  timestamptz;
    hi  timestamptz;
BEGIN
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) '
                   'PARTITION BY RANGE (%I)', tbl, old, col);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    EXECUTE format('SELECT min(%1$I), max(%1$I) FROM %2$I '
                   'WHERE %1$I >= timestamptz ''2000-01-01 00:00:00+00'' AND %1$I < now() + interval ''1 year''',
                   col, old) INTO lo, hi;
    PERFORM ringback_create_partitions(tbl, least(coalesce(lo, now()), now() - interval '1 month'),
                                       greatest(coalesce(hi, now()), now() + interval '3 months'));
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', tbl, old);
    EXECUTE format('DROP TABLE %I', old);
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id, %I)', tbl, col);
END
$$;

SELECT pg_temp.partition_table('cdrs', 'occurred_at');
SELECT pg_temp.partition_table('call_events', 'occurred_at');
SELECT pg_temp.partition_table('phone_number_events', 'occurred_at');
SELECT pg_temp.partition_table('acs_call_events', 'occurred_at');
SELECT pg_temp.partition_table('chat_events', 'occurred_at');
SELECT pg_temp.partition_table('webhook_events', 'occurred_at');
SELECT pg_temp.partition_table('dead_letters', 'received_at');
SELECT pg_temp.partition_table('handshakes', 'received_at');

-- Indexes (each partition gets its own). Times that grow with arrival are BRIN: a few pages
-- instead of a B-tree per row. Number lookups are bounded by the partition column.
CREATE INDEX cdrs_occurred_at_idx ON cdrs USING brin (occurred_at);
CREATE INDEX cdrs_started_at_idx ON cdrs USING brin (started_at);
CREATE INDEX cdrs_session_idx ON cdrs (session_id);
CREATE INDEX cdrs_icid_idx ON cdrs (icid);
CREATE INDEX cdrs_caller_idx ON cdrs (caller_num, occurred_at);
CREATE INDEX cdrs_callee_idx ON cdrs (callee_num, occurred_at);
CREATE INDEX cdrs_bind_num_idx ON cdrs (bind_num, occurred_at);
CREATE INDEX cdrs_received_id_idx ON cdrs (received_at, id);

CREATE INDEX call_events_occurred_at_idx ON call_events USING brin (occurred_at);
CREATE INDEX call_events_session_idx ON call_events (session_id);
CREATE INDEX call_events_caller_idx ON call_events (caller, occurred_at);
CREATE INDEX call_events_called_idx ON call_events (called, occurred_at);
CREATE INDEX call_events_received_id_idx ON call_events (received_at, id);

CREATE INDEX phone_number_events_number_idx ON phone_number_events (phone_number, occurred_at);
CREATE INDEX phone_number_events_occurred_at_idx ON phone_number_events USING brin (occurred_at);
CREATE INDEX phone_number_events_message_idx ON phone_number_events (message_id);
CREATE INDEX phone_number_events_received_id_idx ON phone_number_events (received_at, id);

CREATE INDEX acs_call_events_server_call_idx ON acs_call_events (server_call_id, occurred_at);
CREATE INDEX acs_call_events_connection_idx ON acs_call_events (call_connection_id, occurred_at);
CREATE INDEX acs_call_events_correlation_idx ON acs_call_events (correlation_id);
CREATE INDEX acs_call_events_occurred_at_idx ON acs_call_events USING brin (occurred_at);
CREATE INDEX acs_call_events_received_id_idx ON acs_call_events (received_at, id);

CREATE INDEX chat_events_thread_idx ON chat_events (thread_id, occurred_at);
CREATE INDEX chat_events_occurred_at_idx ON chat_events USING brin (occurred_at);
CREATE INDEX chat_events_received_id_idx ON chat_events (received_at, id);

CREATE INDEX webhook_events_type_idx ON webhook_events (event_type, occurred_at);
CREATE INDEX webhook_events_received_id_idx ON webhook_events (received_at, id);

CREATE INDEX dead_letters_received_at_idx ON dead_letters USING brin (received_at);
CREATE INDEX dead_letters_source_code_idx ON dead_letters (source, code, received_at);

CREATE INDEX handshakes_source_idx ON handshakes (source, received_at);

-- The views, as before (cdr_daily is now a rollup table: 0011).
CREATE VIEW cdrs_explained AS
SELECT c.*,
       (SELECT r.meaning FROM huawei_release_points r
         WHERE c.ul_fail_reason BETWEEN r.code_from AND r.code_to
         ORDER BY r.code_to - r.code_from LIMIT 1)              AS ul_fail_reason_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.fwd_unasw_rsn)      AS fwd_unasw_rsn_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.call_out_unasw_rsn) AS call_out_unasw_rsn_meaning
  FROM cdrs c;

CREATE VIEW call_events_explained AS
SELECT e.*, s.meaning AS state_meaning
  FROM call_events e LEFT JOIN huawei_state_codes s ON s.code = e.state_code;
