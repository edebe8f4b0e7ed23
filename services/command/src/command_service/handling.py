"""Running one command: load the stream, decide, append with the idempotency key, retry on a lost race.

This is the whole write path, kept in one function so its order is visible:

1. the stream is loaded (`eventstore.load`: snapshot plus later events);
2. If-Match, when sent, must name the version just loaded (else 412);
3. the aggregate decides; a refusal propagates as a `DomainError`;
4. in one transaction the events are appended at the loaded version, then the
   key is recorded with the response (see `command_service.idempotency`).

The key is not looked up first: almost every request carries a new key, and the
insert in step 4 finds a used one anyway (it conflicts, the transaction rolls
back, nothing is appended). Only then, or when step 2 or 3 refuses (a retry meets
the state its first attempt made), is the stored answer read and replayed, or the
key refused if it answered a different request. That saves a round trip on
every first attempt.

A lost race (`ConcurrencyError`) with If-Match is the client's stale view: 412.
Without If-Match the command is decided again on fresh state, up to
`max_attempts` times with a little jittered backoff, because two clients acting
on one stream at once is normal and the domain may well accept both.

`eventstore.execute` runs the same loop but cannot write the key row in the
append's transaction, which is what makes a retried command append nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import msgspec
from eventstore.aggregate import Decider, load
from eventstore.errors import ConcurrencyError, EventStoreError
from eventstore.registry import EventRegistry
from eventstore.store import EventStore
from eventstore.types import Metadata, NewEvent
from fulfilment.errors import DomainError

from command_service.errors import PreconditionFailed, TooMuchContention
from command_service.idempotency import IdempotencyKeys, StoredResponse

__all__ = ["CommandAccepted", "CommandContext", "Outcome", "Services", "handle"]

log = logging.getLogger("command_service.handling")


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """Where a command left its stream: its version and the global position of its last event.

    `position` is the consistency token: a query that waits for the log to reach it
    sees the command's effect. For a command that changed nothing it is the position
    of the stream's last event. `events` names the events the command appended
    (none when it changed nothing, such as a repeated confirmation).
    """

    stream_id: str
    version: int
    position: Annotated[
        int | None,
        msgspec.Meta(
            description="The consistency token: the global position of the command's last event. Send it "
            "to the query service as the `X-Consistency-Token` header to read your own write."
        ),
    ]
    events: list[str]


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What the request adds to a command: who, which key, which version it expects, trace ids."""

    subject: str
    idempotency_key: str
    fingerprint: bytes
    if_match: int | None
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: CommandAccepted
    status_code: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class Services:
    """The adapters the write path uses; built once at start-up."""

    pool: asyncpg.Pool[Any]
    store: EventStore
    registry: EventRegistry
    keys: IdempotencyKeys
    max_attempts: int


_accepted_decoder = msgspec.json.Decoder(CommandAccepted)


async def handle[S, C, E: msgspec.Struct](
    services: Services,
    decider: Decider[S, C, E],
    stream_id: str,
    command: C,
    context: CommandContext,
    *,
    status_code: int = 200,
    new_stream: bool = False,
) -> Outcome:
    """Run `command` against the stream `stream_id` as described in the module docstring.

    `new_stream`: the caller just made the stream id up (a fresh UUID), so there is
    nothing to load; the append still insists that the stream does not exist.
    """
    for attempt in range(1, services.max_attempts + 1):
        if new_stream:
            state, version = decider.initial_state, -1
        else:
            state, version = await load(services.store, decider, stream_id)
        try:
            if context.if_match is not None and context.if_match != version:
                raise PreconditionFailed(stream_id, context.if_match, version)
            events = decider.decide(state, command)
        except (DomainError, PreconditionFailed):
            # A retry of a command that already went through meets the state it made itself.
            if (replay := await _replay(services, context)) is not None:
                return replay
            raise
        try:
            accepted = await _write(services, stream_id, version, events, context, status_code)
        except ConcurrencyError as error:
            if (replay := await _replay(services, context)) is not None:
                return replay
            if context.if_match is not None:
                raise PreconditionFailed(stream_id, context.if_match, error.actual) from error
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            continue
        except _KeyTaken:
            if (replay := await _replay(services, context)) is not None:
                return replay
            continue  # the key expired in between: run the command afresh
        if events and decider.snapshot_every:
            await _maybe_snapshot(services.store, decider, stream_id, state, version, events)
        return Outcome(accepted, status_code, replayed=False)
    raise TooMuchContention(f"{stream_id} kept changing during {services.max_attempts} attempts; try again")


async def _replay(services: Services, context: CommandContext) -> Outcome | None:
    stored = await services.keys.find(context.subject, context.idempotency_key, context.fingerprint)
    if stored is None:
        return None
    return Outcome(_accepted_decoder.decode(stored.body), stored.status_code, replayed=True)


class _KeyTaken(Exception):
    """A concurrent request with the same key committed first; roll this one back."""


async def _write(
    services: Services,
    stream_id: str,
    version: int,
    events: Sequence[msgspec.Struct],
    context: CommandContext,
    status_code: int,
) -> CommandAccepted:
    new_events = [NewEvent(data=event, metadata=context.metadata) for event in events]
    position = None
    if not events:
        last = await services.store.read_stream(stream_id, None, backward=True, limit=1)
        position = last[0].position if last else None
    async with services.pool.acquire() as connection, connection.transaction():
        if events:
            result = await services.store.append(stream_id, new_events, version, connection=connection)
            accepted = CommandAccepted(
                stream_id=stream_id,
                version=result.version,
                position=result.positions[-1],
                events=[services.registry.type_name(type(event)) for event in events],
            )
        else:
            # Nothing to append, but the version must still hold when the key is recorded.
            await services.store.append(stream_id, [], version, connection=connection)
            accepted = CommandAccepted(stream_id=stream_id, version=version, position=position, events=[])
        response = StoredResponse(
            fingerprint=context.fingerprint, status_code=status_code, body=msgspec.json.encode(accepted)
        )
        if not await services.keys.claim(connection, context.subject, context.idempotency_key, response):
            raise _KeyTaken
    return accepted


async def _maybe_snapshot[S, C, E: msgspec.Struct](
    store: EventStore, decider: Decider[S, C, E], stream_id: str, state: S, version: int, events: Sequence[E]
) -> None:
    every = decider.snapshot_every
    after = version + len(events)
    if not every or (version + 1) // every == (after + 1) // every:
        return
    new_state = decider.fold(state, events)
    if not isinstance(new_state, msgspec.Struct):
        return
    try:
        await store.save_snapshot(stream_id, after, new_state)
    except EventStoreError as error:
        # The events are stored; a missing snapshot only makes the next load longer.
        log.warning("could not snapshot %s at version %d: %s", stream_id, after, error)
