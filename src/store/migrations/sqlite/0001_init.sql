-- ringback schema (SQLite spelling of the PostgreSQL schema: uuids and times as TEXT,
-- booleans as 0/1, JSON as TEXT, flags as a JSON array).

CREATE TABLE call_events (
    id           TEXT    PRIMARY KEY,
    source       TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    event_type   TEXT    NOT NULL CHECK (event_type IN ('callout', 'alerting', 'answer', 'collectInfo', 'disconnect')),
    session_id   TEXT    NOT NULL,
    occurred_at  TEXT    NOT NULL,
    caller       TEXT,
    called       TEXT,
    user_data    TEXT,
    digit_info   TEXT,
    party_type   TEXT,
    state_code   INTEGER,
    state_desc   TEXT,
    received_at  TEXT    NOT NULL,
    raw          TEXT    NOT NULL CHECK (json_valid(raw)),
    UNIQUE (source, dedupe_key)
);
CREATE INDEX call_events_occurred_at_idx ON call_events (occurred_at);
CREATE INDEX call_events_session_idx ON call_events (session_id);
CREATE INDEX call_events_caller_idx ON call_events (caller, occurred_at);
CREATE INDEX call_events_called_idx ON call_events (called, occurred_at);

CREATE TABLE cdrs (
    id                       TEXT    PRIMARY KEY,
    source                   TEXT    NOT NULL,
    dedupe_key               TEXT    NOT NULL,
    icid                     TEXT,
    session_id               TEXT    NOT NULL,
    direction                INTEGER NOT NULL CHECK (direction IN (0, 1)),
    sp_id                    TEXT    NOT NULL,
    app_key                  TEXT    NOT NULL,
    bind_num                 TEXT    NOT NULL,
    caller_num               TEXT    NOT NULL,
    callee_num               TEXT    NOT NULL,
    fwd_display_num          TEXT,
    fwd_dst_num              TEXT,
    fwd_start_time           TEXT,
    fwd_alerting_time        TEXT,
    fwd_answer_time          TEXT,
    call_end_time            TEXT,
    fwd_unasw_rsn            INTEGER,
    fail_time                TEXT,
    ul_fail_reason           INTEGER,
    sip_status_code          INTEGER,
    call_out_start_time      TEXT,
    call_out_alerting_time   TEXT,
    call_out_answer_time     TEXT,
    call_out_unasw_rsn       INTEGER,
    dyn_ivr_start_time       TEXT,
    dyn_ivr_path             TEXT,
    record_flag              INTEGER CHECK (record_flag IN (0, 1)),
    record_start_time        TEXT,
    record_object_name       TEXT,
    record_bucket_name       TEXT,
    record_domain            TEXT,
    record_file_download_url TEXT,
    tts_play_times           INTEGER,
    tts_trans_duration       INTEGER,
    service_type             TEXT,
    host_name                TEXT,
    user_data                TEXT,
    started_at               TEXT,
    answered_at              TEXT,
    ended_at                 TEXT,
    answered                 INTEGER NOT NULL CHECK (answered IN (0, 1)),
    ring_seconds             INTEGER,
    talk_seconds             INTEGER,
    billable_minutes         INTEGER,
    flags                    TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(flags)),
    received_at              TEXT    NOT NULL,
    raw                      TEXT    NOT NULL CHECK (json_valid(raw)),
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
    id           TEXT    PRIMARY KEY,
    source       TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    request_id   TEXT,
    scope        TEXT    NOT NULL CHECK (scope IN ('request', 'record')),
    record_index INTEGER,
    code         TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    field        TEXT,
    body         BLOB,
    body_bytes   INTEGER,
    headers      TEXT    NOT NULL CHECK (json_valid(headers))
);
CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_source_code_idx ON dead_letters (source, code, received_at);
