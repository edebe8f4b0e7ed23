"""The position a projection has reached, tracked against the event store.

A projection has reached P when every event at or below P is applied, which is not
"the highest position applied": partitions are consumed in parallel and positions are
not in log order. Applied positions go into a Redis sorted set; a tracker walks the
gap-safe log from the applied prefix and turns it into a position, written with a
compare-and-set (never backwards) and published on its channel. The argument, step by
step: `docs/projector.md` ("The position a projection has reached").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec
from eventstore import LogPosition
from eventstore.connection import translated
from eventstore.errors import EventStoreError
from eventstore.queries import HORIZON
from eventstore.types import Pool
from readmodels.keyspace import Keyspace
from readmodels.redis_reads import REDIS_TRANSIENT
from redis.asyncio import Redis

__all__ = ["ProgressTracker", "TrackerRound"]

log = logging.getLogger(__name__)

# The identity sequence behind eventstore.events.position (cache 1: values are handed out in order).
LAST_POSITION = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM eventstore.events_position_seq"

PAGE = f"""
WITH h AS MATERIALIZED (
    SELECT {HORIZON} AS horizon, pg_snapshot_xmax(pg_current_snapshot()) AS xmax)
SELECT h.horizon::text, h.xmax::text, e.transaction_id::text, e.position, e.category, e.recorded_at
  FROM h
  LEFT JOIN LATERAL (
        SELECT transaction_id, position, category, recorded_at FROM eventstore.events e
         WHERE e.transaction_id < h.horizon
           AND (e.transaction_id, e.position) > ($1::text::xid8, $2::bigint)
         ORDER BY e.transaction_id, e.position
         LIMIT $3
       ) e ON true
"""

# KEYS: position hash, applied set. ARGV: position, transaction id, log position, channel,
# then the folded positions. The position and the log prefix only move forwards.
ADVANCE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'position') or '-1')
local new = tonumber(ARGV[1])
local xid = redis.call('HGET', KEYS[1], 'transaction_id') or '0'
if #ARGV[2] > #xid or (#ARGV[2] == #xid and ARGV[2] > xid) or
   (ARGV[2] == xid and tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], 'log_position') or '0')) then
  redis.call('HSET', KEYS[1], 'transaction_id', ARGV[2], 'log_position', ARGV[3])
end
for i = 5, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
-- Marks at or below the position are settled; redeliveries of old batches mark them again.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', math.max(new, current))
if new > current then
  redis.call('HSET', KEYS[1], 'position', ARGV[1])
  redis.call('PUBLISH', ARGV[4], ARGV[1])
  return new
end
return current
"""


# What a round of a tracker may fail with and be tried again: the store (translated) or Redis.
_RETRIED: tuple[type[BaseException], ...] = (EventStoreError, *REDIS_TRANSIENT)


class TrackerRound(msgspec.Struct, frozen=True):
    """What one round found: the position, the applied prefix, and how far behind the log it is."""

    position: int
    prefix: LogPosition
    pending_events: int  # events of the projection's categories after the prefix, in the page read
    oldest_pending: datetime | None


