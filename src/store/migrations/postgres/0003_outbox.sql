-- Transactional outbox: one entry per committed record, written in the record's transaction,
-- deleted some time after it is published to Kafka (kafka.retention).
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,        -- commit order: the order entries are published in
    id           uuid        NOT NULL UNIQUE,    -- the record's id (ce_id)
    kind         text        NOT NULL,           -- record kind: the topic
    key          text        NOT NULL,           -- message key (session id)
    payload      text        NOT NULL,           -- message value (JSON, ringback.record.v1)
    source       text        NOT NULL,
    occurred_at  timestamptz NOT NULL,           -- ce_time
    created_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0, -- sweeps that claimed it
    leased_until timestamptz,                    -- claimed by a publisher until then
    published_at timestamptz,
    failed_at    timestamptz,                    -- can never be published (too large, not authorised)
    last_error   text
);
CREATE INDEX outbox_pending_idx ON outbox (seq) WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX cdrs_received_id_idx ON cdrs (received_at, id);
CREATE INDEX call_events_received_id_idx ON call_events (received_at, id);
