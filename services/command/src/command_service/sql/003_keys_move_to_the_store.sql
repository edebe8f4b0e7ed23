-- Idempotency keys are now the event store's claims (eventstore.claims, the store's migration 003):
-- the store writes them with its own SQL in the append's statement, where this service used to send
-- its SQL for a table of its own. The event store's migrations run before this service's (see
-- `create_app`), so the table is there.
--
-- Live keys move across, so a retry of a command accepted before the upgrade still gets its first
-- answer; expired ones are dropped. `status_code` is not carried: a key's fingerprint covers method
-- and path, so its replay is answered by the same endpoint, whose success status is the one stored.
INSERT INTO eventstore.claims AS c
    (scope, key, fingerprint, stream_id, version, position, event_types, created_at, expires_at)
SELECT subject, idempotency_key, fingerprint, stream_id, version, position, events, created_at, expires_at
  FROM command.idempotency_keys
 WHERE expires_at > now()
    ON CONFLICT (scope, key) DO NOTHING;

DROP TABLE command.idempotency_keys;
