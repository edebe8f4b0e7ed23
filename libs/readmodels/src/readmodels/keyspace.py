"""Where the read models live in Redis: key names, generations, and each projection's position.

Every key starts with a prefix (empty in production, per test otherwise) and `rm:`.
The Redis models of one build live under a generation (`rm:redis:<generation>:...`);
`rm:redis:live` names the one readers use, and a rebuild moves it with one `SET`, so
readers never see a half-built model. A live generation without its marker
`rm:redis:G:built` has lost its data (`readmodels.rebuilding`). `rm:<projection>:position`
is also the pub/sub channel on which each new position is announced. Full key layout:
`docs/projector.md` ("Redis key layout").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.asyncio import Redis

__all__ = [
    "INITIAL_GENERATION",
    "PROJECTIONS",
    "RECENT_ORDERS",
    "Keyspace",
    "RedisModelKeys",
    "read_position",
    "wait_for_position",
]

PROJECTIONS = ("redis", "search")
RECENT_ORDERS = 50
INITIAL_GENERATION = "g0"


class RedisModelKeys:
    """The keys of one generation of the Redis read models."""

    def __init__(self, prefix: str, generation: str) -> None:
        self.generation = generation
        self.base = f"{prefix}rm:redis:{generation}:"

    def order(self, order_id: str) -> str:
        return f"{self.base}order:{order_id}"

    def stock(self, sku: str) -> str:
        return f"{self.base}stock:{sku}"

    @property
    def order_counts(self) -> str:
        return f"{self.base}order-counts"

    def customer_orders(self, customer_id: str) -> str:
        return f"{self.base}customer:{customer_id}:orders"

    @property
    def built(self) -> str:
        """The marker of a whole generation: absent, the generation's data is gone (or not built yet)."""
        return f"{self.base}built"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this generation."""
        return f"{self.base}*"


class Keyspace:
    """The read models' keys under one prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def live(self, projection: str) -> str:
        return f"{self.prefix}rm:{projection}:live"

    def building(self, projection: str) -> str:
        return f"{self.prefix}rm:{projection}:building"

    def position(self, projection: str) -> str:
        """The hash holding the projection's position, and the channel announcing it."""
        return f"{self.prefix}rm:{projection}:position"

    def applied(self, projection: str) -> str:
        return f"{self.prefix}rm:{projection}:applied"

    def rebuild(self, projection: str) -> str:
        return f"{self.prefix}rm:{projection}:rebuild"

    def rebuild_lock(self, projection: str) -> str:
        return f"{self.prefix}rm:{projection}:rebuild-lock"

    def repair(self, projection: str) -> str:
        """The hash saying why the projector is repairing `projection`, while it does."""
        return f"{self.prefix}rm:{projection}:repair"

    @property
    def replayed_dead_letters(self) -> str:
        """The set of dead letters (`partition:offset`) already replayed."""
        return f"{self.prefix}rm:dead-letters:replayed"

    @property
    def product_names(self) -> str:
        return f"{self.prefix}rm:search:product-names"

    def models(self, generation: str) -> RedisModelKeys:
        return RedisModelKeys(self.prefix, generation)

    async def live_models(self, redis: Redis) -> RedisModelKeys:
        """The keys readers should use now (resolve once per request, then read)."""
        generation = await redis.get(self.live("redis"))
        return self.models(_text(generation) or INITIAL_GENERATION)


async def read_position(redis: Redis, keyspace: Keyspace, projection: str) -> int:
    """The position `projection` has reached: every event at or below it is applied (-1: none yet)."""
    value = await redis.hget(keyspace.position(projection), "position")
    return int(value) if value is not None else -1


async def wait_for_position(
    redis: Redis, keyspace: Keyspace, projection: str, position: int, *, timeout: float
) -> bool:
    """Wait until `projection` has reached `position` (read-your-writes); False after `timeout` seconds.

    Subscribes before reading, so an advance between the read and the wait still wakes it.
    """
    channel = keyspace.position(projection)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if await read_position(redis, keyspace, projection) >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    message: Any = await pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
                    if message is not None and int(message["data"]) >= position:
                        return True
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value
