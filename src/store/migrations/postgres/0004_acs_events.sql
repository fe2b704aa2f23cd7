-- Azure Communication Services events, one table per kind, and the webhook handshakes.

CREATE TABLE phone_number_events (
    id           uuid  PRIMARY KEY,
    source       text  NOT NULL,
    event_id     text  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   text  NOT NULL,               -- event:<event_id>
    event_type   text  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       text  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      text,
    occurred_at  timestamptz    NOT NULL,               -- eventTime / time
    phone_number text,                      -- the resource's number the event is about (E.164)
    direction    text  NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number  text,
    to_number    text,
    message_id   text,
    message      text,                      -- SMS text
    delivery_status         text,           -- Delivered, Failed, …
    delivery_status_details text,
    delivery_attempts       integer,
    tag          text,
    server_call_id      text,               -- IncomingCall
    correlation_id      text,
    caller_display_name text,
    received_at  timestamptz    NOT NULL,
    raw          jsonb  NOT NULL,       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX phone_number_events_number_idx ON phone_number_events (phone_number, occurred_at);
CREATE INDEX phone_number_events_occurred_at_idx ON phone_number_events (occurred_at);
CREATE INDEX phone_number_events_message_idx ON phone_number_events (message_id);
CREATE INDEX phone_number_events_received_id_idx ON phone_number_events (received_at, id);

CREATE TABLE acs_call_events (
    id           uuid  PRIMARY KEY,
    source       text  NOT NULL,
    event_id     text  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   text  NOT NULL,               -- event:<event_id>
    event_type   text  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       text  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      text,
    occurred_at  timestamptz    NOT NULL,               -- eventTime / time
    server_call_id       text,
    call_connection_id   text,                 -- Call Automation
    correlation_id       text,
    group_id             text,
    room_id              text,
    operation_context    text,
    result_code          integer,                  -- resultInformation.code
    result_sub_code      integer,
    result_message       text,
    participant_id       text,                 -- raw id of the participant added/removed, or who started/ended the call
    participant_phone    text,
    participant_count    integer,                  -- ParticipantsUpdated
    duration_seconds     double precision,                -- callDurationInSeconds / durationOfCall
    end_reason_code      integer,
    end_reason_sub_code  integer,
    recording_id         text,
    recording_state      text,
    recording_content_location  text,
    recording_metadata_location text,
    recording_duration_ms       bigint,
    transfer_target      text,
    transferee           text,
    received_at  timestamptz    NOT NULL,
    raw          jsonb  NOT NULL,       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX acs_call_events_server_call_idx ON acs_call_events (server_call_id, occurred_at);
CREATE INDEX acs_call_events_connection_idx ON acs_call_events (call_connection_id, occurred_at);
CREATE INDEX acs_call_events_correlation_idx ON acs_call_events (correlation_id);
CREATE INDEX acs_call_events_occurred_at_idx ON acs_call_events (occurred_at);
CREATE INDEX acs_call_events_received_id_idx ON acs_call_events (received_at, id);

CREATE TABLE chat_events (
    id           uuid  PRIMARY KEY,
    source       text  NOT NULL,
    event_id     text  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   text  NOT NULL,               -- event:<event_id>
    event_type   text  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       text  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      text,
    occurred_at  timestamptz    NOT NULL,               -- eventTime / time
    thread_id            text  NOT NULL,
    message_id           text,
    sender_id            text,                 -- raw CommunicationIdentifier
    sender_display_name  text,
    recipient_id         text,
    message_type         text,                 -- text, html, …
    message_body         text,
    version              bigint,
    participant_id       text,                 -- participant added/removed
    actor_id             text,                 -- who added/removed/created/deleted
    topic                text,
    received_at  timestamptz    NOT NULL,
    raw          jsonb  NOT NULL,       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX chat_events_thread_idx ON chat_events (thread_id, occurred_at);
CREATE INDEX chat_events_occurred_at_idx ON chat_events (occurred_at);
CREATE INDEX chat_events_received_id_idx ON chat_events (received_at, id);

-- Events of types ringback does not model, kept generically and published.
CREATE TABLE webhook_events (
    id           uuid  PRIMARY KEY,
    source       text  NOT NULL,
    event_id     text  NOT NULL,               -- the event's id (Event Grid redelivers it)
    dedupe_key   text  NOT NULL,               -- event:<event_id>
    event_type   text  NOT NULL,               -- e.g. Microsoft.Communication.SMSReceived
    schema       text  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents')),
    subject      text,
    occurred_at  timestamptz    NOT NULL,               -- eventTime / time
    data         jsonb,
    received_at  timestamptz    NOT NULL,
    raw          jsonb  NOT NULL,       -- the whole event as sent
    UNIQUE (source, dedupe_key)
);
CREATE INDEX webhook_events_type_idx ON webhook_events (event_type, occurred_at);
CREATE INDEX webhook_events_received_id_idx ON webhook_events (received_at, id);

-- Subscription handshakes answered (Event Grid validation, CloudEvents OPTIONS): no data row,
-- but a record that the subscription was confirmed and by whom.
CREATE TABLE handshakes (
    id           uuid  PRIMARY KEY,
    source       text  NOT NULL,
    received_at  timestamptz    NOT NULL,
    request_id   text,
    kind         text  NOT NULL CHECK (kind IN ('eventgrid-validation', 'cloudevents-options')),
    detail       jsonb  NOT NULL                -- validation url / origin, rate
);
CREATE INDEX handshakes_source_idx ON handshakes (source, received_at);
