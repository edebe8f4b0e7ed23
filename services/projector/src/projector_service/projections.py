"""The two projections as the consumer sees them: where they write, and how.

A projection writes to its *live* generation and, while a rebuild runs, also
to the generation being built, so that the rebuilt model misses nothing the
live one gets before the swap (`rebuild.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from readmodels.keyspace import INITIAL_GENERATION, Keyspace
from readmodels.orders import ORDER_INDEX_SETTINGS, ORDER_MAPPINGS, orders_alias, orders_index
from readmodels.search import SearchClient
from redis.asyncio import Redis

from projector_service import documents, summaries
from projector_service.events import ProjectedEvent
from projector_service.redis_writer import RedisSummaryWriter
from projector_service.search_writer import SearchOrderWriter

__all__ = ["Projection", "RedisProjection", "SearchProjection"]


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


class RedisProjection:
    """Order summaries, stock per SKU, order counts per status, customers' recent orders."""

    name: str = "redis"
    categories: tuple[str, ...] = summaries.CATEGORIES

    def __init__(self, redis: Redis, keyspace: Keyspace, writer: RedisSummaryWriter) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._writer = writer

    async def prepare(self) -> None:
        await self._redis.set(self._keyspace.live(self.name), INITIAL_GENERATION, nx=True)

    async def targets(self) -> list[str]:
        live = await _text(self._redis, self._keyspace.live(self.name)) or INITIAL_GENERATION
        building = await _text(self._redis, self._keyspace.building(self.name))
        return [live] if building in (None, live) else [live, building]

    async def create(self, generation: str) -> None:
        await self.drop(generation)  # leftovers of an interrupted rebuild of the same name

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        return await self._writer.apply(events, generations)

    async def swap(self, generation: str) -> str | None:
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
        self, search: SearchClient, redis: Redis, keyspace: Keyspace, writer: SearchOrderWriter
    ) -> None:
        self._search = search
        self._redis = redis
        self._keyspace = keyspace
        self._writer = writer
        self.alias = orders_alias(keyspace.prefix)

    def index(self, generation: str) -> str:
        return orders_index(self._keyspace.prefix, generation)

    async def prepare(self) -> None:
        if await self._search.alias_targets(self.alias):
            return
        await self.create(INITIAL_GENERATION)
        await self._search.point_alias(self.alias, self.index(INITIAL_GENERATION))
        await self._redis.set(self._keyspace.live(self.name), INITIAL_GENERATION, nx=True)

    async def targets(self) -> list[str]:
        live = await _text(self._redis, self._keyspace.live(self.name)) or INITIAL_GENERATION
        building = await _text(self._redis, self._keyspace.building(self.name))
        return [live] if building in (None, live) else [live, building]

    async def create(self, generation: str) -> None:
        await self._search.create_index(
            self.index(generation), mappings=ORDER_MAPPINGS, settings=ORDER_INDEX_SETTINGS
        )

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        return await self._writer.apply(events, [self.index(g) for g in generations])

    async def swap(self, generation: str) -> str | None:
        # Searches see only refreshed documents: refresh first, or the moment after the
        # swap would show fewer orders than the moment before.
        await self._search.refresh(self.index(generation))
        await self._search.point_alias(self.alias, self.index(generation))
        # And once more: live writes that landed between the refresh and the swap.
        await self._search.refresh(self.index(generation))
        old = await self._redis.getset(self._keyspace.live(self.name), generation)
        return old.decode() if isinstance(old, bytes) else old

    async def drop(self, generation: str) -> None:
        await self._search.delete_index(self.index(generation))
