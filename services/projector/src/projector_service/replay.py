"""Applying events again on purpose: dead letters after a fix, one stream, or the log from a position.

Replays write into the live generation (and the one being rebuilt, if any)
through the same projection code as the consumer. Every write is guarded by the
stream version, so replaying what is already applied changes nothing: a replay
is safe to repeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec
from eventstore import LogPosition

from projector_service.bootstrap import Projector
from projector_service.deadletters import DeadLetter
from projector_service.events import (
    ProjectedEvent,
    UndecodableEvent,
    claim_holds,
    from_record,
    from_recorded,
    stored_claims,
)

__all__ = ["ReplayOutcome", "StreamNotFound", "replay_dead_letters", "replay_log", "replay_stream"]


class StreamNotFound(LookupError):
    """The store holds no event of the stream a replay names (a typo, or another environment's id)."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id} does not exist in the event store")
        self.stream_id = stream_id


class ReplayOutcome(msgspec.Struct, frozen=True):
    id: str
    projection: str
    outcome: str  # "applied", "skipped" (replayed before), "failed: ..."


async def replay_dead_letters(
    projector: Projector, letters: Sequence[DeadLetter], *, again: bool = False
) -> list[ReplayOutcome]:
    """Apply each dead letter to the projection that gave up on it; remember what succeeded."""
    outcomes: list[ReplayOutcome] = []
    replayed_key = projector.keyspace.replayed_dead_letters
    for letter in letters:
        if letter.projection not in projector.projections:
            continue
        member = f"{letter.projection}/{letter.id}"
        if not again and await projector.redis.sismember(replayed_key, member):
            outcomes.append(ReplayOutcome(letter.id, letter.projection, "skipped"))
            continue
        try:
            event = from_record(projector.registry, letter.key, letter.original_headers, letter.value)
        except UndecodableEvent as error:
            outcomes.append(ReplayOutcome(letter.id, letter.projection, f"failed: {error}"))
            continue
        # Only what the store holds is replayed: a forged record stays a dead letter.
        claims = await stored_claims(projector.pool, [event.event_id])
        if not claim_holds(claims, event.event_id, event.stream_id, event.version, event.position):
            outcomes.append(ReplayOutcome(letter.id, letter.projection, "failed: not-in-store"))
            continue
        failed = await _apply(projector, letter.projection, [event])
        if failed:
            outcomes.append(ReplayOutcome(letter.id, letter.projection, f"failed: {failed[event.event_id]}"))
            continue
        await projector.redis.sadd(replayed_key, member)
        outcomes.append(ReplayOutcome(letter.id, letter.projection, "applied"))
    return outcomes


async def replay_stream(projector: Projector, projection: str, stream_id: str) -> int:
    """Apply every event of one stream again; returns how many events were read.

    Raises `StreamNotFound` when the store holds no event of it: "0 events applied" would read
    as success for what is most likely a mistyped id.
    """
    events = [from_recorded(e) for e in await projector.store.read_stream(stream_id)]
    if not events:
        raise StreamNotFound(stream_id)
    failed = await _apply(projector, projection, events)
    if failed:
        raise RuntimeError(f"{len(failed)} event(s) failed: {next(iter(failed.values()))}")
    return len(events)


async def replay_log(
    projector: Projector, projection: str, after: LogPosition, *, page_size: int = 1000
) -> AsyncIterator[int]:
    """Apply the log after `after` again, page by page; yields the events done so far."""
    target = projector.projection(projection)
    done = 0
    while True:
        page = await projector.store.read_all(after, limit=page_size, categories=list(target.categories))
        if not page:
            return
        failed = await _apply(projector, projection, [from_recorded(e) for e in page])
        if failed:
            raise RuntimeError(f"{len(failed)} event(s) failed: {next(iter(failed.values()))}")
        after = page[-1].log_position
        done += len(page)
        yield done


async def _apply(projector: Projector, name: str, events: Sequence[ProjectedEvent]) -> dict[str, str]:
    projection = projector.projection(name)
    failed = await projection.apply(events, await projection.targets())
    await projector.trackers[name].mark_applied(e.position for e in events if e.event_id not in failed)
    return failed
