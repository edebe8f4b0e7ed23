"""Two command processes on one database: replicas behind a load balancer.

Nothing ties a command to an instance: optimistic concurrency on the stream row
decides races between processes as it does between requests of one, and the
Idempotency-Key is a row written in the append's own statement, so a retry that
lands on the other replica finds it. What each test checks is the store itself:
one effect per key, stream versions without gaps, every global position taken once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from testkit.harness import ServiceProcess, TokenFactory, running_service

from services.command.tests.conftest import AUDIENCE, ISSUER, SECRET
from services.command.tests.support import ORDER_BODY, command_headers

pytestmark = pytest.mark.slow


@pytest.fixture
async def replicas(
    fresh_database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    env = {
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": redis_url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": SECRET,
        "COMMAND_RATE_LIMIT_PER_SECOND": "10000",
        "COMMAND_RATE_LIMIT_BURST": "10000",
        # Two processes racing on one stream lose more rounds than one process's queued requests.
        "COMMAND_MAX_ATTEMPTS": "30",
    }

    def start(name: str) -> contextlib.AbstractAsyncContextManager[ServiceProcess]:
        return running_service(
            "command_service", env, log=tmp_path / f"{name}.log", port_variable="COMMAND_PORT", ready=False
        )

    async with start("a") as a, start("b") as b:
        await asyncio.gather(a.ready(), b.ready())
        yield a, b


async def post(replica: ServiceProcess, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        return await client.post(path, json=body, headers=headers)


async def stream_rows(database_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT stream_id, version, position, event_type, data FROM eventstore.events ORDER BY position"
        )
    finally:
        await connection.close()


async def test_concurrent_commands_through_both_replicas_each_take_effect_once_without_gaps(
    replicas: tuple[ServiceProcess, ServiceProcess], tokens: TokenFactory, fresh_database_url: str
) -> None:
    staff = tokens("clerk", roles=["staff"])
    before = await stream_rows(fresh_database_url)
    through = itertools.cycle(replicas)
    receipts = [
        post(next(through), "/products/SKU-1/receipts", {"quantity": n}, command_headers(staff))
        for n in range(1, 21)
    ]
    orders = [post(next(through), "/orders", ORDER_BODY, command_headers(tokens(f"c{n}"))) for n in range(20)]

    answers = await asyncio.gather(*receipts, *orders)

    refused = [r.text for r in answers if r.is_error]
    assert [r.status_code for r in answers] == [200] * 20 + [201] * 20, refused
    rows = await stream_rows(fresh_database_url)
    new = rows[len(before) :]
    assert len(new) == 40
    positions = [row["position"] for row in rows]
    assert len(set(positions)) == len(positions)
    by_stream: dict[str, list[int]] = {}
    for row in rows:
        by_stream.setdefault(row["stream_id"], []).append(row["version"])
    assert all(versions == list(range(len(versions))) for versions in by_stream.values()), by_stream
    # Every receipt is in, once, and the last one's stock counts all of them.
    received = [json.loads(row["data"]) for row in new if row["event_type"] == "StockReceived"]
    assert sorted(event["quantity"] for event in received) == list(range(1, 21))
    assert received[-1]["on_hand"] == sum(range(1, 21))
    assert len([s for s in by_stream if s.startswith("order-")]) == 20


async def test_one_idempotency_key_sent_to_both_replicas_has_one_effect(
    replicas: tuple[ServiceProcess, ServiceProcess], tokens: TokenFactory, fresh_database_url: str
) -> None:
    headers = command_headers(tokens("alice"), key=f"both-{uuid.uuid4()}")
    a, b = replicas

    answers = await asyncio.gather(
        *(post(replica, "/orders", ORDER_BODY, headers) for replica in (a, b, a, b, a, b))
    )

    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.json()["order_id"] for r in answers}) == 1
    streams = {row["stream_id"] for row in await stream_rows(fresh_database_url)}
    assert {s for s in streams if s.startswith("order-")} == {f"order-{answers[0].json()['order_id']}"}
