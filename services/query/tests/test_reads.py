"""Reads through HTTP against seeded read models: by id with ETag, search, counts, recent orders, stock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from testkit.harness import TokenFactory

from services.query.tests.conftest import bearer
from services.query.tests.seeding import SeededModels, order


@pytest.fixture
def engine_url(search_engine_url: str) -> str:
    """Every test here runs on OpenSearch and on Elasticsearch."""
    return search_engine_url


async def test_an_order_is_read_from_redis_with_its_version_as_etag(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice", total=2500, version=1, status="confirmed")
    await models.put(placed, search=False)  # by id needs Redis alone

    response = await client.get(f"/orders/{placed.order_id}", headers=bearer(tokens("alice")))

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    body = response.json()
    assert body["order_id"] == placed.order_id
    assert body["status"] == "confirmed"
    assert body["total"] == 2500
    assert body["lines"] == [{"sku": "blue-mug", "quantity": 1, "unit_price": 2500, "line_total": 2500}]


async def test_if_none_match_with_the_current_version_answers_304_and_an_older_one_the_order(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice", version=3)
    await models.put(placed, search=False)
    url, token = f"/orders/{placed.order_id}", tokens("alice")

    same = await client.get(url, headers=bearer(token, **{"If-None-Match": '"3"'}))
    weak_among_others = await client.get(url, headers=bearer(token, **{"If-None-Match": '"1", W/"3"'}))
    older = await client.get(url, headers=bearer(token, **{"If-None-Match": '"2"'}))

    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == '"3"'
    assert weak_among_others.status_code == 304
    assert older.status_code == 200
    assert older.json()["version"] == 3


async def test_a_customer_gets_404_for_another_customers_order_and_staff_see_it(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    bobs = order("bob")
    await models.put(bobs, search=False)

    as_alice = await client.get(f"/orders/{bobs.order_id}", headers=bearer(tokens("alice")))
    as_staff = await client.get(f"/orders/{bobs.order_id}", headers=bearer(tokens("s1", roles=["staff"])))
    unknown = await client.get(
        "/orders/00000000-0000-4000-8000-000000000000", headers=bearer(tokens("s1", roles=["staff"]))
    )

    assert as_alice.status_code == 404
    assert as_alice.headers["content-type"] == "application/problem+json"
    assert as_alice.json()["code"] == "order-not-found"
    assert as_staff.status_code == 200
    assert unknown.status_code == 404


async def test_reads_need_a_token_with_a_role(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    anonymous = await client.get("/orders")
    no_role = await client.get("/orders", headers=bearer(tokens("eve", roles=[])))

    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert no_role.status_code == 403


async def test_search_filters_by_text_status_time_and_total(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    mug = order("alice", placed=10, total=1000, product="Blue mug", sku="blue-mug")
    teapot = order("alice", placed=20, total=5000, product="Green teapot", sku="green-teapot")
    kettle = order("bob", placed=30, total=9000, product="Steel kettle", sku="kettle", status="confirmed")
    for document in (mug, teapot, kettle):
        await models.put(document)
    await models.refresh()
    staff = bearer(tokens("s1", roles=["staff"]))

    async def ids(**params: object) -> list[str]:
        response = await client.get("/orders", params=params, headers=staff)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return [found["order_id"] for found in response.json()["orders"]]

    assert await ids() == [kettle.order_id, teapot.order_id, mug.order_id]
    assert await ids(q="teapot") == [teapot.order_id]
    assert await ids(q="KETTLE") == [kettle.order_id]  # the SKU, case-insensitive
    assert await ids(q=mug.order_id) == [mug.order_id]
    assert await ids(status="confirmed") == [kettle.order_id]
    assert await ids(status=["pending", "confirmed"], sort="total") == [
        mug.order_id,
        teapot.order_id,
        kettle.order_id,
    ]
    assert await ids(customer="alice", sort="placed_at") == [mug.order_id, teapot.order_id]
    assert await ids(placed_from="2026-03-01T00:00:15Z", placed_to="2026-03-01T00:00:30Z") == [
        teapot.order_id
    ]
    assert await ids(total_min=1000, total_max=5000, sort="-total") == [teapot.order_id, mug.order_id]


async def test_search_results_carry_product_names(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    await models.put(order("alice", product="Blue mug"))
    await models.refresh()

    response = await client.get("/orders", headers=bearer(tokens("alice")))

    assert response.json()["orders"][0]["lines"][0]["product_name"] == "Blue mug"


async def test_counts_per_status_for_staff_over_everyone_and_for_a_customer_over_their_own(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    for document in (
        order("alice"),
        order("alice", status="confirmed"),
        order("bob", status="confirmed"),
        order("bob", status="cancelled"),
    ):
        await models.put(document)
    await models.refresh()

    everyone = await client.get("/orders/counts", headers=bearer(tokens("s1", roles=["staff"])))
    bob_for_staff = await client.get(
        "/orders/counts", params={"customer": "bob"}, headers=bearer(tokens("s1", roles=["staff"]))
    )
    alice = await client.get("/orders/counts", headers=bearer(tokens("alice")))

    assert everyone.json() == {
        "counts": {"pending": 1, "confirmed": 2, "rejected": 0, "cancelled": 1},
        "total": 4,
    }
    assert bob_for_staff.json()["counts"] == {"pending": 0, "confirmed": 1, "rejected": 0, "cancelled": 1}
    assert alice.json() == {
        "counts": {"pending": 1, "confirmed": 1, "rejected": 0, "cancelled": 0},
        "total": 2,
    }


async def test_recent_orders_are_newest_first_and_only_the_customers_own(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    older, newer = order("alice", placed=1), order("alice", placed=2)
    for document in (older, newer, order("bob", placed=3)):
        await models.put(document, search=False)

    own = await client.get("/customers/alice/recent-orders", headers=bearer(tokens("alice")))
    others = await client.get("/customers/bob/recent-orders", headers=bearer(tokens("alice")))
    limited = await client.get(
        "/customers/alice/recent-orders", params={"limit": 1}, headers=bearer(tokens("s", roles=["staff"]))
    )

    assert [o["order_id"] for o in own.json()["orders"]] == [newer.order_id, older.order_id]
    assert others.status_code == 403
    assert [o["order_id"] for o in limited.json()["orders"]] == [newer.order_id]


async def test_stock_by_sku_is_case_insensitive_and_unknown_skus_are_404(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    await models.stock("blue-mug", "Blue mug", on_hand=10, available=7, version=3)

    found = await client.get("/stock/Blue-Mug", headers=bearer(tokens("alice")))
    missing = await client.get("/stock/nothing-here", headers=bearer(tokens("alice")))

    assert found.json() == {
        "sku": "blue-mug",
        "name": "Blue mug",
        "unit_price": 1250,
        "currency": "EUR",
        "active": True,
        "for_sale": True,
        "on_hand": 10,
        "available": 7,
        "version": 3,
    }
    assert missing.status_code == 404
    assert missing.json()["code"] == "product-not-found"


@pytest.mark.parametrize(
    ("seeded", "shown"),
    [
        ({"unit_price": 990, "currency": "GBP"}, (990, "GBP", True, True)),
        ({"active": False}, (1250, "EUR", False, False)),
        ({"unit_price": None, "currency": None}, (None, None, True, False)),
        ({"unit_price": None, "currency": None, "active": False}, (None, None, False, False)),
    ],
    ids=["priced", "deactivated", "not-priced-yet", "neither"],
)
async def test_a_product_shows_its_price_and_is_for_sale_only_while_active_and_priced(
    client: httpx.AsyncClient,
    models: SeededModels,
    tokens: TokenFactory,
    seeded: dict[str, Any],
    shown: tuple[int | None, str | None, bool, bool],
) -> None:
    await models.stock("lamp", "Lamp", on_hand=1, available=1, **seeded)

    body = (await client.get("/stock/lamp", headers=bearer(tokens("alice")))).json()

    assert (body["unit_price"], body["currency"], body["active"], body["for_sale"]) == shown


async def test_a_stock_hash_from_before_products_had_prices_reads_as_active_and_not_priced(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    # The fields an older projector wrote, and no more: a product registered without a price.
    fields = {"sku": "old-mug", "name": "Old mug", "on_hand": 4, "available": 4, "version": 2}
    await models.redis.hset(models.keys.stock("old-mug"), mapping=fields)  # type: ignore[misc]

    response = await client.get("/stock/old-mug", headers=bearer(tokens("s", roles=["staff"])))

    assert response.status_code == 200, response.text
    assert response.json() == {
        **fields,
        "unit_price": None,
        "currency": None,
        "active": True,
        "for_sale": False,
    }


async def test_reads_follow_the_live_generation_when_a_rebuild_swaps_it(
    client: httpx.AsyncClient, models: SeededModels, tokens: TokenFactory
) -> None:
    placed = order("alice", status="pending")
    await models.put(placed, search=False)
    rebuilt = models.keyspace.models("g1")
    fields = await models.redis.hgetall(models.keys.order(placed.order_id))  # type: ignore[misc]
    await models.redis.hset(rebuilt.order(placed.order_id), mapping={**fields, b"status": b"confirmed"})  # type: ignore[misc]
    await models.redis.hset(rebuilt.stock("blue-mug"), mapping={"sku": "blue-mug", "name": "Blue mug",
                            "on_hand": 1, "available": 1, "version": 1})  # type: ignore[misc]  # fmt: skip
    url, alice = f"/orders/{placed.order_id}", bearer(tokens("alice"))

    before = await client.get(url, headers=alice)
    stock_before = await client.get("/stock/blue-mug", headers=alice)
    await models.redis.set(rebuilt.built, "rebuilt")
    await models.redis.set(models.keyspace.live("redis"), "g1")
    after = await client.get(url, headers=alice)
    stock_after = await client.get("/stock/blue-mug", headers=alice)

    assert before.json()["status"] == "pending"
    assert stock_before.status_code == 404
    assert after.json()["status"] == "confirmed"
    assert stock_after.status_code == 200


async def test_the_openapi_document_shows_a_products_price_and_whether_it_is_for_sale(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    stock = document["components"]["schemas"]["StockView"]

    assert {"unit_price", "currency", "active", "for_sale"} <= set(stock["required"])
    assert {"type": "null"} in stock["properties"]["unit_price"]["oneOf"]
    assert stock["properties"]["for_sale"]["type"] == "boolean"
    assert "active and priced" in stock["properties"]["for_sale"]["description"]
