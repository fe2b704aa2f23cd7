-- Call-quality rollups (README "Analytics"), in the local time of report.timezone.
--
-- Every CDR inserted, and every disconnect event, leaves its id in rollup_queue, in the same
-- statement and so in the same transaction (a statement trigger: one INSERT per batch, whatever
-- path the rows came by: a push, the spool, a replay). ringback folds the queue into the rollup
-- tables every report.rollup_interval and deletes what it folded, in one statement, so each row
-- is counted exactly once; a duplicate is never inserted and so never queued. Rollups can be
-- rebuilt from the raw rows for a range of days (`ringback maintain --rebuild-rollups`).

CREATE TABLE rollup_queue (
    kind         text        NOT NULL CHECK (kind IN ('cdr', 'disconnect')),
    id           uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL   -- the row's partition time, to find it
);

CREATE FUNCTION ringback_queue_cdrs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_queue (kind, id, occurred_at) SELECT 'cdr', id, occurred_at FROM new_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER cdrs_rollup_queue AFTER INSERT ON cdrs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ringback_queue_cdrs();

CREATE FUNCTION ringback_queue_disconnects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_queue (kind, id, occurred_at)
    SELECT 'disconnect', id, occurred_at FROM new_rows
     WHERE event_type = 'disconnect' AND state_code IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER call_events_rollup_queue AFTER INSERT ON call_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ringback_queue_disconnects();

-- Per local hour (and day), source, app key, service type ('' when absent) and direction. Sums
-- and counts only, so that rows add up: ASR, ACD and the averages are in the *_kpis views.
CREATE TABLE cdr_hourly (
    hour              timestamp NOT NULL,   -- local time (report.timezone)
    source            text      NOT NULL,
    app_key           text      NOT NULL,
    service_type      text      NOT NULL,
    direction         smallint  NOT NULL,
    calls             bigint    NOT NULL,
    answered          bigint    NOT NULL,
    talk_seconds      bigint    NOT NULL,
    billable_minutes  bigint    NOT NULL,
    ring_seconds      bigint    NOT NULL,   -- sum over ring_calls
    ring_calls        bigint    NOT NULL,   -- CDRs with a ring time
    pdd_seconds       bigint    NOT NULL,   -- sum over pdd_calls
    pdd_calls         bigint    NOT NULL,   -- CDRs with a post-dial delay
    flagged           bigint    NOT NULL,
    PRIMARY KEY (hour, source, app_key, service_type, direction)
);

CREATE TABLE cdr_daily (LIKE cdr_hourly);
ALTER TABLE cdr_daily DROP COLUMN hour;
ALTER TABLE cdr_daily ADD COLUMN day date NOT NULL;
ALTER TABLE cdr_daily ADD PRIMARY KEY (day, source, app_key, service_type, direction);

-- Per local day, source and number, in each role (caller, callee, bind).
CREATE TABLE cdr_numbers_daily (
    day               date     NOT NULL,
    source            text     NOT NULL,
    role              text     NOT NULL CHECK (role IN ('caller', 'callee', 'bind')),
    number            text     NOT NULL,
    calls             bigint   NOT NULL,
    answered          bigint   NOT NULL,
    talk_seconds      bigint   NOT NULL,
    billable_minutes  bigint   NOT NULL,
    PRIMARY KEY (day, source, role, number)
);
CREATE INDEX cdr_numbers_daily_number_idx ON cdr_numbers_daily (number, day);

-- Per local day, source and hang-up cause: the disconnect event's state code, the CDR's
-- release point (ulFailReason) and Q.850 cause (fwdUnaswRsn, else callOutUnaswRsn).
CREATE TABLE hangup_causes_daily (
    day     date    NOT NULL,
    source  text    NOT NULL,
    kind    text    NOT NULL CHECK (kind IN ('state_code', 'release_point', 'q850')),
    code    integer NOT NULL,
    calls   bigint  NOT NULL,
    PRIMARY KEY (day, source, kind, code)
);

CREATE VIEW cdr_hourly_kpis AS
SELECT h.*,
       round(answered::numeric / nullif(calls, 0), 4)          AS asr,
       round(talk_seconds::numeric / nullif(answered, 0), 1)   AS acd_seconds,
       round(ring_seconds::numeric / nullif(ring_calls, 0), 1) AS avg_ring_seconds,
       round(pdd_seconds::numeric / nullif(pdd_calls, 0), 1)   AS avg_pdd_seconds
  FROM cdr_hourly h;

CREATE VIEW cdr_daily_kpis AS
SELECT d.*,
       round(answered::numeric / nullif(calls, 0), 4)          AS asr,
       round(talk_seconds::numeric / nullif(answered, 0), 1)   AS acd_seconds,
       round(ring_seconds::numeric / nullif(ring_calls, 0), 1) AS avg_ring_seconds,
       round(pdd_seconds::numeric / nullif(pdd_calls, 0), 1)   AS avg_pdd_seconds
  FROM cdr_daily d;

CREATE VIEW hangup_causes_daily_explained AS
SELECT h.*,
       CASE h.kind
         WHEN 'state_code' THEN (SELECT s.meaning FROM huawei_state_codes s WHERE s.code = h.code)
         WHEN 'release_point' THEN (SELECT r.meaning FROM huawei_release_points r
                                     WHERE h.code BETWEEN r.code_from AND r.code_to
                                     ORDER BY r.code_to - r.code_from LIMIT 1)
         ELSE (SELECT q.meaning FROM q850_causes q WHERE q.code = h.code)
       END AS meaning
  FROM hangup_causes_daily h;
