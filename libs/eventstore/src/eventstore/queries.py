"""The SQL the PostgreSQL store runs, in one place so it can be read (and EXPLAINed) together.

Every event query selects ``EVENT_COLUMNS`` in this order; ``postgres._decode_row``
reads the columns by index.
"""

from __future__ import annotations

import functools

__all__ = [
    "APPEND",
    "APPEND_WITH_CLAIM",
    "CHECKPOINT_LAG",
    "CHECKPOINT_LAG_CATEGORIES",
    "CLAIM_REFUSED",
    "CLAIM_UNCHANGED",
    "DELETE_SNAPSHOT",
    "EVENT_COLUMNS",
    "HORIZON",
    "LOAD_CHECKPOINT",
    "LOAD_SNAPSHOT",
    "LOCK_STREAM",
    "PURGE_EXPIRED_CLAIMS",
    "READ_ALL",
    "READ_CATEGORIES",
    "READ_CLAIM",
    "READ_STREAMS",
    "READ_STREAM_BACKWARD",
    "READ_STREAM_FORWARD",
    "SAVE_CHECKPOINT",
    "SAVE_SNAPSHOT",
    "SHARE_STREAM_HEAD",
    "STREAM_STATE",
    "TOMBSTONE",
    "TRUNCATE_EVENTS",
    "TRUNCATE_STREAM",
    "append_with_call",
    "call_unchanged",
]

EVENT_COLUMNS = (
    "e.stream_id, e.version, e.position, e.transaction_id, e.event_id, "
    "e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at"
)

APPEND = "SELECT * FROM eventstore.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)"

# The SQLSTATE of eventstore.refuse_claim (sql/002_claims.sql).
CLAIM_REFUSED = "ES409"

# A claim's row (sql/003_claim_records.sql) taken for an append: an expired row with the same key is
# replaced, a live one wins and nothing is returned. Shared by the two statements below; its source
# row is (scope, key, fingerprint, stream_id, version, position, event_types, expires_at).
_INSERT_CLAIM = """
INSERT INTO eventstore.claims AS c
    (scope, key, fingerprint, stream_id, version, position, event_types, expires_at)
{source}
ON CONFLICT (scope, key) DO UPDATE
    SET fingerprint = excluded.fingerprint, stream_id = excluded.stream_id, version = excluded.version,
        position = excluded.position, event_types = excluded.event_types, created_at = now(),
        expires_at = excluded.expires_at
    WHERE c.expires_at <= now()
RETURNING 1
"""

# APPEND ($1..$9) and a claim ($10 scope, $11 key, $12 fingerprint, $13 time to live) as one
# statement: one round trip, one transaction. ``result`` is MATERIALIZED so the append runs exactly
# once however often it is read. The claim's row comes from the append's result, so an append that
# wrote nothing (conflict, deleted, idempotent retry) claims nothing and nothing needs undoing. A
# claim that found its key taken after an append that wrote makes the last column call
# ``refuse_claim``, whose error aborts the whole statement, events included.
_CLAIM_FROM_APPEND = """
SELECT $10::text, $11::text, $12::bytea, $1::text, r.stream_version, r.positions[cardinality(r.positions)],
       $6::text[], now() + $13::interval
  FROM result r WHERE r.outcome = 'ok'"""

APPEND_WITH_CLAIM = f"""
WITH result AS MATERIALIZED (SELECT * FROM eventstore.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)),
claimed AS ({_INSERT_CLAIM.format(source=_CLAIM_FROM_APPEND)})
SELECT r.*,
       CASE WHEN r.outcome = 'ok' AND NOT EXISTS (SELECT FROM claimed)
            THEN eventstore.refuse_claim($1) END AS claim_refused
  FROM result r
"""

# A claim on a stream that an append of no events leaves as it is (its version and last position,
# read under SHARE_STREAM_HEAD's lock in the same transaction): 1, or None when the key is taken.
CLAIM_UNCHANGED = _INSERT_CLAIM.format(
    source="VALUES ($1::text, $2::text, $3::bytea, $4::text, $5::bigint, $6::bigint, '{}'::text[],"
    " now() + $7::interval)"
)


def _quoted(function: str) -> str:
    """``schema.name`` as ``"schema"."name"``; ``Call`` checked that both are plain lower-case identifiers."""
    schema, name = function.split(".")
    return f'"{schema}"."{name}"'


@functools.cache
def append_with_call(function: str, arguments: int) -> str:
    """APPEND ($1..$9) and a ``Call`` of ``function`` (``arguments`` more, $10 on) in one statement.

    The function gets the stream id, its version and its last event's position after
    the append, then the caller's arguments. ``called`` is MATERIALIZED (a volatile
    call is never inlined or dropped) and reads only an appended row, so an append that
    wrote nothing calls nothing. A call that returns false or NULL after an append that
    wrote makes the last column call ``refuse_claim``: the whole statement is aborted,
    events included, as for a taken claim. Cached per name and arity: a handful of texts.
    """
    extra = "".join(f", ${10 + i}" for i in range(arguments))
    return f"""
WITH result AS MATERIALIZED (SELECT * FROM eventstore.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)),
called AS MATERIALIZED (
    SELECT {_quoted(function)}($1::text, r.stream_version, r.positions[cardinality(r.positions)]{extra})
           AS accepted
      FROM result r WHERE r.outcome = 'ok'
)
SELECT r.*,
       CASE WHEN r.outcome = 'ok' AND (SELECT accepted FROM called) IS NOT TRUE
            THEN eventstore.refuse_claim($1) END AS claim_refused
  FROM result r
"""


