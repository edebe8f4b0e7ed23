"""The projector as a real process: SIGKILL mid-batch, store outages, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import OrderConfirmed, OrderPlaced
from projector_service.bootstrap import Projector
from projector_service.settings import ProjectorSettings
from relay_service.publisher import Relay
from testkit.harness import running_service

from services.projector.tests.conftest import line, log_events, write_scenario
from services.projector.tests.proxy import Cuttable
from services.projector.tests.test_consuming import clean_models, live_models, reached, relay

pytestmark = pytest.mark.slow
_ = relay


def environment(settings: ProjectorSettings, **overrides: str) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SEARCH_URL": settings.search_url,
        "PROJECTOR_TOPIC_PREFIX": settings.projector_topic_prefix,
        "PROJECTOR_GROUP_PREFIX": settings.projector_group_prefix,
        "PROJECTOR_DEAD_LETTER_TOPIC": settings.projector_dead_letter_topic,
        "PROJECTOR_KEY_PREFIX": settings.projector_key_prefix,
        "PROJECTOR_PARTITIONS": str(settings.projector_partitions),
        "PROJECTOR_MAX_BACKOFF": "0.5",
        "PROJECTOR_BATCH_SIZE": "200",
        "LOG_LEVEL": "INFO",
        **overrides,
    }


async def place_orders(store: PostgresEventStore, count: int) -> None:
    for _ in range(count):
        order_id = uuid.uuid4()
        placed = OrderPlaced(
            order_id=order_id, customer_id="kim", lines=(line("mug"),), currency="EUR", total=250
        )
        await store.append(
            f"order-{order_id}", [NewEvent(data=placed), NewEvent(data=OrderConfirmed(order_id=order_id))]
        )


def applied(body: Any, name: str) -> int:
    return int(body["projections"][name]["applied_total"])


async def test_sigkill_in_the_middle_of_a_backlog_then_a_restart_ends_equal_to_a_clean_build(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay, tmp_path: Path
) -> None:
    await write_scenario(store, orders=30)
    await place_orders(store, 1500)
    total = len(await log_events(store))
    env = environment(settings, PROJECTOR_BATCH_SIZE="50")
    async with running_service("projector_service", env, log=tmp_path / "first.log",
                               port_variable="PROJECTOR_PORT") as first:  # fmt: skip
        body = await first.wait_for(lambda _, b: applied(b, "redis") >= 300, path="/status", timeout=120)
        first.kill()
    assert applied(body, "redis") < total, "the kill must land mid-backlog"
    async with running_service("projector_service", env, log=tmp_path / "second.log",
                               port_variable="PROJECTOR_PORT"):  # fmt: skip
        await reached(projector, (await log_events(store))[-1].position, timeout=180)
    assert await live_models(projector) == await clean_models(projector, store)


def through(url: str, proxy: Cuttable) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


async def test_the_search_engine_then_redis_going_away_pauses_and_resumes_without_loss(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay, tmp_path: Path
) -> None:
    search_parts, redis_parts = urlsplit(settings.search_url), urlsplit(settings.redis_url)
    search = Cuttable(search_parts.hostname or "127.0.0.1", search_parts.port or 9200)
    redis = Cuttable(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379)
    await search.open()
    await redis.open()
    env = environment(
        settings,
        SEARCH_URL=through(settings.search_url, search),
        REDIS_URL=through(settings.redis_url, redis),
    )
    try:
        async with running_service("projector_service", env, log=tmp_path / "projector.log",
                                   port_variable="PROJECTOR_PORT") as service:  # fmt: skip
            await write_scenario(store, orders=10)
            await reached(projector, (await log_events(store))[-1].position)
            for outage in (search, redis):
                await outage.cut()
                await place_orders(store, 20)
                down = await service.wait_for(lambda status, _: status == 503, timeout=60)
                failing = {name for name, check in down["checks"].items() if check != "ok"}
                assert ("search" if outage is search else "redis") in failing, down
                await asyncio.sleep(3)  # several seconds down, while events keep coming
                await place_orders(store, 10)
                await outage.open()
                await service.ready(timeout=60)
                await reached(projector, (await log_events(store))[-1].position, timeout=90)
            status = (await service.get("/status")).json()
            assert all(p["dead_letters"] == 0 for p in status["projections"].values())
    finally:
        await search.cut()
        await redis.cut()
    assert await live_models(projector) == await clean_models(projector, store)


def test_a_missing_setting_stops_start_up_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SEARCH_URL"}}
    env.update(DATABASE_URL="postgresql://x@127.0.0.1:9/x", REDIS_URL="redis://127.0.0.1:9/0",
               KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "projector_service"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"SEARCH_URL" in result.stderr


async def test_the_cli_rebuilds_a_projection_and_lists_dead_letters(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, tmp_path: Path
) -> None:
    await write_scenario(store, orders=5)
    env = {**os.environ, **environment(settings)}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "projector_service.cli", "rebuild", "redis", "--grace", "0"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"is live" in result.stdout
    generation = (await projector.keyspace.live_models(projector.redis)).generation
    assert generation != "g0"
    orders = [
        key
        async for key in projector.redis.scan_iter(
            match=projector.keyspace.models(generation).base + "order:*"
        )
    ]
    assert len(orders) == 5
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "projector_service.cli", "dead-letters", "list"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr.decode()
