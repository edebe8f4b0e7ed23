from __future__ import annotations

import uuid

import httpx
from testkit.harness import TokenFactory as Tokens

from services.command.tests.conftest import pay_and_reserve, place_order
from services.command.tests.support import ORDER_BODY, StoreReader
from services.command.tests.support import command_headers as headers


async def test_a_customer_places_an_order_and_gets_its_stream_version_and_position(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    response = await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice")))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stream_id"] == f"order-{body['order_id']}"
    assert body["version"] == 0
    assert isinstance(body["position"], int)
    assert body["events"] == ["OrderPlaced"]
    assert response.headers["etag"] == '"0"'
    [event] = await reader.events(body["stream_id"])
    assert event.position == body["position"]
    assert event.data.total == 2500  # type: ignore[attr-defined]
    assert event.data.customer_id == "alice"  # type: ignore[attr-defined]


async def test_the_trace_and_correlation_ids_are_written_into_the_event_metadata(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    trace_id = uuid.uuid4().hex
    incoming = f"00-{trace_id}-{'1' * 16}-01"
    extra = {"traceparent": incoming, "X-Correlation-ID": "corr-42", "X-Causation-ID": "cause-7"}

    response = await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice"), **extra))

    assert response.status_code == 201, response.text
    assert response.headers["x-correlation-id"] == "corr-42"
    [event] = await reader.events(response.json()["stream_id"])
    assert event.metadata.correlation_id == "corr-42"
    assert event.metadata.causation_id == "cause-7"
    assert event.metadata.actor == "alice"
    assert event.metadata.traceparent is not None
    assert event.metadata.traceparent.split("-")[1] == trace_id


async def test_the_saga_confirms_and_the_customer_cancels_their_own_order(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    alice, saga = tokens("alice"), tokens("saga", roles=["service"])
    order_id = await place_order(client, tokens)
    await pay_and_reserve(client, tokens, order_id)

    confirmed = await client.post(f"/orders/{order_id}/confirm", headers=headers(saga))
    cancelled = await client.post(
        f"/orders/{order_id}/cancel", json={"reason": "too slow"}, headers=headers(alice)
    )

    assert (confirmed.status_code, cancelled.status_code) == (200, 200)
    assert cancelled.json()["version"] == 2
    assert await reader.event_types(f"order-{order_id}") == [
        "OrderPlaced",
        "OrderConfirmed",
        "OrderCancelled",
    ]


async def test_a_customer_cannot_cancel_someone_elses_order(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice")))).json()[
        "order_id"
    ]

    response = await client.post(f"/orders/{order_id}/cancel", json={}, headers=headers(tokens("mallory")))

    # 404, as for an order that does not exist: a stranger does not learn that this one does.
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "order-not-found"


async def test_someone_elses_order_is_404_with_any_if_match_and_tells_no_version(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    alice, mallory = tokens("alice"), tokens("mallory")
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=headers(alice))).json()["order_id"]
    unknown = str(uuid.uuid4())

    answers = [
        await client.post(
            f"/orders/{target}/cancel", headers={**headers(mallory), "If-Match": f'"{version}"'}
        )
        for target in (order_id, unknown)
        for version in (0, 7)
    ]

    assert [answer.status_code for answer in answers] == [404] * 4
    assert {answer.json()["detail"].replace(order_id, unknown) for answer in answers} == {
        f"order {unknown} does not exist"
    }
    assert all("etag" not in answer.headers for answer in answers)


async def test_confirming_a_cancelled_order_is_a_409_with_a_machine_readable_type(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    alice = tokens("alice")
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=headers(alice))).json()["order_id"]
    await client.post(f"/orders/{order_id}/cancel", json={}, headers=headers(alice))

    response = await client.post(f"/orders/{order_id}/confirm", headers=headers(tokens(roles=["service"])))

    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "urn:fulfilment:problem:order-not-pending"
    assert problem["status"] == 409
    assert problem["instance"] == f"/orders/{order_id}/confirm"


