"""The two projections as the consumer sees them: where they write, and how.

A projection writes to its live generation and, during a rebuild, to the one being
built too, so the rebuilt model misses nothing (`rebuild.py`). A live generation that
lost its data gets no writes (those events reach the rebuild from the store), and a
write that finds the model missing wakes the repair (`ModelSignals.noticed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from readmodels.keyspace import INITIAL_GENERATION, Keyspace
from readmodels.orders import ORDER_INDEX_SETTINGS, ORDER_MAPPINGS, orders_alias, orders_index
from readmodels.search import IndexNotFound, SearchClient, SearchUnavailable
from redis.asyncio import Redis

from projector_service import documents, summaries
from projector_service.events import ProjectedEvent
from projector_service.redis_writer import RedisSummaryWriter
from projector_service.search_writer import SearchOrderWriter

__all__ = ["ModelSignals", "Projection", "RedisProjection", "SearchProjection", "StoreIsEmpty"]

# Whether the store holds no event of these categories: an empty model is then a whole one.
type StoreIsEmpty = Callable[[Sequence[str]], Awaitable[bool]]


class ModelSignals:
    """What the consumers and the repair share about lost models, in one process."""

    def __init__(self) -> None:
        self.noticed = asyncio.Event()  # a write found a live model missing: check now
        # Projection -> its live generation found lost: writes go around it. By generation, so
        # that writes to the generation a repair swaps in go on at once, whenever the repair
        # forgets the lost one.
        self.lost: dict[str, str] = {}


class Projection(Protocol):
    name: str
    categories: tuple[str, ...]

    async def prepare(self) -> None:
        """Create what the live generation needs before the first write."""
        ...

    async def targets(self) -> list[str]:
        """The generations to write now: the live one, and the one being rebuilt if any."""
        ...

    async def create(self, generation: str) -> None:
        """Create an empty generation (for a rebuild)."""
        ...

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        """Apply events; return the ids of those that failed deterministically, with the reason."""
        ...

    async def swap(self, generation: str) -> str | None:
        """Make `generation` the live one atomically; return the generation it replaced."""
        ...

    async def drop(self, generation: str) -> None:
        """Delete a generation that is no longer live."""
        ...


async def _text(redis: Redis, key: str) -> str | None:
    value = await redis.get(key)
    return value.decode() if isinstance(value, bytes) else value


async def _targets(redis: Redis, keyspace: Keyspace, name: str, signals: ModelSignals) -> list[str]:
    """The live generation (unless it is lost) and the one being rebuilt, if any."""
    live, building = (
        value.decode() if isinstance(value, bytes) else value
        for value in await redis.mget([keyspace.live(name), keyspace.building(name)])
    )
    if live is None:
        signals.noticed.set()  # the pointer is gone: Redis lost its data
    if live is None or signals.lost.get(name) == live:
        return [building] if building is not None else []
    return [live] if building in (None, live) else [live, building]


async def _store_has_events(_: Sequence[str]) -> bool:
    return False  # without a way to ask the store, never claim an empty model is whole


class RedisProjection:
    """Order summaries, stock per SKU, order counts per status, customers' recent orders."""

    name: str = "redis"
    categories: tuple[str, ...] = summaries.CATEGORIES

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        writer: RedisSummaryWriter,
        *,
        signals: ModelSignals | None = None,
        store_is_empty: StoreIsEmpty = _store_has_events,
    ) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._writer = writer
        self._signals = signals or ModelSignals()
        self._store_is_empty = store_is_empty

    async def prepare(self) -> None:
        """Point at the initial generation when there is none; mark it whole only over an empty store.

        A Redis without the pointer is either new or emptied by a restart: the two look the
        same. Over a store that has events, the generation is left without its marker, so
        readers answer "being rebuilt" and the repair rebuilds it (`repair.py`).
        """
        await self._redis.set(self._keyspace.live(self.name), INITIAL_GENERATION, nx=True)
        live = await _text(self._redis, self._keyspace.live(self.name)) or INITIAL_GENERATION
        marker = self._keyspace.models(live).built
        if not await self._redis.exists(marker) and await self._store_is_empty(self.categories):
            await self._redis.set(marker, _now())

    async def targets(self) -> list[str]:
        return await _targets(self._redis, self._keyspace, self.name, self._signals)

    async def create(self, generation: str) -> None:
        await self.drop(generation)  # leftovers of an interrupted rebuild of the same name

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        return await self._writer.apply(events, generations)

    async def swap(self, generation: str) -> str | None:
        # The marker first: a reader that finds the new pointer finds its marker.
        await self._redis.set(self._keyspace.models(generation).built, _now())
        old = await self._redis.getset(self._keyspace.live(self.name), generation)
        return old.decode() if isinstance(old, bytes) else old

    async def drop(self, generation: str) -> None:
        pattern = self._keyspace.models(generation).pattern
        async for batch in _scan_batches(self._redis, pattern):
            await self._redis.unlink(*batch)