@functools.cache
def call_unchanged(function: str, arguments: int) -> str:
    """A ``Call`` on a stream that an append of no events leaves as it is ($1 stream id, $2 version,
    $3 position, read under SHARE_STREAM_HEAD's lock; the caller's arguments from $4 on)."""
    extra = "".join(f", ${4 + i}" for i in range(arguments))
    return f"SELECT {_quoted(function)}($1::text, $2::bigint, $3::bigint{extra}) IS TRUE"


READ_CLAIM = """
SELECT scope, key, fingerprint, stream_id, version, position, event_types, expires_at
  FROM eventstore.claims WHERE scope = $1 AND key = $2 AND expires_at > now()
"""

# Expired claims are already ignored by READ_CLAIM and replaced by a new claim of their key;
# deleting them only keeps the table small, a batch at a time.
PURGE_EXPIRED_CLAIMS = """
DELETE FROM eventstore.claims WHERE ctid IN (
    SELECT ctid FROM eventstore.claims WHERE expires_at <= now() LIMIT $1
)
"""


# The log horizon: the oldest transaction that was still running when this statement's
# snapshot was taken and that could still add events to this database's log. Rows of
# transactions below it are all final, and every transaction that can still commit
# an event has an id >= it (see sql/001_initial.sql for why that makes the log
# gap-safe). It is pg_snapshot_xmin(pg_current_snapshot()) minus what provably cannot
# write here: transactions that pg_stat_activity shows running in *another* database
# of the cluster (a long CREATE DATABASE or batch job next door would otherwise hold
# every subscriber back, measured at 250 ms). A transaction that finished between the
# snapshot and this look-up, or whose database is unknown, still counts.
HORIZON = """
coalesce(
    (SELECT min(running.xid) FROM pg_snapshot_xip(pg_current_snapshot()) AS running (xid)
      WHERE NOT EXISTS (
            SELECT 1 FROM pg_stat_activity a
             WHERE a.backend_xid = xid(running.xid)
               AND a.datname IS NOT NULL AND a.datname <> current_database())),
    pg_snapshot_xmax(pg_current_snapshot()))
"""

# The global log in (transaction_id, position) order below the horizon. The horizon is
# returned with the page, from the same snapshot, so a subscriber knows whether an
# announced transaction has finished: when the page is empty it is the only column set.
# MATERIALIZED computes the horizon once for both uses. No ORDER BY outside: a LATERAL
# subquery is joined by a nested loop, and with exactly one outer row its output is
# the subquery's own ordered output (an outer sort cost 10-25% of the read rate).
READ_ALL = f"""
WITH h AS MATERIALIZED (SELECT {HORIZON} AS horizon)
SELECT h.horizon, {EVENT_COLUMNS}
  FROM h
  LEFT JOIN LATERAL (
        SELECT * FROM eventstore.events e
         WHERE e.transaction_id < h.horizon
           AND (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
         ORDER BY e.transaction_id, e.position
         LIMIT $3
       ) e ON true
"""

# Per category, an ordered walk of the category index; then the top of the merge.
# `category = ANY(...)` on the index would return categories one after another and
# need a full sort of everything after the cursor instead.
READ_CATEGORIES = f"""
WITH h AS MATERIALIZED (SELECT {HORIZON} AS horizon)
SELECT h.horizon, {EVENT_COLUMNS}
  FROM h
  LEFT JOIN LATERAL (
        SELECT per_category.*
          FROM unnest($4::text[]) AS c (category)
         CROSS JOIN LATERAL (
                SELECT * FROM eventstore.events e
                 WHERE e.category = c.category
                   AND e.transaction_id < h.horizon
                   AND (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
                 ORDER BY e.transaction_id, e.position
                 LIMIT $3
               ) per_category
         ORDER BY per_category.transaction_id, per_category.position
         LIMIT $3
       ) e ON true
"""

# One row per stream (none if it never existed), one per event when there are events;
# in the subquery's order, as for READ_ALL.
READ_STREAM_FORWARD = f"""
SELECT s.deleted_at IS NOT NULL AS deleted, {EVENT_COLUMNS}
  FROM eventstore.streams s
  LEFT JOIN LATERAL (
        SELECT * FROM eventstore.events e
         WHERE e.stream_id = s.stream_id AND e.version >= $2
         ORDER BY e.version
         LIMIT $3
       ) e ON true
 WHERE s.stream_id = $1
"""

