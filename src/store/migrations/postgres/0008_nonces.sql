-- X-AKSK nonces shared by every replica on this database: a signed request replayed to another
-- replica (same headers, any body; Huawei's digest does not cover the body) finds its nonce
-- here and is refused. Claimed in the same statement as the request's records; rows whose
-- expires_at passed are purged (no reading of their Created is fresh any more).
CREATE TABLE nonces (
    id          uuid PRIMARY KEY,
    source      text NOT NULL,
    nonce       text NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX nonces_expires_at ON nonces (expires_at);
COMMENT ON TABLE nonces IS 'X-AKSK nonces seen recently (replay protection across replicas); purged after expires_at';
