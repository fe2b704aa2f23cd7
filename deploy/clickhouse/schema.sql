-- ringback's records in ClickHouse, for years of CDRs at scale (docs/analytics.md).
--
-- Fed from ringback's Kafka topics (kafka.sql: Kafka engine tables and the views that move
-- their messages into *_messages). From there each message is parsed (*_incoming), kept only
-- if its id was not stored in the last two days (*_fresh: Kafka delivers at least once, and a
-- redelivered message must not be counted twice in the rollups), then stored
-- (ReplacingMergeTree by id, which also absorbs a redelivery older than that) and added to the
-- rollups (SummingMergeTree: read them with sum() ... GROUP BY, or the *_kpis views).
--
-- Times: rows are partitioned by month on the record's own time, as in PostgreSQL; the
-- rollups' hours and days are those of report.timezone: replace 'UTC' below (every
-- occurrence of  'UTC' /* report.timezone */ ) with ringback's report.timezone.
--
-- Apply: clickhouse-client --multiquery < schema.sql, then kafka.sql.

CREATE DATABASE IF NOT EXISTS ringback;

-- CDRs (topic ringback.cdr) ------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS ringback.cdr_messages (message String) ENGINE = Null;

CREATE TABLE IF NOT EXISTS ringback.cdr_incoming
(
    id                 UUID,
    source             LowCardinality(String),
    occurred_at        DateTime64(3, 'UTC'),  -- end, else start, else 1970 (cdrs.occurred_at)
    received_at        DateTime64(3, 'UTC'),
    session_id         String,
    icid               Nullable(String),
    direction          Int16,
    app_key            LowCardinality(String),
    service_type       LowCardinality(String), -- '' when absent
    bind_num           String,
    caller_num         String,
    callee_num         String,
    answered           UInt8,
    talk_seconds       Nullable(Int32),
    billable_minutes   Nullable(Int32),
    ring_seconds       Nullable(Int32),
    pdd_seconds        Nullable(Int32),
    ul_fail_reason     Nullable(Int32),
    q850               Nullable(Int32),        -- fwd_unasw_rsn, else call_out_unasw_rsn
    flags              Array(LowCardinality(String)),
    message            String                   -- the whole value, as published
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_parse_mv TO ringback.cdr_incoming AS
SELECT
    toUUID(JSONExtractString(message, 'id'))                                   AS id,
    JSONExtractString(message, 'source')                                       AS source,
    coalesce(parseDateTime64BestEffortOrNull(JSONExtractString(message, 'data', 'ended_at'), 3, 'UTC'),
             parseDateTime64BestEffortOrNull(JSONExtractString(message, 'data', 'started_at'), 3, 'UTC'),
             toDateTime64(0, 3, 'UTC'))                                        AS occurred_at,
    parseDateTime64BestEffort(JSONExtractString(message, 'received_at'), 3, 'UTC') AS received_at,
    JSONExtractString(message, 'data', 'session_id')                           AS session_id,
    JSONExtract(message, 'data', 'icid', 'Nullable(String)')                   AS icid,
    JSONExtractInt(message, 'data', 'direction')                               AS direction,
    JSONExtractString(message, 'data', 'app_key')                              AS app_key,
    JSONExtractString(message, 'data', 'service_type')                         AS service_type,
    JSONExtractString(message, 'data', 'bind_num')                             AS bind_num,
    JSONExtractString(message, 'data', 'caller_num')                           AS caller_num,
    JSONExtractString(message, 'data', 'callee_num')                           AS callee_num,
    JSONExtractBool(message, 'data', 'answered')                               AS answered,
    JSONExtract(message, 'data', 'talk_seconds', 'Nullable(Int32)')            AS talk_seconds,
    JSONExtract(message, 'data', 'billable_minutes', 'Nullable(Int32)')        AS billable_minutes,
    JSONExtract(message, 'data', 'ring_seconds', 'Nullable(Int32)')            AS ring_seconds,
    JSONExtract(message, 'data', 'pdd_seconds', 'Nullable(Int32)')             AS pdd_seconds,
    JSONExtract(message, 'data', 'ul_fail_reason', 'Nullable(Int32)')          AS ul_fail_reason,
    coalesce(JSONExtract(message, 'data', 'fwd_unasw_rsn', 'Nullable(Int32)'),
             JSONExtract(message, 'data', 'call_out_unasw_rsn', 'Nullable(Int32)')) AS q850,
    JSONExtract(message, 'data', 'flags', 'Array(String)')                     AS flags,
    message
FROM ringback.cdr_messages
WHERE JSONExtractString(message, 'kind') = 'cdr';

CREATE TABLE IF NOT EXISTS ringback.cdrs
(
    id                 UUID,
    source             LowCardinality(String),
    occurred_at        DateTime64(3, 'UTC'),
    received_at        DateTime64(3, 'UTC'),
    session_id         String,
    icid               Nullable(String),
    direction          Int16,
    app_key            LowCardinality(String),
    service_type       LowCardinality(String),
    bind_num           String,
    caller_num         String,
    callee_num         String,
    answered           UInt8,
    talk_seconds       Nullable(Int32),
    billable_minutes   Nullable(Int32),
    ring_seconds       Nullable(Int32),
    pdd_seconds        Nullable(Int32),
    ul_fail_reason     Nullable(Int32),
    q850               Nullable(Int32),
    flags              Array(LowCardinality(String)),
    message            String CODEC(ZSTD(3)),
    ingested_at        DateTime DEFAULT now(),
    INDEX ingested_at_idx ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY id
TTL toDateTime(occurred_at) + INTERVAL 400 DAY DELETE;

CREATE TABLE IF NOT EXISTS ringback.cdr_fresh AS ringback.cdr_incoming ENGINE = Null;

-- A message whose id was stored in the last two days is a redelivery: it goes no further.
CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_fresh_mv TO ringback.cdr_fresh AS
SELECT * FROM ringback.cdr_incoming
WHERE id NOT IN (SELECT id FROM ringback.cdrs WHERE ingested_at >= now() - INTERVAL 2 DAY)
LIMIT 1 BY id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_store_mv TO ringback.cdrs AS
SELECT * FROM ringback.cdr_fresh;

-- Rollups ------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS ringback.cdr_hourly
(
    hour              DateTime('UTC' /* report.timezone */),
    source            LowCardinality(String),
    app_key           LowCardinality(String),
    service_type      LowCardinality(String),
    direction         Int16,
    calls             UInt64,
    answered          UInt64,
    talk_seconds      Int64,
    billable_minutes  Int64,
    ring_seconds      Int64,
    ring_calls        UInt64,
    pdd_seconds       Int64,
    pdd_calls         UInt64,
    flagged           UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, source, app_key, service_type, direction)
TTL hour + INTERVAL 5 YEAR DELETE;

CREATE TABLE IF NOT EXISTS ringback.cdr_daily
(
    day               Date,
    source            LowCardinality(String),
    app_key           LowCardinality(String),
    service_type      LowCardinality(String),
    direction         Int16,
    calls             UInt64,
    answered          UInt64,
    talk_seconds      Int64,
    billable_minutes  Int64,
    ring_seconds      Int64,
    ring_calls        UInt64,
    pdd_seconds       Int64,
    pdd_calls         UInt64,
    flagged           UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, source, app_key, service_type, direction)
TTL day + INTERVAL 10 YEAR DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_hourly_mv TO ringback.cdr_hourly AS
SELECT toStartOfHour(toTimeZone(occurred_at, 'UTC' /* report.timezone */)) AS hour,
       source, app_key, service_type, direction,
       count() AS calls, countIf(f.answered = 1) AS answered,
       sum(coalesce(f.talk_seconds, 0)) AS talk_seconds,
       sum(coalesce(f.billable_minutes, 0)) AS billable_minutes,
       sum(coalesce(f.ring_seconds, 0)) AS ring_seconds, count(f.ring_seconds) AS ring_calls,
       sum(coalesce(f.pdd_seconds, 0)) AS pdd_seconds, count(f.pdd_seconds) AS pdd_calls,
       countIf(length(flags) > 0) AS flagged
FROM ringback.cdr_fresh AS f
GROUP BY hour, source, app_key, service_type, direction;

-- Days add up their hours (the hours are report.timezone's, so are their dates).
CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_daily_mv TO ringback.cdr_daily AS
SELECT toDate(hour) AS day, source, app_key, service_type, direction,
       sum(h.calls) AS calls, sum(h.answered) AS answered,
       sum(h.talk_seconds) AS talk_seconds, sum(h.billable_minutes) AS billable_minutes,
       sum(h.ring_seconds) AS ring_seconds, sum(h.ring_calls) AS ring_calls,
       sum(h.pdd_seconds) AS pdd_seconds, sum(h.pdd_calls) AS pdd_calls,
       sum(h.flagged) AS flagged
FROM ringback.cdr_hourly AS h
GROUP BY day, source, app_key, service_type, direction;

CREATE TABLE IF NOT EXISTS ringback.cdr_numbers_daily
(
    day               Date,
    source            LowCardinality(String),
    role              LowCardinality(String),   -- caller, callee, bind
    number            String,
    calls             UInt64,
    answered          UInt64,
    talk_seconds      Int64,
    billable_minutes  Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, source, role, number)
TTL day + INTERVAL 2 YEAR DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_numbers_daily_mv TO ringback.cdr_numbers_daily AS
SELECT toDate(toTimeZone(occurred_at, 'UTC' /* report.timezone */)) AS day, source,
       r.1 AS role, r.2 AS number,
       count() AS calls, countIf(f.answered = 1) AS answered,
       sum(coalesce(f.talk_seconds, 0)) AS talk_seconds,
       sum(coalesce(f.billable_minutes, 0)) AS billable_minutes
FROM ringback.cdr_fresh AS f
ARRAY JOIN [('caller', caller_num), ('callee', callee_num), ('bind', bind_num)] AS r
GROUP BY day, source, role, number;

CREATE TABLE IF NOT EXISTS ringback.hangup_causes_daily
(
    day     Date,
    source  LowCardinality(String),
    kind    LowCardinality(String),   -- state_code, release_point, q850
    code    Int32,
    calls   UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, source, kind, code)
TTL day + INTERVAL 10 YEAR DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_causes_daily_mv TO ringback.hangup_causes_daily AS
SELECT toDate(toTimeZone(occurred_at, 'UTC' /* report.timezone */)) AS day, source,
       c.1 AS kind, c.2 AS code, count() AS calls
FROM ringback.cdr_fresh AS f
ARRAY JOIN arrayFilter(x -> x.2 IS NOT NULL,
                       [('release_point', ul_fail_reason), ('q850', q850)]) AS c
GROUP BY day, source, kind, code;

-- Call-status events (topic ringback.call-status): stored, and disconnects' state codes
-- added to hangup_causes_daily --------------------------------------------------------------

CREATE TABLE IF NOT EXISTS ringback.call_status_messages (message String) ENGINE = Null;

CREATE TABLE IF NOT EXISTS ringback.call_events_incoming
(
    id           UUID,
    source       LowCardinality(String),
    occurred_at  DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    event_type   LowCardinality(String),
    session_id   String,
    caller       Nullable(String),
    called       Nullable(String),
    state_code   Nullable(Int32),
    message      String
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.call_status_parse_mv TO ringback.call_events_incoming AS
SELECT
    toUUID(JSONExtractString(message, 'id'))                                       AS id,
    JSONExtractString(message, 'source')                                           AS source,
    parseDateTime64BestEffort(JSONExtractString(message, 'occurred_at'), 3, 'UTC') AS occurred_at,
    parseDateTime64BestEffort(JSONExtractString(message, 'received_at'), 3, 'UTC') AS received_at,
    JSONExtractString(message, 'data', 'event_type')                               AS event_type,
    JSONExtractString(message, 'data', 'session_id')                               AS session_id,
    JSONExtract(message, 'data', 'caller', 'Nullable(String)')                     AS caller,
    JSONExtract(message, 'data', 'called', 'Nullable(String)')                     AS called,
    JSONExtract(message, 'data', 'state_code', 'Nullable(Int32)')                  AS state_code,
    message
FROM ringback.call_status_messages
WHERE JSONExtractString(message, 'kind') = 'call-status';

CREATE TABLE IF NOT EXISTS ringback.call_events
(
    id           UUID,
    source       LowCardinality(String),
    occurred_at  DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    event_type   LowCardinality(String),
    session_id   String,
    caller       Nullable(String),
    called       Nullable(String),
    state_code   Nullable(Int32),
    message      String CODEC(ZSTD(3)),
    ingested_at  DateTime DEFAULT now(),
    INDEX ingested_at_idx ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY id
TTL toDateTime(occurred_at) + INTERVAL 90 DAY DELETE;

CREATE TABLE IF NOT EXISTS ringback.call_events_fresh AS ringback.call_events_incoming ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.call_events_fresh_mv TO ringback.call_events_fresh AS
SELECT * FROM ringback.call_events_incoming
WHERE id NOT IN (SELECT id FROM ringback.call_events WHERE ingested_at >= now() - INTERVAL 2 DAY)
LIMIT 1 BY id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.call_events_store_mv TO ringback.call_events AS
SELECT * FROM ringback.call_events_fresh;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.disconnect_causes_daily_mv TO ringback.hangup_causes_daily AS
SELECT toDate(toTimeZone(occurred_at, 'UTC' /* report.timezone */)) AS day, source,
       'state_code' AS kind, assumeNotNull(state_code) AS code, count() AS calls
FROM ringback.call_events_fresh
WHERE event_type = 'disconnect' AND state_code IS NOT NULL
GROUP BY day, source, kind, code;

-- Figures analysts ask for -------------------------------------------------------------------

CREATE VIEW IF NOT EXISTS ringback.cdr_daily_kpis AS
SELECT *,
       round(answered / nullIf(calls, 0), 4) AS asr,
       round(talk_seconds / nullIf(answered, 0), 1) AS acd_seconds,
       round(ring_seconds / nullIf(ring_calls, 0), 1) AS avg_ring_seconds,
       round(pdd_seconds / nullIf(pdd_calls, 0), 1) AS avg_pdd_seconds
FROM
(
    SELECT day, source, app_key, service_type, direction,
           sum(d.calls) AS calls, sum(d.answered) AS answered,
           sum(d.talk_seconds) AS talk_seconds, sum(d.billable_minutes) AS billable_minutes,
           sum(d.ring_seconds) AS ring_seconds, sum(d.ring_calls) AS ring_calls,
           sum(d.pdd_seconds) AS pdd_seconds, sum(d.pdd_calls) AS pdd_calls,
           sum(d.flagged) AS flagged
    FROM ringback.cdr_daily AS d
    GROUP BY day, source, app_key, service_type, direction
);
