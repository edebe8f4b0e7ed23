"""A customer cannot read, search or count another customer's orders, whatever the request says."""

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


@pytest.fixture
async def two_customers(models: SeededModels) -> dict[str, str]:
    alices = order("alice", placed=1, product="Blue mug")
    bobs = order("bob", placed=2, product="Blue mug", status="confirmed")
    for document in (alices, bobs):
        await models.put(document)
    await models.refresh()
    return {"alice": alices.order_id, "bob": bobs.order_id}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "q=mug",
        "q=customer_id:bob",
        "q=bob",
        "q=*",
        "status=confirmed",
        "sort=total",
        "q=%22bob%22+OR+customer_id%3Abob",
    ],
)
async def test_a_customers_search_only_ever_finds_their_own_orders(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/orders?{query}", headers=bearer(tokens("alice")))

    assert response.status_code == 200, response.text
    assert {found["customer_id"] for found in response.json()["orders"]} <= {"alice"}


@pytest.mark.parametrize(
    "query",
    [
        "customer=bob",
        "customer=alice&customer=bob",
        "customer=bob&customer=alice",
        "customer_id=bob",
        "customer%5B%5D=bob",
        "q=mug&customer=bob",
    ],
)
async def test_a_customer_naming_someone_else_in_a_search_is_refused(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/orders?{query}", headers=bearer(tokens("alice")))

    assert response.status_code in (400, 403), response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_customer_can_name_themselves(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str]
) -> None:
    response = await client.get("/orders?customer=alice", headers=bearer(tokens("alice")))

    assert [found["order_id"] for found in response.json()["orders"]] == [two_customers["alice"]]


@pytest.mark.parametrize("query", ["", "customer=alice"])
async def test_a_customer_counts_only_their_own_orders(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/orders/counts?{query}", headers=bearer(tokens("alice")))

    assert response.json()["total"] == 1
    assert response.json()["counts"]["confirmed"] == 0  # bob's order is the confirmed one


@pytest.mark.parametrize("query", ["customer=bob", "customer=alice&customer=bob", "customer_id=bob"])
async def test_a_customer_counting_someone_elses_orders_is_refused(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/orders/counts?{query}", headers=bearer(tokens("alice")))

    assert response.status_code in (400, 403), response.text


async def test_a_customer_cannot_read_another_customers_order_or_recent_orders(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str]
) -> None:
    alice = bearer(tokens("alice"))

    by_id = await client.get(f"/orders/{two_customers['bob']}", headers=alice)
    recent = await client.get("/customers/bob/recent-orders", headers=alice)
    recent_crafted = await client.get("/customers/alice/recent-orders?customer=bob", headers=alice)

    assert by_id.status_code == 404
    assert recent.status_code == 403
    assert recent_crafted.status_code == 400


async def test_a_token_with_both_customer_and_staff_roles_sees_everyone(
    client: httpx.AsyncClient, tokens: TokenFactory, two_customers: dict[str, str]
) -> None:
    response = await client.get("/orders", headers=bearer(tokens("alice", roles=["customer", "staff"])))

    assert {found["customer_id"] for found in response.json()["orders"]} == {"alice", "bob"}