async def test_commands_on_an_unknown_order_are_404(client: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await client.post(
        f"/orders/{uuid.uuid4()}/confirm", headers=headers(tokens(roles=["service"]))
    )

    assert response.status_code == 404
    assert response.json()["code"] == "order-not-found"


async def test_staff_stock_the_shelves_and_a_shortage_is_recorded_not_refused(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    staff, saga = tokens("clerk", roles=["staff"]), tokens("saga", roles=["service"])
    registered = await client.post(
        "/products",
        json={"sku": "Widget-9", "name": "Widget", "unit_price": 700, "currency": "EUR"},
        headers=headers(staff),
    )
    received = await client.post("/products/WIDGET-9/receipts", json={"quantity": 3}, headers=headers(staff))
    widgets = {"lines": [{"sku": "widget-9", "quantity": 2}], "currency": "EUR"}
    first, second = [await place_order(client, tokens, body=widgets) for _ in range(2)]
    await pay(client, tokens, first, 1400)
    reserved = await client.post(
        "/products/widget-9/reservations", json={"order_id": str(first), "quantity": 2}, headers=headers(saga)
    )
    short = await client.post(
        "/products/widget-9/reservations",
        json={"order_id": str(second), "quantity": 2},
        headers=headers(saga),
    )
    committed = await client.post(f"/products/widget-9/reservations/{first}/commit", headers=headers(saga))

    assert [r.status_code for r in (registered, received, reserved, short, committed)] == [
        201,
        200,
        200,
        200,
        200,
    ]
    assert registered.json()["stream_id"] == "stock-widget-9"
    assert short.json()["events"] == ["StockReservationFailed"]
    assert await reader.event_types("stock-widget-9") == [
        "ProductRegistered",
        "StockReceived",
        "StockReserved",
        "StockReservationFailed",
        "StockReservationCommitted",
    ]


async def test_a_payment_is_requested_authorised_and_refunded_by_the_saga(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    saga, order_id = tokens("saga", roles=["service"]), await place_order(client, tokens)
    body = {"order_id": order_id, "amount": 2500, "currency": "EUR"}

    requested = await client.post("/payments", json=body, headers=headers(saga))
    authorised = await client.post(
        f"/payments/{order_id}/authorization", json={"provider_reference": "psp-1"}, headers=headers(saga)
    )
    voided = await client.post(f"/payments/{order_id}/void", json={}, headers=headers(saga))
    refunded = await client.post(f"/payments/{order_id}/refund", headers=headers(saga))

    assert [r.status_code for r in (requested, authorised, voided, refunded)] == [201, 200, 409, 200]
    assert voided.json()["code"] == "payment-not-voidable"
    assert await reader.event_types(f"payment-{order_id}") == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]


async def test_each_role_is_kept_to_its_own_endpoints(client: httpx.AsyncClient, tokens: Tokens) -> None:
    customer, staff = tokens(roles=["customer"]), tokens(roles=["staff"])

    as_customer = await client.post("/products", json={"sku": "a", "name": "A"}, headers=headers(customer))
    as_staff = await client.post("/orders", json=ORDER_BODY, headers=headers(staff))

    as_customer_paying = await client.post(
        "/payments",
        json={"order_id": str(uuid.uuid4()), "amount": 1, "currency": "EUR"},
        headers=headers(customer),
    )

    assert (as_customer.status_code, as_staff.status_code, as_customer_paying.status_code) == (403, 403, 403)
    assert as_customer.json()["code"] == "forbidden"


async def test_a_stock_item_with_many_events_is_snapshotted_by_the_write_path(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    from fulfilment.stock import StockItem

    staff = tokens("clerk", roles=["staff"])
    bolt = {"sku": "bolt", "name": "Bolt", "unit_price": 5, "currency": "EUR"}
    await client.post("/products", json=bolt, headers=headers(staff))
    for _ in range(100):
        response = await client.post("/products/bolt/receipts", json={"quantity": 1}, headers=headers(staff))
        assert response.status_code == 200

    snapshot = await reader.store.load_snapshot("stock-bolt", StockItem)

    assert snapshot is not None
    assert snapshot[0] == 99
    assert snapshot[1].on_hand == 99


async def pay(client: httpx.AsyncClient, tokens: Tokens, order_id: str, amount: int) -> None:
    saga = headers(tokens("saga", roles=["service"]))
    body = {"order_id": order_id, "amount": amount, "currency": "EUR"}
    assert (await client.post("/payments", json=body, headers=saga)).status_code == 201
    authorised = await client.post(
        f"/payments/{order_id}/authorization",
        json={"provider_reference": "p"},
        headers=headers(tokens("saga", roles=["service"])),
    )
    assert authorised.status_code == 200
