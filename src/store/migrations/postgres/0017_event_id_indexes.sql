-- `ringback events find --key`: an ACS or Standard Webhooks event by the id its sender gave it
-- (Event Grid / CloudEvents `id`, `webhook-id`), whatever its topic or source.
CREATE INDEX phone_number_events_event_id_idx ON phone_number_events (event_id);
CREATE INDEX acs_call_events_event_id_idx ON acs_call_events (event_id);
CREATE INDEX chat_events_event_id_idx ON chat_events (event_id);
CREATE INDEX webhook_events_event_id_idx ON webhook_events (event_id);
