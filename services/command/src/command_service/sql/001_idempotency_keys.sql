-- Idempotency keys: the first response to each (subject, key), kept until it expires.
-- Keys are scoped by subject so two clients choosing the same key never see each other's responses.
CREATE TABLE command.idempotency_keys (
    subject         text        NOT NULL,
    idempotency_key text        NOT NULL,
    -- sha256 of method, path and the decoded body: the same key with another request is refused.
    fingerprint     bytea       NOT NULL,
    status_code     smallint    NOT NULL,
    response        bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (subject, idempotency_key)
);

CREATE INDEX idempotency_keys_expires_at ON command.idempotency_keys (expires_at);
