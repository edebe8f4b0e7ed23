"""Redis really restarted without persistence, under a running projector and query service.

The test runs a Redis server of its own (the shared one must not be restarted),
without persistence, and restarts it: it comes back empty, as in the incident
that asked for the repair. The rebuild is held back by a lock on the store's
events table (taken on a connection of the test's own), so the answers given
before the model is whole again are seen for certain.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from eventstore import PostgresEventStore
from projector_service.bootstrap import Projector
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import read_position
from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from relay_service.publisher import Relay
from testkit.harness import free_port

from services.projector.tests.conftest import log_events, write_scenario
from services.projector.tests.test_consuming import clean_models, live_models, reached, relay, running
from services.projector.tests.test_repair import (
    answers,
    assert_rebuilding,
    eventually,
    query,
    staff,
    write_orders,
)

_ = relay, query, staff


class OwnRedis:
    """A redis-server without persistence on a port of its own, which the test may restart."""

    def __init__(self, directory: Path) -> None:
        server = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
        if server is None:
            pytest.fail(
                "needs the redis-server binary (the Debian package redis-server; `./dev up` installs it)"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with SyncRedis.from_url(self.url) as probe:
                    probe.ping()
                return
            except RedisConnectionError:
                assert time.monotonic() < deadline, "the test's redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(settings: ProjectorSettings, own_redis: OwnRedis) -> ProjectorSettings:
    return msgspec.structs.replace(settings, redis_url=own_redis.url)


@contextlib.asynccontextmanager
async def store_held(database_url: str) -> AsyncIterator[None]:
    """Hold every reader of the events table (the rebuild among them) until the block ends."""
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE eventstore.events IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def test_a_redis_restarted_empty_is_repaired_and_an_old_token_answers_200_again(
    projector: Projector,
    store: PostgresEventStore,
    relay: Relay,
    query: httpx.AsyncClient,
    staff: dict[str, str],
    own_redis: OwnRedis,
    settings: ProjectorSettings,
) -> None:
    order_ids = await write_scenario(store, orders=25)
    service = ProjectorService(projector, repair_grace=0.2)
    async with running(service):
        token = (await log_events(store))[-1].position
        await reached(projector, token)
        before = await answers(query, staff, order_ids)
        assert {status for status, _ in before.values()} == {200}, before

        async with store_held(settings.database_url):
            own_redis.stop()
            own_redis.start()  # empty: no persistence
            repairing = await eventually(service.repairing, lambda found: set(found) == {"redis", "search"})
            assert set(repairing) == {"redis", "search"}, repairing
            during = await answers(query, staff, order_ids)
            old_token = {**staff, "X-Consistency-Token": str(token)}
            assert_rebuilding(await query.get(f"/orders/{order_ids[0]}", headers=old_token), "redis")
            assert_rebuilding(await query.get("/orders/counts", headers=old_token), "redis")
            checks = await service.checks()

        await write_orders(store, 3)
        assert await eventually(service.repairing, lambda found: not found) == {}
        last = (await log_events(store))[-1].position
        await reached(projector, last)
        positions = {
            name: await read_position(projector.redis, projector.keyspace, name) for name in projector.names
        }
        after = await answers(query, staff, order_ids)
        with_token = await query.get(f"/orders/{order_ids[0]}", headers=old_token)

    assert {status for status, _ in during.values()} == {503}, during
    assert "redis read model is being rebuilt" in (checks["redis"] or ""), checks
    assert all(position >= last for position in positions.values()), (positions, last)
    assert with_token.status_code == 200, with_token.text
    assert {k: v for k, v in after.items() if k.startswith("order ")} == {
        k: v for k, v in before.items() if k.startswith("order ")
    }
    assert after["/orders/counts"][1]["total"] == before["/orders/counts"][1]["total"] + 3
    assert await live_models(projector) == await clean_models(projector, store)
