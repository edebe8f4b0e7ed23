"""Cursor pagination stays stable while orders are placed and change status between and during pages."""

from __future__ import annotations

import asyncio
import contextlib
import random

import httpx
import msgspec
import pytest
from testkit.harness import TokenFactory

from services.query.tests.conftest import bearer
from services.query.tests.seeding import SeededModels, order


@pytest.fixture
def engine_url(search_engine_url: str) -> str:
    """Every test here runs on OpenSearch and on Elasticsearch."""
    return search_engine_url


STATUSES = ("confirmed", "rejected", "cancelled")


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], between: object, **params: object
) -> list[str]:
    """Every page of a search, calling `between()` after each one; the order ids in page order."""
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/orders", params=query, headers=headers)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [found["order_id"] for found in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        await between()  # type: ignore[operator]


@pytest.mark.parametrize("sort", ["-placed_at", "placed_at", "-total", "total"])
async def test_no_order_is_repeated_or_skipped_while_writes_go_on(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory, sort: str
) -> None:
    rng = random.Random(sort)
    # Equal totals and equal placement times on purpose: the order id must break the ties.
    existing = [
        order(f"c{n % 5}", placed=n // 3, total=100 * (n % 4), order_id=f"{n:04d}-existing")
        for n in range(60)
    ]
    for document in existing:
        await models.put(document, redis=False)
    await models.refresh()
    current = {document.order_id: document for document in existing}
    placed = 0
    # The background writer and the writes between pages take turns: each change is one version
    # above the last, and two writers racing would send version n+2 before n+1.
    turn = asyncio.Lock()

    async def write_some() -> None:
        async with turn:
            await write_three()

    async def write_three() -> None:
        nonlocal placed
        for _ in range(3):
            # A status change (a new version of a document already seen or not yet seen) ...
            document = current[rng.choice(existing).order_id]
            changed = msgspec.structs.replace(
                document,
                status=rng.choice(STATUSES),
                version=document.version + 1,
                updated_at="2026-03-02T00:00:00Z",
            )
            current[changed.order_id] = changed
            await models.put(changed, redis=False)
            # ... and a new order, before or after the cursor by its own key.
            placed += 1
            new = order(
                "c9", placed=rng.uniform(-10, 40), total=rng.randrange(0, 400), order_id=f"{placed:04d}-new"
            )
            await models.put(new, redis=False)
        await models.refresh()

    async def keep_writing() -> None:
        while True:
            await write_some()
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_writing())
    try:
        seen = await walk(client, bearer(tokens("s", roles=["staff"])), write_some, sort=sort, limit=7)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    assert len(seen) == len(set(seen)), "an order appeared on two pages"
    assert {document.order_id for document in existing} <= set(seen), (
        "an order that matched throughout is missing"
    )
    assert placed > 0


async def test_pages_follow_the_sort_with_the_order_id_breaking_ties(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    documents = [order("alice", placed=n // 4, order_id=f"{n:04d}") for n in range(23)]
    for document in documents:
        await models.put(document, redis=False)
    await models.refresh()

    async def nothing() -> None:
        return None

    seen = await walk(client, bearer(tokens("alice")), nothing, sort="-placed_at", limit=5)

    expected = sorted(documents, key=lambda d: (d.placed_at, d.order_id), reverse=True)
    assert seen == [document.order_id for document in expected]
