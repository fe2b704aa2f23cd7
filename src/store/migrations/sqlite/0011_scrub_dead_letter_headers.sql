-- Dead letters keep request headers by an allow-list (ingest::dead_letter::KEPT_HEADERS, plus
-- ce-* and X-AKSK without its digest); rows kept before it may hold a secret header a deny-list
-- missed (an ACS shared secret in x-ringback-secret). Their values are replaced by [redacted].
UPDATE dead_letters
   SET headers = (
       SELECT json_group_object(
                  e.key,
                  CASE WHEN e.key IN ('content-type', 'content-length', 'content-encoding', 'user-agent', 'x-request-id', 'request-id', 'x-correlation-id', 'traceparent', 'webhook-id', 'webhook-timestamp', 'svix-id', 'svix-timestamp', 'aeg-event-type', 'aeg-delivery-count', 'aeg-subscription-name', 'aeg-data-version', 'aeg-metadata-version', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip', 'x-aksk') OR e.key LIKE 'ce-%'
                       THEN e.value ELSE '[redacted]' END)
         FROM json_each(dead_letters.headers) AS e)
 WHERE json_type(headers) = 'object'
   AND EXISTS (SELECT 1 FROM json_each(dead_letters.headers) AS e
                WHERE NOT (e.key IN ('content-type', 'content-length', 'content-encoding', 'user-agent', 'x-request-id', 'request-id', 'x-correlation-id', 'traceparent', 'webhook-id', 'webhook-timestamp', 'svix-id', 'svix-timestamp', 'aeg-event-type', 'aeg-delivery-count', 'aeg-subscription-name', 'aeg-data-version', 'aeg-metadata-version', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip', 'x-aksk') OR e.key LIKE 'ce-%')
                  AND e.value <> '[redacted]');
