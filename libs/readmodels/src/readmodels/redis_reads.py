"""Reading the Redis read models of one generation (see `readmodels.keyspace` for the layout).

Resolve the generation once per request (`Keyspace.live_models`) and pass its keys to
every read of that request, so a rebuild's swap cannot mix two generations in one
answer; `LiveHashes` reads pointer and hash atomically in one script. Both raise
`ReadModelRebuilding` when the live generation's marker is gone (`readmodels.rebuilding`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from readmodels.keyspace import RECENT_ORDERS, Keyspace, RedisModelKeys
from readmodels.orders import OrderSummary, StockLevel
from readmodels.rebuilding import ReadModelRebuilding, marker_around

__all__ = [
    "REDIS_TRANSIENT",
    "LiveHashes",
    "order_counts",
    "recent_orders",
    "whole_live_models",
]

# KEYS[1]: the live-generation pointer. ARGV[1]: the hash's key with a NUL byte where the
# generation goes. No pointer, or no marker under it (the key space's `built` suffix right
# after the generation), is a model that lost its data: false (nil), not an empty hash.
# What of Redis's failures are worth retrying (a restart, a dropped connection, a timeout,
# the dataset still loading); the one definition the services use.
REDIS_TRANSIENT: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

_LIVE_HASH = """
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
local at = string.find(ARGV[1], '\\0', 1, true)
local base = string.sub(ARGV[1], 1, at - 1) .. generation
if redis.call('EXISTS', base .. ':built') == 0 then return false end
return redis.call('HGETALL', base .. string.sub(ARGV[1], at + 1))
"""

# KEYS[1]: the live-generation pointer. ARGV: the marker key around the generation.
_WHOLE_GENERATION = """
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
if redis.call('EXISTS', ARGV[1] .. generation .. ARGV[2]) == 0 then return false end
return generation
"""
_LOST = "no live generation with its marker: the data was lost"
_MARK = "\x00"
_ONE_KEY = b"1"  # EVALSHA's number of keys


def _strings(fields: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    # Works with clients made with or without decode_responses.
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }


async def whole_live_models(redis: Redis, keyspace: Keyspace) -> RedisModelKeys:
    """The keys of the live generation, once it is known to be whole (one round trip).

    Raises `ReadModelRebuilding` when the pointer or the generation's marker is gone.
    """
    before, after = marker_around(keyspace)
    script = redis.register_script(_WHOLE_GENERATION)
    generation = await script(keys=[keyspace.live("redis")], args=[before, after])
    if generation is None:
        raise ReadModelRebuilding("redis", _LOST)
    return keyspace.models(generation.decode() if isinstance(generation, bytes) else str(generation))


async def order_counts(redis: Redis, keys: RedisModelKeys) -> dict[str, int]:
    """How many orders are in each status, over all customers."""
    fields = await redis.hgetall(keys.order_counts)
    return {status: int(count) for status, count in _strings(fields).items()}


async def recent_orders(
    redis: Redis, keys: RedisModelKeys, customer_id: str, limit: int = RECENT_ORDERS
) -> list[OrderSummary]:
    """The customer's most recently placed orders, newest first (at most `RECENT_ORDERS` are kept)."""
    ids = await redis.zrange(keys.customer_orders(customer_id), 0, limit - 1, desc=True)
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for order_id in ids:
        pipe.hgetall(keys.order(order_id.decode() if isinstance(order_id, bytes) else str(order_id)))
    summaries = await pipe.execute()
    return [OrderSummary.from_hash(_strings(fields)) for fields in summaries if fields]


class LiveHashes:
    """Single-hash reads of the live generation in one round trip: the pointer and the hash together."""

    def __init__(self, redis: Redis, keyspace: Keyspace) -> None:
        self._redis = redis
        self._sha = redis.register_script(_LIVE_HASH).sha.encode()
        self._pointer = keyspace.live("redis").encode()
        # The key layout stays `RedisModelKeys`'s: keys are built for a marker generation, which the
        # script replaces with the live one.
        self._marked = keyspace.models(_MARK)
        # A client that decodes replies hands over strings already; converting them again is the
        # larger part of a read's own work.
        self._decoded = bool(redis.connection_pool.connection_kwargs.get("decode_responses"))

    async def _hash(self, marked_key: str) -> dict[str, str]:
        # EVALSHA itself rather than the registered script object, whose call costs a few µs more
        # (an import and argument copies per call), with as few arguments as will do, the fixed
        # ones encoded once: redis-py encodes and frames each one in Python. A server that lost
        # its scripts gets it again.
        try:
            flat = await self._evalsha(marked_key)
        except NoScriptError:
            loaded: str | bytes = await self._redis.script_load(_LIVE_HASH)
            self._sha = loaded.encode() if isinstance(loaded, str) else loaded
            flat = await self._evalsha(marked_key)
        if flat is None:
            raise ReadModelRebuilding("redis", _LOST)
        pairs = iter(flat)
        fields = dict(zip(pairs, pairs, strict=True))
        return fields if self._decoded else _strings(fields)

    async def _evalsha(self, marked_key: str) -> list[Any] | None:
        flat: list[Any] | None = await self._redis.execute_command(  # type: ignore[no-untyped-call]  # untyped
            "EVALSHA", self._sha, _ONE_KEY, self._pointer, marked_key
        )
        return flat

    async def order(self, order_id: str) -> OrderSummary | None:
        """The order's summary in the live generation, or None; `ReadModelRebuilding` if it lost its data."""
        fields = await self._hash(self._marked.order(order_id))
        return OrderSummary.from_hash(fields) if fields else None

    async def stock(self, sku: str) -> StockLevel | None:
        """The SKU's stock in the live generation (SKUs are stored lowercase), or None; or raises likewise."""
        fields = await self._hash(self._marked.stock(sku.lower()))
        return StockLevel.from_hash(fields) if fields else None
