-- The saga's timers brought in line with its state, called from the statement that appends to its
-- stream (saga_service.streams), so a deadline exists exactly when the stream says the saga waits.
--   payment_due_at: the payment deadline while the saga waits for its provider, else NULL (cancelled);
--   waits: the saga has a next step, so its wake-up is pushed back by wake_grace seconds (else dropped);
--   fired_kind: a timer this append fires, marked fired by fired_by (NULL: none).
CREATE FUNCTION saga.sync_timers(
    p_saga_id uuid,
    p_payment_due_at timestamptz,
    p_waits boolean,
    p_wake_grace double precision,
    p_fired_kind text,
    p_fired_by text
) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    IF p_payment_due_at IS NOT NULL THEN
        INSERT INTO saga.timers (saga_id, kind, due_at) VALUES (p_saga_id, 'payment', p_payment_due_at)
        ON CONFLICT DO NOTHING;
    ELSE
        UPDATE saga.timers SET cancelled_at = now()
         WHERE saga_id = p_saga_id AND kind = 'payment' AND fired_at IS NULL AND cancelled_at IS NULL;
    END IF;
    IF p_waits THEN
        -- Pushed back on every step: it fires only when the saga stopped moving.
        INSERT INTO saga.timers (saga_id, kind, due_at)
        VALUES (p_saga_id, 'wake', now() + make_interval(secs => p_wake_grace))
        ON CONFLICT (saga_id, kind) DO UPDATE
           SET due_at = EXCLUDED.due_at, claimed_by = NULL, claimed_until = NULL;
    ELSE
        DELETE FROM saga.timers WHERE saga_id = p_saga_id AND kind = 'wake';
    END IF;
    IF p_fired_kind IS NOT NULL THEN
        UPDATE saga.timers SET fired_at = now(), fired_by = p_fired_by, claimed_until = NULL
         WHERE saga_id = p_saga_id AND kind = p_fired_kind AND fired_at IS NULL;
    END IF;
    RETURN 1;
END
$$;
