"""The event store on PostgreSQL (asyncpg).

Appends are one round trip to ``eventstore.append_events`` (sql/001_initial.sql),
which locks the stream's row, checks the expected version, recognises idempotent
retries and inserts the events. Reads of the global log are gap-safe: see
``queries.READ_ALL`` and ``docs/event-store.md``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import asyncpg
import msgspec

from eventstore import queries
from eventstore.connection import retrying, translated
from eventstore.errors import (
    ClaimRefused,
    ConcurrencyError,
    DuplicateEventId,
    EventDecodeError,
    StreamDeleted,
    TransactionOrderConflict,
)
from eventstore.mapper import DEFAULT_MAX_EVENT_BYTES, EncodedEvent, decode_rows, encode_events, stored_rows
from eventstore.notifications import Listener, Notifier
from eventstore.registry import EventRegistry
from eventstore.streams import category_of, check_stream_id
from eventstore.subscriptions import follow_log
from eventstore.types import (
    ANY,
    AppendResult,
    Call,
    Claim,
    Connection,
    ExpectedVersion,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StoredEvent,
    StreamState,
    Tracer,
    check_expected_version,
    check_limit,
    expectation_met,
)

__all__ = ["PostgresEventStore"]


class PostgresEventStore:
    """The ``EventStore`` interface on a PostgreSQL schema migrated by ``eventstore migrate``."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        registry: EventRegistry,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        retry_attempts: int = 3,
        notify: bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        """``notify=False``: no NOTIFY after appends, for a store nobody subscribes to (a transaction
        saved per append); subscriptions still find new events by polling. ``tracer`` (an
        OpenTelemetry ``Tracer``): one span per append and stream read, in the caller's trace."""
        self.pool = pool
        self.tracer = tracer
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        self.retry_attempts = retry_attempts
        self._notifier = Notifier(pool) if notify else None
        self._listener = Listener(pool)

    async def close(self) -> None:
        """Send pending notifications and give the LISTEN connection back (the pool stays open)."""
        if self._notifier is not None:
            await self._notifier.close()
        await self._listener.close()

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | msgspec.Struct],
        expected_version: ExpectedVersion = ANY,
        *,
        connection: Connection | None = None,
        claim: Claim | Call | None = None,
    ) -> AppendResult:
        """Append ``events`` atomically if the stream is at ``expected_version``.

        With ``connection`` the append joins the caller's transaction: append before
        the transaction's other writes, or a concurrent append to the same stream may
        force a ``TransactionOrderConflict`` (see ``docs/event-store.md``). With
        ``claim`` the store writes the claim's row (``Claim``) or calls the caller's
        function (``Call``) in the same statement; a refused claim (a key taken, a call
        that returned false) raises ``ClaimRefused`` and keeps nothing.
        """
        with self._span("eventstore append", stream_id, len(events)):
            return await self._append(stream_id, events, expected_version, connection, claim)

    async def _append(
        self,
        stream_id: str,
        events: Sequence[NewEvent | msgspec.Struct],
        expected_version: ExpectedVersion,
        connection: Connection | None,
        claim: Claim | Call | None,
    ) -> AppendResult:
        category = category_of(stream_id)
        check_expected_version(expected_version)
        encoded = encode_events(self.registry, events, self.max_event_bytes)
        if not encoded:
            if claim is not None:
                return await self._claim_unchanged(stream_id, expected_version, claim, connection)
            return await self._check_only(stream_id, expected_version, connection)
        query, args = queries.APPEND, _append_args(stream_id, category, expected_version, encoded)
        if isinstance(claim, Claim):
            query = queries.APPEND_WITH_CLAIM
            args = (*args, claim.scope, claim.key, claim.fingerprint, claim.ttl)
        elif claim is not None:
            query = queries.append_with_call(claim.function, len(claim.args))
            args = (*args, *claim.args)
        if connection is not None:
            row = await self._run_append(connection, stream_id, encoded, query, args)
        else:
            row = await self._retrying(
                lambda: self._use_pool_for_append(stream_id, encoded, query, args),
            )
        outcome = row["outcome"]
        if outcome == "ok" and self._notifier is not None:
            self._notifier.announce(category, row["transaction_id"])
        if outcome in ("ok", "idempotent"):
            return AppendResult(stream_id, row["stream_version"], list(row["positions"]))
        if outcome == "deleted":
            raise StreamDeleted(stream_id)
        if outcome == "order":
            raise TransactionOrderConflict(stream_id, expected_version, row["stream_version"])
        if outcome == "duplicate":
            raise DuplicateEventId(stream_id, list(row["duplicate_ids"] or []))
        raise ConcurrencyError(stream_id, expected_version, row["stream_version"])

    async def _use_pool_for_append(
        self, stream_id: str, encoded: list[EncodedEvent], query: str, args: tuple[Any, ...]
    ) -> asyncpg.Record:
        async with self.pool.acquire() as connection:
            return await self._run_append(connection, stream_id, encoded, query, args)

    async def _run_append(
        self,
        connection: Connection,
        stream_id: str,
        encoded: list[EncodedEvent],
        query: str,
        args: tuple[Any, ...],
    ) -> asyncpg.Record:
        async with translated():
            try:
                row = await connection.fetchrow(query, *args)
            except asyncpg.UniqueViolationError as e:
                # The stream row lock serialises versions, so this is an event id that
                # another stream took between the function's check and its insert.
                if e.constraint_name != "events_event_id":
                    raise
                ids = [event.event_id for event in encoded]
                raise DuplicateEventId(stream_id, ids, e.detail or "") from e
            except asyncpg.PostgresError as e:
                if e.sqlstate == queries.CLAIM_REFUSED:
                    raise ClaimRefused(stream_id) from e
                raise
        assert row is not None
        record: asyncpg.Record = row
        return record

    async def _check_only(
        self, stream_id: str, expected: ExpectedVersion, connection: Connection | None
    ) -> AppendResult:
        """An append without events: succeed or fail exactly as if it had some."""
        if connection is None:
            row = await self._retrying(lambda: self.pool.fetchrow(queries.STREAM_STATE, stream_id))
        else:
            async with translated():
                row = await connection.fetchrow(queries.STREAM_STATE, stream_id)
        if row is not None and row["deleted"]:
            raise StreamDeleted(stream_id)
        version = -1 if row is None else row["version"]
        if not expectation_met(expected, version):
            raise ConcurrencyError(stream_id, expected, version)
        return AppendResult(stream_id, version, [])

    async def _claim_unchanged(
        self, stream_id: str, expected: ExpectedVersion, claim: Claim | Call, connection: Connection | None
    ) -> AppendResult:
        """An append without events, with a claim: the expectation holds and the claim is written, or neither.

        A ``Call`` is called with the stream's head as it stands.

        Two statements in a transaction (this is the rare path: a command that changed
        nothing); the stream row is share-locked so no append slips in between.
        """

        async def run(connection: Connection) -> AppendResult:
            async with translated():
                row = await connection.fetchrow(queries.SHARE_STREAM_HEAD, stream_id)
                if row is not None and row["deleted"]:
                    raise StreamDeleted(stream_id)
                version, position = (-1, None) if row is None else (row["version"], row["position"])
                if not expectation_met(expected, version):
                    raise ConcurrencyError(stream_id, expected, version)
                if isinstance(claim, Claim):
                    query = queries.CLAIM_UNCHANGED
                    args = (
                        claim.scope,
                        claim.key,
                        claim.fingerprint,
                        stream_id,
                        version,
                        position,
                        claim.ttl,
                    )
                else:
                    query = queries.call_unchanged(claim.function, len(claim.args))
                    args = (stream_id, version, position, *claim.args)
                if not await connection.fetchval(query, *args):
                    raise ClaimRefused(stream_id)
            return AppendResult(stream_id, version, [])

        if connection is not None:
            return await run(connection)

        async def in_transaction() -> AppendResult:
            async with self.pool.acquire() as pooled, pooled.transaction():
                return await run(pooled)

        return await self._retrying(in_transaction)

    async def read_stream(
        self,
        stream_id: str,
        from_version: int | None = 0,
        *,
        backward: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` on (backward: down from it; -1/None: the end)."""
        check_stream_id(stream_id)
        check_limit(limit)
        if backward:
            query = queries.READ_STREAM_BACKWARD
            start = None if from_version is None or from_version < 0 else from_version
        else:
            query, start = queries.READ_STREAM_FORWARD, 0 if from_version is None else from_version
            if start < 0:
                raise ValueError(f"from_version must be >= 0 when reading forward, got {start}")
        with self._span("eventstore read", stream_id):
            rows = await self._retrying(lambda: self.pool.fetch(query, stream_id, start, limit))
        if rows and rows[0]["deleted"]:
            raise StreamDeleted(stream_id)
        return decode_rows(self.registry, rows)

    async def read_streams(self, starts: Mapping[str, int]) -> dict[str, list[RecordedEvent]]:
        """Several streams' events, each from its own start version on, in one round trip."""
        for stream_id, start in starts.items():
            check_stream_id(stream_id)
            if start < 0:
                raise ValueError(f"from_version must be >= 0, got {start} for {stream_id!r}")
        found: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in starts}
        if not starts:
            return found
        ids, versions = list(starts), list(starts.values())
        with self._span("eventstore read", f"{len(ids)} streams"):
            rows = await self._retrying(lambda: self.pool.fetch(queries.READ_STREAMS, ids, versions))
        for row in rows:
            if row["deleted"] is not None:
                raise StreamDeleted(row["deleted"])
        for event in decode_rows(self.registry, rows):
            found[event.stream_id].append(event)
        return found

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version, -1 when it has no events."""
        check_stream_id(stream_id)
        row = await self._retrying(lambda: self.pool.fetchrow(queries.STREAM_STATE, stream_id))
        if row is None:
            return -1
        if row["deleted"]:
            raise StreamDeleted(stream_id)
        version: int = row["version"]
        return version

    async def read_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events of the global log after ``after``, in log order.

        Gap-safe: an event of a transaction still running is never skipped; it appears
        after ``after`` once it commits, because the log is ordered by transaction id.
        """
        events, _ = await self._read_page(after, limit, categories)
        return events

    async def _read_page(
        self, after: LogPosition, limit: int, categories: Sequence[str] | None
    ) -> tuple[list[RecordedEvent], int]:
        rows = await self._fetch_page(after, limit, categories)
        horizon: int = rows[0][0]
        return decode_rows(self.registry, rows), horizon

    async def _fetch_page(
        self, after: LogPosition, limit: int, categories: Sequence[str] | None
    ) -> list[Any]:
        # Every row starts with the log horizon; with no events, one row holds only it.
        check_limit(limit)
        cursor = (after.transaction_id, after.position, limit)
        if categories is None:
            return await self._retrying(lambda: self.pool.fetch(queries.READ_ALL, *cursor))
        wanted = list(categories)
        return await self._retrying(lambda: self.pool.fetch(queries.READ_CATEGORIES, *cursor, wanted))

    async def subscribe_all(
        self,
        after: LogPosition = LogPosition.START,
        *,
        categories: Sequence[str] | None = None,
        checkpoint: str | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after`` (or after the stored ``checkpoint``), then new ones as they come.

        Woken by LISTEN/NOTIFY, polling every ``poll_interval`` seconds regardless.
        Close it with ``contextlib.aclosing`` to give its LISTEN slot back promptly.
        """
        if checkpoint is not None:
            after = await self.load_checkpoint(checkpoint) or after

        async def read_page(position: LogPosition, limit: int) -> tuple[list[RecordedEvent], int]:
            return await self._read_page(position, limit, categories)

        async for event in follow_log(
            read_page,
            self._listener,
            after,
            categories=categories,
            poll_interval=poll_interval,
            batch_size=batch_size,
        ):
            yield event

    async def read_all_stored(
        self,
        after: LogPosition = LogPosition.START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
    ) -> list[StoredEvent]:
        """``read_all`` without decoding the payloads: for code that forwards events as they are."""
        events, _ = await self._read_stored_page(after, limit, categories)
        return events

    async def _read_stored_page(
        self, after: LogPosition, limit: int, categories: Sequence[str] | None
    ) -> tuple[list[StoredEvent], int]:
        rows = await self._fetch_page(after, limit, categories)
        horizon: int = rows[0][0]
        return stored_rows(rows), horizon

    async def subscribe_all_stored(
        self,
        after: LogPosition = LogPosition.START,
        *,
        categories: Sequence[str] | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 500,
    ) -> AsyncIterator[StoredEvent]:
        """``subscribe_all`` without decoding the payloads (same order, same gap safety)."""

        async def read_page(position: LogPosition, limit: int) -> tuple[list[StoredEvent], int]:
            return await self._read_stored_page(position, limit, categories)

        async for event in follow_log(
            read_page,
            self._listener,
            after,
            categories=categories,
            poll_interval=poll_interval,
            batch_size=batch_size,
        ):
            yield event

    async def save_checkpoint(
        self, name: str, position: LogPosition, *, connection: Connection | None = None
    ) -> None:
        """Store a subscriber's position, optionally inside the caller's transaction."""
        args = (name, position.transaction_id, position.position)
        if connection is None:
            await self._retrying(lambda: self.pool.execute(queries.SAVE_CHECKPOINT, *args))
        else:
            async with translated():
                await connection.execute(queries.SAVE_CHECKPOINT, *args)

    async def load_checkpoint(self, name: str) -> LogPosition | None:
        """The stored position of a subscriber, or None."""
        row = await self._retrying(lambda: self.pool.fetchrow(queries.LOAD_CHECKPOINT, name))
        return None if row is None else LogPosition(row["transaction_id"], row["position"])

    async def save_snapshot(self, stream_id: str, version: int, state: msgspec.Struct) -> None:
        """Store ``state`` as the stream's state after ``version`` (an older snapshot never wins)."""
        check_stream_id(stream_id)
        data = msgspec.json.encode(state).decode()
        await self._retrying(lambda: self.pool.execute(queries.SAVE_SNAPSHOT, stream_id, version, data))

    async def load_snapshot[S](self, stream_id: str, type_: type[S]) -> tuple[int, S] | None:
        """The stream's latest snapshot as (version, state), or None.

        Raises ``EventDecodeError`` when the stored state no longer fits ``type_``.
        """
        check_stream_id(stream_id)
        row = await self._retrying(lambda: self.pool.fetchrow(queries.LOAD_SNAPSHOT, stream_id))
        if row is None:
            return None
        try:
            return row["version"], msgspec.json.decode(row["state"], type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise EventDecodeError(
                f"snapshot:{type_.__name__}", 0, str(e), data=row["state"], stream_id=stream_id
            ) from e

    async def delete_stream(self, stream_id: str, expected_version: ExpectedVersion = ANY) -> None:
        """Tombstone the stream; deleting a deleted stream is a no-op.

        The stream's events stay in the global log (projections keep what they built);
        its snapshot is dropped. Use ``truncate_before`` as well to erase the events.
        """
        category = category_of(stream_id)
        check_expected_version(expected_version)

        async def tombstone() -> None:
            async with self.pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(queries.LOCK_STREAM, stream_id)
                if row is not None and row["deleted"]:
                    return
                version = -1 if row is None else row["version"]
                if not expectation_met(expected_version, version):
                    raise ConcurrencyError(stream_id, expected_version, version)
                await connection.execute(queries.TOMBSTONE, stream_id, category)
                await connection.execute(queries.DELETE_SNAPSHOT, stream_id)

        await self._retrying(tombstone)

    async def truncate_before(self, stream_id: str, version: int) -> None:
        """Erase the stream's events below ``version`` from the stream and the global log.

        Versions continue where they were; a later ``read_stream`` from 0 starts at
        ``version``. Snapshots are kept so aggregates can still be loaded.
        """
        check_stream_id(stream_id)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"truncate_before needs a version >= 0, got {version!r}")

        async def truncate() -> None:
            async with self.pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(queries.LOCK_STREAM, stream_id)
                if row is None:
                    return
                first = max(row["first_version"], min(version, row["version"] + 1))
                await connection.execute(queries.TRUNCATE_EVENTS, stream_id, first)
                await connection.execute(queries.TRUNCATE_STREAM, stream_id, first)

        await self._retrying(truncate)

    def _span(self, name: str, stream: str, events: int | None = None) -> AbstractContextManager[Any]:
        if self.tracer is None:
            return contextlib.nullcontext()
        attributes: dict[str, str | int] = {"db.system.name": "postgresql", "eventstore.stream": stream}
        if events is not None:
            attributes["eventstore.events"] = events
        return self.tracer.start_as_current_span(name, attributes=attributes)

    async def _retrying[T](self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retrying(operation, attempts=self.retry_attempts)


def _append_args(
    stream_id: str, category: str, expected: ExpectedVersion, encoded: list[EncodedEvent]
) -> tuple[Any, ...]:
    if expected is StreamState.ANY:
        kind, number = "any", None
    elif expected is StreamState.STREAM_EXISTS:
        kind, number = "exists", None
    else:
        kind, number = "exact", expected
    ids: list[uuid.UUID] = []
    types: list[str] = []
    versions: list[int] = []
    data: list[str] = []
    metadata: list[str] = []
    for event in encoded:
        ids.append(event.event_id)
        types.append(event.event_type)
        versions.append(event.schema_version)
        data.append(event.data.decode())
        metadata.append(event.metadata.decode())
    return stream_id, category, kind, number, ids, types, versions, data, metadata
