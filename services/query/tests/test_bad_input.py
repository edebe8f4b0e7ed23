"""Strict query parameters: every bad input is a 400 problem naming the parameter, never a 500."""

from __future__ import annotations

import base64
import hashlib

import httpx
import msgspec
import pytest
from readmodels.order_queries import OrderFilters
from testkit.harness import TokenFactory

from services.query.tests.conftest import bearer
from services.query.tests.seeding import SeededModels, order


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("q=" + "x" * 201, "q"),
        ("q=", "q"),
        ("q=%00", "q"),
        ("status=lost", "status"),
        ("sort=updated_at", "sort"),
        ("placed_from=yesterday", "placed_from"),
        ("placed_from=1900-01-01T00:00:00Z", "placed_from"),
        ("placed_from=2026-03-02T00:00:00Z&placed_to=2026-03-01T00:00:00Z", "placed_to"),
        ("total_min=-1", "total_min"),
        ("total_min=10&total_max=5", "total_max"),
        ("total_max=99999999999999999999999", "total_max"),
        ("cursor=not%20a%20cursor", "cursor"),
        ("cursor=" + "A" * 513, "cursor"),
        ("limit=5&limit=6", "limit"),
        ("page=2", "page"),
    ],
)
async def test_bad_search_parameters_are_400_problems_naming_the_parameter(
    client: httpx.AsyncClient, tokens: TokenFactory, query: str, field: str
) -> None:
    response = await client.get(f"/orders?{query}", headers=bearer(tokens("s", roles=["staff"])))

    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in problem["errors"]], problem


@pytest.mark.parametrize(
    "cursor",
    [
        "AAAA",
        base64.urlsafe_b64encode(b'["-placed_at",[1,"x"]]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'{"sort":"-placed_at"}').decode().rstrip("="),
        base64.urlsafe_b64encode(b'["-placed_at",["1","x"],"0000000000000000"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'["-placed_at",[1e400,"x"],"0000000000000000"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b'["-placed_at",[99999999999999999999,"x"],"ab"]').decode().rstrip("="),
        base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="),
    ],
)
async def test_a_malformed_cursor_is_a_400_invalid_cursor_problem(
    client: httpx.AsyncClient, tokens: TokenFactory, cursor: str
) -> None:
    response = await client.get("/orders", params={"cursor": cursor}, headers=bearer(tokens("alice")))

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid-cursor"


async def test_a_cursor_used_with_another_sort_or_other_filters_is_refused(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    for n in range(3):
        await models.put(order("alice", placed=n))
    await models.refresh()
    alice = bearer(tokens("alice"))
    first = await client.get("/orders", params={"limit": 1}, headers=alice)
    cursor = first.json()["next_cursor"]

    other_sort = await client.get(
        "/orders", params={"limit": 1, "cursor": cursor, "sort": "total"}, headers=alice
    )
    other_filter = await client.get(
        "/orders", params={"limit": 1, "cursor": cursor, "status": "pending"}, headers=alice
    )
    same = await client.get("/orders", params={"limit": 1, "cursor": cursor}, headers=alice)

    assert other_sort.status_code == 400
    assert other_sort.json()["code"] == "invalid-cursor"
    assert other_filter.status_code == 400
    assert same.status_code == 200


def _unsigned(state: object) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(state)).decode().rstrip("=")


async def test_a_forged_or_altered_cursor_is_a_400_invalid_cursor_problem(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    # Anyone can compute the filters' fingerprint: only the key makes a cursor the service accepts.
    for n in range(3):
        await models.put(order("alice", placed=n))
    await models.refresh()
    alice = bearer(tokens("alice"))
    fingerprint = hashlib.blake2b(
        msgspec.json.encode(OrderFilters(customer_id="alice")), digest_size=8
    ).hexdigest()
    forged = _unsigned(["-placed_at", [2**62, "zzzz"], fingerprint])
    handed_out = (await client.get("/orders", params={"limit": 1}, headers=alice)).json()["next_cursor"]
    raw = base64.urlsafe_b64decode(handed_out + "=" * (-len(handed_out) % 4))
    altered = (
        base64.urlsafe_b64encode(raw.replace(b'"-placed_at",[', b'"-placed_at",[9')).decode().rstrip("=")
    )
    assert altered != handed_out

    for cursor in (forged, altered):
        response = await client.get("/orders", params={"limit": 1, "cursor": cursor}, headers=alice)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid-cursor"
        assert [error["field"] for error in response.json()["errors"]] == ["cursor"]
    genuine = await client.get("/orders", params={"limit": 1, "cursor": handed_out}, headers=alice)
    assert genuine.status_code == 200, genuine.text


@pytest.mark.parametrize("token", ["", "abc", "-1", "1" * 19, "1.5"])
async def test_a_malformed_consistency_token_is_a_400_naming_the_header(
    client: httpx.AsyncClient, tokens: TokenFactory, token: str
) -> None:
    response = await client.get(
        "/orders/counts", headers=bearer(tokens("alice"), **{"X-Consistency-Token": token})
    )

    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "X-Consistency-Token"


async def test_an_overlong_if_none_match_is_a_400_naming_the_header(
    client: httpx.AsyncClient, tokens: TokenFactory, models: SeededModels
) -> None:
    document = order("alice")
    await models.put(document)
    tags = ", ".join(f'"{n}"' for n in range(300))

    response = await client.get(
        f"/orders/{document.order_id}", headers=bearer(tokens("alice"), **{"If-None-Match": tags})
    )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid-header"
    assert response.json()["errors"][0]["field"] == "If-None-Match"


@pytest.mark.parametrize("path", ["/orders/not-a-uuid", "/stock/bad%20sku", "/stock/-x"])
async def test_malformed_path_parameters_are_400_or_404_problems(
    client: httpx.AsyncClient, tokens: TokenFactory, path: str
) -> None:
    response = await client.get(path, headers=bearer(tokens("alice")))

    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"] == "application/problem+json"
