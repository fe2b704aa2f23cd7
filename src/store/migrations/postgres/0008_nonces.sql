-- X-AKSK nonces shared by every replica on this database: a signed request replayed to another
-- replica (same headers, any body; Huawei's digest does not cover the body) finds its nonce
-- here and is refused. Claimed in the same statement as the request's records; rows whose
-- expires_at passed are purged (no reading of their Created is fresh any more).
CREATE TABLE nonces (
    id          uuid PRIMARY KEY,           -- UUIDv5 of (source, nonce)
    claim       uuid NOT NULL,              -- UUIDv5 of (source, nonce, body digest): whose it is
    source      text NOT NULL,
    nonce       text NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- Rows arrive in about expires_at order: a BRIN index finds the expired ones for the purge at a
-- fraction of a B-tree's cost per insert (this table takes a row per signed push).
CREATE INDEX nonces_expires_at ON nonces USING brin (expires_at);
COMMENT ON TABLE nonces IS 'X-AKSK nonces seen recently (replay protection across replicas); purged after expires_at';
