-- Standard Webhooks events are kept in webhook_events too. SQLite cannot change a CHECK in
-- place: the table is rebuilt with the wider one.
CREATE TABLE webhook_events_new (
    id           TEXT  PRIMARY KEY,
    source       TEXT  NOT NULL,
    event_id     TEXT  NOT NULL,
    dedupe_key   TEXT  NOT NULL,
    event_type   TEXT  NOT NULL,
    schema       TEXT  NOT NULL CHECK (schema IN ('eventgrid', 'cloudevents', 'standard-webhooks')),
    subject      TEXT,
    occurred_at  TEXT  NOT NULL,
    data         TEXT CHECK (data IS NULL OR json_valid(data)),
    received_at  TEXT  NOT NULL,
    raw          TEXT  NOT NULL CHECK (json_valid(raw)),
    UNIQUE (source, dedupe_key)
);
INSERT INTO webhook_events_new SELECT id, source, event_id, dedupe_key, event_type, schema, subject,
    occurred_at, data, received_at, raw FROM webhook_events;
DROP TABLE webhook_events;
ALTER TABLE webhook_events_new RENAME TO webhook_events;
CREATE INDEX webhook_events_type_idx ON webhook_events (event_type, occurred_at);
CREATE INDEX webhook_events_received_id_idx ON webhook_events (received_at, id);
