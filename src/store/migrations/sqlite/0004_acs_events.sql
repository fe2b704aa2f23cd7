-- Azure Communication Services events (SQLite spelling; see the PostgreSQL migration).

CREATE TABLE phone_number_events (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    event_id     TEXT  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   TEXT  NOT NULL,               -- event:<event_id>
    event_type   TEXT  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       TEXT  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      TEXT,
    occurred_at  TEXT    NOT NULL,               -- eventTime / time
    phone_number TEXT,                      -- the resource's number the event is about (E.164)
    direction    TEXT  NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number  TEXT,
    to_number    TEXT,
    message_id   TEXT,
    message      TEXT,                      -- SMS text
    delivery_status         TEXT,           -- Delivered, Failed, …
    delivery_status_details TEXT,
    delivery_attempts       INTEGER,
    tag          TEXT,
    server_call_id      TEXT,               -- IncomingCall
    correlation_id      TEXT,
    caller_display_name TEXT,
    received_at  TEXT    NOT NULL,
    raw          TEXT  NOT NULL CHECK (json_valid(raw)),       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX phone_number_events_number_idx ON phone_number_events (phone_number, occurred_at);
CREATE INDEX phone_number_events_occurred_at_idx ON phone_number_events (occurred_at);
CREATE INDEX phone_number_events_message_idx ON phone_number_events (message_id);
CREATE INDEX phone_number_events_received_id_idx ON phone_number_events (received_at, id);

CREATE TABLE acs_call_events (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    event_id     TEXT  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   TEXT  NOT NULL,               -- event:<event_id>
    event_type   TEXT  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       TEXT  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      TEXT,
    occurred_at  TEXT    NOT NULL,               -- eventTime / time
    server_call_id       TEXT,
    call_connection_id   TEXT,                 -- Call Automation
    correlation_id       TEXT,
    group_id             TEXT,
    room_id              TEXT,
    operation_context    TEXT,
    result_code          INTEGER,                  -- resultInformation.code
    result_sub_code      INTEGER,
    result_message       TEXT,
    participant_id       TEXT,                 -- raw id of the participant added/removed, or who started/ended the call
    participant_phone    TEXT,
    participant_count    INTEGER,                  -- ParticipantsUpdated
    duration_seconds     REAL,                -- callDurationInSeconds / durationOfCall
    end_reason_code      INTEGER,
    end_reason_sub_code  INTEGER,
    recording_id         TEXT,
    recording_state      TEXT,
    recording_content_location  TEXT,
    recording_metadata_location TEXT,
    recording_duration_ms       INTEGER,
    transfer_target      TEXT,
    transferee           TEXT,
    received_at  TEXT    NOT NULL,
    raw          TEXT  NOT NULL CHECK (json_valid(raw)),       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX acs_call_events_server_call_idx ON acs_call_events (server_call_id, occurred_at);
CREATE INDEX acs_call_events_connection_idx ON acs_call_events (call_connection_id, occurred_at);
CREATE INDEX acs_call_events_correlation_idx ON acs_call_events (correlation_id);
CREATE INDEX acs_call_events_occurred_at_idx ON acs_call_events (occurred_at);
CREATE INDEX acs_call_events_received_id_idx ON acs_call_events (received_at, id);

CREATE TABLE chat_events (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    event_id     TEXT  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   TEXT  NOT NULL,               -- event:<event_id>
    event_type   TEXT  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       TEXT  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      TEXT,
    occurred_at  TEXT    NOT NULL,               -- eventTime / time
    thread_id            TEXT  NOT NULL,
    message_id           TEXT,
    sender_id            TEXT,                 -- raw CommunicationIdentifier
    sender_display_name  TEXT,
    recipient_id         TEXT,
    message_type         TEXT,                 -- text, html, …
    message_body         TEXT,
    version              INTEGER,
    participant_id       TEXT,                 -- participant added/removed
    actor_id             TEXT,                 -- who added/removed/created/deleted
    topic                TEXT,
    received_at  TEXT    NOT NULL,
    raw          TEXT  NOT NULL CHECK (json_valid(raw)),       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX chat_events_thread_idx ON chat_events (thread_id, occurred_at);
CREATE INDEX chat_events_occurred_at_idx ON chat_events (occurred_at);
CREATE INDEX chat_events_received_id_idx ON chat_events (received_at, id);

-- Events of types ringback does not model, kept generically and published.
CREATE TABLE webhook_events (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    event_id     TEXT  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   TEXT  NOT NULL,               -- event:<event_id>
    event_type   TEXT  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       TEXT  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      TEXT,
    occurred_at  TEXT    NOT NULL,               -- eventTime / time
    data         TEXT CHECK (data IS NULL OR json_valid(data)),
    received_at  TEXT    NOT NULL,
    raw          TEXT  NOT NULL CHECK (json_valid(raw)),       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX webhook_events_type_idx ON webhook_events (event_type, occurred_at);
CREATE INDEX webhook_events_received_id_idx ON webhook_events (received_at, id);

-- Subscription handshakes answered (Event Grid validation, CloudEvents OPTIONS): no data row,
-- but a record that the subscription was confirmed and by whom.
CREATE TABLE handshakes (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    received_at  TEXT    NOT NULL,
    request_id   TEXT,
    kind         TEXT  NOT NULL CHECK (kind IN ('eventgrid-validation', 'cloudevents-options')),
    detail       TEXT  NOT NULL                -- validation url / origin, rate
);
CREATE INDEX handshakes_source_idx ON handshakes (source, received_at);
