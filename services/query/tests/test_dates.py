"""Placement-time filters with any UTC offset: normalised to UTC before they reach the engine.

The engines refuse offsets beyond ±18:00 (Java's `ZoneOffset`), which RFC 3339 allows; what
reaches them is always UTC. Offsets no time can have are a 400 naming the parameter.
"""

from __future__ import annotations

import httpx
import pytest
from testkit.harness import TokenFactory

from services.query.tests.conftest import bearer
from services.query.tests.seeding import SeededModels, order


@pytest.fixture
def engine_url(search_engine_url: str) -> str:
    """Every test here runs on OpenSearch and on Elasticsearch."""
    return search_engine_url


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # 2026-03-01T01:00Z, written with offsets the engines refuse as they stand.
        ({"placed_from": "2026-03-01T19:01:00+18:01"}, ["2h", "1h"]),
        ({"placed_from": "2026-02-28T06:30:00-18:30"}, ["2h", "1h"]),
        ({"placed_to": "2026-03-02T00:59:00+23:59"}, ["0h"]),
        ({"placed_from": "2026-03-01T01:00:00+00:00", "placed_to": "2026-03-02T01:59:00+23:59"}, ["1h"]),
        # Offsets the engines take, and no offset (UTC), give the same answers.
        ({"placed_from": "2026-03-01T02:00:00+01:00"}, ["2h", "1h"]),
        ({"placed_from": "2026-03-01T01:00:00"}, ["2h", "1h"]),
    ],
)
async def test_placement_times_with_any_offset_are_compared_in_utc(
    client: httpx.AsyncClient,
    models: SeededModels,
    tokens: TokenFactory,
    params: dict[str, str],
    expected: list[str],
) -> None:
    for hours in (0, 1, 2):
        await models.put(order("alice", placed=hours * 3600, order_id=f"{hours}h"), redis=False)
    await models.refresh()

    response = await client.get("/orders", params=params, headers=bearer(tokens("alice")))

    assert response.status_code == 200, response.text
    assert [found["order_id"] for found in response.json()["orders"]] == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"placed_from": "2026-03-01T00:00:00+24:00"}, "placed_from"),
        ({"placed_to": "2026-03-01T00:00:00-99:00"}, "placed_to"),
        ({"placed_from": "2026-03-01T00:00:00+18:60"}, "placed_from"),
        # Within range as written, out of it in UTC.
        ({"placed_to": "9999-01-01T00:00:00-18:00"}, "placed_to"),
        ({"placed_from": "2000-01-01T00:00:00+00:01"}, "placed_from"),
    ],
)
async def test_offsets_no_time_can_have_are_400_problems_naming_the_parameter(
    client: httpx.AsyncClient, tokens: TokenFactory, params: dict[str, str], field: str
) -> None:
    response = await client.get("/orders", params=params, headers=bearer(tokens("s", roles=["staff"])))

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == [field]