async def _scan_batches(redis: Redis, pattern: str, size: int = 1000):  # type: ignore[no-untyped-def]
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=size):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class SearchProjection:
    """One document per order in the search engine, behind an alias."""

    name: str = "search"
    categories: tuple[str, ...] = documents.CATEGORIES

    def __init__(
        self,
        search: SearchClient,
        redis: Redis,
        keyspace: Keyspace,
        writer: SearchOrderWriter,
        *,
        signals: ModelSignals | None = None,
        store_is_empty: StoreIsEmpty = _store_has_events,
    ) -> None:
        self._search = search
        self._redis = redis
        self._keyspace = keyspace
        self._writer = writer
        self._signals = signals or ModelSignals()
        self._store_is_empty = store_is_empty
        self.alias = orders_alias(keyspace.prefix)

    def index(self, generation: str) -> str:
        return orders_index(self._keyspace.prefix, generation)

    async def prepare(self) -> None:
        """Create the initial index behind the alias, but only over an empty store.

        Without an alias over a store that has events, the index was deleted: an empty one
        would answer "no orders"; the repair rebuilds it instead (`repair.py`).
        """
        if await self._search.alias_targets(self.alias):
            return
        if not await self._store_is_empty(self.categories):
            return
        await self.create(INITIAL_GENERATION)
        await self._search.point_alias(self.alias, self.index(INITIAL_GENERATION))
        await self._redis.set(self._keyspace.live(self.name), INITIAL_GENERATION, nx=True)

    async def targets(self) -> list[str]:
        return await _targets(self._redis, self._keyspace, self.name, self._signals)

    async def create(self, generation: str) -> None:
        await self._search.create_index(
            self.index(generation), mappings=ORDER_MAPPINGS, settings=ORDER_INDEX_SETTINGS
        )

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        try:
            return await self._writer.apply(events, [self.index(g) for g in generations])
        except IndexNotFound as error:
            # The index was deleted under the writer: a lost model, not a bad event. Retried as
            # an outage; the repair, woken now, takes the live index out of the targets.
            self._signals.noticed.set()
            raise SearchUnavailable(f"index missing: {error}") from error

    async def swap(self, generation: str) -> str | None:
        # Searches see only refreshed documents: refresh first, or the moment after the
        # swap would show fewer orders than the moment before.
        await self._search.refresh(self.index(generation))
        serving = await self._search.alias_targets(self.alias)
        await self._search.point_alias(self.alias, self.index(generation))
        # And once more: live writes that landed between the refresh and the swap.
        await self._search.refresh(self.index(generation))
        old = await self._redis.getset(self._keyspace.live(self.name), generation)
        if old is None and serving and serving[0].startswith(self.index("")):
            # Redis lost the pointer, not the index: the one the alias left is the old generation.
            return serving[0].removeprefix(self.index(""))
        return old.decode() if isinstance(old, bytes) else old

    async def drop(self, generation: str) -> None:
        await self._search.delete_index(self.index(generation))


def _now() -> str:
    return datetime.now(UTC).isoformat()
