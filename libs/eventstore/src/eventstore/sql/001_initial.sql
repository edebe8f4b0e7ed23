-- The event store's tables and its append function.
-- Applied by eventstore.migrations under an advisory lock, inside one transaction.

CREATE SCHEMA IF NOT EXISTS eventstore;

-- One row per stream: its current version, retention point and tombstone. Appends
-- lock this row, which serialises writers of one stream (and only of that stream).
CREATE TABLE eventstore.streams (
    stream_id           text PRIMARY KEY,
    category            text NOT NULL,
    version             bigint NOT NULL DEFAULT -1,
    -- truncate_before(v) erased every event below this version.
    first_version       bigint NOT NULL DEFAULT 0,
    -- The transaction that appended the stream's last event: an append from an older
    -- transaction would sort before it in the global log, so it is refused.
    last_transaction_id xid8,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);  -- room on each page for HOT updates of the version

-- The global log. Its order is (transaction_id, position), not position alone:
-- `position` comes from a sequence at INSERT time, but a row becomes visible at
-- COMMIT time, and transactions commit in a different order than they insert. A
-- reader that remembers "the last position I saw" and asks for `position > last`
-- skips every row whose transaction took a lower position but committed later.
-- Each row therefore records its transaction id, and readers only hand out rows of
-- transactions below the snapshot's xmin (pg_snapshot_xmin(pg_current_snapshot())):
-- every transaction below xmin has finished, and any transaction still running or
-- not yet begun has an id >= xmin, so it sorts after everything already handed out.
CREATE TABLE eventstore.events (
    position        bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text NOT NULL,
    category        text NOT NULL,
    version         bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    schema_version  integer NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_log_order PRIMARY KEY (transaction_id, position),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

-- Category subscriptions (projectors, the relay's per-topic readers) walk the log
-- of one category without scanning every other category's events.
CREATE INDEX events_category_log_order ON eventstore.events (category, transaction_id, position);

-- The latest snapshot of a stream's state, a cache: it can always be rebuilt.
CREATE TABLE eventstore.snapshots (
    stream_id    text PRIMARY KEY,
    version      bigint NOT NULL,
    state        jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Named subscriber positions; written in the same transaction as the subscriber's
-- own effects when it wants exactly-once processing of its writes.
CREATE TABLE eventstore.checkpoints (
    name            text PRIMARY KEY,
    transaction_id  xid8 NOT NULL,
    position        bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Appends events to a stream in one round trip and returns what happened:
--   outcome 'ok'         the events were appended
--           'idempotent' these event ids already sit at these versions: nothing written
--           'conflict'   the stream is not at the expected version (stream_version = actual)
--           'order'      a newer transaction appended to the stream after this one began writing
--           'duplicate'  some event ids are already stored elsewhere (duplicate_ids)
--           'deleted'    the stream has a tombstone
-- Conflicts are returned rather than raised so a caller's transaction stays usable.
-- p_expected is 'any', 'exists' or 'exact' (then p_expected_version, -1 = no stream).
--
-- Per-stream order in the global log: the log sorts by transaction id, so an append
-- must come from a transaction with an id no lower than the one that appended the
-- stream's previous events. A transaction takes its id on its first write; when the
-- first write is this function's lock on the stream row, the id is taken after the
-- previous appender took its own (it held that lock), so the condition holds by
-- itself. Only a caller transaction that wrote something earlier can break it; that
-- is checked (last_transaction_id) and answered with 'order'.
CREATE FUNCTION eventstore.append_events(
    p_stream_id        text,
    p_category         text,
    p_expected         text,
    p_expected_version bigint,
    p_event_ids        uuid[],
    p_event_types      text[],
    p_schema_versions  integer[],
    p_data             jsonb[],
    p_metadata         jsonb[]
) RETURNS TABLE (outcome text, stream_version bigint, positions bigint[], transaction_id xid8,
               duplicate_ids uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    v_count     integer := cardinality(p_event_ids);
    v_version   bigint;
    v_last_xid  xid8;
    v_deleted   boolean;
    v_xid       xid8;
    v_ids       uuid[];
    v_streams   text[];
    v_versions  bigint[];
    v_positions bigint[];
BEGIN
    -- Fast paths, one statement each: an exact version on an existing stream (what
    -- aggregates send) moves the version while it locks the row; a new stream is
    -- created at its final version. When no row qualifies, the general path below
    -- finds out why.
    IF p_expected = 'exact' AND p_expected_version >= 0 THEN
        UPDATE eventstore.streams s
           SET version = p_expected_version + v_count, last_transaction_id = pg_current_xact_id()
         WHERE s.stream_id = p_stream_id AND s.version = p_expected_version AND s.deleted_at IS NULL
           AND (s.last_transaction_id IS NULL OR s.last_transaction_id <= pg_current_xact_id())
        RETURNING s.last_transaction_id INTO v_xid;
    ELSIF p_expected = 'any' OR p_expected = 'exact' THEN
        INSERT INTO eventstore.streams AS s (stream_id, category, version, last_transaction_id)
        VALUES (p_stream_id, p_category, v_count - 1, pg_current_xact_id())
        ON CONFLICT DO NOTHING
        RETURNING s.last_transaction_id INTO v_xid;
    END IF;
    IF v_xid IS NOT NULL THEN
        v_version := CASE WHEN p_expected = 'exact' THEN p_expected_version ELSE -1 END;
    ELSE
        -- The general path: lock the stream row (creating it if needed), then decide.
        SELECT s.version, s.last_transaction_id, s.deleted_at IS NOT NULL
          INTO v_version, v_last_xid, v_deleted
          FROM eventstore.streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
        IF NOT FOUND THEN
            IF p_expected = 'exists' OR (p_expected = 'exact' AND p_expected_version >= 0) THEN
                RETURN QUERY SELECT 'conflict'::text, -1::bigint, NULL::bigint[], NULL::xid8, NULL::uuid[];
                RETURN;
            END IF;
            INSERT INTO eventstore.streams (stream_id, category) VALUES (p_stream_id, p_category)
                ON CONFLICT DO NOTHING;
            SELECT s.version, s.last_transaction_id, s.deleted_at IS NOT NULL
              INTO STRICT v_version, v_last_xid, v_deleted
              FROM eventstore.streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
        END IF;
        IF v_deleted THEN
            RETURN QUERY SELECT 'deleted'::text, v_version, NULL::bigint[], NULL::xid8, NULL::uuid[];
            RETURN;
        END IF;

        IF p_expected = 'exact' AND v_version <> p_expected_version THEN
            -- A retry of an append that already succeeded finds its own events right
            -- after the version it expected.
            SELECT array_agg(e.event_id ORDER BY e.version), array_agg(e.position ORDER BY e.version)
              INTO v_ids, v_positions
              FROM eventstore.events e
             WHERE e.stream_id = p_stream_id
               AND e.version > p_expected_version AND e.version <= p_expected_version + v_count;
            IF v_ids = p_event_ids THEN
                RETURN QUERY SELECT 'idempotent'::text, p_expected_version + v_count, v_positions,
                                    NULL::xid8, NULL::uuid[];
            ELSE
                RETURN QUERY SELECT 'conflict'::text, v_version, NULL::bigint[], NULL::xid8, NULL::uuid[];
            END IF;
            RETURN;
        END IF;

        IF p_expected <> 'exact' THEN
            -- Without a version to compare, a retry is recognised by its event ids alone.
            SELECT array_agg(e.event_id ORDER BY e.version), array_agg(e.stream_id ORDER BY e.version),
                   array_agg(e.version ORDER BY e.version), array_agg(e.position ORDER BY e.version)
              INTO v_ids, v_streams, v_versions, v_positions
              FROM eventstore.events e WHERE e.event_id = ANY (p_event_ids);
            IF v_ids IS NOT NULL THEN
                IF v_ids = p_event_ids
                   AND v_streams <@ ARRAY[p_stream_id]
                   AND v_versions[v_count] - v_versions[1] = v_count - 1 THEN
                    RETURN QUERY SELECT 'idempotent'::text, v_versions[v_count], v_positions,
                                        NULL::xid8, NULL::uuid[];
                ELSE
                    RETURN QUERY SELECT 'duplicate'::text, v_version, NULL::bigint[], NULL::xid8, v_ids;
                END IF;
                RETURN;
            END IF;
            IF p_expected = 'exists' AND v_version < 0 THEN
                RETURN QUERY SELECT 'conflict'::text, v_version, NULL::bigint[], NULL::xid8, NULL::uuid[];
                RETURN;
            END IF;
        END IF;

        v_xid := pg_current_xact_id();
        IF v_last_xid > v_xid THEN
            RETURN QUERY SELECT 'order'::text, v_version, NULL::bigint[], NULL::xid8, NULL::uuid[];
            RETURN;
        END IF;
        UPDATE eventstore.streams s SET version = v_version + v_count, last_transaction_id = v_xid
         WHERE s.stream_id = p_stream_id;
    END IF;

    WITH inserted AS (
        INSERT INTO eventstore.events
            (stream_id, category, version, event_id, event_type, schema_version, data, metadata)
        SELECT p_stream_id, p_category, v_version + e.ord, e.event_id, e.event_type, e.schema_version,
               e.data, e.metadata
          FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS e (event_id, event_type, schema_version, data, metadata, ord)
         ORDER BY e.ord
        RETURNING events.position
    )
    SELECT array_agg(i.position ORDER BY i.position) INTO v_positions FROM inserted i;

    RETURN QUERY SELECT 'ok'::text, v_version + v_count, v_positions, v_xid, NULL::uuid[];
END;
$$;
