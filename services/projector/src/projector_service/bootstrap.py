"""The one place the projector's parts are built and wired, for the service, the CLI and tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from eventstore import EventRegistry, PostgresEventStore, connect
from eventstore.types import Pool
from readmodels.keyspace import Keyspace
from readmodels.search import SearchClient, connect_search
from redis.asyncio import Redis

from projector_service.history import StreamHistory
from projector_service.progress import ProgressTracker
from projector_service.projections import ModelSignals, Projection, RedisProjection, SearchProjection
from projector_service.redis_writer import RedisSummaryWriter
from projector_service.search_writer import SearchOrderWriter
from projector_service.settings import ProjectorSettings

__all__ = ["Projector"]

HAS_EVENTS = "SELECT EXISTS (SELECT 1 FROM eventstore.events WHERE category = ANY($1::text[]))"


class Projector:
    """The connections, the projections and their position trackers."""

    def __init__(
        self,
        settings: ProjectorSettings,
        registry: EventRegistry,
        redis: Redis,
        search: SearchClient | None,
        pool: Pool,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.redis = redis
        self._search = search
        self.pool = pool
        self.store = PostgresEventStore(pool, registry)
        self.keyspace = Keyspace(settings.projector_key_prefix)
        self.signals = ModelSignals()
        self._history = StreamHistory(self.store)
        # Only the projections this process runs are built, so a process (or a CLI command)
        # without the search projection needs no search engine at all.
        available: dict[str, Callable[[], Projection]] = {
            "redis": self._redis_projection,
            "search": self._search_projection,
        }
        unknown = set(settings.projections) - set(available)
        if unknown:
            raise ValueError(f"PROJECTOR_PROJECTIONS: unknown projection(s) {sorted(unknown)}")
        self.projections = {name: available[name]() for name in settings.projections}
        self.trackers = {
            name: ProgressTracker(redis, self.keyspace, name, pool, projection.categories)
            for name, projection in self.projections.items()
        }

    def _redis_projection(self) -> Projection:
        writer = RedisSummaryWriter(self.redis, self.keyspace, self._history)
        return RedisProjection(
            self.redis, self.keyspace, writer, signals=self.signals, store_is_empty=self.store_is_empty
        )

    def _search_projection(self) -> Projection:
        writer = SearchOrderWriter(self.search, self.redis, self.keyspace, self.store, self._history)
        return SearchProjection(
            self.search,
            self.redis,
            self.keyspace,
            writer,
            signals=self.signals,
            store_is_empty=self.store_is_empty,
        )

    @property
    def search(self) -> SearchClient:
        """The search engine's client; only a projector built without the search projection lacks one."""
        if self._search is None:
            raise RuntimeError("this projector was opened without a search engine (no search projection)")
        return self._search

    @classmethod
    async def open(
        cls, settings: ProjectorSettings, registry: EventRegistry, *, pool_size: int = 4
    ) -> Projector:
        """Connect to Redis, PostgreSQL and, for the search projection, the search engine."""
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        search = await connect_search(settings.search_url) if "search" in settings.projections else None
        pool = await connect(settings.database_url, min_size=1, max_size=pool_size)
        return cls(settings, registry, redis, search, pool)

    async def store_is_empty(self, categories: Sequence[str]) -> bool:
        """True while the store holds no event of these categories (an empty model is then whole)."""
        return not await self.pool.fetchval(HAS_EVENTS, list(categories))

    def projection(self, name: str) -> Projection:
        if name not in self.projections:
            raise KeyError(f"no projection {name!r}; this process runs {sorted(self.projections)}")
        return self.projections[name]

    @property
    def names(self) -> Sequence[str]:
        return list(self.projections)

    async def close(self) -> None:
        await self.store.close()
        await self.pool.close()
        if self._search is not None:
            await self._search.close()
        await self.redis.aclose()
