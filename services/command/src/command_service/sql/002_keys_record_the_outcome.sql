-- A key now records where its command left the stream (stream, version, position, event types)
-- instead of the encoded response body: the row is then written by the append's own statement,
-- from the append's result (an event store claim), in one round trip with the events.
ALTER TABLE command.idempotency_keys
    ADD COLUMN stream_id text,
    ADD COLUMN version   bigint,
    ADD COLUMN position  bigint,
    ADD COLUMN events    text[];

-- Keys stored before this migration keep answering: their bodies are CommandAccepted JSON.
UPDATE command.idempotency_keys SET
    stream_id = convert_from(response, 'UTF8')::jsonb ->> 'stream_id',
    version   = (convert_from(response, 'UTF8')::jsonb ->> 'version')::bigint,
    position  = (convert_from(response, 'UTF8')::jsonb ->> 'position')::bigint,
    events    = ARRAY(SELECT jsonb_array_elements_text(convert_from(response, 'UTF8')::jsonb -> 'events'));

ALTER TABLE command.idempotency_keys
    ALTER COLUMN stream_id SET NOT NULL,
    ALTER COLUMN version   SET NOT NULL,
    ALTER COLUMN events    SET NOT NULL,
    DROP COLUMN response;
