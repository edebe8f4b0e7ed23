"""Rebuilding a projection from the event store, without downtime.

A new generation is filled from the store's global log (never Kafka) while the live
consumers dual-write into it, up to the log's head as it was when the building pointer
was set; then the alias or Redis pointer swaps atomically, the applied prefix moves up
to that head, and the old generation is deleted after a grace period. One rebuild per
projection at a time (`rm:<projection>:rebuild-lock`). Progress goes to
`rm:<projection>:rebuild` and a callback. Why it loses nothing: `docs/projector.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import msgspec
from eventstore import LogPosition, RecordedEvent
from eventstore.queries import HORIZON

from projector_service.bootstrap import Projector
from projector_service.events import from_recorded
from projector_service.progress import LAST_POSITION, ProgressTracker
from projector_service.projections import Projection
from projector_service.runner import retry_transient
from projector_service.status import ProjectionStatus

__all__ = ["RebuildProgress", "RebuildRunning", "rebuild"]

log = logging.getLogger(__name__)

COUNT = "SELECT count(*) FROM eventstore.events WHERE category = ANY($1::text[])"

# The last event of the projection's categories that readers can see now (under the same
# horizon as read_all), so that reading up to it is exactly the work to do. The ORDER BY
# names the table's column: a bare `transaction_id` would name the output column, the
# text, and sort '998' after '1237' (a young cluster's ids cross such powers of ten in
# minutes), which made the rebuild stop long before the end of the log.
HEAD = f"""
SELECT e.transaction_id::text AS head_transaction_id, e.position AS head_position
  FROM eventstore.events e
 WHERE e.transaction_id < {HORIZON} AND e.category = ANY($1::text[])
 ORDER BY e.transaction_id DESC, e.position DESC
 LIMIT 1
"""
# How long to wait before reading again when the log shows nothing yet below the head.
EMPTY_PAGE_PAUSE_SECONDS = 0.05
# A head that stays invisible this long means something else is wrong: fail rather than hang.
HEAD_VISIBLE_WITHIN_SECONDS = 120.0
# The lock outlives a stalled rebuild by this long at most; renewed every third of it.
LOCK_SECONDS = 30
# How long the rebuild helps the tracker turn the restored prefix into a position.
POSITION_ROUNDS, POSITION_ROUND_PAUSE = 40, 0.05

# KEYS: the lock. ARGV: its holder. Deletes it only while it is still this holder's.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the lock. ARGV: its holder, seconds. Renews it unless another holder has it (a Redis
# that lost its data lost the lock too: it is taken again).
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RebuildRunning(RuntimeError):
    """Another rebuild of the same projection holds the lock."""


@contextlib.asynccontextmanager
async def _locked(projector: Projector, name: str, generation: str) -> AsyncIterator[None]:
    redis, key = projector.redis, projector.keyspace.rebuild_lock(name)
    if not await redis.set(key, generation, nx=True, ex=LOCK_SECONDS):
        holder = await redis.get(key)
        held_by = holder.decode() if isinstance(holder, bytes) else holder
        raise RebuildRunning(f"a rebuild of {name} is already running (generation {held_by})")
    renew_script = redis.register_script(_RENEW)

    async def renew() -> None:
        while True:
            await asyncio.sleep(LOCK_SECONDS / 3)
            with contextlib.suppress(Exception):  # an outage: the next round tries again
                await renew_script(keys=[key], args=[generation, LOCK_SECONDS])

    renewing = asyncio.create_task(renew(), name=f"rebuild-lock-{name}")
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(Exception):  # it expires by itself
            await redis.register_script(_UNLOCK)(keys=[key], args=[generation])


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    generation: str
    phase: str  # "reading", "swapping", "done"
    read: int
    total: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    projector: Projector,
    name: str,
    *,
    after: LogPosition = LogPosition.START,
    page_size: int = 1000,
    grace: float = 5.0,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildProgress:
    """Rebuild projection `name` into a new generation, swap it in, restore its position, drop the old one.

    Raises `RebuildRunning` while another rebuild of `name` runs.
    """
    projector.projection(name)
    generation = f"g{time.time_ns()}"
    async with _locked(projector, name, generation):
        return await _rebuild(projector, name, generation, after, page_size, grace, on_progress)


async def _rebuild(
    projector: Projector,
    name: str,
    generation: str,
    after: LogPosition,
    page_size: int,
    grace: float,
    on_progress: Callable[[RebuildProgress], None] | None,
) -> RebuildProgress:
    projection = projector.projection(name)
    head, total = await _begin(projector, projection, name, generation)
    progress = _Progress(projector, name, generation, total, on_progress)
    await _read_into(projector, projection, generation, after, head, page_size, progress)
    log.info(
        "rebuild read up to its head",
        extra={"projection": name, "generation": generation, "head": str(head), "read": progress.read},
    )
    await progress.report("swapping")
    await _swap_in(projector, projection, name, generation, after, head, grace)
    done = await progress.report("done")
    await projector.redis.delete(projector.keyspace.rebuild(name))
    return done


async def _begin(
    projector: Projector, projection: Projection, name: str, generation: str
) -> tuple[LogPosition, int]:
    """Create the new generation, point the live consumers at it, and say how far to read and how much."""
    await projection.create(generation)
    await projector.redis.set(projector.keyspace.building(name), generation)
    categories = list(projection.categories)
    # Every event a live consumer applied without also writing it here was visible before
    # the building pointer was set, so reading up to the head seen now is enough; later
    # events reach the new generation through the live consumers.
    row = await projector.pool.fetchrow(HEAD, categories)
    head = LogPosition(int(row[0]), int(row[1])) if row else LogPosition.START
    total = int(await projector.pool.fetchval(COUNT, categories))
    log.info(
        "rebuild started",
        extra={"projection": name, "generation": generation, "head": str(head), "total": total},
    )
    return head, total


class _Progress:
    """How far a rebuild got, reported to `rm:<projection>:rebuild` and the caller's callback."""

    def __init__(
        self,
        projector: Projector,
        name: str,
        generation: str,
        total: int,
        on_progress: Callable[[RebuildProgress], None] | None,
    ) -> None:
        self._redis, self._key = projector.redis, projector.keyspace.rebuild(name)
        self.name, self._generation, self._total = name, generation, total
        self._on_progress = on_progress
        self._started = time.monotonic()
        self.read = self.failed = 0

    async def report(self, phase: str) -> RebuildProgress:
        progress = RebuildProgress(
            projection=self.name,
            generation=self._generation,
            phase=phase,
            read=self.read,
            total=max(self._total, self.read),
            failed=self.failed,
            seconds=time.monotonic() - self._started,
        )
        fraction = progress.read / progress.total if progress.total else 1.0
        await self._redis.hset(
            self._key,
            mapping={
                "generation": self._generation,
                "phase": phase,
                "read": self.read,
                "total": progress.total,
                "progress": f"{fraction:.4f}",
                "events_per_second": f"{progress.rate:.0f}",
            },
        )
        if self._on_progress is not None:
            self._on_progress(progress)
        return progress


