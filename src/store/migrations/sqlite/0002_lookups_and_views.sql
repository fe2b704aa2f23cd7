-- Lookup tables for Huawei's codes; their rows come from src/store/lookups.sql (see Store::migrate).

CREATE TABLE huawei_state_codes (
    code    INTEGER PRIMARY KEY, -- call_events.state_code (挂机原因值)
    meaning TEXT    NOT NULL
);

-- Ranges: several codes share a meaning; 400-699 is a SIP status used as the release point when
-- the far end gave no Q.850 cause. Take the narrowest range that matches.
CREATE TABLE huawei_release_points (
    code_from INTEGER NOT NULL, -- cdrs.ul_fail_reason (呼叫拆线点)
    code_to   INTEGER NOT NULL,
    meaning   TEXT    NOT NULL,
    PRIMARY KEY (code_from, code_to)
);

CREATE TABLE q850_causes (
    code    INTEGER PRIMARY KEY, -- cdrs.fwd_unasw_rsn, cdrs.call_out_unasw_rsn
    meaning TEXT    NOT NULL
);

-- CDRs with their codes explained, for reports.
CREATE VIEW cdrs_explained AS
SELECT c.*,
       (SELECT r.meaning FROM huawei_release_points r
         WHERE c.ul_fail_reason BETWEEN r.code_from AND r.code_to
         ORDER BY r.code_to - r.code_from LIMIT 1)              AS ul_fail_reason_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.fwd_unasw_rsn)      AS fwd_unasw_rsn_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.call_out_unasw_rsn) AS call_out_unasw_rsn_meaning
  FROM cdrs c;

-- Hang-up events with their reason explained.
CREATE VIEW call_events_explained AS
SELECT e.*, s.meaning AS state_meaning
  FROM call_events e LEFT JOIN huawei_state_codes s ON s.code = e.state_code;

-- One row per UTC day, source and service type: the figures billing and dashboards ask for.
CREATE VIEW cdr_daily AS
SELECT date(ended_at)                            AS day,
       source,
       service_type,
       count(*)                                  AS calls,
       sum(answered)                             AS answered,
       coalesce(sum(talk_seconds), 0)            AS talk_seconds,
       coalesce(sum(billable_minutes), 0)        AS billable_minutes,
       sum(json_array_length(flags) > 0)         AS flagged
  FROM cdrs
 GROUP BY 1, 2, 3;
