"""Whole read models as plain data, to compare a rebuilt model with the live one."""

from __future__ import annotations

from typing import Any

from readmodels.keyspace import Keyspace
from readmodels.search import SearchClient
from redis.asyncio import Redis

__all__ = ["redis_snapshot", "search_snapshot"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def redis_snapshot(redis: Redis, keyspace: Keyspace, generation: str) -> dict[str, Any]:
    """Every key of one generation (named without the generation), with its value."""
    keys = keyspace.models(generation)
    snapshot: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=keys.pattern, count=1000):
        key = _text(raw)
        name = key.removeprefix(keys.base)
        if key == keys.built:
            continue  # the marker says the generation is whole; it is not part of the model
        kind = _text(await redis.type(key))
        if kind == "hash":
            fields = await redis.hgetall(key)
            snapshot[name] = {_text(k): _text(v) for k, v in fields.items()}
        elif kind == "zset":
            members: list[Any] = await redis.zrange(key, 0, -1, withscores=True)
            snapshot[name] = [(_text(member), score) for member, score in members]
        else:
            snapshot[name] = kind
    # A status whose count went back to 0 is the same as one never counted.
    counts = snapshot.get("order-counts")
    if isinstance(counts, dict):
        snapshot["order-counts"] = {status: n for status, n in counts.items() if n != "0"}
    return snapshot


async def search_snapshot(search: SearchClient, index: str) -> dict[str, Any]:
    """Every document of an index by id (at most 10,000: a check for tests and small models)."""
    await search.refresh(index)
    hits = await search.search(index, {"match_all": {}}, size=10_000)
    return {hit["order_id"]: hit for hit in hits}