async def _read_into(
    projector: Projector,
    projection: Projection,
    generation: str,
    after: LogPosition,
    head: LogPosition,
    page_size: int,
    progress: _Progress,
) -> None:
    """Apply the log from `after` up to `head` to the new generation, page by page."""
    status = ProjectionStatus(name=f"rebuild {progress.name}")
    max_backoff = projector.settings.projector_max_backoff
    read_page = functools.partial(
        projector.store.read_all, limit=page_size, categories=list(projection.categories)
    )
    cursor = after
    while cursor < head:
        page = await _next_page(functools.partial(read_page, cursor), head, status, max_backoff)
        events = [from_recorded(event) for event in page]
        failures = await retry_transient(
            functools.partial(projection.apply, events, [generation]), status, max_backoff=max_backoff
        )
        progress.failed += len(failures)
        cursor = page[-1].log_position
        progress.read += len(page)
        await progress.report("reading")


async def _next_page(
    read_page: Callable[[], Awaitable[Sequence[RecordedEvent]]],
    head: LogPosition,
    status: ProjectionStatus,
    max_backoff: float,
) -> Sequence[RecordedEvent]:
    """The next page of the log below `head`, read again while it shows nothing yet."""
    waiting_since: float | None = None
    while True:
        page = await retry_transient(read_page, status, max_backoff=max_backoff)
        if page:
            return page
        # The head is known to be visible, but the horizon a read computes can dip for a
        # moment (a transaction of another database that ended between the snapshot and the
        # activity look-up still counts): stopping here would swap in a model missing the
        # events up to the head. Read again until the head is reached.
        waiting_since = waiting_since or time.monotonic()
        if time.monotonic() - waiting_since > HEAD_VISIBLE_WITHIN_SECONDS:
            raise RuntimeError(f"the log up to {head} did not become readable; nothing was swapped")
        await asyncio.sleep(EMPTY_PAGE_PAUSE_SECONDS)


async def _swap_in(
    projector: Projector,
    projection: Projection,
    name: str,
    generation: str,
    after: LogPosition,
    head: LogPosition,
    grace: float,
) -> None:
    """Swap the new generation in, restore the position a full rebuild reached, drop the old one."""
    old = await projection.swap(generation)
    if after == LogPosition.START:  # a partial rebuild holds only part of the log: no claim from it
        await _restore_position(projector, name, head)
    await projector.redis.delete(projector.keyspace.building(name))
    if old is not None and old != generation:
        await asyncio.sleep(grace)
        await projection.drop(old)


async def _restore_position(projector: Projector, name: str, head: LogPosition) -> None:
    """Move the projection's applied prefix to `head`, then advance its position as far as it goes.

    A tracker of its own (the service's keeps its own samples); the script behind both
    only ever moves the position forwards. Without live consumers (a rebuild from the
    command line while the service is down), the position stops before events they
    have not applied yet; the service's tracker moves it on once they have.
    """
    projection = projector.projection(name)
    redis, keyspace = projector.redis, projector.keyspace
    tracker = ProgressTracker(redis, keyspace, name, projector.pool, projection.categories)
    await tracker.restore(head)
    last = int(await projector.pool.fetchval(LAST_POSITION))
    previous: int | None = None
    for _ in range(POSITION_ROUNDS):
        reached = await tracker.advance()
        # Done at the end of the log, or when events after the head wait for the consumers.
        if reached.position >= last or (reached.pending_events and reached.position == previous):
            break
        previous = reached.position
        await asyncio.sleep(POSITION_ROUND_PAUSE)
    log.info("position restored", extra={"projection": name, "head": str(head), "position": reached.position})
