-- The saga's timers: the payment deadline of a saga waiting for its provider ('payment'),
-- and a safety net for work a saga still has to do ('wake'): if the instance driving it dies,
-- any instance claims the row once it is due and carries on.
-- Claimed with FOR UPDATE SKIP LOCKED and a lease; kept after firing so a saga's deadlines can be shown.
CREATE TABLE saga.timers (
    saga_id       uuid        NOT NULL,
    kind          text        NOT NULL,
    due_at        timestamptz NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    claimed_by    text,
    claimed_until timestamptz,
    fired_at      timestamptz,
    fired_by      text,
    cancelled_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, kind)
);

-- Only pending timers are ever looked for by due time.
CREATE INDEX timers_pending_due ON saga.timers (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- One row per saga, written in the transaction of each append to its stream: what the admin API lists.
-- Derived from the streams, so it can be rebuilt from them.
CREATE TABLE saga.sagas (
    saga_id     uuid        PRIMARY KEY,
    phase       text        NOT NULL,
    outcome     text,
    reason      text,
    parked_step text,
    parked_code text,
    version     bigint      NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sagas_unfinished ON saga.sagas (updated_at) WHERE phase <> 'done';
CREATE INDEX sagas_parked ON saga.sagas (updated_at) WHERE parked_step IS NOT NULL;
