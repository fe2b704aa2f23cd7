-- X-AKSK nonces (see the PostgreSQL migration 0008): replay protection that survives a restart.
CREATE TABLE nonces (
    id          TEXT PRIMARY KEY,
    claim       TEXT NOT NULL,
    source      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX nonces_expires_at ON nonces (expires_at);
