-- `ringback dead-letters list --request-id`: the X-Request-Id every answer carries finds the
-- letters of that request.
CREATE INDEX dead_letters_request_id_idx ON dead_letters (request_id);
