"""If-Match, ETag and racing commands on one stream."""

from __future__ import annotations

import asyncio

import httpx
from testkit.harness import TokenFactory

from services.command.tests.conftest import pay_and_reserve, place_order
from services.command.tests.support import ORDER_BODY, StoreReader, command_headers


async def place(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post("/orders", json=ORDER_BODY, headers=command_headers(token))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def test_a_matching_if_match_is_accepted_and_the_new_etag_returned(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    alice = tokens("alice")
    order_id = await place(client, alice)

    response = await client.post(
        f"/orders/{order_id}/cancel", json={}, headers=command_headers(alice, **{"If-Match": '"0"'})
    )

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'


async def test_a_stale_if_match_is_412_with_the_current_version_and_appends_nothing(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    alice, saga = tokens("alice"), tokens("saga", roles=["service"])
    order_id = await place(client, alice)
    await client.post(
        f"/orders/{order_id}/reject", json={"reason": "no stock"}, headers=command_headers(saga)
    )

    response = await client.post(
        f"/orders/{order_id}/cancel", json={}, headers=command_headers(alice, **{"If-Match": '"0"'})
    )

    assert response.status_code == 412
    assert response.headers["etag"] == '"1"'
    assert response.json()["code"] == "stale-version"
    assert response.json()["current_version"] == 1
    assert await reader.event_types(f"order-{order_id}") == ["OrderPlaced", "OrderRejected"]


async def test_a_malformed_if_match_is_400(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    alice = tokens("alice")
    order_id = await place(client, alice)

    response = await client.post(
        f"/orders/{order_id}/cancel", json={}, headers=command_headers(alice, **{"If-Match": 'W/"0"'})
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "If-Match"


async def test_racing_confirmations_of_one_order_confirm_it_once(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    order_id = await place(client, tokens("alice"))
    await pay_and_reserve(client, tokens, order_id)
    saga = tokens("saga", roles=["service"])

    responses = await asyncio.gather(
        *(client.post(f"/orders/{order_id}/confirm", headers=command_headers(saga)) for _ in range(8))
    )

    assert {r.status_code for r in responses} == {200}
    assert sorted(len(r.json()["events"]) for r in responses) == [0] * 7 + [1]
    assert await reader.event_types(f"order-{order_id}") == ["OrderPlaced", "OrderConfirmed"]


async def test_racing_cancel_and_reject_leave_one_outcome(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    alice, saga = tokens("alice"), tokens("saga", roles=["service"])
    order_id = await place(client, alice)

    cancel, reject = await asyncio.gather(
        client.post(f"/orders/{order_id}/cancel", json={}, headers=command_headers(alice)),
        client.post(f"/orders/{order_id}/reject", json={"reason": "no stock"}, headers=command_headers(saga)),
    )

    types = await reader.event_types(f"order-{order_id}")
    if types[-1] == "OrderCancelled":
        assert (cancel.status_code, reject.status_code) == (200, 409)
    else:
        assert types[-1] == "OrderRejected"
        assert (cancel.status_code, reject.status_code) == (409, 200)
    assert len(types) == 2


async def test_racing_reservations_never_reserve_more_than_on_hand(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    staff, saga = tokens("clerk", roles=["staff"]), tokens("saga", roles=["service"])
    hot = {"sku": "hot-1", "name": "Hot", "unit_price": 10, "currency": "EUR"}
    await client.post("/products", json=hot, headers=command_headers(staff))
    await client.post("/products/hot-1/receipts", json={"quantity": 5}, headers=command_headers(staff))
    one = {"lines": [{"sku": "hot-1", "quantity": 1}], "currency": "EUR"}
    orders = [await place_order(client, tokens, f"c{n}", one) for n in range(10)]

    responses = await asyncio.gather(
        *(
            client.post(
                "/products/hot-1/reservations",
                json={"order_id": order_id, "quantity": 1},
                headers=command_headers(saga),
            )
            for order_id in orders
        )
    )

    assert {r.status_code for r in responses} == {200}
    types = await reader.event_types("stock-hot-1")
    assert types.count("StockReserved") == 5
    assert types.count("StockReservationFailed") == 5
    versions = [event.version for event in await reader.events("stock-hot-1")]
    assert versions == list(range(len(versions)))


async def test_racing_registrations_of_one_sku_create_it_once_and_never_fail(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    staff = tokens("clerk", roles=["staff"])
    body = {"sku": "new-1", "name": "New", "unit_price": 10, "currency": "EUR"}

    responses = await asyncio.gather(
        *(client.post("/products", json=body, headers=command_headers(staff)) for _ in range(20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, [r.text for r in responses if r.status_code != 409]
    assert statuses.count(409) == 19
    assert await reader.event_types("stock-new-1") == ["ProductRegistered"]


async def test_racing_payment_requests_for_one_order_request_it_once_and_never_fail(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    saga = tokens("saga", roles=["service"])
    body = {"order_id": await place(client, tokens("alice")), "amount": 2500, "currency": "EUR"}

    responses = await asyncio.gather(
        *(client.post("/payments", json=body, headers=command_headers(saga)) for _ in range(20))
    )

    assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]
    assert sorted(r.status_code for r in responses)[0] == 201
    assert await reader.event_types(f"payment-{body['order_id']}") == ["PaymentRequested"]


NEW_2 = {"sku": "new-2", "name": "New", "unit_price": 10, "currency": "EUR"}


async def test_racing_retries_of_one_registration_answer_created_or_replay(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    staff = tokens("clerk", roles=["staff"])
    headers = command_headers(staff)

    responses = await asyncio.gather(
        *(client.post("/products", json=NEW_2, headers=headers) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {201}, [r.text for r in responses if r.status_code != 201]
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert await reader.event_types("stock-new-2") == ["ProductRegistered"]
