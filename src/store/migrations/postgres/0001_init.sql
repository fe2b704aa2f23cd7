-- ringback schema: one row per call-status event, one row per CDR, and every refused input.

CREATE TABLE call_events (
    id           uuid        PRIMARY KEY,          -- stable record id (UUIDv5 of source, kind, dedupe_key)
    source       text        NOT NULL,             -- configured source name
    dedupe_key   text        NOT NULL,             -- session_id|event_type|occurred_at(ms)
    event_type   text        NOT NULL CHECK (event_type IN ('callout', 'alerting', 'answer', 'collectInfo', 'disconnect')),
    session_id   text        NOT NULL,
    occurred_at  timestamptz NOT NULL,             -- statusInfo.timestamp
    caller       text,                             -- normalised (+8613800000022); raw keeps what was sent
    called       text,
    user_data    text,
    digit_info   text,                             -- collectInfo
    party_type   text,                             -- disconnect, voice callback
    state_code   integer,                          -- disconnect: hang-up reason (huawei_state_codes)
    state_desc   text,
    received_at  timestamptz NOT NULL,
    raw          jsonb       NOT NULL,             -- statusInfo exactly as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX call_events_occurred_at_idx ON call_events (occurred_at);
CREATE INDEX call_events_session_idx ON call_events (session_id);
CREATE INDEX call_events_caller_idx ON call_events (caller, occurred_at);
CREATE INDEX call_events_called_idx ON call_events (called, occurred_at);

CREATE TABLE cdrs (
    id                       uuid        PRIMARY KEY,
    source                   text        NOT NULL,
    dedupe_key               text        NOT NULL, -- icid:<icid>, else session:<sessionId>
    icid                     text,
    session_id               text        NOT NULL,
    direction                smallint    NOT NULL CHECK (direction IN (0, 1)),
    sp_id                    text        NOT NULL,
    app_key                  text        NOT NULL,
    bind_num                 text        NOT NULL,
    caller_num               text        NOT NULL,
    callee_num               text        NOT NULL,
    fwd_display_num          text,
    fwd_dst_num              text,
    fwd_start_time           timestamptz,
    fwd_alerting_time        timestamptz,
    fwd_answer_time          timestamptz,
    call_end_time            timestamptz,
    fwd_unasw_rsn            integer,          -- Q.850 cause (q850_causes)
    fail_time                timestamptz,
    ul_fail_reason           integer,          -- release point (huawei_release_points)
    sip_status_code          integer,
    call_out_start_time      timestamptz,
    call_out_alerting_time   timestamptz,
    call_out_answer_time     timestamptz,
    call_out_unasw_rsn       integer,          -- Q.850 cause
    dyn_ivr_start_time       timestamptz,
    dyn_ivr_path             text,
    record_flag              smallint CHECK (record_flag IN (0, 1)),
    record_start_time        timestamptz,
    record_object_name       text,
    record_bucket_name       text,
    record_domain            text,
    record_file_download_url text,
    tts_play_times           integer,
    tts_trans_duration       integer,
    service_type             text,             -- 001 voice notification / verification code, 002 voice callback
    host_name                text,
    user_data                text,
    -- derived (see README "Tables")
    started_at               timestamptz,      -- callOutStartTime, else fwdStartTime
    answered_at              timestamptz,      -- billed leg's answer time
    ended_at                 timestamptz,      -- callEndTime, else failTime
    answered                 boolean     NOT NULL,
    ring_seconds             integer,
    talk_seconds             integer,          -- ended_at - answered_at; 0 when not answered
    billable_minutes         integer,          -- per started minute
    flags                    text[]      NOT NULL DEFAULT '{}', -- facts that do not hold, e.g. end_before_answer
    received_at              timestamptz NOT NULL,
    raw                      jsonb       NOT NULL, -- the FeeInfo exactly as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX cdrs_ended_at_idx ON cdrs (ended_at);
CREATE INDEX cdrs_started_at_idx ON cdrs (started_at);
CREATE INDEX cdrs_session_idx ON cdrs (session_id);
CREATE INDEX cdrs_icid_idx ON cdrs (icid);
CREATE INDEX cdrs_caller_idx ON cdrs (caller_num, ended_at);
CREATE INDEX cdrs_callee_idx ON cdrs (callee_num, ended_at);
CREATE INDEX cdrs_bind_num_idx ON cdrs (bind_num, ended_at);
CREATE INDEX cdrs_received_at_idx ON cdrs (received_at);

CREATE TABLE dead_letters (
    id           uuid        PRIMARY KEY,
    source       text        NOT NULL,
    received_at  timestamptz NOT NULL,
    request_id   text,
    scope        text        NOT NULL CHECK (scope IN ('request', 'record')),
    record_index integer,                     -- feeLst index for scope = 'record'
    code         text        NOT NULL,        -- the error code the sender was answered with
    detail       text        NOT NULL,
    field        text,                        -- JSON path, e.g. feeLst[3].direction
    body         bytea,                       -- raw bytes (the record for scope = 'record'); NULL for auth failures
    body_bytes   integer,
    headers      jsonb       NOT NULL         -- request headers, secrets redacted
);
CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_source_code_idx ON dead_letters (source, code, received_at);
