"""Read-your-writes: waiting, bounded, until a read model has reached a consistency token.

`PositionWatch` keeps one subscription per process to the projections' position
channels and wakes waiting requests (a token already reached costs no round trip; a
last read at the deadline covers a reconnecting subscription). `SearchVisibility` then
makes sure an index refresh started after the position was reached has finished,
shared by concurrent searches (`docs/query.md`, "Read your own writes").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from readmodels.keyspace import PROJECTIONS, Keyspace, read_position
from readmodels.order_queries import OrderSearchReader
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["PositionWatch", "SearchVisibility"]

log = logging.getLogger("query_service.consistency")

_RETRY_SECONDS = 0.2
_MAX_RETRY_SECONDS = 5.0

type _Waiter = tuple[int, asyncio.Future[None]]


class PositionWatch:
    """The projections' positions as the projector announces them, and waiting for one."""

    def __init__(self, redis: Redis, subscriber: Redis, keyspace: Keyspace) -> None:
        self._redis = redis
        self._subscriber = subscriber  # a client of its own: a subscribed connection does nothing else
        self._keyspace = keyspace
        self._channels = {keyspace.position(name): name for name in PROJECTIONS}
        self._known = dict.fromkeys(PROJECTIONS, -1)
        self._waiters: dict[str, set[_Waiter]] = {name: set() for name in PROJECTIONS}
        self.subscribed = asyncio.Event()

    def known(self, projection: str) -> int:
        """The highest position announced or read so far (a lower bound of the real one)."""
        return self._known[projection]

    async def wait(self, projection: str, position: int, *, timeout: float) -> int | None:
        """Wait until `projection` has reached `position`; None once it has, else the position reached."""
        if self._known[projection] >= position:
            return None
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (position, woken)
        self._waiters[projection].add(waiter)
        try:
            self._note(projection, await read_position(self._redis, self._keyspace, projection))
            if not woken.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await woken
            if not woken.done():
                self._note(projection, await read_position(self._redis, self._keyspace, projection))
        finally:
            self._waiters[projection].discard(waiter)
        reached = self._known[projection]
        return None if reached >= position else reached

    def _note(self, projection: str, position: int, *, latest: bool = False) -> None:
        """Record a position read or announced; `latest`: it replaces what was known, even if lower.

        Positions only move forwards, except when Redis lost the read models (a restart without
        persistence): the position starts again from nothing until the projector's repair gives
        it back (reads of the lost model answer "being rebuilt" meanwhile). Announcements come in
        order, so each one is the latest; a read may race an announcement, so it only ever raises.
        """
        if position <= self._known[projection] and not latest:
            return
        self._known[projection] = position
        for waiter in [w for w in self._waiters[projection] if w[0] <= position]:
            if not waiter[1].done():
                waiter[1].set_result(None)

    async def close(self) -> None:
        """Close the subscription's own connection (after `run` was cancelled)."""
        await self._subscriber.aclose()

    async def run(self) -> None:
        """Listen for announcements until cancelled, resubscribing after a lost connection."""
        delay = _RETRY_SECONDS
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(*self._channels)
                # Announcements made while not subscribed are lost: read where each projection is now.
                for name in PROJECTIONS:
                    self._note(name, await read_position(self._redis, self._keyspace, name), latest=True)
                self.subscribed.set()
                delay = _RETRY_SECONDS
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None:
                        self._announced(message["channel"], message["data"])
            except (RedisError, OSError) as error:
                self.subscribed.clear()
                log.warning("position announcements: %s; resubscribing in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_SECONDS)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _announced(self, channel: bytes | str, data: bytes | str) -> None:
        name = self._channels.get(channel.decode() if isinstance(channel, bytes) else channel)
        with contextlib.suppress(ValueError):
            if name is not None:
                self._note(name, int(data), latest=True)


class SearchVisibility:
    """Makes sure searches see every search-projection write up to a position."""

    def __init__(self, reader: OrderSearchReader, redis: Redis, keyspace: Keyspace) -> None:
        self._reader = reader
        self._redis = redis
        self._keyspace = keyspace
        self._visible = -1
        self._refreshing: asyncio.Task[None] | None = None

    async def ensure(self, position: int) -> None:
        """Return once searches see every write of the search projection at or below `position`.

        Call it only after the projection has reached `position`.
        """
        # A refresh already running may have started before `position` was reached; the
        # next one starts after, so two rounds are enough.
        for _ in range(2):
            if self._visible >= position:
                return
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.create_task(self._refresh())
            await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        # Read first: every write at or below what is read now was acknowledged before the
        # refresh starts, so the refresh makes it visible.
        reached = await read_position(self._redis, self._keyspace, "search")
        await self._reader.refresh()
        self._visible = max(self._visible, reached)
