"""Reads by id against a Redis server of the test's own, which can forget its scripts without
disturbing anyone else's (the shared server runs other suites' scripts)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from readmodels.keyspace import INITIAL_GENERATION, Keyspace
from readmodels.rebuilding import ReadModelRebuilding, model_lost
from readmodels.redis_reads import LiveHashes, whole_live_models
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from testkit.harness import free_port


@pytest.fixture
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if server is None:
        pytest.fail(
            "needs the redis-server binary to start a server of its own: run `./dev up` "
            "(which installs the redis-server Debian package) or `apt-get install redis-server`"
        )
    port = free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([*argv, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                with SyncRedis.from_url(url) as probe:
                    probe.ping()
                break
            except RedisConnectionError:
                assert time.monotonic() < deadline, "the test's redis-server did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def redis(own_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _order_hash(order_id: str, version: int) -> dict[str, str | int]:
    return {
        "order_id": order_id,
        "customer_id": "alice",
        "status": "pending",
        "total": 300,
        "currency": "EUR",
        "lines": '[{"sku":"blue-mug","quantity":1,"unit_price":300,"line_total":300}]',
        "placed_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "reason": "",
        "version": version,
    }


async def whole(redis: Redis, keyspace: Keyspace, generation: str = INITIAL_GENERATION) -> None:
    """Make `generation` live and whole, as the projector does."""
    await redis.set(keyspace.models(generation).built, "test")
    await redis.set(keyspace.live("redis"), generation)


async def test_an_order_is_read_whether_or_not_the_server_knows_the_script(redis: Redis) -> None:
    keyspace = Keyspace("t-")
    await redis.hset(keyspace.models(INITIAL_GENERATION).order("o-1"), mapping=_order_hash("o-1", 1))
    await whole(redis, keyspace)
    hashes = LiveHashes(redis, keyspace)

    # A server that never saw the script (this one is new), then one that lost it (a restart:
    # the suite's Redis keeps nothing on disk).
    first = await hashes.order("o-1")
    await redis.script_flush()
    again = await hashes.order("o-1")

    assert first is not None
    assert again is not None
    assert (first.customer_id, again.version) == ("alice", 1)
    assert await hashes.order("o-2") is None


async def test_reads_follow_the_live_generation_pointer(redis: Redis) -> None:
    keyspace = Keyspace("t-")
    await redis.hset(keyspace.models(INITIAL_GENERATION).order("o-1"), mapping=_order_hash("o-1", 1))
    await redis.hset(keyspace.models("g7").order("o-1"), mapping=_order_hash("o-1", 2))
    await whole(redis, keyspace)
    hashes = LiveHashes(redis, keyspace)

    before = await hashes.order("o-1")
    await whole(redis, keyspace, "g7")
    after = await hashes.order("o-1")

    assert (before.version if before else None, after.version if after else None) == (1, 2)


async def test_a_model_that_lost_its_data_is_being_rebuilt_not_empty(redis: Redis) -> None:
    keyspace = Keyspace("t-")
    hashes = LiveHashes(redis, keyspace)
    await redis.hset(keyspace.models("g3").order("o-1"), mapping=_order_hash("o-1", 1))
    await whole(redis, keyspace, "g3")
    assert await hashes.order("o-1") is not None
    assert (await whole_live_models(redis, keyspace)).generation == "g3"
    assert await model_lost(redis, keyspace, "redis") is None

    # The generation's keys deleted (its marker with them): nothing it says can be trusted.
    await redis.delete(keyspace.models("g3").built)
    with pytest.raises(ReadModelRebuilding):
        await hashes.order("o-1")
    with pytest.raises(ReadModelRebuilding):
        await hashes.stock("mug")
    with pytest.raises(ReadModelRebuilding):
        await whole_live_models(redis, keyspace)
    assert await model_lost(redis, keyspace, "redis") == "generation g3 has no marker"

    # Redis restarted empty: no pointer at all.
    await redis.flushdb()
    with pytest.raises(ReadModelRebuilding):
        await hashes.order("o-1")
    with pytest.raises(ReadModelRebuilding):
        await whole_live_models(redis, keyspace)
    assert await model_lost(redis, keyspace, "redis") == "its live generation pointer is gone"
    assert await model_lost(redis, keyspace, "search") == "its live generation pointer is gone"

    # While the projector repairs it, it says why.
    await redis.hset(keyspace.repair("search"), mapping={"reason": "alias missing"})
    assert await model_lost(redis, keyspace, "search") == "being repaired: alias missing"
