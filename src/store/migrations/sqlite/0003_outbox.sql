-- Transactional outbox (see the PostgreSQL migration for the column meanings).
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    occurred_at  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased_until TEXT,
    published_at TEXT,
    failed_at    TEXT,
    last_error   TEXT
);
CREATE INDEX outbox_pending_idx ON outbox (seq) WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX cdrs_received_id_idx ON cdrs (received_at, id);
CREATE INDEX call_events_received_id_idx ON call_events (received_at, id);
