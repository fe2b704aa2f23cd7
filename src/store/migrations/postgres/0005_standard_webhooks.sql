-- Standard Webhooks events are kept in webhook_events too.
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_schema_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_schema_check
    CHECK (schema IN ('eventgrid', 'cloudevents', 'standard-webhooks'));
