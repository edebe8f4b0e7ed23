"""Running one command: the event store's `execute`, plus this service's policy around it.

The idempotency key goes with the append as a `Claim` and is read only when the
command is refused, to replay its first answer; If-Match is never retried (412);
commands on one stream take turns in this process (`command_service.queues`); a race
lost to another process is decided again up to `max_attempts` times, then 409.
See the service's README, "How a command runs".
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import msgspec
from eventstore import (
    ClaimRefused,
    ConcurrencyError,
    Decider,
    EventRegistry,
    EventStore,
    Metadata,
    StateCache,
    StoredClaim,
    execute,
)
from fulfilment.errors import DomainError

from command_service.errors import PreconditionFailed, TooMuchContention
from command_service.idempotency import IdempotencyKeys, fingerprint
from command_service.queues import StreamQueues
from command_service.related import Related

__all__ = ["CommandAccepted", "CommandRequest", "Outcome", "Services", "handle"]


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
    queues: StreamQueues = field(default_factory=StreamQueues)
    # The states this process last loaded or wrote: a load reads only the events after them
    # (a busy stock item's state is large, and placing an order reads every line's item).
    states: StateCache = field(default_factory=StateCache)

    @property
    def related(self) -> Related:
        """Reads of the streams a command names besides its own, through this process's state cache."""
        return Related(self.store, self.states)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command's request before its body: the service's adapters, who asks, with which key and headers.

    `status_code` is the endpoint's success status, as its route decorator declares it: the one place
    it is set, and what a replay of the command answers with too (the key's fingerprint covers method
    and path, so a replay reaches the same endpoint).
    """

    services: Services
    subject: str
    idempotency_key: str
    if_match: int | None
    method: str
    path: str
    status_code: int
    metadata: Metadata

    def fingerprint(self, body: msgspec.Struct | None) -> bytes:
        """What the idempotency key must match: method, path and the body as decoded and re-encoded."""
        return fingerprint(self.method, self.path, b"" if body is None else msgspec.json.encode(body))


async def handle[S, C, E: msgspec.Struct](
    request: CommandRequest,
    decider: Decider[S, C, E],
    stream_id: str,
    command: C,
    body: msgspec.Struct | None = None,
    *,
    new_stream: bool = False,
    check: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """Run `command` against the stream `stream_id` as described in the module docstring.

    `body` is the request body the command came from: part of what the idempotency key must match.
    `new_stream`: the caller just made the stream id up (a fresh UUID), so there is
    nothing to load; the append still insists that the stream does not exist.
    `check`: rules across streams (`fulfilment.rules`), run in the stream's turn just before
    the command; what it refuses is answered like a refusal of the command itself.
    """
    services = request.services
    request_fingerprint = request.fingerprint(body)
    claim = services.keys.claim(request.subject, request.idempotency_key, request_fingerprint)
    try:
        # A stream id just made up has nobody to queue behind.
        async with contextlib.nullcontext() if new_stream else services.queues.turn(stream_id):
            if check is not None:
                await check()
            executed = await execute(
                services.store,
                decider,
                stream_id,
                command,
                metadata=request.metadata,
                expected_version=request.if_match,
                new_stream=new_stream,
                claim=claim,
                max_attempts=services.max_attempts,
                cache=services.states,
            )
    except (DomainError, ConcurrencyError, ClaimRefused) as error:
        # A retry of a command that already went through meets the state (or the key) it made itself.
        stored = await services.keys.find(request.subject, request.idempotency_key, request_fingerprint)
        if stored is not None:
            return _replay(request, stored)
        if isinstance(error, ConcurrencyError) and request.if_match is not None:
            raise PreconditionFailed(stream_id, request.if_match, error.actual) from error
        if isinstance(error, ConcurrencyError | ClaimRefused):
            # ClaimRefused without a stored answer: the key expired in the meantime. Rare enough
            # to answer like contention, which the client retries.
            raise TooMuchContention(f"{stream_id} kept changing while the command ran; try again") from error
        raise
    accepted = CommandAccepted(
        stream_id=stream_id,
        version=executed.version,
        position=executed.position,
        events=[services.registry.type_name(type(event)) for event in executed.events],
    )
    return Outcome(accepted, request.status_code, replayed=False)


def _replay(request: CommandRequest, stored: StoredClaim) -> Outcome:
    accepted = CommandAccepted(
        stream_id=stored.stream_id,
        version=stored.version,
        position=stored.position,
        events=stored.event_types,
    )
    return Outcome(accepted, request.status_code, replayed=True)