# Several streams at once, each from its own version; the first column names a deleted stream.
READ_STREAMS = f"""
SELECT CASE WHEN s.deleted_at IS NOT NULL THEN s.stream_id END AS deleted, {EVENT_COLUMNS}
  FROM unnest($1::text[], $2::bigint[]) AS w (stream_id, from_version)
  -- Lateral: one primary-key look-up per stream asked for, never a scan of all streams.
  CROSS JOIN LATERAL (SELECT * FROM eventstore.streams s WHERE s.stream_id = w.stream_id) s
  LEFT JOIN LATERAL (
        SELECT * FROM eventstore.events e
         WHERE e.stream_id = s.stream_id AND e.version >= w.from_version
         ORDER BY e.version
       ) e ON true
 ORDER BY s.stream_id, e.version
"""

READ_STREAM_BACKWARD = f"""
SELECT s.deleted_at IS NOT NULL AS deleted, {EVENT_COLUMNS}
  FROM eventstore.streams s
  LEFT JOIN LATERAL (
        SELECT * FROM eventstore.events e
         WHERE e.stream_id = s.stream_id AND e.version <= coalesce($2, s.version)
         ORDER BY e.version DESC
         LIMIT $3
       ) e ON true
 WHERE s.stream_id = $1
"""

STREAM_STATE = """
SELECT version, first_version, deleted_at IS NOT NULL AS deleted
  FROM eventstore.streams WHERE stream_id = $1
"""

LOCK_STREAM = STREAM_STATE + " FOR UPDATE"

# The stream's version and its last event's global position, locked against appends until the
# transaction ends (a claim on an unchanged stream must hold while the claim commits).
SHARE_STREAM_HEAD = """
SELECT s.version, s.deleted_at IS NOT NULL AS deleted, e.position
  FROM eventstore.streams s
  LEFT JOIN eventstore.events e ON e.stream_id = s.stream_id AND e.version = s.version
 WHERE s.stream_id = $1
   FOR SHARE OF s
"""

TOMBSTONE = """
INSERT INTO eventstore.streams AS s (stream_id, category, deleted_at) VALUES ($1, $2, now())
    ON CONFLICT (stream_id) DO UPDATE SET deleted_at = coalesce(s.deleted_at, now())
"""

DELETE_SNAPSHOT = "DELETE FROM eventstore.snapshots WHERE stream_id = $1"

TRUNCATE_EVENTS = "DELETE FROM eventstore.events WHERE stream_id = $1 AND version < $2"

TRUNCATE_STREAM = "UPDATE eventstore.streams SET first_version = $2 WHERE stream_id = $1"

SAVE_CHECKPOINT = """
INSERT INTO eventstore.checkpoints AS c (name, transaction_id, position) VALUES ($1, $2, $3)
    ON CONFLICT (name) DO UPDATE
    SET transaction_id = excluded.transaction_id, position = excluded.position, updated_at = now()
"""

LOAD_CHECKPOINT = "SELECT transaction_id, position FROM eventstore.checkpoints WHERE name = $1"

# A snapshot only replaces an older one: two writers racing cannot move it backwards.
SAVE_SNAPSHOT = """
INSERT INTO eventstore.snapshots AS s (stream_id, version, state) VALUES ($1, $2, $3)
    ON CONFLICT (stream_id) DO UPDATE
    SET version = excluded.version, state = excluded.state, recorded_at = now()
    WHERE s.version < excluded.version
"""

LOAD_SNAPSHOT = "SELECT version, state FROM eventstore.snapshots WHERE stream_id = $1"

# How far a named checkpoint is behind the log: the events after it that a reader may
# already be handed (the same horizon as READ_ALL, so it never counts transactions still
# running), counted up to $2, and when the oldest of them was recorded.
CHECKPOINT_LAG = f"""
WITH cursor AS (
    SELECT coalesce(max(transaction_id), '0'::xid8) AS tx, coalesce(max(position), 0) AS pos
      FROM eventstore.checkpoints WHERE name = $1
), pending AS (
    SELECT e.recorded_at FROM eventstore.events e, cursor c
     WHERE (e.transaction_id, e.position) > (c.tx, c.pos)
       AND e.transaction_id < {HORIZON}
     ORDER BY e.transaction_id, e.position
     LIMIT $2
)
SELECT count(*) AS events, min(recorded_at) AS oldest FROM pending
"""

# The same, counting only the categories $3 (what a reader subscribed to a few categories is handed):
# per category on its index (category, transaction_id, position), as READ_CATEGORIES reads them.
CHECKPOINT_LAG_CATEGORIES = f"""
WITH cursor AS (
    SELECT coalesce(max(transaction_id), '0'::xid8) AS tx, coalesce(max(position), 0) AS pos
      FROM eventstore.checkpoints WHERE name = $1
), pending AS (
    SELECT per_category.recorded_at
      FROM cursor c
     CROSS JOIN unnest($3::text[]) AS k (category)
     CROSS JOIN LATERAL (
            SELECT e.recorded_at FROM eventstore.events e
             WHERE e.category = k.category
               AND (e.transaction_id, e.position) > (c.tx, c.pos)
               AND e.transaction_id < {HORIZON}
             ORDER BY e.transaction_id, e.position
             LIMIT $2
           ) per_category
)
SELECT least(count(*), $2) AS events, min(recorded_at) AS oldest FROM pending
"""