class ProgressTracker:
    """Marks applied positions and advances the projection's position (see the module's docstring)."""

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        projection: str,
        pool: Pool,
        categories: Sequence[str],
        *,
        page_size: int = 2000,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._categories = frozenset(categories)
        self._page_size = page_size
        self._position_key = keyspace.position(projection)
        self._applied_key = keyspace.applied(projection)
        self._advance = redis.register_script(ADVANCE)
        self._samples: deque[tuple[int, int]] = deque(maxlen=1000)  # (last position L, xmax X)
        self._folded_last_round = False
        self.woken = asyncio.Event()
        self.last: TrackerRound | None = None

    async def mark_applied(self, positions: Iterable[int]) -> None:
        """Record positions whose writes are durable (call before committing the Kafka offsets)."""
        members = {str(p): p for p in positions}
        if members:
            await self._redis.zadd(self._applied_key, members)
            self.woken.set()

    async def position(self) -> int:
        value = await self._redis.hget(self._position_key, "position")
        return int(value) if value is not None else -1

    async def restore(self, prefix: LogPosition) -> None:
        """Move the applied prefix up to `prefix` (never back): a rebuild put everything up to it in.

        After Redis lost the position with the model, the prefix is at the start of the log
        and the applied marks of the events before the loss are gone, so the walk could never
        pass them; a rebuild that read the log up to its head knows better. The next rounds
        turn the prefix into a position.
        """
        await self._advance(
            keys=[self._position_key, self._applied_key],
            args=[-1, str(prefix.transaction_id), prefix.position, self._position_key],
        )
        self.woken.set()

    async def _prefix(self) -> tuple[LogPosition, int]:
        values = await self._redis.hmget(self._position_key, ["transaction_id", "log_position", "position"])
        xid, position, reached = (int(v) if v is not None else None for v in values)
        prefix = LogPosition(xid or 0, position or 0)
        return prefix, -1 if reached is None else reached

    async def advance(self) -> TrackerRound:
        """One round: walk the log from the applied prefix and store how far it got."""
        prefix, reached = await self._prefix()
        async with self._pool.acquire() as connection:
            last_position = int(await connection.fetchval(LAST_POSITION))
            rows = await connection.fetch(PAGE, str(prefix.transaction_id), prefix.position, self._page_size)
        horizon, xmax = int(rows[0][0]), int(rows[0][1])
        self._samples.append((last_position, xmax))
        events = [row for row in rows if row[2] is not None]
        mine = [int(row[3]) for row in events if row[4] in self._categories]
        applied: set[int] = set()
        # Positions at or below the reached position are applied by definition; their marks
        # are dropped from the set as soon as the position passes them.
        mine = [p for p in mine if p > reached]
        if mine:
            scores = await self._redis.zmscore(self._applied_key, [str(p) for p in mine])
            applied = {p for p, score in zip(mine, scores, strict=True) if score is not None}
        folded: list[int] = []
        oldest: datetime | None = None
        pending = 0
        first_pending: int | None = None  # lowest position of an unapplied event in the page
        for row in events:
            position = int(row[3])
            done = position in applied or position <= reached
            if pending == 0 and (row[4] not in self._categories or done):
                prefix = LogPosition(int(row[2]), position)
                if row[4] in self._categories and position > reached:
                    folded.append(position)
                continue
            if row[4] in self._categories and not done:
                pending += 1
                oldest = oldest or row[5]
                first_pending = position if first_pending is None else min(first_pending, position)
        # The page holds every visible event after the prefix when it is not full.
        whole = len(events) < self._page_size
        safe = reached
        for last, below in list(self._samples):
            if prefix.transaction_id >= below:
                safe = max(safe, last)  # all of the sample's transactions are inside the prefix
                self._samples.remove((last, below))
            elif whole and horizon >= below:
                # All of the sample's transactions finished and their events are in the page:
                # everything at or below `last` is applied except what the page still holds.
                bound = last if first_pending is None else min(last, first_pending - 1)
                safe = max(safe, bound)
                if bound == last:
                    self._samples.remove((last, below))
        position = int(
            await self._advance(
                keys=[self._position_key, self._applied_key],
                args=[safe, str(prefix.transaction_id), prefix.position, self._position_key, *folded],
            )
        )
        self._folded_last_round = bool(folded)
        self.last = TrackerRound(position, prefix, pending, oldest)
        return self.last

    async def run(self, *, interval: float = 0.2, follow_up: float = 0.005) -> None:
        """Advance whenever positions are marked here, and every `interval` for other instances' marks.

        While a round leaves samples waiting for transactions that were running during
        its read (the usual case under load), the next round comes after `follow_up`:
        those transactions end within milliseconds, and a reader is waiting for them.
        """
        while True:
            # Only right after progress: a tracker behind a backlog must not poll the store flat out.
            wait = follow_up if self._samples and self._folded_last_round else interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.woken.wait()
            self.woken.clear()
            try:
                async with translated():
                    await self.advance()
            except _RETRIED as error:
                # A store going away (or a statement it refused) is worth another round later.
                log.warning("position tracker: %s", error)
                await asyncio.sleep(interval)
