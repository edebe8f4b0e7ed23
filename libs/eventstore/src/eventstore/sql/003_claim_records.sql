-- Claims (eventstore.types.Claim) are now the store's own rows: an idempotency key that an
-- append takes, written by the store's SQL in the append's statement (queries.APPEND_WITH_CLAIM).
-- Before, a caller sent its own SQL and kept the rows in a table of its own.
CREATE TABLE eventstore.claims (
    -- The key is unique within its scope (the command service: the caller's subject), so two
    -- callers choosing the same key never see each other's claims.
    scope       text        NOT NULL,
    key         text        NOT NULL,
    -- What the key was used for, as the caller defines it (the command service: a sha256 of the
    -- request); the store keeps and returns it, the caller compares.
    fingerprint bytea       NOT NULL,
    -- Where the claiming append left its stream: what a replay of it answers.
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    position    bigint,
    event_types text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX claims_expires_at ON eventstore.claims (expires_at);
