-- Event identity independent of time (README "What one sender can and cannot do to others").
-- The record tables are partitioned by the record's own time, and PostgreSQL can only enforce a
-- key that includes the partition column: a redelivery of the same event with another time
-- (a Standard Webhooks retry re-signed with a new webhook-timestamp, an Event Grid or
-- CloudEvents event redelivered with another `time`, a CDR whose end time changed) would land
-- in another partition as a second row. record_keys holds the id of every stored record (the
-- UUIDv5 of source, kind and dedupe key) in ONE unpartitioned index: a record is inserted only
-- when its key is new, in the same statement, so a redelivery is a duplicate whatever its time
-- fields say, and two concurrent deliveries of one id wait on the same index entry.
--
-- Call-status events are not keyed: their dedupe key includes their time (session, event type,
-- timestamp), so their id fixes their partition and (id, occurred_at) already is the identity.
--
-- Retention deletes a partition's keys in the transaction that drops it (`store::maintain`).
CREATE TABLE record_keys (
    id uuid PRIMARY KEY
);

INSERT INTO record_keys (id)
SELECT id FROM cdrs
UNION ALL SELECT id FROM phone_number_events
UNION ALL SELECT id FROM acs_call_events
UNION ALL SELECT id FROM chat_events
UNION ALL SELECT id FROM webhook_events
ON CONFLICT DO NOTHING;

COMMENT ON TABLE record_keys IS
    'The id of every stored record but call-status events (whose id fixes their partition): '
    'one index across partitions, so a redelivery with another time is still a duplicate';
