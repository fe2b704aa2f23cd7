-- Which process committed an outbox entry (a random id per process start). A publisher that
-- catches up takes its own entries at once, and another replica's only once they are older than
-- kafka.sweep_grace: a replica that (re)starts no longer re-sends what a live replica is
-- publishing from memory this very moment (tests/fleet.rs found 39 such messages twice in a
-- rolling restart).
ALTER TABLE outbox ADD COLUMN owner uuid;
