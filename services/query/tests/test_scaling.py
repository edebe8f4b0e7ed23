"""Two query processes on one set of read models: replicas behind a load balancer.

The query service keeps no state of its own (the read models are in Redis and the
search engine, positions in Redis, cursors signed with a key every instance
shares), so any replica must give any answer: the same body and ETag, a cursor
one issued accepted by the other, and a consistency token honoured by each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from testkit.harness import ServiceProcess, TokenFactory, running_service

from services.query.tests.conftest import AUDIENCE, ISSUER, SECRET, bearer
from services.query.tests.seeding import SeededModels, order

pytestmark = pytest.mark.slow


@pytest.fixture
async def replicas(
    redis_url: str, search_url: str, prefix: str, models: SeededModels, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    env = {
        "REDIS_URL": redis_url,
        "SEARCH_URL": search_url,
        "QUERY_KEY_PREFIX": prefix,
        "JWT_SECRET": SECRET,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        # Long enough that a read woken by the announcement never meets the deadline instead.
        "QUERY_CONSISTENCY_TIMEOUT_SECONDS": "3",
    }

    def start(name: str) -> contextlib.AbstractAsyncContextManager[ServiceProcess]:
        return running_service(
            "query_service", env, log=tmp_path / f"{name}.log", port_variable="QUERY_PORT", ready=False
        )

    async with start("a") as a, start("b") as b:
        await asyncio.gather(a.ready(), b.ready())
        yield a, b


async def test_both_replicas_give_the_same_answers_and_accept_each_others_cursors(
    replicas: tuple[ServiceProcess, ServiceProcess], models: SeededModels, tokens: TokenFactory
) -> None:
    placed = [order("alice", placed=n, total=100 * (n + 1), version=n % 3) for n in range(5)]
    for document in placed:
        await models.put(document)
    await models.refresh()
    alice, staff = bearer(tokens("alice")), bearer(tokens("s", roles=["staff"]))
    reads = [
        (f"/orders/{placed[2].order_id}", alice),
        ("/orders/counts", staff),
        ("/customers/alice/recent-orders", alice),
        ("/orders?customer=alice&limit=2", staff),
    ]

    a, b = replicas
    for path, headers in reads:
        one, other = await asyncio.gather(a.get(path, headers=headers), b.get(path, headers=headers))
        assert one.status_code == other.status_code == 200, (path, one.text, other.text)
        assert one.json() == other.json(), path
        assert one.headers.get("etag") == other.headers.get("etag"), path

    first_page = (await a.get("/orders?customer=alice&limit=2", headers=staff)).json()
    cursor = first_page["next_cursor"]
    assert cursor
    next_page = {"customer": "alice", "limit": 2, "cursor": cursor}
    second_from_a = await a.get("/orders", params=next_page, headers=staff)
    second_from_b = await b.get("/orders", params=next_page, headers=staff)
    assert second_from_b.status_code == 200, second_from_b.text
    assert second_from_b.json() == second_from_a.json()
    seen = [o["order_id"] for o in first_page["orders"] + second_from_b.json()["orders"]]
    assert len(set(seen)) == 4


async def test_a_consistency_token_is_honoured_by_each_replica(
    replicas: tuple[ServiceProcess, ServiceProcess], models: SeededModels, tokens: TokenFactory
) -> None:
    # The token comes from a write the projector has not applied yet: both replicas wait for the
    # projector's announcement (one Redis channel, heard by every replica), then show the write.
    placed = order("alice")
    await models.advance("redis", 10)
    headers = bearer(tokens("alice"), **{"X-Consistency-Token": "11"})

    async def project_later() -> None:
        await asyncio.sleep(0.5)
        await models.put(placed, search=False)
        await models.advance("redis", 11)

    a, b = replicas
    projecting = asyncio.create_task(project_later())
    answers = await asyncio.gather(
        a.get(f"/orders/{placed.order_id}", headers=headers),
        b.get(f"/orders/{placed.order_id}", headers=headers),
    )
    await projecting
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["order_id"] == placed.order_id

    # A position no replica has seen: each answers 409 with what it reached, never a stale 404.
    ahead = bearer(tokens("alice"), **{"X-Consistency-Token": "12"})
    problems = await asyncio.gather(
        *(replica.get(f"/orders/{placed.order_id}", headers=ahead, timeout=10) for replica in (a, b))
    )
    for problem in problems:
        assert problem.status_code == 409, problem.text
        assert (problem.json()["awaited_position"], problem.json()["reached_position"]) == (12, 11)
