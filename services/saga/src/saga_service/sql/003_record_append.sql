-- What the saga writes with each append to its stream, in the append's own statement: the event
-- store calls this function (an eventstore.Call from saga_service.streams) with where the append
-- left the stream, then the saga's summary and the rest of saga.sync_timers' arguments (sql/002). Being
-- the saga's own migrated function, no SQL text of the saga crosses into the store's statement.
-- It always returns true: the summary's upsert cannot be refused, so the append never is.
CREATE FUNCTION saga.record_append(
    p_stream_id text,
    p_version bigint,
    p_position bigint,
    p_saga_id uuid,
    p_phase text,
    p_outcome text,
    p_reason text,
    p_parked_step text,
    p_parked_code text,
    p_payment_due_at timestamptz,
    p_waits boolean,
    p_wake_grace double precision,
    p_fired_kind text,
    p_fired_by text
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO saga.sagas (saga_id, phase, outcome, reason, parked_step, parked_code, version)
    VALUES (p_saga_id, p_phase, p_outcome, p_reason, p_parked_step, p_parked_code, p_version)
    ON CONFLICT (saga_id) DO UPDATE
       SET phase = EXCLUDED.phase, outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,
           parked_step = EXCLUDED.parked_step, parked_code = EXCLUDED.parked_code,
           version = EXCLUDED.version, updated_at = now();
    PERFORM saga.sync_timers(p_saga_id, p_payment_due_at, p_waits, p_wake_grace, p_fired_kind, p_fired_by);
    RETURN true;
END
$$;
