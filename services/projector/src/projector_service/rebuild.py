"""Rebuilding a projection from the event store, without downtime.

1. Create a new, empty generation (a new index with the mapping of this code's
   `ORDER_MAPPING_VERSION`; a new Redis key space) and point
   `rm:<projection>:building` at it. From their next batch on, the live
   consumers write every event to the live generation *and* to this one.
2. Read the store's global log (never Kafka) from the start, or from
   `--from-position`, page by page into the new generation, with the same
   projection code. Live writes racing with these are harmless: every write is
   guarded by the stream version, and a writer that meets a gap fills it from the
   store first.
3. The rebuild reads up to the head of the log (its last visible event in log
   order) as it was right after the pointer was set. Then every event is in the
   new generation: any event a live consumer applied without seeing the pointer
   was published by the relay, so visible in the log, before the pointer was
   set, and is at or before that head; every later event is dual-written by the
   live consumers. So the rebuild ends even while writes go on.
4. Swap atomically: the alias moves to the new index in one request; the Redis
   pointer `rm:redis:live` is replaced with one `SET`. Readers resolve the alias
   or the pointer once per request, so none sees a half-built model.
5. Clear the building pointer, wait a grace period (readers that resolved the
   old generation finish), and delete the old generation.

Progress (read, total, rate, ETA) goes to `rm:<projection>:rebuild` for
`/metrics`, and to a callback for the CLI's progress bar.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import msgspec
from eventstore import LogPosition
from eventstore.queries import HORIZON

from projector_service.bootstrap import Projector
from projector_service.events import from_recorded
from projector_service.runner import retry_transient
from projector_service.status import ProjectionStatus

__all__ = ["RebuildProgress", "rebuild"]

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
    """Rebuild projection `name` into a new generation, swap it in, drop the old one."""
    projection = projector.projection(name)
    redis, keyspace = projector.redis, projector.keyspace
    generation = f"g{time.time_ns()}"
    status = ProjectionStatus(name=f"rebuild {name}")
    max_backoff = projector.settings.projector_max_backoff
    await projection.create(generation)
    await redis.set(keyspace.building(name), generation)
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
    started = time.monotonic()
    read = failed = 0

    async def report(phase: str) -> RebuildProgress:
        progress = RebuildProgress(
            projection=name,
            generation=generation,
            phase=phase,
            read=read,
            total=max(total, read),
            failed=failed,
            seconds=time.monotonic() - started,
        )
        fraction = progress.read / progress.total if progress.total else 1.0
        await redis.hset(
            keyspace.rebuild(name),
            mapping={"generation": generation, "phase": phase, "read": read, "total": progress.total,
                     "progress": f"{fraction:.4f}", "events_per_second": f"{progress.rate:.0f}"},
        )  # fmt: skip
        if on_progress is not None:
            on_progress(progress)
        return progress

    cursor = after
    waiting_since: float | None = None
    while cursor < head:
        page = await retry_transient(
            functools.partial(projector.store.read_all, cursor, limit=page_size, categories=categories),
            status,
            max_backoff=max_backoff,
        )
        if not page:
            # The head is known to be visible, but the horizon a read computes can dip for a
            # moment (a transaction of another database that ended between the snapshot and the
            # activity look-up still counts): stopping here would swap in a model missing the
            # events up to the head. Read again until the head is reached.
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since > HEAD_VISIBLE_WITHIN_SECONDS:
                raise RuntimeError(f"the log up to {head} did not become readable; nothing was swapped")
            await asyncio.sleep(EMPTY_PAGE_PAUSE_SECONDS)
            continue
        waiting_since = None
        events = [from_recorded(event) for event in page]
        failures = await retry_transient(
            functools.partial(projection.apply, events, [generation]), status, max_backoff=max_backoff
        )
        failed += len(failures)
        cursor = page[-1].log_position
        read += len(page)
        await report("reading")

    log.info(
        "rebuild read up to its head",
        extra={"projection": name, "generation": generation, "head": str(head), "read": read},
    )
    await report("swapping")
    old = await projection.swap(generation)
    await redis.delete(keyspace.building(name))
    if old is not None and old != generation:
        await asyncio.sleep(grace)
        await projection.drop(old)
    done = await report("done")
    await redis.delete(keyspace.rebuild(name))
    return done
